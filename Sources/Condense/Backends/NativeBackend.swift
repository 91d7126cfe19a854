import CCondenseKernels

/// The C/OpenMP backend: register-blocked SIMD kernels chosen by the CPU's ISA at run time.
///
/// By default it uses the active ISA (`CONDENSE_ISA` can lower it). Tests and benchmarks can pin
/// a level to reach every code path on one machine:
///
/// ```swift
/// let avx2 = try NativeBackend(isa: .avx2).prepare(layer)
/// print(avx2.kernelName)   // f32_gemm_6x16__avx2
/// ```
public struct NativeBackend: KernelBackend {
    public let name = "native"
    /// The ISA level pinned at creation, or `nil` for the active level.
    public let isa: ISA?
    /// Threads for layers this backend prepares, or `nil` for ``CondenseRuntime/threads`` at call time.
    public let threads: Int?

    /// - Parameters:
    ///   - isa: Pin an ISA level (one of ``CondenseRuntime/runnableISAs``), or `nil` for the active one.
    ///   - threads: Pin a thread count for the layers it prepares (like a session's intra-op
    ///     threads), or `nil` to follow ``CondenseRuntime/threads``.
    public init(isa: ISA? = nil, threads: Int? = nil) {
        self.isa = isa
        self.threads = threads
    }

    /// A pinned ISA or thread count changes what is measured.
    public var tuningIdentity: String {
        "native" + (isa.map { "[isa=\($0)]" } ?? "") + (threads.map { "[threads=\($0)]" } ?? "")
    }

    public var availability: BackendAvailability {
        if let isa {
            return isa.isRunnable ? .available
                : .unavailable(reason: "\(isa) requested but this CPU runs \(CondenseRuntime.runnableISAs.map(\.description).joined(separator: ", "))")
        }
        do { try CondenseRuntime.validateEnvironment() } catch { return .unavailable(reason: "\(error)") }
        return .available
    }

    /// Every weight format has a native kernel.
    public func supports(_ format: WeightFormat) -> Bool { true }

    public var kernels: [KernelInfo] { NativeKernels.all }

    /// Packs the layer's weights for the kernel of its format at this backend's ISA level.
    public func prepare(_ layer: LinearLayer) throws -> any PreparedLinear {
        let level: ISA
        if let isa {
            guard isa.isRunnable else {
                throw CondenseError.invalidISA(
                    value: isa.description, reason: "this CPU runs \(CondenseRuntime.runnableISAs.map(\.description).joined(separator: ", "))")
            }
            level = isa
        } else {
            try CondenseRuntime.validateEnvironment()
            level = CondenseRuntime.activeISA
        }
        if let threads, threads < 1 {
            throw CondenseError.invalidArgument("thread count must be >= 1, got \(threads)")
        }
        let ctx = NativeContext(bias: layer.bias, activation: layer.activation, isa: level, threads: threads ?? 0)
        switch layer.weights {
        case let .dense(w): return try ctx.dense(w)
        case let .sparse24(w): return try ctx.sparse24(w)
        case let .csr(w): return try ctx.csr(w)
        case let .int8(w) where w.path == .weightOnly: return try ctx.dense(w.densified())
        case let .int8(w): return try ctx.int8(w)
        case let .int4(w): return try ctx.int4(w)
        case let .sparse24Int8(w): return try ctx.sparse24Int8(w)
        case let .half(w): return try ctx.half(w)
        }
    }
}

extension BackendRegistry {
    /// The ISA for the helper kernels a model runs beside its projections (attention, …): the
    /// registered native backend's pinned level, else the active one, so a pinned ISA reaches
    /// every kernel of the model.
    public var helperISA: ISA {
        (backend(named: "native") as? NativeBackend)?.isa ?? CondenseRuntime.activeISA
    }
}

/// The native kernels compiled in, from the C kernel catalog (`condense_kernel_at`: every
/// family's one table, one descriptor type), with whether this CPU can run each.
public enum NativeKernels {
    /// Every kernel of every family, in family order.
    public static var all: [KernelInfo] { catalog().map(\.info) }

