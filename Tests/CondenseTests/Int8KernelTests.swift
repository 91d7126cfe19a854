import CCondenseKernels
import Condense
import Testing

/// The int8 kernels: integer results are exact, so they are compared bit for bit.
@Suite struct Int8KernelTests {
    static var kernels: [UnsafePointer<condense_q8_kernel>] {
        let have = condense_cpu_features()
        return (0..<condense_q8_kernel_count()).compactMap { condense_q8_kernel_at($0) }
            .filter { condense_isa_runs_on($0.pointee.isa, condense_isa_detected()) != 0 && ($0.pointee.features & have) == $0.pointee.features }
    }

    /// acc = Σ xq·wq on `kernel`, with threads 1 and 2, against Int64 arithmetic.
    func checkExact(m: Int, n: Int, k: Int, w: [Int8], xq: [UInt8]) {
        let k4 = (k + 3) / 4 * 4
        var want = [Int64](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { for c in 0..<k { want[i * n + j] += Int64(xq[i * k4 + c]) * Int64(w[j * k + c]) } } }
        let scales = [Float](repeating: 1, count: n)
        for kr in Self.kernels {
            let name = String(cString: kr.pointee.name)
            let p = w.withUnsafeBufferPointer { wp in scales.withUnsafeBufferPointer { condense_q8_pack(kr, wp.baseAddress, n, k, k, $0.baseAddress, nil) } }!
            defer { condense_q8_packed_free(p) }
            for threads in [1, 2] {
                var acc = [Int32](repeating: -1, count: m * n)
                xq.withUnsafeBufferPointer { xp in acc.withUnsafeMutableBufferPointer { condense_q8_gemm_s32(p, m, xp.baseAddress, k4, $0.baseAddress, n, Int32(threads)) } }
                let bad = (0..<(m * n)).first { Int64(acc[$0]) != want[$0] }
                #expect(bad == nil, "\(name) M=\(m) N=\(n) K=\(k) threads=\(threads): at \(bad ?? 0) got \(acc[bad ?? 0]), want \(want[bad ?? 0])")
            }
        }
    }

    static func data(m: Int, n: Int, k: Int, seed: UInt64) -> ([Int8], [UInt8]) {
        var rng = TestRNG(seed)
        let k4 = (k + 3) / 4 * 4
        let w = (0..<(n * k)).map { _ in Int8(truncatingIfNeeded: rng.next()) }  // −128…127
        var xq = [UInt8](repeating: 0, count: m * k4)
        for i in 0..<m { for c in 0..<k { xq[i * k4 + c] = UInt8(truncatingIfNeeded: rng.next()) } }
        return (w, xq)
    }

    @Test(arguments: [1, 2, 3, 4, 5, 7, 63, 64, 65, 129, 1000, 4095, 4097, 8195])
    func exactTailsInK(_ k: Int) {
        let (w, xq) = Self.data(m: 13, n: 37, k: k, seed: UInt64(k))
        checkExact(m: 13, n: 37, k: k, w: w, xq: xq)
    }

    @Test(arguments: [1, 2, 3, 5, 12, 13, 25, 100])
    func exactTailsInM(_ m: Int) {
        let (w, xq) = Self.data(m: m, n: 33, k: 70, seed: UInt64(100 + m))
        checkExact(m: m, n: 33, k: 70, w: w, xq: xq)
    }

    @Test(arguments: [1, 15, 16, 17, 31, 33, 65, 600])
    func exactTailsInN(_ n: Int) {
        let (w, xq) = Self.data(m: 5, n: n, k: 33, seed: UInt64(200 + n))
        checkExact(m: 5, n: n, k: 33, w: w, xq: xq)
    }

    /// The AVX2 trap: u8·s8 pairs summed in int16 saturate at 255·127·2 = 64 770. Extreme
    /// activations against extreme weights (127 and −128) must still be exact.
    @Test func noSaturationAtTheExtremes() {
        for wv: Int8 in [127, -128] {
            let (m, n, k) = (3, 20, 301)
            checkExact(m: m, n: n, k: k, w: [Int8](repeating: wv, count: n * k),
                       xq: [UInt8](repeating: 255, count: m * (k + 3) / 4 * 4))
        }
    }

