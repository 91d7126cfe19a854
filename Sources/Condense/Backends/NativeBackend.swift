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
    ///   - isa: Pin an ISA level (at most ``CondenseRuntime/detectedISA``), or `nil` for the active one.
    ///   - threads: Pin a thread count for the layers it prepares (like a session's intra-op
    ///     threads), or `nil` to follow ``CondenseRuntime/threads``.
    public init(isa: ISA? = nil, threads: Int? = nil) {
        self.isa = isa
        self.threads = threads
    }

    public var availability: BackendAvailability {
        if let isa {
            return isa <= CondenseRuntime.detectedISA ? .available
                : .unavailable(reason: "\(isa) requested but this CPU supports at most \(CondenseRuntime.detectedISA)")
        }
        do { try CondenseRuntime.validateEnvironment() } catch { return .unavailable(reason: "\(error)") }
        return .available
    }

    public func supports(_ format: WeightFormat) -> Bool { true }

    public var kernels: [KernelInfo] { NativeKernels.f32Gemm + NativeKernels.sparse + NativeKernels.int8 }

    public func prepare(_ layer: LinearLayer) throws -> any PreparedLinear {
        let level: ISA
        if let isa {
            guard isa <= CondenseRuntime.detectedISA else {
                throw CondenseError.invalidISA(
                    value: isa.description, reason: "this CPU supports at most '\(CondenseRuntime.detectedISA)'")
            }
            level = isa
        } else {
            try CondenseRuntime.validateEnvironment()
            level = CondenseRuntime.activeISA
        }
        if let threads, threads < 1 {
            throw CondenseError.invalidArgument("thread count must be >= 1, got \(threads)")
        }
        let t = threads ?? 0
        switch layer.weights {
        case let .dense(w):
            return try NativeDenseLinear(weight: w, bias: layer.bias, activation: layer.activation, isa: level, threads: t)
        case let .sparse24(w):
            return try NativeSparse24Linear(weight: w, bias: layer.bias, activation: layer.activation, isa: level, threads: t)
        case let .csr(w):
            return try NativeCSRLinear(weight: w, bias: layer.bias, activation: layer.activation, isa: level, threads: t)
        case let .int8(w) where w.path == .weightOnly:
            return try NativeDenseLinear(weight: w.densified(), bias: layer.bias, activation: layer.activation, isa: level, threads: t)
        case let .int8(w):
            return try NativeInt8Linear(weight: w, bias: layer.bias, activation: layer.activation, isa: level, threads: t)
        case let .int4(w):
            return try NativeInt4Linear(weight: w, bias: layer.bias, activation: layer.activation, isa: level, threads: t)
        case let .sparse24Int8(w):
            return try NativeSparse24Int8Linear(weight: w, bias: layer.bias, activation: layer.activation, isa: level, threads: t)
        }
    }
}

/// The native kernels compiled in, from the C kernel table (the one registration point).
public enum NativeKernels {
    /// Every dense f32 GEMM kernel, with whether this CPU can run it.
    public static var f32Gemm: [KernelInfo] {
        (0..<condense_f32_gemm_kernel_count()).compactMap { i in
            guard let k = condense_f32_gemm_kernel_at(i) else { return nil }
            let isa = ISA(k.pointee.isa)
            return KernelInfo(name: String(cString: k.pointee.name), isa: isa, runnable: isa <= CondenseRuntime.detectedISA)
        }
    }
}

extension NativeKernels {
    /// Every sparse kernel (2:4 and CSR, "dot" and "xt" kinds), with whether this CPU can run it.
    public static var sparse: [KernelInfo] {
        (0..<condense_sparse_kernel_count()).compactMap { i in
            guard let k = condense_sparse_kernel_at(i) else { return nil }
            let isa = ISA(k.pointee.isa)
            return KernelInfo(name: String(cString: k.pointee.name), isa: isa, runnable: isa <= CondenseRuntime.detectedISA)
        }
    }

