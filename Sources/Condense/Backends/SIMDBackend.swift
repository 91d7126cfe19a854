import CCondenseKernels
import CondenseSIMDAVX2
import CondenseSIMDAVX512
import CondenseSIMDBaseline
import CondenseSIMDKit

/// Pure Swift on `SIMD` vectors at full width: one generic register tile (`SIMDTile`) compiled
/// once per ISA level in its own small module with `-target-cpu` (Swift has no per-function
/// target attribute, but it has a per-module one), and chosen at run time like the C kernels:
/// AVX-512 (`SIMD16`, zmm), AVX2 (`SIMD8`, ymm), or the baseline (`SIMD4`: NEON on AArch64, SSE
/// on x86-64). The driver, packing and epilogue are `SwiftGEMM`'s, which Swift backends share.
///
/// ```swift
/// let simd = SIMDBackend()                 // the widest this CPU and CONDENSE_ISA allow
/// print(simd.kernels.map(\.name))          // ["f32_gemm_6x32__swiftsimd_avx512", …]
/// let layer = try simd.prepare(linear)
/// ```
public struct SIMDBackend: KernelBackend {
    public let name = "simd"
    private let level: ISA?
    private let threads: Int

    /// - Parameters:
    ///   - isa: Pin a level (`.avx512`, `.avx2`, or `.scalar` for the baseline module); `nil`
    ///     picks the widest module at or below the active ISA.
    ///   - threads: Threads per call; 0 uses ``CondenseRuntime/threads``.
    public init(isa: ISA? = nil, threads: Int = 0) {
        level = isa
        self.threads = threads
    }

    /// The micro-kernel this backend runs here: the widest module the level allows.
    public var kernel: any GEMMMicroKernel { Self.kernel(for: level ?? CondenseRuntime.activeISA) }

    /// The three tiles. Names and sizes are here, in baseline code; only `run` enters the wide
    /// modules, after the run-time check.
    static let baseline = TileKernel(name: baselineName, mr: 6, nr: 8, swiftSIMDTileBaseline)
    static let avx2 = TileKernel(name: "f32_gemm_6x16__swiftsimd_avx2", mr: 6, nr: 16, swiftSIMDTileAVX2)
    static let avx512 = TileKernel(name: "f32_gemm_6x32__swiftsimd_avx512", mr: 6, nr: 32, swiftSIMDTileAVX512)
    #if arch(arm64) || arch(aarch64)
    static let baselineName = "f32_gemm_6x8__swiftsimd_neon"
    #else
    static let baselineName = "f32_gemm_6x8__swiftsimd_base"
    #endif

    static func kernel(for isa: ISA) -> any GEMMMicroKernel {
        #if arch(x86_64)
        if isa == .avx512 && isa.isRunnable { return avx512 }
        if (isa == .avx2 || isa == .avxvnni || isa == .avx512) && ISA.avx2.isRunnable { return avx2 }
        #endif
        return baseline
    }

    public var availability: BackendAvailability {
        if let level, !level.isRunnable {
            return .unavailable(reason: "\(level) requested but this CPU runs \(CondenseRuntime.runnableISAs.map(\.description).joined(separator: ", "))")
        }
        return .available
    }

    /// Dense f32 weights only: the Swift tile is a dense GEMM.
    public func supports(_ format: WeightFormat) -> Bool { format == .dense }

    public var kernels: [KernelInfo] {
        var all: [(any GEMMMicroKernel, ISA?)] = [(Self.baseline, nil)]
        #if arch(x86_64)
        all += [(Self.avx2, .avx2), (Self.avx512, .avx512)]
        #endif
        return all.map { KernelInfo(name: $0.0.name, isa: $0.1, runnable: $0.1?.isRunnable ?? true) }
    }

    public var tuningIdentity: String { "simd/\(kernel.name)/\(threads)" }

    /// Packs the weights for the Swift tile of the running ISA module.
    public func prepare(_ layer: LinearLayer) throws -> any PreparedLinear {
        guard case let .dense(w) = layer.weights else {
            throw CondenseError.unsupportedFormat(backend: name, format: layer.format.description)
        }
        if case let .unavailable(reason) = availability { throw CondenseError.invalidISA(value: level?.description ?? "", reason: reason) }
        return try SwiftKernelLinear(backend: name, kernel: kernel, weights: w, bias: layer.bias,
                                     activation: layer.activation, threads: threads)
    }
}

