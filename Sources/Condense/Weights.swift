/// The storage format of a layer's weights. Later formats (2:4, CSR, int8, int4) extend it.
public enum WeightFormat: Hashable, Sendable, CustomStringConvertible {
    /// Row-major f32 `[outFeatures, inFeatures]`.
    case dense

    public var description: String {
        switch self {
        case .dense: return "dense"
        }
    }
}

/// Weights as compression produced them; a backend `prepare`s them once for its kernels.
public enum CompressedWeights: Sendable {
    /// Row-major `W[N, K]`: N output features, K input features.
    case dense(Matrix<Float>)

    /// The format tag, which backends match on.
    public var format: WeightFormat {
        switch self {
        case .dense: return .dense
        }
    }

    /// Output features N.
    public var outFeatures: Int {
        switch self {
        case let .dense(w): return w.rows
        }
    }

    /// Input features K.
    public var inFeatures: Int {
        switch self {
        case let .dense(w): return w.columns
        }
    }

    /// The weights as a dense f32 matrix (every backend can run a layer this way).
    public func densified() -> Matrix<Float> {
        switch self {
        case let .dense(w): return w
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
}
