import CCondenseKernels
import Condense
import CondenseExampleBackend
import CondenseSIMDKit
import Testing

/// The Swift SIMD modules (one per ISA level) and the SwiftGEMM driver, against the double
/// reference: odd shapes, column and row tails, K = 0 and K past 4096, every activation, 1 and 2
/// threads, every level this CPU runs.
@Suite struct SwiftSIMDTests {
    static var levels: [ISA] { [.scalar, .avx2, .avx512].filter(\.isRunnable) }

    @Test(arguments: levels)
    func everyLevelMatchesTheReference(_ isa: ISA) throws {
        let backend = SIMDBackend(isa: isa, threads: 2)
        #expect(backend.availability == .available)
        let expectedWidth = isa == .avx512 ? "6x32__swiftsimd_avx512" : isa == .avx2 ? "6x16__swiftsimd_avx2" : "6x8__swiftsimd_"
        #expect(backend.kernel.name.contains(expectedWidth), "\(backend.kernel.name)")
        var rng = TestRNG(UInt64(1800 + isa.rawValue))
        let shapes: [(m: Int, n: Int, k: Int)] = [(1, 1, 1), (1, 33, 17), (2, 31, 300), (5, 7, 64), (6, 40, 65),
                                                  (7, 65, 3), (13, 32, 129), (33, 70, 200), (3, 16, 0), (2, 9, 4100)]
        for (m, n, k) in shapes {
            for activation in Activation.allCases {
                let w = rng.matrix(n, k), x = rng.matrix(m, k), b = rng.vector(n)
                let bias = activation == .relu ? nil : b
                let layer = try LinearLayer(weights: .dense(w), bias: bias, activation: activation)
                for threads in [1, 2] {
                    let p = try SIMDBackend(isa: isa, threads: threads).prepare(layer)
                    #expect(p.backendName == "simd" && p.kernelName == backend.kernel.name)
                    let y = try p.apply(x)
                    let miss = Expected(x: x, w: w, bias: bias, activation: activation).firstMismatch(y)
                    #expect(miss == nil, "\(isa) m=\(m) n=\(n) k=\(k) \(activation) threads=\(threads): \(miss ?? "")")
                }
            }
        }
    }