    /// Every int8 GEMM kernel, with whether this CPU can run it (VNNI needs its feature bit).
    public static var int8: [KernelInfo] {
        let have = condense_cpu_features()
        return (0..<condense_q8_kernel_count()).compactMap { i in
            guard let k = condense_q8_kernel_at(i) else { return nil }
            let isa = ISA(k.pointee.isa)
            let ok = isa <= CondenseRuntime.detectedISA && (k.pointee.features & have) == k.pointee.features
            return KernelInfo(name: String(cString: k.pointee.name), isa: isa, runnable: ok)
        }
    }

    /// The sparse kernel that runs a batch of `m` rows (`format`: 0 = 2:4, 1 = CSR).
    static func sparseKernelName(format: Int32, isa: ISA, m: Int) -> String {
        guard let k = condense_sparse_kernel_for(format, isa.c, m) else { return "none" }
        return String(cString: k.pointee.name)
    }
}

/// Dense f32 weights packed into the panels of one native kernel.
final class NativeDenseLinear: PreparedLinear, @unchecked Sendable {
    // Immutable after init; the packed buffer is only read by `apply`, so sharing is safe.
    private let packed: UnsafeMutablePointer<condense_f32_packed>
    private let activation: Activation
    private let threads: Int32  // 0: the runtime's count at call time
    let backendName = "native"
    let kernelName: String
    let inFeatures: Int
    let outFeatures: Int

    init(weight: Matrix<Float>, bias: [Float]?, activation: Activation, isa: ISA, threads: Int) throws {
        guard let kernel = condense_f32_gemm_kernel_for(isa.c) else {
            throw CondenseError.backendUnavailable(name: "native", reason: "no f32 GEMM kernel for \(isa)")
        }
        let p: UnsafeMutablePointer<condense_f32_packed>? = weight.withUnsafeBufferPointer { w in
            withOptionalPointer(bias) { b in
                condense_f32_pack(kernel, w.baseAddress, weight.rows, weight.columns, weight.columns, b)
            }
        }
        guard let p else { throw CondenseError.outOfMemory(bytes: weight.count * 4) }
        packed = p
        kernelName = String(cString: kernel.pointee.name)
        inFeatures = weight.columns
        outFeatures = weight.rows
        self.activation = activation
        self.threads = Int32(clamping: threads)
    }

    deinit { condense_f32_packed_free(packed) }

    func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        let act = Int32(activation.c.rawValue)
        try runKernel(x, &y) { m, xp, ldx, yp, ldy in condense_f32_gemm(packed, m, xp, ldx, yp, ldy, act, threads) }
    }
}

/// 2:4 weights packed for the native sparse kernels (compact form plus a column-index view).
final class NativeSparse24Linear: PreparedLinear, @unchecked Sendable {
    // Immutable after init; `apply` only reads the packed buffers.
    private let packed: UnsafeMutablePointer<condense_s24_packed>
    private let activation: Activation
    private let threads: Int32
    private let isa: ISA
    let backendName = "native"
    let inFeatures: Int
    let outFeatures: Int

    init(weight: Sparse24Matrix, bias: [Float]?, activation: Activation, isa: ISA, threads: Int) throws {
        let p: UnsafeMutablePointer<condense_s24_packed>? = weight.values.withUnsafeBufferPointer { v in
            weight.metadata.withUnsafeBufferPointer { m in
                withOptionalPointer(bias) { b in
                    condense_s24_pack(isa.c, v.baseAddress, m.baseAddress, weight.rows, weight.columns,
                                      weight.paddedColumns, weight.metadataStride, b)
                }
            }
        }
        guard let p else { throw CondenseError.outOfMemory(bytes: weight.byteCount * 2) }
        packed = p
        inFeatures = weight.columns
        outFeatures = weight.rows
        self.activation = activation
        self.threads = Int32(clamping: threads)
        self.isa = isa
    }

    deinit { condense_s24_packed_free(packed) }

    var kernelName: String { kernelName(forBatch: 1) }
    func kernelName(forBatch m: Int) -> String { NativeKernels.sparseKernelName(format: 0, isa: isa, m: m) }

