import CondenseInference
import Foundation
import Metrics
import Prometheus

/// The server's metrics, through swift-metrics into a Prometheus registry of its own (no global
/// bootstrap: several servers can run in one process, as the tests do). `GET /metrics` serves
/// ``text()``.
public final class ServerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory
    let embeddingQueue: Metrics.Gauge
    let chatQueue: Metrics.Gauge
    let activeStreams: Metrics.Gauge
    let batchSize: Metrics.Recorder
    let batchTokens: Metrics.Recorder
    let decodeBatch: Metrics.Recorder
    let generatedTokens: Metrics.Counter
    let timeToFirstToken: Metrics.Timer
    let prefixLookups: Metrics.Counter
    let prefixHits: Metrics.Counter
    let prefixHitTokens: Metrics.Counter

    /// A registry of its own with the server's metrics.
    public init() {
        let registry = PrometheusCollectorRegistry()
        var f = PrometheusMetricsFactory(registry: registry)
        f.valueHistogramBuckets["condense_embedding_batch_size"] = [1, 2, 4, 8, 16, 32, 64, 128, 256]
        f.valueHistogramBuckets["condense_embedding_batch_tokens"] = [16, 64, 256, 1024, 4096, 16384, 65536]
        f.valueHistogramBuckets["condense_decode_batch_size"] = [1, 2, 4, 8, 16, 32, 64]
        self.registry = registry
        factory = f
        embeddingQueue = Metrics.Gauge(label: "condense_embedding_queue_depth", dimensions: [], factory: f)
        chatQueue = Metrics.Gauge(label: "condense_generation_queue_depth", dimensions: [], factory: f)
        activeStreams = Metrics.Gauge(label: "condense_generation_active_streams", dimensions: [], factory: f)
        batchSize = Metrics.Recorder(label: "condense_embedding_batch_size", dimensions: [], aggregate: true, factory: f)
        batchTokens = Metrics.Recorder(label: "condense_embedding_batch_tokens", dimensions: [], aggregate: true, factory: f)
        decodeBatch = Metrics.Recorder(label: "condense_decode_batch_size", dimensions: [], aggregate: true, factory: f)
        generatedTokens = Metrics.Counter(label: "condense_generated_tokens_total", dimensions: [], factory: f)
        timeToFirstToken = Metrics.Timer(label: "condense_time_to_first_token_seconds", dimensions: [], factory: f)
        prefixLookups = Metrics.Counter(label: "condense_prefix_cache_lookups_total", dimensions: [], factory: f)
        prefixHits = Metrics.Counter(label: "condense_prefix_cache_hits_total", dimensions: [], factory: f)
        prefixHitTokens = Metrics.Counter(label: "condense_prefix_cache_hit_tokens_total", dimensions: [], factory: f)
    }

    /// One answered request: counted by route and status, timed by route.
    func request(route: String, status: Int, duration: Duration) {
        Metrics.Counter(label: "condense_requests_total", dimensions: [("route", route), ("status", String(status))], factory: factory).increment()
        Metrics.Timer(label: "condense_request_duration_seconds", dimensions: [("route", route)], factory: factory)
            .recordNanoseconds(nanoseconds(duration))
    }

    /// The Prometheus text exposition.
    public func text() -> String {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}

/// The generation engine's reports as the server's metrics.
extension ServerMetrics: GenerationObserver {
    /// `condense_generation_queue_depth`.
    public func queueDepth(_ n: Int) { chatQueue.record(n) }
    /// `condense_generation_active_streams`.
    public func activeStreams(_ n: Int) { activeStreams.record(n) }
    /// `condense_decode_batch_size`.
    public func decodeBatch(_ n: Int) { decodeBatch.record(n) }
    /// `condense_time_to_first_token_seconds`.
    public func firstToken(after d: Duration) { timeToFirstToken.recordNanoseconds(nanoseconds(d)) }
    /// `condense_generated_tokens_total`.
    public func generated(_ tokens: Int) { generatedTokens.increment(by: Int64(tokens)) }
    /// `condense_prefix_cache_lookups_total`, `…_hits_total`, `…_hit_tokens_total`.
    public func prefixLookup(hitTokens: Int) {
        prefixLookups.increment()
        if hitTokens > 0 { prefixHits.increment(); prefixHitTokens.increment(by: Int64(hitTokens)) }
    }
}

func nanoseconds(_ d: Duration) -> Int64 { d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000 }
