import Condense

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Integer widths the quantizer produces.
public enum QuantBits: Int, Sendable, Codable {
    case int8 = 8
    case int4 = 4

    /// - Throws: `CondenseError/invalidArgument(_:)` for anything but 4 or 8.
    public init(checking bits: Int) throws {
        guard let b = QuantBits(rawValue: bits) else {
            throw CondenseError.invalidArgument("quantization supports 8 or 4 bits, got \(bits)")
        }
        self = b
    }

    /// Signed range for symmetric quantization (−127…127 keeps it symmetric; −8…7 for int4).
    var symmetricRange: (Int32, Int32) { self == .int8 ? (-127, 127) : (-8, 7) }
    /// Unsigned range for asymmetric quantization.
    var asymmetricRange: (Int32, Int32) { self == .int8 ? (0, 255) : (0, 15) }
}

/// Symmetric (zero point 0, signed) or asymmetric (integer zero point, unsigned).
public enum QuantMode: String, Sendable, Codable { case symmetric, asymmetric }

/// Which elements share a scale.
public enum QuantGranularity: Sendable, Equatable {
    case perTensor
    /// One scale per output channel (row of W).
    case perChannel
    /// One scale per `size` consecutive elements of a row (along K); the last group of a row may
    /// be shorter when K is not a multiple of `size`: it uses its own real elements only.
    case perGroup(Int)
}

/// How the range [lo, hi] of a set of values is chosen.
public enum RangeObserver: Sendable, Equatable {
    /// The minimum and maximum.
    case minMax
    /// Exponential moving average of per-batch min/max (for activations seen batch by batch):
    /// `range = momentum · range + (1 − momentum) · batch range`.
    case movingAverageMinMax(momentum: Float)
    /// The given percentile of |x| (e.g. 99.99) and its mirror: outliers get clipped.
    case percentile(Double)
    /// The clipping range, among 100 shrinkings of min–max, that minimises the squared error of
    /// quantizing the values.
    case mseOptimal
}

/// A quantized weight matrix `W[N, K]` with its scales and zero points.
public struct QuantizedMatrix: Sendable, Equatable {
    public let rows: Int
    public let columns: Int
    public let bits: QuantBits
    public let mode: QuantMode
    public let granularity: QuantGranularity
    /// One integer per element, row-major (int4 values too, unpacked; see ``packedInt4``).
    public let values: [Int8]
    /// One scale per tensor, channel, or (channel, group), row-major over groups.
    public let scales: [Float]
    /// Zero points in the real integer range (asymmetric int8: 0…255; symmetric: 0). Asymmetric
    /// int8 `values` are stored with 128 subtracted, since 0…255 does not fit Int8; ``q(_:_:)``
    /// gives the real integer.
    public let zeroPoints: [Int32]

    /// Elements per scale along K (K for per-tensor and per-channel).
    public var groupSize: Int {
        if case let .perGroup(g) = granularity { return g }
        return max(columns, 1)
    }
    var groupsPerRow: Int { columns == 0 ? 0 : (columns + groupSize - 1) / groupSize }

    func paramIndex(_ r: Int, _ c: Int) -> Int {
        switch granularity {
        case .perTensor: return 0
        case .perChannel: return r
        case .perGroup: return r * groupsPerRow + c / groupSize
        }
    }

    /// The integer q of element (r, c) in its real range (asymmetric int8: 0…255).
    public func q(_ r: Int, _ c: Int) -> Int32 {
        let v = Int32(values[r * columns + c])
        return mode == .asymmetric && bits == .int8 ? v + 128 : v
    }

    /// `s · (q − z)` for every element.
    public func dequantized() -> Matrix<Float> {
        (try? Matrix<Float>(rows: rows, columns: columns) { r, c in
            let i = paramIndex(r, c)
            return scales[i] * Float(q(r, c) - zeroPoints[i])
        }) ?? Matrix<Float>(validatedRows: 0, columns: 0)
    }