    func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        let act = Int32(activation.c.rawValue)
        try runKernel(x, &y) { m, xp, ldx, yp, ldy in condense_s24_gemm(packed, m, xp, ldx, yp, ldy, act, threads) }
    }
}

/// CSR weights packed for the native sparse kernels.
final class NativeCSRLinear: PreparedLinear, @unchecked Sendable {
    // Immutable after init; `apply` only reads the packed buffers.
    private let packed: UnsafeMutablePointer<condense_csr_packed>
    private let activation: Activation
    private let threads: Int32
    private let isa: ISA
    let backendName = "native"
    let inFeatures: Int
    let outFeatures: Int

    init(weight: CSRMatrix, bias: [Float]?, activation: Activation, isa: ISA, threads: Int) throws {
        let make: (UnsafeRawPointer?, Int32) -> UnsafeMutablePointer<condense_csr_packed>? = { index, width in
            weight.rowOffsets.withUnsafeBufferPointer { r in
                weight.values.withUnsafeBufferPointer { v in
                    withOptionalPointer(bias) { b in
                        condense_csr_pack(isa.c, r.baseAddress, index, width, v.baseAddress, weight.rows, weight.columns, b)
                    }
                }
            }
        }
        let p: UnsafeMutablePointer<condense_csr_packed>?
        switch weight.columnIndices {
        case let .u16(ix): p = ix.withUnsafeBytes { make($0.baseAddress, 2) }
        case let .u32(ix): p = ix.withUnsafeBytes { make($0.baseAddress, 4) }
        }
        guard let p else { throw CondenseError.outOfMemory(bytes: weight.byteCount) }
        packed = p
        inFeatures = weight.columns
        outFeatures = weight.rows
        self.activation = activation
        self.threads = Int32(clamping: threads)
        self.isa = isa
    }

    deinit { condense_csr_packed_free(packed) }

    var kernelName: String { kernelName(forBatch: 1) }
    func kernelName(forBatch m: Int) -> String { NativeKernels.sparseKernelName(format: 1, isa: isa, m: m) }

    func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        let act = Int32(activation.c.rawValue)
        try runKernel(x, &y) { m, xp, ldx, yp, ldy in condense_csr_gemm(packed, m, xp, ldx, yp, ldy, act, threads) }
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

/// int8 weights packed for the native integer kernels.
final class NativeInt8Linear: PreparedLinear, @unchecked Sendable {
    // Immutable after init; `apply` only reads the packed buffers.
    private let packed: UnsafeMutablePointer<condense_q8_packed>
    private let activation: Activation
    private let threads: Int32
    private let staticScale: Float?
    private let staticZeroPoint: Int32
    let backendName = "native"
    let kernelName: String
    let inFeatures: Int
    let outFeatures: Int

    init(weight: Int8Weights, bias: [Float]?, activation: Activation, isa: ISA, threads: Int) throws {
        guard let kernel = condense_q8_kernel_for(isa.c) else {
            throw CondenseError.backendUnavailable(name: "native", reason: "no int8 kernel for \(isa)")
        }
        let p: UnsafeMutablePointer<condense_q8_packed>? = weight.values.withUnsafeBufferPointer { v in
            weight.scales.withUnsafeBufferPointer { s in
                withOptionalPointer(bias) { b in
                    condense_q8_pack(kernel, v.baseAddress, weight.rows, weight.columns, weight.columns, s.baseAddress, b)
                }
            }
        }
        guard let p else { throw CondenseError.outOfMemory(bytes: weight.byteCount * 2) }
        packed = p
        kernelName = String(cString: kernel.pointee.name)
        inFeatures = weight.columns
        outFeatures = weight.rows
        self.activation = activation
        self.threads = Int32(clamping: threads)
        staticScale = weight.staticActivation?.scale
        staticZeroPoint = weight.staticActivation?.zeroPoint ?? 0
    }

    deinit { condense_q8_packed_free(packed) }