    /// Every dense f32 GEMM kernel.
    public static var f32Gemm: [KernelInfo] { family("f32_gemm") }
    /// Every sparse kernel (2:4 and CSR, "dot" and "xt" kinds).
    public static var sparse: [KernelInfo] { family("sparse") }
    /// Every int8 GEMM kernel (VNNI needs its feature bit).
    public static var int8: [KernelInfo] { family("q8") }
    /// Every int4 kernel (dequantize and integer paths).
    public static var int4: [KernelInfo] { family("q4") }
    /// Every 2:4-int8 kernel (VBMI2 and VNNI need their bits).
    public static var sparse24Int8: [KernelInfo] { family("s24q8") }
    /// Every GGUF block kernel (``GGUFBlockLinear``), the 2:4-int4 blocks included.
    public static var gguf: [KernelInfo] { family("gguf") }
    /// Every bf16/f16 kernel (widen and bf16 dot).
    public static var half: [KernelInfo] { family("half") }

    /// The kernels of one family of the catalog (`f32_gemm`, `half`, `sparse`, `q8`, `q4`,
    /// `s24q8`, `gguf`).
    public static func family(_ name: String) -> [KernelInfo] { catalog().filter { $0.family == name }.map(\.info) }

    /// The catalog's entries: family and kernel.
    static func catalog() -> [(family: String, info: KernelInfo)] {
        (0..<condense_kernel_count()).compactMap { i in
            guard let k = condense_kernel_at(i) else { return nil }
            let info = KernelInfo(name: String(cString: k.pointee.name), isa: ISA(k.pointee.isa), runnable: condense_kernel_desc_runnable(k) != 0)
            return (String(cString: k.pointee.family), info)
        }
    }

    /// The sparse kernel that runs a batch of `m` rows.
    static func sparseKernelName(format: condense_sparse_format, isa: ISA, m: Int) -> String {
        guard let k = condense_sparse_kernel_for(Int32(format.rawValue), isa.c, m) else { return "none" }
        return String(cString: k.pointee.name)
    }
}

/// A layer packed by one of the C kernel families: the packed handle, how to run and free it, and
/// which kernel runs a batch. Immutable after init (the kernels only read the packed buffers), so
/// many threads may call `apply` at once.
final class NativePackedLinear<Packed>: PreparedLinear, @unchecked Sendable {
    /// (packed, M, X, lda, Y, ldy, activation, threads) → condense_status
    typealias Run = (UnsafeMutablePointer<Packed>, Int, UnsafePointer<Float>?, Int, UnsafeMutablePointer<Float>?, Int, Int32, Int32) -> Int32
    private let packed: UnsafeMutablePointer<Packed>
    private let run: Run
    private let release: (UnsafeMutablePointer<Packed>) -> Void
    private let kernelFor: (Int) -> String
    private let act: Int32
    private let threads: Int32
    let backendName = "native"
    let inFeatures: Int
    let outFeatures: Int

    /// - Throws: ``CondenseError/outOfMemory(bytes:)`` when packing returned NULL.
    init(_ packed: UnsafeMutablePointer<Packed>?, bytes: Int, inFeatures: Int, outFeatures: Int, context: NativeContext,
         kernel: @escaping (UnsafeMutablePointer<Packed>, Int) -> String, run: @escaping Run,
         release: @escaping (UnsafeMutablePointer<Packed>) -> Void) throws {
        guard let packed else { throw CondenseError.outOfMemory(bytes: bytes) }
        self.packed = packed
        self.run = run
        self.release = release
        kernelFor = { kernel(packed, $0) }
        act = Int32(context.activation.c.rawValue)
        threads = Int32(clamping: context.threads)
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
    }

    deinit { release(packed) }

    var kernelName: String { kernelFor(1) }
    func kernelName(forBatch m: Int) -> String { kernelFor(m) }

    /// - Throws: ``CondenseError/kernelFailed(kernel:reason:)`` when the kernel could not run
    ///   (its scratch memory); Y is then not an answer.
    func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        let (p, a, t, run) = (packed, act, threads, run)
        var status: Int32 = 0
        try runKernel(x, &y) { m, xp, ldx, yp, ldy in status = run(p, m, xp, ldx, yp, ldy, a, t) }
        try NativeStatus.check(status, kernel: kernelFor(x.rows))
    }
}

/// What every native preparation shares; one method per weight format packs for its kernels.
struct NativeContext {
    let bias: [Float]?
    let activation: Activation
    let isa: ISA
    let threads: Int