    /// int4 values packed two per byte: byte j of a row holds column 2j in its low nibble and
    /// 2j+1 in its high nibble (two's complement for symmetric, unsigned for asymmetric); an odd
    /// K leaves the last high nibble 0. Rows start on byte boundaries.
    public var packedInt4: [UInt8] {
        precondition(bits == .int4, "packedInt4 is for int4 matrices")
        let stride = (columns + 1) / 2
        var out = [UInt8](repeating: 0, count: rows * stride)
        for r in 0..<rows {
            for c in 0..<columns {
                let nib = UInt8(truncatingIfNeeded: values[r * columns + c]) & 0xF
                out[r * stride + c / 2] |= c % 2 == 0 ? nib : nib << 4
            }
        }
        return out
    }

    /// Unpacks ``packedInt4`` back into one integer per element.
    public static func unpackInt4(_ bytes: [UInt8], rows: Int, columns: Int, signed: Bool) throws -> [Int8] {
        let stride = (columns + 1) / 2
        guard bytes.count == rows * stride else {
            throw CondenseError.shapeMismatch("packed int4 \(rows)×\(columns) needs \(rows * stride) bytes, got \(bytes.count)")
        }
        var out = [Int8](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for c in 0..<columns {
                let b = bytes[r * stride + c / 2]
                let nib = c % 2 == 0 ? b & 0xF : b >> 4
                out[r * columns + c] = signed ? Int8(bitPattern: nib << 4) >> 4 : Int8(nib)
            }
        }
        return out
    }
}

/// Error metrics of a quantized layer against its f32 original.
public struct QuantizationError: Sendable {
    /// Signal-to-quantization-noise ratio in dB: `10·log10(Σx² / Σ(x − x̂)²)` (∞ when exact).
    public let sqnr: Double
    /// `max |x − x̂|`.
    public let maxAbsError: Float

    /// SQNR and largest absolute error of `approx` against `original`.
    public static func measure(_ original: Matrix<Float>, _ approx: Matrix<Float>) -> QuantizationError {
        var signal = 0.0, noise = 0.0
        var worst: Float = 0
        for (a, b) in zip(original.elements, approx.elements) {
            signal += Double(a) * Double(a)
            noise += Double(a - b) * Double(a - b)
            worst = max(worst, abs(a - b))
        }
        return QuantizationError(sqnr: noise == 0 ? .infinity : 10 * log10(signal / noise), maxAbsError: worst)
    }
}

/// Affine quantization `q = clamp(round(x / s) + z, qmin, qmax)`, `x ≈ s · (q − z)`.
///
/// ```swift
/// let q = try Quantizer.quantize(w, bits: .int8, mode: .symmetric, granularity: .perChannel)
/// let err = QuantizationError.measure(w, q.dequantized())     // SQNR, max |error|
/// let q4 = try Quantizer.quantize(w, bits: .int4, granularity: .perGroup(32))
/// ```
public enum Quantizer {
    /// Quantizes a weight matrix.
    /// - Parameters:
    ///   - w: The weights, `[N, K]` (output rows, input columns).
    ///   - bits: int8 or int4.
    ///   - mode: Symmetric (zero point 0) or asymmetric.
    ///   - granularity: One scale per tensor, per output row, or per group of K.
    ///   - observer: How each range is found (min/max or a percentile).
    ///   - ignoreZeros: Compute ranges from the non-zero elements only (the default), so a pruned
    ///     matrix's scales fit the weights that remain. Zeros still map to exactly zero: zero
    ///     points are integers and every range is widened to contain 0.
    /// - Throws: `CondenseError/invalidArgument(_:)` for a group size < 1, a percentile outside
    ///   (0, 100], a momentum outside [0, 1].
    public static func quantize(_ w: Matrix<Float>, bits: QuantBits, mode: QuantMode = .symmetric,
                                granularity: QuantGranularity = .perChannel, observer: RangeObserver = .minMax,
                                ignoreZeros: Bool = true) throws -> QuantizedMatrix {
        if case let .perGroup(g) = granularity, g < 1 {
            throw CondenseError.invalidArgument("quantization group size must be >= 1, got \(g)")
        }
        try validate(observer)
        let (rows, k) = (w.rows, w.columns)
        let data = w.elements
        let groupSize: Int
        switch granularity {
        case .perTensor, .perChannel: groupSize = max(k, 1)
        case let .perGroup(g): groupSize = g
        }
        let gpr = k == 0 ? 0 : (k + groupSize - 1) / groupSize
        // The sets of elements that share parameters, as (row range, column range).
        var sets: [(Range<Int>, Range<Int>)] = []
        switch granularity {
        case .perTensor: sets = [(0..<rows, 0..<k)]
        case .perChannel: sets = (0..<rows).map { ($0..<($0 + 1), 0..<k) }
        case .perGroup:
            for r in 0..<rows { for g in 0..<gpr { sets.append((r..<(r + 1), (g * groupSize)..<min(k, (g + 1) * groupSize))) } }
        }
        var scales: [Float] = [], zps: [Int32] = []
        var values = [Int8](repeating: 0, count: rows * k)
        let (qmin, qmax) = mode == .symmetric ? bits.symmetricRange : bits.asymmetricRange
        for (rr, cr) in sets {
            var xs: [Float] = []
            for r in rr { for c in cr { let v = data[r * k + c]; if !(ignoreZeros && v == 0) { xs.append(v) } } }
            let (lo, hi) = try range(xs, observer: observer, bits: bits, mode: mode)
            let (s, z) = params(lo: lo, hi: hi, qmin: qmin, qmax: qmax, mode: mode)
            scales.append(s)
            zps.append(z)
            for r in rr {
                for c in cr {
                    let q = quantizeValue(data[r * k + c], s, z, qmin, qmax)
                    values[r * k + c] = Int8(mode == .asymmetric && bits == .int8 ? q - 128 : q)
                }
            }
        }
        return QuantizedMatrix(rows: rows, columns: k, bits: bits, mode: mode, granularity: granularity,
                               values: values, scales: scales, zeroPoints: zps)
    }

