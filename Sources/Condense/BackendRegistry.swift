import CCondenseKernels
import Foundation
import Synchronization

/// How the registry picks a backend for a layer.
public enum SelectionPolicy: Sendable, Equatable {
    /// The first available backend, in registration order, that supports the layer's format.
    case priority
    /// Exactly this backend; an error if it is missing, unavailable or cannot run the format.
    case forced(String)
    /// Measure every candidate for this layer at a batch of `batch` rows (bucketed to 1, 8, 32,
    /// 128, 512) and keep the fastest. Candidates: each available backend that runs the layer's
    /// format, and each that runs dense f32 given the densified weights, so "sparse or dense?"
    /// is decided by measurement. The reference backend (the test oracle) is not a candidate.
    /// Winners are kept in the registry's ``BackendRegistry/tuningCache``.
    case fastest(batch: Int)
}

/// Where a layer went and why: every prepared layer can answer "which kernel runs me?".
public struct Placement: Sendable, Equatable, CustomStringConvertible {
    public let backend: String
    public let kernel: String
    public let format: WeightFormat
    public let policy: SelectionPolicy
    /// Backends passed over, each with the reason (unavailable, format not supported).
    public let skipped: [String]
    /// Under `.fastest`: each candidate's measured seconds per call ("native", "native (dense)"…);
    /// empty when the winner came from the tuning cache or another policy.
    public var timings: [(candidate: String, seconds: Double)] = []
    /// Under `.fastest`: "measured", or "tuning cache".
    public var source: String = ""
    /// Under `.fastest`, for a large layer: the rows of the slice (same K and format) every
    /// candidate was first timed on, so that only those that could win pack the whole weight;
    /// nil when there was no slice. `timings` then holds the finalists' whole-layer times
    /// (empty when one candidate was left).
    public var sliceRows: Int?
    /// Each candidate's seconds per call on the slice.
    public var sliceTimings: [(candidate: String, seconds: Double)] = []
    /// Under `.fastest`: candidates the slice ruled out, each with how many times slower than
    /// the best it was there.
    public var triaged: [String] = []
    /// Set when the layer's compressed format lost to dense, or a forced backend was unavailable.
    public var warning: String?

    public static func == (a: Placement, b: Placement) -> Bool {
        a.backend == b.backend && a.kernel == b.kernel && a.format == b.format && a.policy == b.policy
            && a.skipped == b.skipped && a.source == b.source && a.warning == b.warning
            && a.timings.map(\.candidate) == b.timings.map(\.candidate) && a.sliceRows == b.sliceRows
            && a.sliceTimings.map(\.candidate) == b.sliceTimings.map(\.candidate)
            && a.triaged == b.triaged
    }

    public var description: String {
        var s = "\(format) → \(backend)/\(kernel)"
        if !timings.isEmpty {
            s += " [" + timings.map { "\($0.candidate) \(Int(($0.seconds * 1e6).rounded())) µs" }.joined(separator: ", ") + "]"
        }
        if let sliceRows, !sliceTimings.isEmpty {
            s += " [on \(sliceRows) rows: " + sliceTimings.map { "\($0.candidate) \(Int(($0.seconds * 1e6).rounded())) µs" }
                .joined(separator: ", ") + "]"
        }
        if !source.isEmpty && timings.isEmpty && sliceTimings.isEmpty { s += " (\(source))" }
        if !triaged.isEmpty { s += " (dropped at triage: \(triaged.joined(separator: "; ")))" }
        if !skipped.isEmpty { s += " (skipped: \(skipped.joined(separator: "; ")))" }
        if let warning { s += " warning: \(warning)" }
        return s
    }
}

/// A prepared layer together with its placement.
public struct PlacedLinear: PreparedLinear {
    public let prepared: any PreparedLinear
    public let placement: Placement

    public var backendName: String { prepared.backendName }
    public var kernelName: String { prepared.kernelName }
    public var inFeatures: Int { prepared.inFeatures }
    public var outFeatures: Int { prepared.outFeatures }
    /// Runs the placed layer (see ``PreparedLinear/apply(_:into:)``).
    public func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws { try prepared.apply(x, into: &y) }
    /// The kernel the placed layer runs for a batch of `m` rows.
    public func kernelName(forBatch m: Int) -> String { prepared.kernelName(forBatch: m) }
}

