import CCondenseKernels
import Foundation

/// ggml's block types to f32 through the C dequantizers (bit-exact to ggml's definitions).
public enum GGUFDequantize {
    /// Types with a dequantizer.
    public static let supported: Set<GGUFFile.TensorType> = [.f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K,
                                                             .q6_K, .iq4_nl, .iq4_xs, .mxfp4]

    /// `count` elements of `type` stored in `data` as f32.
    /// - Throws: ``CondenseError/invalidTensor(name:reason:)`` for an unsupported type, a count that
    ///   is not whole blocks, or too few bytes.
    public static func floats(_ data: Data, type: GGUFFile.TensorType, count: Int, name: String) throws -> [Float] {
        guard supported.contains(type) else {
            throw CondenseError.invalidTensor(name: name, reason: "\(type) tensors are not supported (\(supported.map(\.description).sorted().joined(separator: ", ")) are)")
        }
        guard count >= 0, count % type.blockSize == 0 else {
            throw CondenseError.invalidTensor(name: name, reason: "\(count) elements are not whole \(type) blocks")
        }
        let need = try CheckedSize.product(count / type.blockSize, type.blockBytes, of: "tensor '\(name)' bytes")
        guard data.count >= need else {
            throw CondenseError.invalidTensor(name: name, reason: "\(data.count) bytes for \(count) \(type) elements, which need \(need)")
        }
        var out = [Float](repeating: 0, count: count)
        let status = data.withUnsafeBytes { src in
            out.withUnsafeMutableBufferPointer { condense_gguf_dequantize(type.rawValue, src.baseAddress, count, $0.baseAddress) }
        }
        try NativeStatus.check(status, kernel: "gguf dequantize \(type)")
        return out
    }
}

extension GGUFFile {
    /// The tensor's elements as f32, dequantized exactly as ggml defines each block type.
    /// - Throws: ``CondenseError/invalidTensor(name:reason:)`` for a type without a dequantizer.
    public func dequantized(_ name: String) throws -> [Float] {
        let t = try tensor(name)
        return try GGUFDequantize.floats(t.data, type: t.type, count: t.elementCount, name: name)
    }
}
