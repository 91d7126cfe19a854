#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The storage format of a layer's weights. Later formats (2:4, CSR, int8, int4) extend it.
public enum WeightFormat: Hashable, Sendable, CustomStringConvertible {
    /// Row-major f32 `[outFeatures, inFeatures]`.
    case dense
    /// 2:4 semi-structured along K (``Sparse24Matrix``).
    case sparse24
    /// Compressed sparse rows (``CSRMatrix``).
    case csr
    /// Symmetric int8 with per-channel scales (``Int8Weights``); u8 activations.
    case int8
    /// Symmetric int4 with one scale per group of columns (``Int4Weights``).
    case int4(group: Int)
    /// 2:4 sparse with int8 values (``Sparse24Int8Weights``).
    case sparse24Int8
    /// bfloat16 values (``HalfPrecisionMatrix``).
    case bf16
    /// IEEE half values (``HalfPrecisionMatrix``).
    case f16

    public var description: String {
        switch self {
        case .dense: return "dense"
        case .sparse24: return "2:4"
        case .csr: return "csr"
        case .int8: return "int8"
        case let .int4(g): return "int4-g\(g)"
        case .sparse24Int8: return "2:4-int8"
        case .bf16: return "bf16"
        case .f16: return "f16"
        }
    }
}

/// Weights as compression produced them; a backend `prepare`s them once for its kernels.
public enum CompressedWeights: Sendable {
    /// Row-major `W[N, K]`: N output features, K input features.
    case dense(Matrix<Float>)
    /// 2:4 semi-structured `W[N, K]`.
    case sparse24(Sparse24Matrix)
    /// CSR `W[N, K]`.
    case csr(CSRMatrix)
    /// int8 `W[N, K]` with per-channel scales.
    case int8(Int8Weights)
    /// int4 `W[N, K]` with group-wise scales.
    case int4(Int4Weights)
    /// 2:4 `W[N, K]` with int8 values.
    case sparse24Int8(Sparse24Int8Weights)
    /// bf16 or f16 `W[N, K]`.
    case half(HalfPrecisionMatrix)

    /// The format tag, which backends match on.
    public var format: WeightFormat {
        switch self {
        case .dense: return .dense
        case .sparse24: return .sparse24
        case .csr: return .csr
        case .int8: return .int8
        case let .int4(w): return .int4(group: w.groupSize)
        case .sparse24Int8: return .sparse24Int8
        case let .half(h): return h.kind.format
        }
    }

    /// What besides format and shape decides which kernel wins, for the tuning cache's key:
    /// a 50 % and a 99 % sparse CSR layer, or static and dynamic int8, must not share a winner.
    /// CSR density is bucketed on a log scale, to the nearest half power of two (round figures
    /// such as 50 % sit mid-bucket): the sparse kernels' time follows the non-zeros, and nearby
    /// densities keep their winner.
    public var tuningSignature: String {
        switch self {
        case .dense, .sparse24, .sparse24Int8, .half: return ""
        case let .csr(c):
            let cells = Double(c.rows) * Double(c.columns)
            let density = cells == 0 ? 0 : Double(c.nonZeroCount) / cells
            let bucket = density <= 0 ? -99 : Int((2 * log2(density)).rounded())
            return "density=2^\(Double(bucket) / 2)"
        case let .int8(q):
            return "path=\(q.path.rawValue),act=" + (q.staticActivation == nil ? "dynamic" : "static")
        case let .int4(q):
            return "group=\(q.groupSize),path=\(q.path.rawValue)"
        }
    }

    /// Output features N.
    public var outFeatures: Int {
        switch self {
        case let .dense(w): return w.rows
        case let .sparse24(w): return w.rows
        case let .csr(w): return w.rows
        case let .int8(w): return w.rows
        case let .int4(w): return w.rows
        case let .sparse24Int8(w): return w.rows
        case let .half(w): return w.rows
        }
    }

    /// Input features K.
    public var inFeatures: Int {
        switch self {
        case let .dense(w): return w.columns
        case let .sparse24(w): return w.columns
        case let .csr(w): return w.columns
        case let .int8(w): return w.columns
        case let .int4(w): return w.columns
        case let .sparse24Int8(w): return w.columns
        case let .half(w): return w.columns
        }
    }

    /// Bytes the weights occupy in this format (values, indices, metadata).
    public var byteCount: Int {
        switch self {
        case let .dense(w): return w.count * 4
        case let .sparse24(w): return w.byteCount
        case let .csr(w): return w.byteCount
        case let .int8(w): return w.byteCount
        case let .int4(w): return w.byteCount
        case let .sparse24Int8(w): return w.byteCount
        case let .half(w): return w.byteCount
        }
    }

    /// The weights as a dense f32 matrix (every backend can run a layer this way).
    public func densified() -> Matrix<Float> {
        switch self {
        case let .dense(w): return w
        case let .sparse24(w): return w.densified()
        case let .csr(w): return w.densified()
        case let .int8(w): return w.densified()
        case let .int4(w): return w.densified()
        case let .sparse24Int8(w): return w.densified()
        case let .half(w): return w.densified()
        }
    }