/// A backend around your own `GEMMMicroKernel`: Condense's packing, tiling, threads and
/// epilogue (`SwiftGEMM`) do the rest, so a Swift backend is its micro-kernel and one line.
///
/// ```swift
/// let mine = SwiftKernelBackend(name: "mine", kernel: MyTile(),
///                               available: CondenseRuntime.detectedISA == .avx512)
/// BackendRegistry.standard().register(mine, first: true)
/// ```
public struct SwiftKernelBackend: KernelBackend {
    public let name: String
    public let kernel: any GEMMMicroKernel
    private let isa: ISA?
    private let available: Bool
    private let threads: Int

    /// - Parameters:
    ///   - name: The backend's name in placements and `condense backends`.
    ///   - kernel: Your micro-kernel. If its module is built with `-target-cpu`, pass
    ///     `available` from a run-time check so it never runs on a CPU without those instructions.
    ///   - isa: The level it needs, as `condense info` shows it (`nil`: portable).
    ///   - available: Whether the kernel can run on this machine (`false`: never offered).
    ///   - threads: Threads per call; 0 uses ``CondenseRuntime/threads``.
    public init(name: String, kernel: any GEMMMicroKernel, isa: ISA? = nil, available: Bool = true, threads: Int = 0) {
        self.name = name
        self.kernel = kernel
        self.isa = isa
        self.available = available && (isa?.isRunnable ?? true)
        self.threads = threads
    }

    public var availability: BackendAvailability {
        available ? .available : .unavailable(reason: "\(kernel.name) needs \(isa?.description ?? "a CPU feature") this CPU lacks")
    }
    /// Dense f32 weights only: your tile is a dense GEMM.
    public func supports(_ format: WeightFormat) -> Bool { format == .dense }
    public var kernels: [KernelInfo] { [KernelInfo(name: kernel.name, isa: isa, runnable: available)] }
    public var tuningIdentity: String { "\(name)/\(kernel.name)/\(threads)" }

    /// Packs the weights for your tile (`SwiftGEMM` does the tiling, threads and epilogue).
    public func prepare(_ layer: LinearLayer) throws -> any PreparedLinear {
        guard case let .dense(w) = layer.weights else {
            throw CondenseError.unsupportedFormat(backend: name, format: layer.format.description)
        }
        guard available else { throw CondenseError.noBackend("\(name): \(kernel.name) cannot run on this CPU") }
        return try SwiftKernelLinear(backend: name, kernel: kernel, weights: w, bias: layer.bias,
                                     activation: layer.activation, threads: threads)
    }
}

/// A dense layer packed for a Swift micro-kernel.
final class SwiftKernelLinear: PreparedLinear, @unchecked Sendable {
    let backendName: String
    let kernelName: String
    let inFeatures: Int
    let outFeatures: Int
    private let gemm: SwiftGEMM
    private let threads: Int

    init(backend: String, kernel: any GEMMMicroKernel, weights w: Matrix<Float>, bias: [Float]?, activation: Activation,
         threads: Int) throws {
        backendName = backend
        kernelName = kernel.name
        inFeatures = w.columns
        outFeatures = w.rows
        self.threads = threads
        do {
            gemm = try w.withUnsafeBufferPointer { p in
                try SwiftGEMM(kernel: kernel, weights: p.baseAddress!, n: w.rows, k: w.columns, bias: bias,
                              activation: Int32(activation.c.rawValue))
            }
        } catch let e as SwiftGEMMError {
            throw CondenseError.shapeMismatch(e.description)
        }
    }

    func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        try checkShapes(x, y)
        let (m, k, n) = (x.rows, inFeatures, outFeatures)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                guard let xb = xp.baseAddress, let yb = yp.baseAddress else { return }
                gemm.run(m: m, x: xb, lda: k, y: yb, ldy: n, threads: threads)
            }
        }
    }
}
