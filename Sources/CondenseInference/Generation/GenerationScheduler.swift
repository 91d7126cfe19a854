import Condense
import Foundation

/// What a ``GenerationScheduler`` reports as it runs (a server turns these into metrics).
public protocol GenerationObserver: Sendable {
    /// Requests waiting for a slot.
    func queueDepth(_ n: Int)
    /// Streams holding a slot.
    func activeStreams(_ n: Int)
    /// Sessions in one batched pass.
    func decodeBatch(_ n: Int)
    /// From submission to a stream's first token.
    func firstToken(after: Duration)
    /// A request was admitted; `hitTokens` of its prompt came from the prefix cache (0: a miss
    /// or no cache).
    func prefixLookup(hitTokens: Int)
    /// Tokens generated in one step.
    func generated(_ tokens: Int)
}

/// Observes nothing.
public struct NoGenerationObserver: GenerationObserver {
    /// An observer that records nothing.
    public init() {}
    /// Ignored.
    public func queueDepth(_ n: Int) {}
    /// Ignored.
    public func activeStreams(_ n: Int) {}
    /// Ignored.
    public func decodeBatch(_ n: Int) {}
    /// Ignored.
    public func firstToken(after: Duration) {}
    /// Ignored.
    public func prefixLookup(hitTokens: Int) {}
    /// Ignored.
    public func generated(_ tokens: Int) {}
}

/// Continuous batching for generation: every active stream advances by one token in one batched
/// pass (`DecoderSession/forward(_:allLogits:)`: the weights are read once per step for all of
/// them); new requests join at step boundaries with a KV cache of their own, and long prompts are
/// prefilled in chunks inside the same steps so that running streams keep flowing. A stream
/// whose consumer goes away (the client disconnected) frees its slot at the next step.
///
/// ```swift
/// let scheduler = GenerationScheduler(model: lm, maxActive: 8, maxQueued: 64)
/// for await event in try scheduler.submit(promptIDs, options) { … }
/// ```
///
/// The engine lives here, in the inference library, so that an app streams from it as a server
/// does; `condense serve` only translates HTTP into ``submit(_:_:)`` and events into responses.
public final class GenerationScheduler: Worker, @unchecked Sendable {
    // @unchecked: `waiting`, `stopped` and the cancellation flags are only touched under `cond`;
    // `active` only by the scheduler thread.

    /// Why a request was not queued.
    public enum Refusal: Error, Equatable, CustomStringConvertible {
        /// The queue holds this many requests already; retry later.
        case queueFull(waiting: Int)
        case shuttingDown
        /// The request's KV cache alone (prompt + max tokens) needs more bytes than all sessions
        /// together may hold: it can never run.
        case tooLarge(cacheBytes: Int, budgetBytes: Int)
        public var description: String {
            switch self {
            case let .queueFull(n): return "\(n) generation requests are queued; retry later"
            case .shuttingDown: return "the generation engine is shutting down"
            case let .tooLarge(need, budget):
                return "the request's KV cache needs \(need >> 20) MiB (prompt + max_tokens) and all sessions together may hold \(budget >> 20) MiB; ask for fewer tokens"
            }
        }
    }

    /// What a stream receives.
    public enum Event: Sendable {
        case piece(String)
        /// With ``GenerationOptions/logprobs``: the tokens generated since the last report, sent
        /// before the piece their text completes (a piece may lag while a stop string is possible).
        case logprobs([DecoderSession.TokenLogprob])
        /// `cachedTokens`: how many of the prompt's tokens came from the prefix cache.
        case done(finishReason: String, promptTokens: Int, completionTokens: Int, cachedTokens: Int)
        /// The request could not run to its end: a session that could not be made (its cache
        /// could not be allocated: `CondenseError.outOfMemory(bytes:)`), options the model
        /// refuses, or a kernel failure — typed, for the caller to answer (a server: 503 or 500).
        case failed(CondenseError)
    }

    final class Request: @unchecked Sendable {
        let ids: [Int32]
        let options: GenerationOptions
        let continuation: AsyncStream<Event>.Continuation
        let submitted = ContinuousClock.now
        var cancelled = false   // under the scheduler's lock
        init(ids: [Int32], options: GenerationOptions, continuation: AsyncStream<Event>.Continuation) {
            self.ids = ids
            self.options = options
            self.continuation = continuation
        }
    }

    struct Slot {
        let request: Request
        let session: DecoderSession
        var cacheBytes: Int { session.cacheBytes }
        var generation: DecoderSession.Generation
        var prompt: ArraySlice<Int32>   // not yet prefilled
        var next: Int32?
        var firstToken = true
        var cached = 0                  // prompt tokens restored from the prefix cache
    }