    @Test func unavailableLevelsAreRefusedAndListed() throws {
        let missing = try #require(ISA.allCases.first { !$0.isRunnable })
        let b = SIMDBackend(isa: missing)
        #expect(!b.availability.isAvailable)
        var rng = TestRNG(1)
        let layer = try LinearLayer(weights: .dense(rng.matrix(3, 3)))
        #expect(throws: CondenseError.self) { try b.prepare(layer) }
        // Every compiled module is listed; the ones this CPU cannot run say so.
        for k in SIMDBackend().kernels { #expect(k.runnable == (k.isa?.isRunnable ?? true), "\(k.name)") }
        #expect(SIMDBackend().kernels.contains { $0.name.hasPrefix("f32_gemm_6x8__swiftsimd_") })
    }

    /// The default picks the widest level CONDENSE_ISA allows.
    @Test func defaultFollowsTheActiveLevel() {
        let name = SIMDBackend().kernel.name
        switch CondenseRuntime.activeISA {
        case .avx512: #expect(name.hasSuffix("avx512"))
        case .avx2, .avxvnni: #expect(name.hasSuffix("avx2"))
        default: #expect(name.contains("6x8__swiftsimd_"))
        }
    }

    /// A user's micro-kernel (a different tile: 4 rows × 8 columns in plain Swift) through the
    /// shared driver and SwiftKernelBackend, registered and measured like any backend.
    struct PlainTile: GEMMMicroKernel {
        var mr: Int { 4 }
        var nr: Int { 8 }
        var name: String { "f32_gemm_4x8__plain" }
        func run(rows: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
                 c: UnsafeMutablePointer<Float>, ldc: Int) {
            for i in 0..<rows {
                var acc = SIMD8<Float>()
                for k in 0..<kc { acc += SIMD8(repeating: a[i * lda + k]) * UnsafeRawPointer(b + 8 * k).loadUnaligned(as: SIMD8<Float>.self) }
                UnsafeMutableRawPointer(c + i * ldc).storeBytes(of: acc, as: SIMD8<Float>.self)
            }
        }
    }

    @Test func userKernelsRunThroughTheSharedDriver() throws {
        let registry = BackendRegistry.standard()
        registry.register(SwiftKernelBackend(name: "plain", kernel: PlainTile()), first: true)
        var rng = TestRNG(1801)
        let w = rng.matrix(19, 37), x = rng.matrix(9, 37), b = rng.vector(19)
        let layer = try LinearLayer(weights: .dense(w), bias: b, activation: .gelu)
        let p = try registry.prepare(layer)
        #expect(p.placement.backend == "plain" && p.placement.kernel == "f32_gemm_4x8__plain")
        #expect(Expected(x: x, w: w, bias: b, activation: .gelu).firstMismatch(try p.apply(x)) == nil)
        #expect(try registry.prepare(layer, policy: .fastest(batch: 4)).placement.timings.map(\.candidate).contains("plain"))
        // Unavailable: refused with the reason, never run.
        let off = SwiftKernelBackend(name: "off", kernel: PlainTile(), available: false)
        #expect(!off.availability.isAvailable)
        #expect(throws: CondenseError.self) { try off.prepare(layer) }
    }

    /// The README's custom backend (Examples/CustomBackend, built for AVX-512): right on every
    /// shape where AVX-512 runs, refused (and never entered) where it does not.
    @Test func readmeExampleBackend() throws {
        let mine = SwiftKernelBackend(name: "mine", kernel: TileKernel(name: "f32_gemm_4x32__mine", mr: 4, nr: 32, myTile),
                                      isa: .avx512)
        var rng = TestRNG(1802)
        guard ISA.avx512.isRunnable else {
            #expect(!mine.availability.isAvailable && mine.kernels.allSatisfy { !$0.runnable })
            return
        }
        for (m, n, k) in [(1, 1, 1), (3, 33, 17), (4, 64, 200), (9, 70, 4100), (13, 31, 0)] {
            let w = rng.matrix(n, k), x = rng.matrix(m, k), b = rng.vector(n)
            let layer = try LinearLayer(weights: .dense(w), bias: b, activation: .relu)
            let p = try mine.prepare(layer)
            #expect(p.kernelName == "f32_gemm_4x32__mine")
            let miss = Expected(x: x, w: w, bias: b, activation: .relu).firstMismatch(try p.apply(x))
            #expect(miss == nil, "m=\(m) n=\(n) k=\(k): \(miss ?? "")")
        }
    }

    @Test func driverRejectsBadShapes() throws {
        let w = [Float](repeating: 1, count: 6)
        try w.withUnsafeBufferPointer { p in
            #expect(throws: SwiftGEMMError.self) { try SwiftGEMM(kernel: PlainTile(), weights: p.baseAddress!, n: 2, k: 3, bias: [1]) }
            #expect(throws: SwiftGEMMError.self) { try SwiftGEMM(kernel: PlainTile(), weights: p.baseAddress!, n: 2, k: 3, ldw: 2) }
            #expect(throws: SwiftGEMMError.self) { try SwiftGEMM(kernel: PlainTile(), weights: p.baseAddress!, n: Int.max / 2, k: 3) }
            #expect(throws: SwiftGEMMError.self) { try SwiftGEMM(kernel: PlainTile(), weights: p.baseAddress!, n: -1, k: 3) }
            #expect(throws: SwiftGEMMError.self) { try SwiftGEMM(kernel: PlainTile(), weights: p.baseAddress!, n: 2, k: -3) }
        }
    }
}
