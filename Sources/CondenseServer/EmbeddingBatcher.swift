import Condense
import CondenseInference
import Foundation
import Metrics

/// Dynamic batching for embeddings: the requests that queue while a batch runs form the next one
/// (up to `maxBatchTokens` tokens, in arrival order), run as one packed batch on a thread of its
/// own; each request gets back its own rows. `window` can make the first request of a batch wait
/// for company; it is 0 by default, as measured: a 2 ms window halved single-stream throughput
/// (168–171 against 70–103 requests/s) and gained nothing at 8–64 concurrent requests, where the
/// queue fills while the previous batch runs.
///
/// ```swift
/// let batcher = EmbeddingBatcher(session: session, maxBatchTokens: 8192, maxQueued: 256, metrics: m)
/// let vectors = try await batcher.embed([ids1, ids2])
/// ```
public final class EmbeddingBatcher: Worker, @unchecked Sendable {
    // @unchecked: `queue` and `stopped` are only touched under `cond`.
    struct Job {
        let ids: [[Int32]]
        let done: @Sendable (Result<[[Float]], Error>) -> Void
        var tokens: Int { ids.reduce(0) { $0 + $1.count } }
    }

    let session: InferenceSession
    let maxBatchTokens: Int
    let maxQueued: Int
    /// How long the first request of a batch waits for company (0: take what is queued).
    let window: TimeInterval
    let metrics: ServerMetrics
    private var queue: [Job] = []

    /// A batcher over `session`: at most `maxBatchTokens` tokens per batch, `maxQueued` requests waiting, `window` seconds to gather a batch.
    public init(session: InferenceSession, maxBatchTokens: Int, maxQueued: Int, window: TimeInterval = 0, metrics: ServerMetrics) {
        self.session = session
        self.maxBatchTokens = max(1, maxBatchTokens)
        self.maxQueued = max(1, maxQueued)
        self.window = window
        self.metrics = metrics
        super.init()
        start(name: "condense-embeddings")
    }

    /// Embeds tokenized sequences; throws 429 when `maxQueued` requests are already waiting.
    public func embed(_ ids: [[Int32]]) async throws -> [[Float]] {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<[[Float]], Error>) in
            cond.lock()
            defer { cond.unlock() }
            guard !stopped else { c.resume(throwing: APIError(.serviceUnavailable, "the server is shutting down")); return }
            guard queue.count < maxQueued else {
                c.resume(throwing: APIError(.tooManyRequests, "\(queue.count) embedding requests are queued (--max-concurrent); retry later", retryAfter: 1))
                return
            }
            queue.append(Job(ids: ids, done: { c.resume(with: $0) }))
            metrics.embeddingQueue.record(queue.count)
            cond.signal()
        }
    }

    override public func run() {
        while true {
            cond.lock()
            while queue.isEmpty && !stopped { cond.wait() }
            if queue.isEmpty && stopped { cond.unlock(); return }
            // Wait a little for more requests unless the batch is already full.
            if window > 0 {
                let deadline = Date(timeIntervalSinceNow: window)
                while queue.reduce(0, { $0 + $1.tokens }) < maxBatchTokens && !stopped && cond.wait(until: deadline) {}
            }
            var jobs: [Job] = [], tokens = 0
            while let j = queue.first, jobs.isEmpty || tokens + j.tokens <= maxBatchTokens {
                jobs.append(queue.removeFirst())
                tokens += j.tokens
            }
            metrics.embeddingQueue.record(queue.count)
            cond.unlock()
            metrics.batchSize.record(jobs.reduce(0) { $0 + $1.ids.count })
            metrics.batchTokens.record(tokens)
            do {
                let rows = try session.embed(tokenIDs: jobs.flatMap(\.ids))
                var start = 0
                for j in jobs {
                    j.done(.success(Array(rows[start..<(start + j.ids.count)])))
                    start += j.ids.count
                }
            } catch {
                for j in jobs { j.done(.failure(APIError(.internalServerError, "\(error)"))) }
            }
        }
    }
}
