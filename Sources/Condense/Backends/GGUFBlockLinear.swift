import CCondenseKernels
import Foundation

/// A linear layer whose weights stay in ggml's blocks (Q8_0, Q4_0, Q4_1), read at their stored
/// size by the native kernels instead of being widened to f32: for a GGUF model, what bounds
/// token generation is the bytes of weights read per token. The data is the file's own (memory-
/// mapped); nothing is copied.
///
/// ```swift
/// let f = try GGUFFile(contentsOf: path)
/// let q = try GGUFBlockLinear(f.tensor("blk.0.attn_q.weight"))
/// let y = try q.apply(x)                       // x: [M, K] → y: [M, N]
/// print(q.kernelName)                          // gguf_q4_1_dot__avx512
/// ```
public final class GGUFBlockLinear: PreparedLinear, @unchecked Sendable {
    // Immutable after init: the mapped bytes are only read.
    let data: Data
    let type: GGUFFile.TensorType
    let bias: [Float]?
    let isa: ISA
    let threads: Int32
    public let backendName = "native"
    public let inFeatures: Int
    public let outFeatures: Int

    /// The block types this layer runs.
    public static let supported: Set<GGUFFile.TensorType> = [.q8_0, .q4_0, .q4_1]

    /// - Throws: ``CondenseError/invalidTensor(name:reason:)`` for another type or shape, a bias
    ///   of the wrong length, or too few bytes.
    public init(_ t: GGUFFile.Tensor, bias: [Float]? = nil, isa: ISA? = nil, threads: Int? = nil) throws {
        guard Self.supported.contains(t.type) else {
            throw CondenseError.invalidTensor(name: t.name, reason: "\(t.type) blocks are not run directly (Q8_0, Q4_0, Q4_1 are)")
        }
        guard t.dims.count == 2, t.dims[0] % 32 == 0 else { throw CondenseError.invalidTensor(name: t.name, reason: "shape \(t.dims) is not a matrix of whole blocks") }
        let need = try CheckedSize.product(t.dims[1], t.dims[0] / 32, t.type.blockBytes, of: t.name)
        guard t.data.count == need else { throw CondenseError.invalidTensor(name: t.name, reason: "\(t.data.count) bytes, \(need) needed") }
        if let bias, bias.count != t.dims[1] { throw CondenseError.invalidTensor(name: t.name, reason: "bias of \(bias.count) for \(t.dims[1]) outputs") }
        data = t.data
        type = t.type
        self.bias = bias
        self.isa = min(isa ?? CondenseRuntime.activeISA, CondenseRuntime.detectedISA)
        self.threads = Int32(clamping: threads ?? 0)
        inFeatures = t.dims[0]
        outFeatures = t.dims[1]
    }

    public var kernelName: String { String(cString: condense_gguf_gemm_kernel_name(type.rawValue, condense_isa(UInt32(isa.rawValue)))) }

    public func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        var status: Int32 = 0
        let (type, n, k, isa, threads) = (type.rawValue, outFeatures, inFeatures, condense_isa(UInt32(isa.rawValue)), threads)
        try data.withUnsafeBytes { (w: UnsafeRawBufferPointer) in
            try runKernel(x, &y) { m, xp, ldx, yp, ldy in
                status = condense_gguf_gemm(type, w.baseAddress, n, k, m, xp, ldx, yp, ldy, isa, threads)
            }
        }
        try NativeStatus.check(status, kernel: kernelName)
        if let bias {
            let cols = y.columns
            y.withUnsafeMutableBufferPointer { p in for r in 0..<(p.count / max(cols, 1)) { for j in 0..<cols { p[r * cols + j] += bias[j] } } }
        }
    }
}
