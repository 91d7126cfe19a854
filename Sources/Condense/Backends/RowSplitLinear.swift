import Foundation
import Synchronization

/// One layer held in two forms that compute the same product, each run at the batch sizes where
/// it was measured faster: `small` below `crossover` rows, `large` from it. For 2:4-int4 weights
/// the 2:4 kernel reads the fewest bytes (what one decoded token costs), while the same weights
/// as dense Q4_0 blocks run the wider integer GEMM faster once enough rows share each weight.
///
/// ```swift
/// let s24 = try GGUFBlockLinear(w24)
/// let q40 = try GGUFBlockLinear(GGUFFile.Tensor(name: "w", dims: [w24.columns, w24.rows], type: .q4_0, data: w24.q4_0Blocks()))
/// if let at = try RowSplitLinear.crossover(s24, q40) {
///     let layer = try RowSplitLinear(small: s24, large: q40, crossover: at)
/// }
/// ```
public struct RowSplitLinear: PreparedLinear {
    public let small: any PreparedLinear
    public let large: any PreparedLinear
    /// The first row count that runs `large`.
    public let crossover: Int

    /// - Throws: ``CondenseError/shapeMismatch(_:)`` when the two forms differ in shape, or
    ///   ``CondenseError/invalidArgument(_:)`` for a crossover below 2.
    public init(small: any PreparedLinear, large: any PreparedLinear, crossover: Int) throws {
        guard small.inFeatures == large.inFeatures, small.outFeatures == large.outFeatures else {
            throw CondenseError.shapeMismatch("row split: \(small.outFeatures)×\(small.inFeatures) and \(large.outFeatures)×\(large.inFeatures)")
        }
        guard crossover >= 2 else { throw CondenseError.invalidArgument("row split crossover must be >= 2, got \(crossover)") }
        (self.small, self.large, self.crossover) = (small, large, crossover)
    }

    public var backendName: String { small.backendName }
    public var kernelName: String { "\(small.kernelName) below \(crossover) rows, else \(large.kernelName)" }
    public var inFeatures: Int { small.inFeatures }
    public var outFeatures: Int { small.outFeatures }
    /// The 2:4 kernel below the crossover, the Q4_0 copy's from it.
    public func kernelName(forBatch m: Int) -> String { m < crossover ? small.kernelName(forBatch: m) : large.kernelName(forBatch: m) }

    /// Runs `x` on the form measured faster for its row count.
    public func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        try (x.rows < crossover ? small : large).apply(x, into: &y)
    }

    /// Row counts the crossover is measured at: batched decoding's range and a short prompt's.
    /// Larger counts are left to the trend (the wider kernel only gains with rows), which bounds
    /// the time a large model's load spends measuring.
    public static let measuredRows = [2, 4, 8, 16, 32, 64]

    /// Crossovers already measured in this process, by the caller's key (same kernels and shape
    /// give the same answer: a model's layers share a handful of shapes).
    private static let measured = Mutex<[String: Int?]>([:])

    /// The crossover remembered for `key`: nil when none was measured yet, `.some(nil)` when the
    /// measurement found no split, so a caller can skip building the second form.
    public static func remembered(_ key: String) -> Int?? { measured.withLock { $0[key] } }

    /// The smallest of ``measuredRows`` from which `large` takes at most `1/margin` of `small`'s
    /// time at every measured row count (medians of `samples` timings on the same input), or nil
    /// when no such row count exists. The margin is what holding the second form must buy: it
    /// costs its bytes in memory (for 2:4-int4, a Q4_0 copy of 36/26 its size), so a few per cent
    /// do not pay for it (AMD EPYC with AVX-512: Q4_0 2–6 % faster, no split; its AVX2 path:
    /// about 25 %, split). With `key`, the answer is remembered for the
    /// process. Row counts below 2 are not measured: there one hot layer timed in cache says
    /// nothing about a decode step, which streams every layer's weights from memory, and the
    /// smaller form wins on bytes.
    public static func crossover(_ small: any PreparedLinear, _ large: any PreparedLinear, samples: Int = 3,
                                 margin: Double = 1.1, key: String? = nil) throws -> Int? {
        if let key, let known = measured.withLock({ $0[key] }) { return known }
        var rng = UInt64(0x9E37_79B9_7F4A_7C15)
        let k = small.inFeatures
        var wins: [Bool] = []
        for m in measuredRows {
            let x = try Matrix<Float>(rows: m, columns: k) { _, _ in
                rng = rng &* 6364136223846793005 &+ 1442695040888963407
                return Float(Int64(bitPattern: rng >> 11) % 2000) / 1000 - 1
            }
            var y = try Matrix<Float>(rows: m, columns: small.outFeatures)
            func median(_ p: any PreparedLinear) throws -> Double {
                try p.apply(x, into: &y)  // warm: packing, pages, the thread team
                var times: [Double] = []
                for _ in 0..<samples {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    try p.apply(x, into: &y)
                    times.append(Double(DispatchTime.now().uptimeNanoseconds - t0))
                }
                return times.sorted()[samples / 2]
            }
            // Interleaved, so drift in the clock hits both alike.
            let a = try median(small), b = try median(large)
            wins.append(b * margin <= a)
        }
        let from = wins.indices.reversed().prefix { wins[$0] }.last
        let answer = from.map { measuredRows[$0] }
        if let key { measured.withLock { $0[key] = answer } }
        return answer
    }
}