    public let model: LanguageModel
    let maxActive: Int
    let maxQueued: Int
    /// Prompt tokens prefilled per step, shared by the streams still prefilling.
    let prefillChunk: Int
    let observer: any GenerationObserver
    private var waiting: [Request] = []
    /// Prompt prefixes kept for reuse (nil: off); only the scheduler's thread touches it.
    let prefixes: PrefixCache?
    /// The most bytes all active sessions' KV caches may hold together (0: no bound).
    public let kvBudgetBytes: Int
    private var active: [Slot] = []

    /// The sessions' key cache type.
    public let kvCache: KVCacheType
    /// The sessions' value cache type (nil: the key cache's).
    public let valueCache: KVCacheType?

    /// - Parameters:
    ///   - model: the model every request runs on.
    ///   - maxActive: streams decoding at once (one batched step advances them all).
    ///   - maxQueued: requests waiting beyond the active ones before ``Refusal/queueFull(waiting:)``.
    ///   - prefillChunk: prompt tokens prefilled per step (with the decoding streams' tokens).
    ///   - kvCache: the sessions' key cache type.
    ///   - valueCache: the sessions' value cache type (the key cache's when nil).
    ///   - observer: receives queue depths, batch sizes, first-token times and prefix-cache hits.
    ///   - prefixCacheBytes: the budget of the ``PrefixCache`` that keeps prompts' KV rows for
    ///     later requests that start with the same tokens (0: none).
    ///   - kvBudgetBytes: the most bytes all active sessions' KV caches hold together (0: no
    ///     bound): a request waits in the queue until its cache fits.
    public init(model: LanguageModel, maxActive: Int, maxQueued: Int, prefillChunk: Int = 256,
                kvCache: KVCacheType = .f16, valueCache: KVCacheType? = nil, prefixCacheBytes: Int = 0,
                kvBudgetBytes: Int = 0, observer: any GenerationObserver = NoGenerationObserver()) {
        self.prefixes = prefixCacheBytes > 0 ? PrefixCache(budgetBytes: prefixCacheBytes) : nil
        self.kvBudgetBytes = max(0, kvBudgetBytes)
        self.model = model
        (self.kvCache, self.valueCache) = (kvCache, valueCache)
        self.maxActive = max(1, maxActive)
        self.maxQueued = max(0, maxQueued)
        self.prefillChunk = max(1, prefillChunk)
        self.observer = observer
        super.init()
        start(name: "condense-generation")
    }

    /// Queues a generation after `ids` (at least one token, within the context).
    /// - Throws: ``Refusal`` when the queue is full, after shutdown, or when the request's cache
    ///   alone exceeds the KV budget.
    public func submit(_ ids: [Int32], _ options: GenerationOptions) throws -> AsyncStream<Event> {
        if kvBudgetBytes > 0 {
            let need = cacheBytes(ids, options)
            guard need <= kvBudgetBytes else { throw Refusal.tooLarge(cacheBytes: need, budgetBytes: kvBudgetBytes) }
        }
        let (stream, continuation) = AsyncStream<Event>.makeStream(bufferingPolicy: .unbounded)
        let request = Request(ids: ids, options: options, continuation: continuation)
        cond.lock()
        defer { cond.unlock() }
        guard !stopped else { throw Refusal.shuttingDown }
        guard waiting.count < maxQueued + maxActive else { throw Refusal.queueFull(waiting: waiting.count) }
        waiting.append(request)
        observer.queueDepth(waiting.count)
        continuation.onTermination = { [weak self, weak request] _ in
            guard let self, let request else { return }
            self.cond.lock()
            request.cancelled = true
            self.cond.broadcast()
            self.cond.unlock()
        }
        cond.signal()
        return stream
    }

    /// The context a request's session gets, and its cache's bytes.
    private func context(_ ids: [Int32], _ o: GenerationOptions) -> Int {
        min(model.config.contextLength, ids.count + max(o.maxTokens, 1))
    }
    private func cacheBytes(_ ids: [Int32], _ o: GenerationOptions) -> Int {
        model.cacheBytes(contextLength: context(ids, o), kvCache: kvCache, valueCache: valueCache)
    }