    /// The same weights in another format: the dense-or-sparse choice as one call.
    /// - Throws: ``CondenseError/invalidArgument(_:)`` when the weights are not 2:4 sparse and
    ///   `.sparse24` is asked for (naming the first offending row and group).
    public func converted(to format: WeightFormat) throws -> CompressedWeights {
        if format == self.format { return self }
        switch format {
        case .dense: return .dense(densified())
        case .sparse24: return .sparse24(try Sparse24Matrix(dense: densified()))
        case .csr: return .csr(CSRMatrix(dense: densified()))
        case .int8: return .int8(try Int8Weights(quantizing: densified()))
        case let .int4(g): return .int4(try Int4Weights(quantizing: densified(), groupSize: g))
        case .sparse24Int8: return .sparse24Int8(try Sparse24Int8Weights(quantizing: Sparse24Matrix(dense: densified())))
        case .bf16: return .half(HalfPrecisionMatrix(converting: densified(), to: .bf16))
        case .f16: return .half(HalfPrecisionMatrix(converting: densified(), to: .f16))
        }
    }
}

/// A linear layer `Y = act(X · Wᵀ + b)`: weights in any format, an optional bias, an activation.
///
/// ```swift
/// let w = try Matrix<Float>(rows: 3, columns: 2, elements: [1, 0, 0, 1, 1, 1])
/// let layer = try LinearLayer(weights: .dense(w), bias: [0, 0, -1], activation: .relu)
/// ```
public struct LinearLayer: Sendable {
    public let weights: CompressedWeights
    public let bias: [Float]?
    public let activation: Activation

    /// - Throws: ``CondenseError/shapeMismatch(_:)`` when the bias length is not N.
    public init(weights: CompressedWeights, bias: [Float]? = nil, activation: Activation = .none) throws {
        if let bias, bias.count != weights.outFeatures {
            throw CondenseError.shapeMismatch(
                "bias has \(bias.count) elements but the weight has \(weights.outFeatures) output features")
        }
        self.weights = weights
        self.bias = bias
        self.activation = activation
    }

    /// Output features N.
    public var outFeatures: Int { weights.outFeatures }
    /// Input features K.
    public var inFeatures: Int { weights.inFeatures }
    /// The weight format.
    public var format: WeightFormat { weights.format }

    /// The same layer with its weights in `format` (see ``CompressedWeights/converted(to:)``).
    public func converted(to format: WeightFormat) throws -> LinearLayer {
        try LinearLayer(weights: weights.converted(to: format), bias: bias, activation: activation)
    }
}

extension LinearLayer {
    /// The layer restricted to its first `n` output features: same K, format, scales and
    /// activation. Measured dispatch times candidates on such a slice of a large layer.
    /// - Throws: ``CondenseError/invalidArgument(_:)`` unless `1 <= n <= outFeatures`.
    public func leadingRows(_ n: Int) throws -> LinearLayer {
        guard n >= 1, n <= outFeatures else {
            throw CondenseError.invalidArgument("leading rows must be in 1…\(outFeatures), got \(n)")
        }
        if n == outFeatures { return self }
        return try LinearLayer(weights: weights.leadingRows(n), bias: bias.map { Array($0[0..<n]) }, activation: activation)
    }
}

extension CompressedWeights {
    /// The first `n` rows (output features), in the same format. `n` must be in 1…outFeatures.
    func leadingRows(_ n: Int) throws -> CompressedWeights {
        switch self {
        case let .dense(w):
            return .dense(try Matrix(rows: n, columns: w.columns, elements: w.withUnsafeBufferPointer { Array($0[0..<(n * w.columns)]) }))
        case let .sparse24(w):
            return .sparse24(w.leadingRows(n))
        case let .csr(w):
            let end = Int(w.rowOffsets[n])
            let indices: CSRMatrix.ColumnIndices
            switch w.columnIndices {
            case let .u16(a): indices = .u16(Array(a[0..<end]))
            case let .u32(a): indices = .u32(Array(a[0..<end]))
            }
            return .csr(try CSRMatrix(rows: n, columns: w.columns, rowOffsets: Array(w.rowOffsets[0...n]),
                                      columnIndices: indices, values: Array(w.values[0..<end])))
        case let .int8(w):
            return .int8(try Int8Weights(rows: n, columns: w.columns, values: Array(w.values[0..<(n * w.columns)]),
                                         scales: Array(w.scales[0..<n]), staticActivation: w.staticActivation).with(path: w.path))
        case let .int4(w):
            let bytes = (w.columns + 1) / 2
            return .int4(try Int4Weights(rows: n, columns: w.columns, groupSize: w.groupSize, packed: Array(w.packed[0..<(n * bytes)]),
                                         scales: Array(w.scales[0..<(n * w.groupsPerRow)]), path: w.path))
        case let .sparse24Int8(w):
            return .sparse24Int8(try Sparse24Int8Weights(pattern: w.pattern.leadingRows(n),
                                                         values: Array(w.values[0..<(n * w.pattern.valuesPerRow)]),
                                                         scales: Array(w.scales[0..<n])))
        case let .half(w):
            return .half(w.leadingRows(n))
        }
    }
}

extension Sparse24Matrix {
    /// The first `n` rows.
    func leadingRows(_ n: Int) -> Sparse24Matrix {
        Sparse24Matrix(rows: n, columns: columns, paddedColumns: paddedColumns,
                       values: Array(values[0..<(n * valuesPerRow)]), metadata: Array(metadata[0..<(n * metadataStride)]))
    }

    /// Parts taken from a valid matrix, unchecked.
    private init(rows: Int, columns: Int, paddedColumns: Int, values: [Float], metadata: [UInt8]) {
        self.rows = rows
        self.columns = columns
        self.paddedColumns = paddedColumns
        self.values = values
        self.metadata = metadata
    }
}