    func dense(_ w: Matrix<Float>) throws -> any PreparedLinear {
        guard let kernel = condense_f32_gemm_kernel_for(isa.c) else {
            throw CondenseError.backendUnavailable(name: "native", reason: "no f32 GEMM kernel for \(isa)")
        }
        let p = w.withUnsafeBufferPointer { wp in
            withOptionalPointer(bias) { condense_f32_pack(kernel, wp.baseAddress, w.rows, w.columns, w.columns, $0) }
        }
        let name = String(cString: kernel.pointee.name)
        return try NativePackedLinear(p, bytes: w.count * 4, inFeatures: w.columns, outFeatures: w.rows, context: self,
                                      kernel: { _, _ in name }, run: { condense_f32_gemm($0, $1, $2, $3, $4, $5, $6, $7) },
                                      release: { condense_f32_packed_free($0) })
    }

    func half(_ w: HalfPrecisionMatrix) throws -> any PreparedLinear {
        guard let kernel = condense_half_kernel_for(w.kind.c, isa.c) else {
            throw CondenseError.backendUnavailable(name: "native", reason: "no \(w.kind) kernel for \(isa)")
        }
        let p = w.bits.withUnsafeBufferPointer { bp in
            withOptionalPointer(bias) { condense_half_pack_for(kernel, w.kind.c, bp.baseAddress, w.rows, w.columns, w.columns, $0) }
        }
        let name = String(cString: kernel.pointee.name)
        return try NativePackedLinear(p, bytes: w.byteCount, inFeatures: w.columns, outFeatures: w.rows, context: self,
                                      kernel: { _, _ in name }, run: { condense_half_gemm($0, $1, $2, $3, $4, $5, $6, $7) },
                                      release: { condense_half_packed_free($0) })
    }

    func sparse24(_ w: Sparse24Matrix) throws -> any PreparedLinear {
        let p = w.values.withUnsafeBufferPointer { v in
            w.metadata.withUnsafeBufferPointer { m in
                withOptionalPointer(bias) {
                    condense_s24_pack(isa.c, v.baseAddress, m.baseAddress, w.rows, w.columns, w.paddedColumns, w.metadataStride, $0)
                }
            }
        }
        let level = isa
        return try NativePackedLinear(p, bytes: w.byteCount * 2, inFeatures: w.columns, outFeatures: w.rows, context: self,
                                      kernel: { _, m in NativeKernels.sparseKernelName(format: CONDENSE_SPARSE_FORMAT_S24, isa: level, m: m) },
                                      run: { condense_s24_gemm($0, $1, $2, $3, $4, $5, $6, $7) },
                                      release: { condense_s24_packed_free($0) })
    }

    func csr(_ w: CSRMatrix) throws -> any PreparedLinear {
        let make: (UnsafeRawPointer?, Int32) -> UnsafeMutablePointer<condense_csr_packed>? = { index, width in
            w.rowOffsets.withUnsafeBufferPointer { r in
                w.values.withUnsafeBufferPointer { v in
                    withOptionalPointer(bias) { condense_csr_pack(isa.c, r.baseAddress, index, width, v.baseAddress, w.rows, w.columns, $0) }
                }
            }
        }
        let p: UnsafeMutablePointer<condense_csr_packed>?
        switch w.columnIndices {
        case let .u16(ix): p = ix.withUnsafeBytes { make($0.baseAddress, 2) }
        case let .u32(ix): p = ix.withUnsafeBytes { make($0.baseAddress, 4) }
        }
        let level = isa
        return try NativePackedLinear(p, bytes: w.byteCount, inFeatures: w.columns, outFeatures: w.rows, context: self,
                                      kernel: { _, m in NativeKernels.sparseKernelName(format: CONDENSE_SPARSE_FORMAT_CSR, isa: level, m: m) },
                                      run: { condense_csr_gemm($0, $1, $2, $3, $4, $5, $6, $7) },
                                      release: { condense_csr_packed_free($0) })
    }

    func int8(_ w: Int8Weights) throws -> any PreparedLinear {
        guard let kernel = condense_q8_kernel_for(isa.c) else {
            throw CondenseError.backendUnavailable(name: "native", reason: "no int8 kernel for \(isa)")
        }
        let p = w.values.withUnsafeBufferPointer { v in
            w.scales.withUnsafeBufferPointer { s in
                withOptionalPointer(bias) { condense_q8_pack(kernel, v.baseAddress, w.rows, w.columns, w.columns, s.baseAddress, $0) }
            }
        }
        let name = String(cString: kernel.pointee.name)
        let stat = w.staticActivation
        return try NativePackedLinear(p, bytes: w.byteCount * 2, inFeatures: w.columns, outFeatures: w.rows, context: self,
                                      kernel: { _, _ in name },
                                      run: { packed, m, x, lda, y, ldy, act, threads in
                                          guard var scale = stat?.scale, var zp = stat?.zeroPoint else {
                                              return condense_q8_gemm(packed, m, x, lda, y, ldy, act, threads, nil, nil)
                                          }
                                          return condense_q8_gemm(packed, m, x, lda, y, ldy, act, threads, &scale, &zp)
                                      },
                                      release: { condense_q8_packed_free($0) })
    }

