import CCondenseKernels
import Foundation

/// A linear layer whose weights stay in ggml's blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K), read at their stored
/// size: for a GGUF model, what bounds token generation is the bytes of weights read per token.
/// The blocks are repacked once (about the same size) into groups of 16 rows for the VNNI kernel, which
/// quantizes each row of X per block of 32 to int8, as llama.cpp does, and runs exact integer
/// block dots.
///
/// Several tensors with the same input and type can be stacked into one layer (Q, K and V; gate
/// and up), so one kernel call reads them all and computes one wide output.
///
/// ```swift
/// let f = try GGUFFile(contentsOf: path)
/// let q = try GGUFBlockLinear(f.tensor("blk.0.attn_q.weight"))
/// let y = try q.apply(x)                       // x: [M, K] → y: [M, N]
/// print(q.kernelName)                          // gguf_q4_1_x16__avx512vnni
/// ```
public final class GGUFBlockLinear: PreparedLinear, @unchecked Sendable {
    // Immutable after init: the packed bytes are only read.
    private let packed: UnsafeMutableRawPointer
    /// Bytes of the packed weights (the stored size, rows rounded up to 16).
    public let packedBytes: Int
    let type: GGUFFile.TensorType
    let bias: [Float]?
    let isa: ISA
    let threads: Int32
    public let backendName = "native"
    public let inFeatures: Int
    public let outFeatures: Int

    /// The block types this layer runs.
    public static let supported: Set<GGUFFile.TensorType> = [.q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q6_K]

    /// One tensor.
    /// - Throws: ``CondenseError/invalidTensor(name:reason:)`` for another type or shape, a bias
    ///   of the wrong length, or too few bytes.
    public convenience init(_ t: GGUFFile.Tensor, bias: [Float]? = nil, isa: ISA? = nil, threads: Int? = nil) throws {
        try self.init(stacking: [t], bias: bias, isa: isa, threads: threads)
    }

    /// Tensors of one type and input size, their rows stacked in order. Every part but the last
    /// must have a multiple of 16 rows (the kernel's row group).
    /// - Throws: ``CondenseError/invalidTensor(name:reason:)`` naming the offending tensor.
    public init(stacking parts: [GGUFFile.Tensor], bias: [Float]? = nil, isa: ISA? = nil, threads: Int? = nil) throws {
        guard let first = parts.first else { throw CondenseError.invalidArgument("no tensors to stack") }
        var rows = 0
        for (i, t) in parts.enumerated() {
            guard Self.supported.contains(t.type) else {
                throw CondenseError.invalidTensor(name: t.name, reason: "\(t.type) blocks are not run directly (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K are)")
            }
            guard t.type == first.type else { throw CondenseError.invalidTensor(name: t.name, reason: "\(t.type) stacked with \(first.type)") }
            guard t.dims.count == 2, t.dims[0] % t.type.blockSize == 0, t.dims[0] == first.dims[0] else {
                throw CondenseError.invalidTensor(name: t.name, reason: "shape \(t.dims) is not a matrix of whole blocks with \(first.dims[0]) inputs")
            }
            guard i == parts.count - 1 || t.dims[1] % 16 == 0 else {
                throw CondenseError.invalidTensor(name: t.name, reason: "\(t.dims[1]) rows: only the last stacked part may have a partial group of 16")
            }
            let need = try CheckedSize.product(t.dims[1], t.dims[0] / t.type.blockSize, t.type.blockBytes, of: t.name)
            guard t.data.count == need else { throw CondenseError.invalidTensor(name: t.name, reason: "\(t.data.count) bytes, \(need) needed") }
            rows = try CheckedSize.sum(rows, t.dims[1], of: t.name)
        }
        if let bias, bias.count != rows { throw CondenseError.invalidTensor(name: first.name, reason: "bias of \(bias.count) for \(rows) outputs") }
        let (k, code) = (first.dims[0], first.type.rawValue)
        let total = condense_gguf_packed_size(code, rows, k)
        guard total > 0 else { throw CondenseError.invalidTensor(name: first.name, reason: "\(rows)×\(k) is too large to pack") }
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, total) == 0, let raw else { throw CondenseError.outOfMemory(bytes: total) }
        var offset = 0
        for t in parts {
            let status = t.data.withUnsafeBytes { condense_gguf_pack(code, $0.baseAddress, t.dims[1], k, raw + offset) }
            guard status == CONDENSE_OK.rawValue else {
                free(raw)
                throw CondenseError.invalidTensor(name: t.name, reason: "packing failed (status \(status))")
            }
            offset += condense_gguf_packed_size(code, t.dims[1], k)
        }
        packed = raw
        packedBytes = total
        type = first.type
        self.bias = bias
        self.isa = min(isa ?? CondenseRuntime.activeISA, CondenseRuntime.detectedISA)
        self.threads = Int32(clamping: threads ?? 0)
        inFeatures = k
        outFeatures = rows
    }

    deinit { free(packed) }

    public var kernelName: String { String(cString: condense_gguf_gemm_kernel_name(type.rawValue, condense_isa(UInt32(isa.rawValue)))) }

    public func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        var status: Int32 = 0
        let (type, n, k, isa, threads, w) = (type.rawValue, outFeatures, inFeatures, condense_isa(UInt32(isa.rawValue)), threads, packed)
        try runKernel(x, &y) { m, xp, ldx, yp, ldy in
            status = condense_gguf_gemm(type, w, n, k, m, xp, ldx, yp, ldy, isa, threads)
        }
        try NativeStatus.check(status, kernel: kernelName)
        if let bias {
            let cols = y.columns
            y.withUnsafeMutableBufferPointer { p in for r in 0..<(p.count / max(cols, 1)) { for j in 0..<cols { p[r * cols + j] += bias[j] } } }
        }
    }
}