    /// The float layer against a Swift model of the same quantization (per-row u8, symmetric s8).
    @Test(arguments: runnableISAs)
    func layerMatchesTheQuantizedModel(_ isa: ISA) throws {
        var rng = TestRNG(300)
        for (m, n, k) in [(1, 40, 33), (7, 65, 300), (30, 17, 64), (4, 9, 1)] {
            let w = rng.matrix(n, k), x = rng.matrix(m, k), bias = rng.vector(n)
            let q = try Int8Weights(quantizing: w)
            for act in [Activation.none, .relu] {
                let p = try NativeBackend(isa: isa, threads: 2).prepare(LinearLayer(weights: .int8(q), bias: bias, activation: act))
                let y = try p.apply(x)
                for i in 0..<m {
                    let (s, z, xq) = quantizedRowModel(x.row(i))
                    for j in 0..<n {
                        var acc = 0, wsum = 0
                        for c in 0..<k { acc += Int(xq[c]) * Int(q.values[j * k + c]); wsum += Int(q.values[j * k + c]) }
                        let want = act.apply(s * q.scales[j] * Float(acc - Int(z) * wsum) + bias[j])
                        #expect(abs(y[i, j] - want) <= 1e-4 * max(1, abs(want)),
                                "\(isa) \(p.kernelName) M=\(m) N=\(n) K=\(k) (\(i),\(j)): \(y[i, j]) vs \(want)")
                    }
                }
            }
        }
    }

    /// Close to the f32 layer: what int8 costs in accuracy on random data.
    @Test func closeToFloat() throws {
        var rng = TestRNG(301)
        let w = rng.matrix(64, 256), x = rng.matrix(16, 256)
        let f = try NativeBackend().prepare(LinearLayer(weights: .dense(w))).apply(x)
        let q = try NativeBackend().prepare(LinearLayer(weights: .dense(w)).converted(to: .int8)).apply(x)
        var dot = 0.0, a = 0.0, b = 0.0
        for (u, v) in zip(f.elements, q.elements) { dot += Double(u * v); a += Double(u * u); b += Double(v * v) }
        #expect(dot / (a * b).squareRoot() > 0.999)
    }

    /// Weight-only int8: activations stay f32, so the layer is exactly the f32 layer of the
    /// dequantized weights.
    @Test func weightOnlyIsTheF32LayerOfTheDequantizedWeights() throws {
        let w = randomMatrix(20, 50, seed: 305), x = randomMatrix(6, 50, seed: 306)
        let q = try Int8Weights(quantizing: w).with(path: .weightOnly)
        let p = try NativeBackend().prepare(LinearLayer(weights: .int8(q)))
        #expect(p.kernelName.hasPrefix("f32_gemm_"))
        #expect(Expected(x: x, w: q.densified(), bias: nil, activation: .none).firstMismatch(try p.apply(x)) == nil)
    }

    @Test func staticActivationAndBadParameters() throws {
        let w = randomMatrix(8, 32, seed: 302), x = randomMatrix(3, 32, seed: 303)
        var q = try Int8Weights(quantizing: w)
        q = try Int8Weights(rows: 8, columns: 32, values: q.values, scales: q.scales,
                            staticActivation: .init(scale: 2.0 / 255, zeroPoint: 128))
        let y = try NativeBackend().prepare(LinearLayer(weights: .int8(q))).apply(x)
        let f = try NativeBackend().prepare(LinearLayer(weights: .dense(w))).apply(x)
        for (u, v) in zip(f.elements, y.elements) { #expect(abs(u - v) < 0.15) }
        #expect(throws: CondenseError.invalidArgument("u8 zero point must be in 0…255, got 300")) {
            try Int8Weights.StaticActivation(scale: 1, zeroPoint: 300)
        }
        #expect(throws: CondenseError.invalidArgument("int8 scale of row 1 must be finite and > 0, got 0.0")) {
            try Int8Weights(rows: 2, columns: 1, values: [1, 1], scales: [1, 0])
        }
        #expect(throws: CondenseError.shapeMismatch("int8 weights 2×2 need 4 values, got 3")) {
            try Int8Weights(rows: 2, columns: 2, values: [1, 1, 1], scales: [1, 1])
        }
    }
}