    @inline(__always) static func quantizeValue(_ x: Float, _ s: Float, _ z: Int32, _ qmin: Int32, _ qmax: Int32) -> Int32 {
        guard x.isFinite else { return x.isNaN ? z : (x > 0 ? qmax : qmin) }
        let r = (x / s).rounded(.toNearestOrEven)
        let q = r >= Float(qmax - z) ? qmax : r <= Float(qmin - z) ? qmin : Int32(r) + z
        return min(max(q, qmin), qmax)
    }

    /// Scale and zero point for a range, widened to contain 0 so zero is exact.
    static func params(lo: Float, hi: Float, qmin: Int32, qmax: Int32, mode: QuantMode) -> (Float, Int32) {
        let lo = min(lo, 0), hi = max(hi, 0)
        if mode == .symmetric {
            let a = max(abs(lo), abs(hi))
            return (a > 0 ? a / Float(qmax) : 1, 0)
        }
        let span = hi - lo
        guard span > 0 else { return (1, qmin) }
        let s = span / Float(qmax - qmin)
        let z = min(max(Int32((Float(qmin) - lo / s).rounded()), qmin), qmax)
        return (s, z)
    }

    static func validate(_ observer: RangeObserver) throws {
        switch observer {
        case let .percentile(p) where !(p > 0 && p <= 100):
            throw CondenseError.invalidArgument("percentile must be in (0, 100], got \(p)")
        case let .movingAverageMinMax(m) where !(m >= 0 && m <= 1):
            throw CondenseError.invalidArgument("moving-average momentum must be in [0, 1], got \(m)")
        default: return
        }
    }

    /// The range an observer picks for a set of values (finite values only).
    public static func range(_ values: [Float], observer: RangeObserver, bits: QuantBits = .int8,
                             mode: QuantMode = .symmetric) throws -> (Float, Float) {
        try validate(observer)
        let xs = values.filter(\.isFinite)
        guard let mn = xs.min(), let mx = xs.max() else { return (0, 0) }
        switch observer {
        case .minMax, .movingAverageMinMax:
            return (mn, mx)
        case let .percentile(p):
            let sorted = xs.sorted()
            let hiIdx = min(sorted.count - 1, Int((p / 100 * Double(sorted.count - 1)).rounded()))
            let loIdx = max(0, sorted.count - 1 - hiIdx)
            return (sorted[loIdx], sorted[hiIdx])
        case .mseOptimal:
            let (qmin, qmax) = mode == .symmetric ? bits.symmetricRange : bits.asymmetricRange
            var best = (mn, mx), bestErr = Double.infinity
            for step in 0..<100 {
                let f = 1 - Float(step) / 100
                let (s, z) = params(lo: mn * f, hi: mx * f, qmin: qmin, qmax: qmax, mode: mode)
                var err = 0.0
                for x in xs {
                    let d = Double(x - s * Float(quantizeValue(x, s, z, qmin, qmax) - z))
                    err += d * d
                }
                if err < bestErr { bestErr = err; best = (mn * f, mx * f) }
            }
            return best
        }
    }
}

