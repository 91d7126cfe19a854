import CCondenseKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The elementwise function fused after a linear layer.
///
/// NaN propagates through every activation (`relu(.nan)` is NaN, as in PyTorch).
public enum Activation: String, CaseIterable, Sendable, Codable {
    case none
    case relu
    /// Exact GELU, `0.5·x·(1 + erf(x/√2))` (BERT, PyTorch's default).
    case gelu

    /// The scalar definition, the oracle for the vector kernels.
    @inlinable public func apply(_ x: Float) -> Float {
        switch self {
        case .none: return x
        case .relu: return x > 0 || x.isNaN ? x : 0
        case .gelu: return 0.5 * x * (1 + erff(x * 0.707_106_781_186_547_52))
        }
    }

    var c: condense_activation {
        switch self {
        case .none: return CONDENSE_ACT_NONE
        case .relu: return CONDENSE_ACT_RELU
        case .gelu: return CONDENSE_ACT_GELU
        }
    }
}