    func int4(_ w: Int4Weights) throws -> any PreparedLinear {
        guard w.groupSize % 16 == 0 else {
            throw CondenseError.invalidArgument(
                "native int4 kernels need a group size that is a multiple of 16, got \(w.groupSize) (the reference backend runs any)")
        }
        let path = Int32(w.path == .integer ? CONDENSE_Q4_INTEGER : CONDENSE_Q4_DEQUANT)
        let p = w.packed.withUnsafeBufferPointer { b in
            w.scales.withUnsafeBufferPointer { s in
                withOptionalPointer(bias) {
                    condense_q4_pack(isa.c, path, b.baseAddress, s.baseAddress, w.rows, w.columns, w.groupSize, $0)
                }
            }
        }
        return try NativePackedLinear(p, bytes: w.byteCount * 3, inFeatures: w.columns, outFeatures: w.rows, context: self,
                                      kernel: { p, _ in String(cString: condense_q4_kernel_name(p)) },
                                      run: { condense_q4_gemm($0, $1, $2, $3, $4, $5, $6, $7) },
                                      release: { condense_q4_packed_free($0) })
    }

    func sparse24Int8(_ w: Sparse24Int8Weights) throws -> any PreparedLinear {
        let pat = w.pattern
        let p = w.values.withUnsafeBufferPointer { v in
            pat.metadata.withUnsafeBufferPointer { m in
                w.scales.withUnsafeBufferPointer { s in
                    withOptionalPointer(bias) {
                        condense_s24q8_pack(isa.c, v.baseAddress, m.baseAddress, pat.rows, pat.columns, pat.paddedColumns,
                                            pat.metadataStride, s.baseAddress, $0)
                    }
                }
            }
        }
        return try NativePackedLinear(p, bytes: w.byteCount * 2, inFeatures: pat.columns, outFeatures: pat.rows, context: self,
                                      kernel: { p, _ in String(cString: condense_s24q8_kernel_name(p)) },
                                      run: { condense_s24q8_gemm($0, $1, $2, $3, $4, $5, $6, $7) },
                                      release: { condense_s24q8_packed_free($0) })
    }
}

extension PreparedLinear {
    /// Checks the shapes, then hands a C kernel X's and Y's base addresses, M and row strides:
    /// the body every native layer's `apply` shares.
    func runKernel(_ x: Matrix<Float>, _ y: inout Matrix<Float>,
                   _ kernel: (Int, UnsafePointer<Float>?, Int, UnsafeMutablePointer<Float>?, Int) -> Void) throws {
        try checkShapes(x, y)
        let (m, ldx, ldy) = (x.rows, x.columns, y.columns)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in kernel(m, xp.baseAddress, ldx, yp.baseAddress, ldy) }
        }
    }
}

/// Calls `body` with the array's base address, or nil for a nil array.
func withOptionalPointer<R>(_ array: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let array else { return body(nil) }
    return array.withUnsafeBufferPointer { body($0.baseAddress) }
}


/// Maps a kernel's condense_status to a thrown error.
public enum NativeStatus {
    /// - Throws: ``CondenseError/kernelFailed(kernel:reason:)`` for anything but CONDENSE_OK.
    public static func check(_ status: Int32, kernel: @autoclosure () -> String) throws {
        switch UInt32(bitPattern: status) {
        case CONDENSE_OK.rawValue: return
        case CONDENSE_ERR_NO_MEMORY.rawValue: throw CondenseError.kernelFailed(kernel: kernel(), reason: "out of memory for its scratch buffers")
        case CONDENSE_ERR_INVALID.rawValue: throw CondenseError.kernelFailed(kernel: kernel(), reason: "invalid arguments")
        default: throw CondenseError.kernelFailed(kernel: kernel(), reason: "status \(status)")
        }
    }
}