    override public func run() {
        while true {
            cond.lock()
            while waiting.isEmpty && active.isEmpty && !stopped { cond.wait() }
            if waiting.isEmpty && active.isEmpty && stopped { cond.unlock(); return }
            // Admit new requests at this step boundary; drop the streams nobody reads any more.
            var admitted: [Request] = []
            // In order of arrival, while a slot is free and (with a KV budget) the cache fits; the
            // first that does not fit waits at the head, so no later one overtakes it for ever.
            var reserved = active.reduce(0) { $0 + $1.cacheBytes }, blocked = false
            waiting.removeAll { r in
                if r.cancelled { r.continuation.finish(); return true }
                guard !blocked, active.count + admitted.count < maxActive else { return false }
                if kvBudgetBytes > 0 {
                    let need = cacheBytes(r.ids, r.options)
                    guard reserved + need <= kvBudgetBytes else { blocked = true; return false }
                    reserved += need
                }
                admitted.append(r)
                return true
            }
            let gone = Set(active.filter { $0.request.cancelled }.map { ObjectIdentifier($0.request) })
            observer.queueDepth(waiting.count)
            cond.unlock()
            if !gone.isEmpty {
                for s in active where gone.contains(ObjectIdentifier(s.request)) { s.request.continuation.finish() }
                active.removeAll { gone.contains(ObjectIdentifier($0.request)) }
            }
            for r in admitted {
                do {
                    let session = try model.session(contextLength: context(r.ids, r.options), kvCache: kvCache, valueCache: valueCache)
                    let g = try DecoderSession.Generation(model, prompt: r.ids, r.options)
                    var cached = 0
                    if let (prefix, n) = prefixes?.lookup(r.ids), (try? session.restore(prefix, tokens: n)) != nil { cached = n }
                    observer.prefixLookup(hitTokens: cached)
                    active.append(Slot(request: r, session: session, generation: g, prompt: r.ids[cached...], next: nil, cached: cached))
                } catch {
                    r.continuation.yield(.failed(error as? CondenseError ?? .invalidInput("\(error)")))
                    r.continuation.finish()
                }
            }
            observer.activeStreams(active.count)
            guard !active.isEmpty else { continue }
            step()
        }
    }

    /// One batched pass: a token for every decoding stream, a chunk of prompt for those prefilling.
    private func step() {
        var batch: [(session: DecoderSession, ids: [Int32])] = [], members: [Int] = []
        var budget = prefillChunk
        for (i, s) in active.enumerated() {
            if let next = s.next {
                batch.append((s.session, [next]))
                members.append(i)
            } else if !s.prompt.isEmpty && budget > 0 {
                let n = min(budget, s.prompt.count)
                batch.append((s.session, Array(s.prompt.prefix(n))))
                active[i].prompt = s.prompt.dropFirst(n)
                budget -= n
                members.append(i)
            }
        }
        guard !batch.isEmpty else { return }
        observer.decodeBatch(batch.count)
        let logits: [[[Float]]]
        do {
            logits = try DecoderSession.forward(batch)
        } catch {
            for i in members {
                active[i].request.continuation.yield(.failed(error as? CondenseError ?? .kernelFailed(kernel: "decoder step", reason: "\(error)")))
                active[i].request.continuation.finish()
            }
            let failed = Set(members)
            active = active.enumerated().filter { !failed.contains($0.offset) }.map(\.element)
            return
        }
        var finished: Set<Int> = []
        for (b, i) in members.enumerated() {
            guard active[i].prompt.isEmpty else { continue }   // still prefilling: no token yet
            let s = active[i].session
            let before = active[i].generation.result.tokens.count
            let (piece, next) = active[i].generation.accept(logits[b][0], contextFull: s.tokens.count >= s.contextLength)
            let request = active[i].request
            if active[i].firstToken {
                active[i].firstToken = false
                observer.firstToken(after: ContinuousClock.now - request.submitted)
                // The prompt is in the cache now: keep its rows for requests that start the same way.
                if let prefixes, s.tokens.count - active[i].cached >= prefixes.minTokens { prefixes.insert(s.prefixSnapshot()) }
            }
            observer.generated(active[i].generation.result.tokens.count - before)
            if request.options.logprobs != nil, active[i].generation.result.logprobs.count > before {
                request.continuation.yield(.logprobs(Array(active[i].generation.result.logprobs[before...])))
            }
            if !piece.isEmpty { request.continuation.yield(.piece(piece)) }
            if let next {
                active[i].next = next
            } else {
                let r = active[i].generation.result
                request.continuation.yield(.done(finishReason: r.finishReason, promptTokens: r.promptTokens.count, completionTokens: r.tokens.count,
                                                 cachedTokens: active[i].cached))
                request.continuation.finish()
                finished.insert(i)
            }
        }
        if !finished.isEmpty { active = active.enumerated().filter { !finished.contains($0.offset) }.map(\.element) }
    }
}