/// The set of backends and the policy that sends each layer to one of them.
///
/// ```swift
/// let registry = BackendRegistry.standard()           // native, simd, reference
/// let layer = try registry.prepare(linear)            // priority: native first
/// print(layer.placement)                              // dense → native/f32_gemm_12x32__avx512
/// let y = try layer.apply(x)
/// ```
public final class BackendRegistry: Sendable {
    private let state = Mutex<[any KernelBackend]>([])
    private let cache = Mutex<TuningCache?>(nil)

    /// Where `.fastest` keeps its winners (in memory by default; give it a file to keep them
    /// across runs).
    public var tuningCache: TuningCache {
        get { cache.withLock { c in if c == nil { c = try? TuningCache() }; return c! } }
        set { cache.withLock { $0 = newValue } }
    }

    /// An empty registry.
    public init() {}

    /// The built-in backends in priority order: `native` (C/OpenMP), `simd` (Swift SIMD),
    /// `reference` (plain Swift, the correctness oracle).
    public static func standard() -> BackendRegistry {
        let r = BackendRegistry()
        r.register(NativeBackend())
        r.register(SIMDBackend())
        r.register(ReferenceBackend())
        return r
    }

    /// Adds a backend whose name is not taken yet, atomically (plugins: a plugin called
    /// `native`, or two plugins of one name, must not silently replace the other).
    /// - Throws: ``CondenseError/invalidArgument(_:)`` naming the backend that holds the name.
    public func registerNew(_ backend: any KernelBackend, first: Bool = false) throws {
        try state.withLock { list in
            if let taken = list.first(where: { $0.name == backend.name }) {
                let holder = (taken as? PluginBackend).map { "the plugin \($0.path)" } ?? "a built-in backend"
                throw CondenseError.invalidArgument("backend name '\(backend.name)' is already taken by \(holder)")
            }
            if first { list.insert(backend, at: 0) } else { list.append(backend) }
        }
    }

    /// Adds a backend, last in priority order or first. A backend with the same name is replaced
    /// (deliberately: for code that owns both; plugins go through ``registerNew(_:first:)``).
    public func register(_ backend: any KernelBackend, first: Bool = false) {
        state.withLock { list in
            list.removeAll { $0.name == backend.name }
            if first { list.insert(backend, at: 0) } else { list.append(backend) }
        }
    }

    /// The registered backends in priority order.
    public var backends: [any KernelBackend] { state.withLock { $0 } }

    /// The backend called `name`, if registered.
    public func backend(named name: String) -> (any KernelBackend)? {
        state.withLock { list in list.first { $0.name == name } }
    }

    /// Prepares `layer` on the backend the policy chooses.
    /// - Throws: ``CondenseError/noBackend(_:)`` naming every backend tried and why it was passed over,
    ///   or the chosen backend's own error.
    public func prepare(_ layer: LinearLayer, policy: SelectionPolicy = .priority) throws -> PlacedLinear {
        try prepare(layer, policy: Self.environmentPolicy ?? policy, backends: backends)
    }

    /// `CONDENSE_BACKEND=name` forces one backend for every layer (deterministic runs, debugging).
    static var environmentPolicy: SelectionPolicy? {
        guard let v = ProcessInfo.processInfo.environment["CONDENSE_BACKEND"], !v.isEmpty else { return nil }
        return .forced(v)
    }

    /// Prepares `layer` with its weights converted to `format` first, so "run this layer dense or
    /// sparse?" is one question: `prepare(layer, as: .dense)` versus `prepare(layer, as: .csr)`.
    public func prepare(_ layer: LinearLayer, as format: WeightFormat, policy: SelectionPolicy = .priority) throws -> PlacedLinear {
        try prepare(layer.converted(to: format), policy: policy)
    }

