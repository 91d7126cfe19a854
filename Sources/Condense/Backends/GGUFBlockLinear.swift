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
    /// The block code (`CONDENSE_GGUF_*` or `CONDENSE_BLOCK_S24Q4`) and its name.
    let code: UInt32
    let typeName: String
    // The bias as a C array (the kernels add it, here and in condense_decoder_forward); nil without one.
    private let bias: UnsafeMutablePointer<Float>?
    let isa: ISA
    let threads: Int32
    public let backendName = "native"
    public let inFeatures: Int
    public let outFeatures: Int

    /// The block types this layer runs.
    public static let supported: Set<GGUFFile.TensorType> = [.q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K,
                                                                 .iq4_nl, .iq4_xs]

    /// One tensor.
    /// - Throws: ``CondenseError/invalidTensor(name:reason:)`` for another type or shape, a bias
    ///   of the wrong length, or too few bytes.
    public convenience init(_ t: GGUFFile.Tensor, bias: [Float]? = nil, isa: ISA? = nil, threads: Int? = nil) throws {
        try self.init(stacking: [t], bias: bias, isa: isa, threads: threads)
    }

    /// Tensors of one type and input size, their rows stacked in order. Every part but the last
    /// must have a multiple of 16 rows (the kernel's row group).
    /// - Throws: ``CondenseError/invalidTensor(name:reason:)`` naming the offending tensor.
    public convenience init(stacking parts: [GGUFFile.Tensor], bias: [Float]? = nil, isa: ISA? = nil, threads: Int? = nil) throws {
        guard let first = parts.first else { throw CondenseError.invalidArgument("no tensors to stack") }
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
        }
        try self.init(code: first.type.rawValue, typeName: "\(first.type)", k: first.dims[0],
                      parts: parts.map { ($0.name, $0.dims[1], $0.data) }, bias: bias, isa: isa, threads: threads)
    }

    /// 2:4-int4 weights (``Sparse24Int4Weights``), read at 3.25 bits per weight. Several
    /// matrices with the same K stack into one layer (their rows in order).
    /// - Throws: ``CondenseError/invalidArgument(_:)`` for different K or a bias of the wrong length.
    public convenience init(_ w: Sparse24Int4Weights, bias: [Float]? = nil, isa: ISA? = nil, threads: Int? = nil) throws {
        try self.init(stacking: [w], bias: bias, isa: isa, threads: threads)
    }

    /// 2:4-int4 matrices of one K, their rows stacked in order.
    public convenience init(stacking parts: [Sparse24Int4Weights], bias: [Float]? = nil, isa: ISA? = nil, threads: Int? = nil) throws {
        guard let first = parts.first else { throw CondenseError.invalidArgument("no matrices to stack") }
        guard parts.allSatisfy({ $0.columns == first.columns }) else {
            throw CondenseError.invalidArgument("2:4-int4 matrices with K \(parts.map(\.columns)) cannot stack")
        }
        // The row format is per row: stacked rows are the concatenated bytes, packed once.
        let rows = parts.reduce(0) { $0 + $1.rows }
        try self.init(code: UInt32(CONDENSE_BLOCK_S24Q4), typeName: "2:4-int4", k: first.columns,
                      parts: [("2:4-int4", rows, Data(parts.flatMap(\.blocks)))], bias: bias, isa: isa, threads: threads)
    }

    /// Packs validated parts (rows of `k` in block `code`).
    init(code: UInt32, typeName: String, k: Int, parts: [(name: String, rows: Int, data: Data)], bias: [Float]?, isa: ISA?, threads: Int?) throws {
        let first = parts[0].name
        var rows = 0
        for p in parts { rows = try CheckedSize.sum(rows, p.rows, of: p.name) }
        if let bias, bias.count != rows { throw CondenseError.invalidTensor(name: first, reason: "bias of \(bias.count) for \(rows) outputs") }
        let total = condense_gguf_packed_size(code, rows, k)
        guard total > 0 else { throw CondenseError.invalidTensor(name: first, reason: "\(rows)×\(k) is too large to pack") }
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, total) == 0, let raw else { throw CondenseError.outOfMemory(bytes: total) }
        var offset = 0
        for p in parts {
            let status = p.data.withUnsafeBytes { condense_gguf_pack(code, $0.baseAddress, p.rows, k, raw + offset) }
            guard status == CONDENSE_OK.rawValue else {
                free(raw)
                throw CondenseError.invalidTensor(name: p.name, reason: "packing failed (status \(status))")
            }
            offset += condense_gguf_packed_size(code, p.rows, k)
        }
        packed = raw
        packedBytes = total
        self.code = code
        self.typeName = typeName
        if let bias {
            let b = UnsafeMutablePointer<Float>.allocate(capacity: bias.count)
            b.initialize(from: bias, count: bias.count)
            self.bias = b
        } else {
            self.bias = nil
        }
        self.isa = CondenseRuntime.clamped(isa ?? CondenseRuntime.activeISA)
        self.threads = Int32(clamping: threads ?? 0)
        inFeatures = k
        outFeatures = rows
    }

    deinit {
        free(packed)
        bias?.deallocate()
    }

    /// These weights as one part of a projection of `condense_decoder_forward` (a whole decoder
    /// layer in one job of the thread team). The pointers live as long as `self`.
    package var decoderPart: condense_decoder_part {
        condense_decoder_part(type: code, packed: UnsafeRawPointer(packed), n: outFeatures, bias: UnsafePointer(bias),
                              isa: condense_isa(UInt32(isa.rawValue)))
    }

    public var kernelName: String { String(cString: condense_gguf_gemm_kernel_name(code, condense_isa(UInt32(isa.rawValue)))) }

    /// Y = X · Wᵀ (+ bias) on the blocks' kernel: X quantized per block of 32, integer dots, as ggml's CPU backend.
    public func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        var status: Int32 = 0
        let (type, n, k, isa, threads, w, bias) = (code, outFeatures, inFeatures, condense_isa(UInt32(isa.rawValue)), threads, packed, bias)
        try runKernel(x, &y) { m, xp, ldx, yp, ldy in
            status = condense_gguf_gemm_bias(type, w, n, k, m, xp, ldx, bias, yp, ldy, isa, threads)
        }
        try NativeStatus.check(status, kernel: kernelName)
    }
}
