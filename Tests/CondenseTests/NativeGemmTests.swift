import CCondenseKernels
import Condense
import Testing

/// The native dense GEMM against the double-precision reference, on every ISA path this CPU has,
/// on 1 and 2 threads, with odd sizes and tails in every dimension.
@Suite struct NativeGemmTests {
    static let sizes = [1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 65, 127, 1000]

    /// One shape, checked on every ISA × thread count × (bias, activation) combination.
    func check(m: Int, n: Int, k: Int, seed: UInt64, activations: [Activation] = [.none]) throws {
        var rng = TestRNG(seed)
        let x = rng.matrix(m, k), w = rng.matrix(n, k), bias = rng.vector(n)
        for act in activations {
            for b in [nil, bias] {
                let expected = Expected(x: x, w: w, bias: b, activation: act)
                let layer = try LinearLayer(weights: .dense(w), bias: b, activation: act)
                for isa in runnableISAs {
                    for threads in [1, 2] {
                        let p = try NativeBackend(isa: isa, threads: threads).prepare(layer)
                        let y = try p.apply(x)
                        let problem = expected.firstMismatch(y)
                        #expect(problem == nil,
                                "M=\(m) N=\(n) K=\(k) isa=\(isa) threads=\(threads) act=\(act) bias=\(b != nil): \(problem ?? "")")
                    }
                }
            }
        }
    }

    @Test(arguments: sizes)
    func tailsInM(_ m: Int) throws { try check(m: m, n: 37, k: 33, seed: UInt64(m)) }

    @Test(arguments: sizes)
    func tailsInN(_ n: Int) throws { try check(m: 5, n: n, k: 31, seed: UInt64(100 + n)) }

    @Test(arguments: sizes)
    func tailsInK(_ k: Int) throws { try check(m: 13, n: 33, k: k, seed: UInt64(200 + k)) }

    @Test func randomShapes() throws {
        var rng = TestRNG(7)
        for i in 0..<12 {
            let pick = { (r: inout TestRNG) in Self.sizes[Int(r.next() % UInt64(Self.sizes.count))] }
            var (m, n, k) = (pick(&rng), pick(&rng), pick(&rng))
            while m * n * k > 3_000_000 { if m >= n && m >= k { m /= 3 } else if n >= k { n /= 3 } else { k /= 3 } }
            try check(m: m, n: n, k: k, seed: UInt64(300 + i), activations: [.none, .relu])
        }
    }

    /// K around each kernel's own K slice (kc−1, kc+1, 2·kc+3): the second slice accumulates into
    /// C (flags ACCUMULATE) and only the last adds the bias and activation. Each kernel is pinned
    /// through its ISA so every micro-kernel runs its slice-accumulate path.
    @Test func kBeyondOneCacheSlice() throws {
        for i in 0..<condense_f32_gemm_kernel_count() {
            let kr = condense_f32_gemm_kernel_at(i)!.pointee
            guard let isa = runnableISAs.first(where: { $0.rawValue == Int(kr.isa.rawValue) }) else { continue }
            let kc = Int(kr.kc)
            for k in [kc - 1, kc + 1, 2 * kc + 3] {
                var rng = TestRNG(UInt64(700 + k))
                let x = rng.matrix(Int(kr.mr) + 1, k), w = rng.matrix(Int(kr.nr) + 3, k), b = rng.vector(Int(kr.nr) + 3)
                for threads in [1, 2] {
                    let p = try NativeBackend(isa: isa, threads: threads).prepare(LinearLayer(weights: .dense(w), bias: b, activation: .relu))
                    #expect(p.kernelName == String(cString: kr.name))
                    let problem = Expected(x: x, w: w, bias: b, activation: .relu).firstMismatch(try p.apply(x))
                    #expect(problem == nil, "\(p.kernelName) K=\(k) (kc \(kc)) threads=\(threads): \(problem ?? "")")
                }
            }
        }
    }

    /// Sizes that cross the cache-blocking boundaries: row blocks (64/72/96) and the 512-column
    /// cap of a tile.
    @Test func blockingBoundaries() throws {
        try check(m: 97, n: 545, k: 513, seed: 400)
        try check(m: 200, n: 70, k: 1030, seed: 401)
        try check(m: 73, n: 33, k: 385, seed: 402)
    }

    @Test(arguments: [Activation.relu, .gelu])
    func epilogues(_ act: Activation) throws {
        try check(m: 19, n: 45, k: 70, seed: 500, activations: [act])
        try check(m: 1, n: 100, k: 9, seed: 501, activations: [act])
    }

    /// K = 0: the product is empty, so Y = act(bias). M = 0 and N = 0 are no-ops with empty outputs.
    @Test func emptyDimensions() throws {
        try check(m: 4, n: 9, k: 0, seed: 600, activations: [.none, .relu, .gelu])
        try check(m: 0, n: 9, k: 5, seed: 601)
        try check(m: 3, n: 0, k: 5, seed: 602)
    }

    /// The vector GELU against the libm-based scalar definition across the range that matters.
    @Test(arguments: runnableISAs)
    func geluAccuracy(_ isa: ISA) {
        var xs: [Float] = stride(from: Float(-12), through: 12, by: 0.001).map { $0 }
        xs += [0, -0.0, 1e-30, -1e-30, 40, -40]
        var ys = xs
        ys.withUnsafeMutableBufferPointer { condense_f32_activation($0.baseAddress, $0.count, Int32(CONDENSE_ACT_GELU.rawValue), condense_isa(UInt32(isa.rawValue))) }
        var worst: Float = 0
        for (x, y) in zip(xs, ys) {
            let want = Activation.gelu.apply(x)
            worst = max(worst, abs(y - want) / max(1, abs(x)))
        }
        #expect(worst < 1e-6, "\(isa): worst error relative to max(1,|x|) = \(worst)")
    }
}