    private func prepare(_ layer: LinearLayer, policy: SelectionPolicy, backends list: [any KernelBackend]) throws -> PlacedLinear {
        switch policy {
        case let .fastest(batch):
            return try prepareFastest(layer, batch: batch, backends: list)
        case let .forced(name):
            guard let b = list.first(where: { $0.name == name }) else {
                throw CondenseError.noBackend(
                    "backend '\(name)' is not registered (have: \(list.map(\.name).joined(separator: ", ")))")
            }
            if case let .unavailable(reason) = b.availability {
                throw CondenseError.backendUnavailable(name: name, reason: reason)
            }
            guard b.supports(layer.format) else {
                throw CondenseError.unsupportedFormat(backend: name, format: layer.format.description)
            }
            let p = try b.prepare(layer)
            return PlacedLinear(prepared: p, placement: Placement(
                backend: p.backendName, kernel: p.kernelName, format: layer.format, policy: policy, skipped: []))
        case .priority:
            var skipped: [String] = []
            for b in list {
                if case let .unavailable(reason) = b.availability {
                    skipped.append("\(b.name): \(reason)")
                    continue
                }
                guard b.supports(layer.format) else {
                    skipped.append("\(b.name): no \(layer.format) kernel")
                    continue
                }
                let p = try b.prepare(layer)
                return PlacedLinear(prepared: p, placement: Placement(
                    backend: p.backendName, kernel: p.kernelName, format: layer.format, policy: policy,
                    skipped: skipped))
            }
            throw CondenseError.noBackend(
                "no registered backend runs \(layer.format) weights [\(skipped.joined(separator: "; "))]")
        }
    }
}

extension BackendRegistry {
    /// Batch buckets measured dispatch distinguishes.
    static func bucket(_ m: Int) -> Int { [1, 8, 32, 128, 512].first { m <= $0 } ?? 512 }

    /// What the stored measurements depend on: CPU, threads, and every backend with its version.
    func tuningEnvironment(_ list: [any KernelBackend]) -> String {
        let backends = list.map(\.tuningIdentity)
        return "\(CondenseRuntime.cpuBrand)|\(CondenseRuntime.activeISA)|threads=\(CondenseRuntime.threads)|" + backends.joined(separator: ",")
    }

    /// Every way the registry could run `layer` under ``SelectionPolicy/fastest(batch:)``: each
    /// available backend that takes its format, and each that runs dense f32 with the weights
    /// densified ("native (dense)"). The reference backend is never a candidate. Benchmarks use
    /// this to time the same candidates independently of the selection.
    ///
    /// ```swift
    /// for c in try registry.candidates(for: layer) {
    ///     let prepared = try c.prepare()
    ///     print(c.label, prepared.kernelName)
    /// }
    /// ```
    public func candidates(for layer: LinearLayer) throws -> [DispatchCandidate] {
        try candidates(for: layer, backends: backends).candidates
    }

    private func candidates(for layer: LinearLayer, backends list: [any KernelBackend]) throws
        -> (candidates: [DispatchCandidate], skipped: [String]) {
        var candidates: [DispatchCandidate] = []
        var skipped: [String] = []
        for b in list where b.name != "reference" {
            if case let .unavailable(reason) = b.availability { skipped.append("\(b.name): \(reason)"); continue }
            if b.supports(layer.format) { candidates.append(DispatchCandidate(label: b.name, backend: b, layer: layer, format: layer.format)) }
            if layer.format != .dense && b.supports(.dense) {
                candidates.append(DispatchCandidate(label: "\(b.name) (dense)", backend: b, layer: layer, format: .dense))
            }
        }
        return (candidates, skipped)
    }

    /// Output rows of the slice on which `.fastest` triages the candidates of a large layer:
    /// about 4 MB of f32 weights, at least 256 rows (fewer rows let per-call work that does not
    /// scale with N, such as quantizing X, misjudge a candidate more), a multiple of 64. The
    /// whole layer (no slice) when that is not smaller.
    public static func sliceRows(n: Int, k: Int) -> Int {
        let rows = max(256, ((1 << 20) / max(k, 1) + 63) / 64 * 64)
        return rows >= n ? n : rows
    }

    /// On a slice, a candidate this many times slower than the best is dropped without being
    /// prepared whole. A slice misjudges the whole layer: it sits in L3 where the layer streams
    /// from DRAM, and per-call work proportional to M·K (quantizing X) weighs more against fewer
    /// rows. The worst misjudgement measured on Zen 5 was 2.1× (2:4-int8 4096×4096 at M = 512);
    /// the margin keeps such a candidate in the final round.
    static let sliceMargin = 3.0