    func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        let act = Int32(activation.c.rawValue)
        var scale = staticScale ?? 0, zp = staticZeroPoint
        let isStatic = staticScale != nil
        try withUnsafePointer(to: &scale) { sp in
            try withUnsafePointer(to: &zp) { zpp in
                try runKernel(x, &y) { m, xp, ldx, yp, ldy in
                    condense_q8_gemm(packed, m, xp, ldx, yp, ldy, act, threads, isStatic ? sp : nil, isStatic ? zpp : nil)
                }
            }
        }
    }
}

/// int4 weights packed for the native kernels (integer VNNI path or exact dequantize path).
final class NativeInt4Linear: PreparedLinear, @unchecked Sendable {
    // Immutable after init; `apply` only reads the packed buffers.
    private let packed: UnsafeMutablePointer<condense_q4_packed>
    private let activation: Activation
    private let threads: Int32
    let backendName = "native"
    let kernelName: String
    let inFeatures: Int
    let outFeatures: Int

    init(weight: Int4Weights, bias: [Float]?, activation: Activation, isa: ISA, threads: Int) throws {
        guard weight.groupSize % 16 == 0 else {
            throw CondenseError.invalidArgument(
                "native int4 kernels need a group size that is a multiple of 16, got \(weight.groupSize) (the reference backend runs any)")
        }
        let path = Int32(weight.path == .integer ? CONDENSE_Q4_INTEGER : CONDENSE_Q4_DEQUANT)
        let p: UnsafeMutablePointer<condense_q4_packed>? = weight.packed.withUnsafeBufferPointer { b in
            weight.scales.withUnsafeBufferPointer { s in
                withOptionalPointer(bias) { bi in
                    condense_q4_pack(isa.c, path, b.baseAddress, s.baseAddress, weight.rows, weight.columns, weight.groupSize, bi)
                }
            }
        }
        guard let p else { throw CondenseError.outOfMemory(bytes: weight.byteCount * 3) }
        packed = p
        kernelName = String(cString: condense_q4_kernel_name(p))
        inFeatures = weight.columns
        outFeatures = weight.rows
        self.activation = activation
        self.threads = Int32(clamping: threads)
    }

    deinit { condense_q4_packed_free(packed) }

    func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        let act = Int32(activation.c.rawValue)
        try runKernel(x, &y) { m, xp, ldx, yp, ldy in condense_q4_gemm(packed, m, xp, ldx, yp, ldy, act, threads) }
    }
}

/// 2:4-int8 weights packed for the native kernel (VBMI2 expand + VNNI, or the portable one).
final class NativeSparse24Int8Linear: PreparedLinear, @unchecked Sendable {
    // Immutable after init; `apply` only reads the packed buffers.
    private let packed: UnsafeMutablePointer<condense_s24q8_packed>
    private let activation: Activation
    private let threads: Int32
    let backendName = "native"
    let kernelName: String
    let inFeatures: Int
    let outFeatures: Int

    init(weight: Sparse24Int8Weights, bias: [Float]?, activation: Activation, isa: ISA, threads: Int) throws {
        let pat = weight.pattern
        let p: UnsafeMutablePointer<condense_s24q8_packed>? = weight.values.withUnsafeBufferPointer { v in
            pat.metadata.withUnsafeBufferPointer { m in
                weight.scales.withUnsafeBufferPointer { s in
                    withOptionalPointer(bias) { b in
                        condense_s24q8_pack(isa.c, v.baseAddress, m.baseAddress, pat.rows, pat.columns, pat.paddedColumns,
                                            pat.metadataStride, s.baseAddress, b)
                    }
                }
            }
        }
        guard let p else { throw CondenseError.outOfMemory(bytes: weight.byteCount * 2) }
        packed = p
        kernelName = String(cString: condense_s24q8_kernel_name(p))
        inFeatures = pat.columns
        outFeatures = pat.rows
        self.activation = activation
        self.threads = Int32(clamping: threads)
    }

    deinit { condense_s24q8_packed_free(packed) }

    func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        let act = Int32(activation.c.rawValue)
        try runKernel(x, &y) { m, xp, ldx, yp, ldy in condense_s24q8_gemm(packed, m, xp, ldx, yp, ldy, act, threads) }
    }
}