/// Tracks an activation range over calibration batches (for static activation quantization).
///
/// ```swift
/// var obs = ActivationObserver(.movingAverageMinMax(momentum: 0.9))
/// for batch in calibration { obs.observe(batch) }
/// let (scale, zeroPoint) = obs.parameters()      // u8, asymmetric
/// ```
public struct ActivationObserver: Sendable {
    public let observer: RangeObserver
    public private(set) var low: Float = 0
    public private(set) var high: Float = 0
    private var seen = false
    private var samples: [Float] = []

    /// An observer that records ranges with `observer`'s rule.
    public init(_ observer: RangeObserver = .minMax) { self.observer = observer }

    /// Folds one batch of activations into the range.
    public mutating func observe(_ x: Matrix<Float>) throws {
        let xs = x.elements
        switch observer {
        case .minMax:
            let (lo, hi) = try Quantizer.range(xs, observer: .minMax)
            (low, high) = seen ? (min(low, lo), max(high, hi)) : (lo, hi)
        case let .movingAverageMinMax(m):
            let (lo, hi) = try Quantizer.range(xs, observer: observer)
            (low, high) = seen ? (m * low + (1 - m) * lo, m * high + (1 - m) * hi) : (lo, hi)
        case .percentile, .mseOptimal:
            samples += xs
            (low, high) = try Quantizer.range(samples, observer: observer, bits: .int8, mode: .asymmetric)
        }
        seen = true
    }

    /// u8 asymmetric scale and zero point for the observed range.
    public func parameters() -> (scale: Float, zeroPoint: Int32) {
        Quantizer.params(lo: low, hi: high, qmin: 0, qmax: 255, mode: .asymmetric)
    }
}

extension QuantizedMatrix {
    /// These int8 values in the runtime's `Int8Weights` format, for the integer kernels.
    /// - Throws: `CondenseError/invalidArgument(_:)` unless the matrix is int8, symmetric, and
    ///   per-tensor or per-channel (the kernels take one scale per output channel).
    public func int8Weights(staticActivation: Int8Weights.StaticActivation? = nil) throws -> Int8Weights {
        guard bits == .int8, mode == .symmetric else {
            throw CondenseError.invalidArgument("int8 kernels need symmetric int8 weights, got \(mode) int\(bits.rawValue)")
        }
        let perRow: [Float]
        switch granularity {
        case .perTensor: perRow = [Float](repeating: scales[0], count: rows)
        case .perChannel: perRow = scales
        case let .perGroup(g):
            throw CondenseError.invalidArgument("int8 kernels need per-tensor or per-channel scales, got groups of \(g)")
        }
        return try Int8Weights(rows: rows, columns: columns, values: values, scales: perRow, staticActivation: staticActivation)
    }
}

extension QuantizedMatrix {
    /// These int4 values in the runtime's `Int4Weights` format (packed two per byte).
    /// - Throws: `CondenseError/invalidArgument(_:)` unless the matrix is symmetric int4.
    public func int4Weights(path: Int4Weights.Path = .integer) throws -> Int4Weights {
        guard bits == .int4, mode == .symmetric else {
            throw CondenseError.invalidArgument("int4 kernels need symmetric int4 weights, got \(mode) int\(bits.rawValue)")
        }
        let gpr = groupsPerRow
        let perRowGroup: [Float]
        switch granularity {
        case .perTensor: perRowGroup = [Float](repeating: scales[0], count: rows * gpr)
        case .perChannel: perRowGroup = (0..<rows).flatMap { r in [Float](repeating: scales[r], count: gpr) }
        case .perGroup: perRowGroup = scales
        }
        return try Int4Weights(rows: rows, columns: columns, groupSize: groupSize, packed: packedInt4,
                               scales: perRowGroup, path: path)
    }
}