    private func prepareFastest(_ layer: LinearLayer, batch: Int, backends list: [any KernelBackend]) throws -> PlacedLinear {
        guard batch >= 1 else { throw CondenseError.invalidArgument("fastest needs a batch size >= 1, got \(batch)") }
        let m = Self.bucket(batch)
        var (candidates, skipped) = try self.candidates(for: layer, backends: list)  // skipped grows below
        guard !candidates.isEmpty else {
            throw CondenseError.noBackend("no available backend runs \(layer.format) weights [\(skipped.joined(separator: "; "))]")
        }
        let key = "\(layer.format)|\(layer.weights.tuningSignature)|\(layer.outFeatures)x\(layer.inFeatures)|bias=\(layer.bias != nil)|\(layer.activation)|m=\(m)"
        let env = tuningEnvironment(list)
        let cache = tuningCache
        if let label = cache.winner(key, env: env), let c = candidates.first(where: { $0.label == label }) {
            return Self.placed(try c.prepare(), ran: c.format, asked: layer.format, batch: batch, m: m,
                               skipped: skipped, timings: [], source: "tuning cache")
        }
        var x = try Matrix<Float>(rows: m, columns: layer.inFeatures)
        var seed: UInt32 = 12345
        x.withUnsafeMutableBufferPointer { p in
            for i in p.indices { seed = seed &* 1664525 &+ 1013904223; p[i] = Float(seed >> 8) / Float(1 << 24) - 0.5 }
        }
        var triaged: [String] = []
        var sliceTimings: [(candidate: String, seconds: Double)] = []
        // A large layer: every candidate is first timed on a slice of its rows, so that only those
        // that could win pack the whole weight (25–35 ms each at 4096×4096, plus densifying).
        let rows = Self.sliceRows(n: layer.outFeatures, k: layer.inFeatures)
        var finalists = Array(candidates.indices)
        if rows < layer.outFeatures {
            let slice = try layer.leadingRows(rows)
            let sliced = candidates.map { DispatchCandidate(label: $0.label, backend: $0.backend, layer: slice, format: $0.format) }
            let r = try Self.measure(sliced, Array(sliced.indices), x: x, m: m, skipped: &skipped)
            sliceTimings = r.timings
            if let b = r.timings.map(\.seconds).min() {
                finalists = r.timings.filter { $0.seconds <= Self.sliceMargin * b }
                    .compactMap { t in candidates.firstIndex { $0.label == t.candidate } }
                for t in r.timings where t.seconds > Self.sliceMargin * b {
                    triaged.append("\(t.candidate) \(String(format: "%.1f", t.seconds / b))× on \(rows) rows")
                }
            }
        }
        let winner: Int, p: any PreparedLinear
        var timings: [(candidate: String, seconds: Double)] = []
        if finalists.count == 1 {
            winner = finalists[0]
            p = try candidates[winner].prepare()
        } else {
            let r = try Self.measure(candidates, finalists, x: x, m: m, skipped: &skipped)
            guard let best = r.best else {
                throw CondenseError.noBackend("every candidate failed to prepare [\(skipped.joined(separator: "; "))]")
            }
            (winner, p, timings) = (best.index, best.prepared, r.timings)
        }
        cache.store(key, candidates[winner].label, env: env)
        return Self.placed(p, ran: candidates[winner].format, asked: layer.format, batch: batch, m: m, skipped: skipped,
                           timings: timings, source: "measured", sliceRows: sliceTimings.isEmpty ? nil : rows,
                           sliceTimings: sliceTimings, triaged: triaged)
    }

    /// Times `candidates[which]` at batch `m` (rows of `x`) and returns each median and the fastest,
    /// still prepared.
    private static func measure(_ candidates: [DispatchCandidate], _ which: [Int], x: Matrix<Float>, m: Int,
                                skipped: inout [String])
        throws -> (timings: [(candidate: String, seconds: Double)], best: (index: Int, prepared: any PreparedLinear)?) {
        let n = candidates[which.first ?? 0].layer.outFeatures
        var y = try Matrix<Float>(rows: m, columns: n)
        var prepared: [(index: Int, prepared: any PreparedLinear)] = []
        for i in which {
            do { prepared.append((i, try candidates[i].prepare())) } catch { skipped.append("\(candidates[i].label): \(error)") }
        }
        var best: (seconds: Double, index: Int, prepared: any PreparedLinear)?
        var timings: [(candidate: String, seconds: Double)] = []
        var contenders: [(index: Int, prepared: any PreparedLinear)] = []  // within 30 %: a second round
        for (i, p) in prepared {
            // A candidate whose run fails is skipped with the reason, as one whose prepare
            // fails: a broken plugin must not stop the selection among the others.
            do {
                // Our idle OpenMP workers would otherwise spin for 200 ms and take the cores from a
                // plugin's thread pool, making every foreign candidate look slow.
                condense_threads_quiesce()
                let warm = ContinuousClock.now
                try p.apply(x, into: &y)  // warm-up: first touch, thread wake-up
                var t = seconds(ContinuousClock.now - warm)
                if let b = best?.seconds, t >= 4 * b, t < 16 * b {
                    // A first call can be 10× the steady state (a JIT, scratch buffers): one more decides.
                    let again = ContinuousClock.now
                    try p.apply(x, into: &y)
                    t = seconds(ContinuousClock.now - again)
                }
                // A candidate 4× slower than the best cannot win: that time stands, no more runs.
                if best == nil || t < 4 * best!.seconds {
                    t = try medianTime(p, x, &y)
                    if best == nil || t < 1.3 * best!.seconds { contenders.append((i, p)) }
                }
                timings.append((candidates[i].label, t))
                if best == nil || t < best!.seconds { best = (t, i, p) }
            } catch {
                skipped.append("\(candidates[i].label): run failed: \(error)")
            }
        }
        prepared.removeAll()
        // Second round over the contenders within 30 % of the best, in reverse order: whoever was
        // measured first (or after a noisy neighbour) gets another chance; the better median counts.
        if let b = best?.seconds {
            for (i, p) in contenders.reversed() where timings.first(where: { $0.candidate == candidates[i].label })!.seconds < 1.3 * b {
                condense_threads_quiesce()
                guard (try? p.apply(x, into: &y)) != nil, let t = try? medianTime(p, x, &y) else { continue }
                let k = timings.firstIndex { $0.candidate == candidates[i].label }!
                timings[k].seconds = min(timings[k].seconds, t)
                if t < best!.seconds { best = (t, i, p) }
            }
        }
        return (timings, best.map { ($0.index, $0.prepared) })
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }

    /// The median of at least 3 runs and about 2 ms: tiny calls get more runs, as one preemption
    /// would otherwise decide them; big ones stay cheap. The median, not the minimum: a candidate
    /// with a wide spread must not win on its one lucky run.
    private static func medianTime(_ p: any PreparedLinear, _ x: Matrix<Float>, _ y: inout Matrix<Float>) throws -> Double {
        var runs: [Double] = []
        var spent = 0.0
        while runs.count < 3 || (spent < 2e-3 && runs.count < 128) {
            let start = ContinuousClock.now
            try p.apply(x, into: &y)
            let d = seconds(ContinuousClock.now - start)
            runs.append(d)
            spent += d
        }
        runs.sort()
        return runs[runs.count / 2]
    }

    /// The placement of a `.fastest` winner. (A plain function: as a nested closure capturing the
    /// candidate tuple it crashed Swift 6.3.1's optimizer in release builds.)
    private static func placed(_ p: any PreparedLinear, ran: WeightFormat, asked: WeightFormat, batch: Int, m: Int,
                               skipped: [String], timings: [(candidate: String, seconds: Double)], source: String,
                               sliceRows: Int? = nil, sliceTimings: [(candidate: String, seconds: Double)] = [],
                               triaged: [String] = []) -> PlacedLinear {
        var pl = Placement(backend: p.backendName, kernel: p.kernelName(forBatch: m), format: ran,
                           policy: .fastest(batch: batch), skipped: skipped)
        pl.timings = timings
        pl.source = source
        pl.sliceRows = sliceRows
        pl.sliceTimings = sliceTimings
        pl.triaged = triaged
        if ran != asked {
            pl.warning = "the \(asked) weights ran slower than dense on every backend at M=\(m); running dense"
        }
        return PlacedLinear(prepared: p, placement: pl)
    }
}

/// One way to run a layer: a backend and the weights it would be given (the layer's own, or
/// densified). See ``BackendRegistry/candidates(for:)``.
public struct DispatchCandidate: Sendable {
    /// "native", "onednn (dense)", ...: the name placements and the tuning cache use.
    public let label: String
    public let backend: any KernelBackend
    /// The layer as given (its own format).
    public let layer: LinearLayer
    /// The format this candidate runs: the layer's own, or `.dense` for a densified candidate.
    public let format: WeightFormat

    /// Prepares the layer on this candidate's backend, densifying it first when `format` is
    /// `.dense` and the layer is not. The conversion happens here, not when the candidate list
    /// is made: a cache hit or a slice-timed selection must not densify the whole weight.
    public func prepare() throws -> any PreparedLinear {
        try backend.prepare(format == layer.format ? layer : layer.converted(to: format))
    }
}
