import Condense
import Testing

@Suite struct Int4KernelTests {
    static let shapes = [(1, 7, 16), (3, 33, 31), (5, 17, 100), (13, 40, 257), (1, 65, 1000), (40, 5, 64), (4, 9, 1),
                         (2, 17, 4095), (3, 9, 8195)]

    /// The dequantize path is the f32 GEMM of the exactly dequantized weights.
    @Test(arguments: [16, 32, 64])
    func dequantizePathIsExactF32(_ group: Int) throws {
        var rng = TestRNG(UInt64(400 + group))
        for (m, n, k) in Self.shapes {
            let w = rng.matrix(n, k), x = rng.matrix(m, k), b = rng.vector(n)
            let q = try Int4Weights(quantizing: w, groupSize: group, path: .dequantize)
            let expected = Expected(x: x, w: q.densified(), bias: b, activation: .relu)
            for isa in runnableISAs {
                for threads in [1, 2] {
                    let p = try NativeBackend(isa: isa, threads: threads).prepare(LinearLayer(weights: .int4(q), bias: b, activation: .relu))
                    let problem = expected.firstMismatch(try p.apply(x))
                    #expect(problem == nil, "\(p.kernelName) g=\(group) M=\(m) N=\(n) K=\(k) t=\(threads): \(problem ?? "")")
                }
            }
        }
    }

    /// The integer path rounds each activation to its row's u8 grid (step s_x), so it may differ
    /// from the dequantized f32 result by at most Σ_k |w_k| · s_x / 2, plus f32 rounding.
    @Test(arguments: [16, 32, 64])
    func integerPathWithinActivationRounding(_ group: Int) throws {
        var rng = TestRNG(UInt64(500 + group))
        for (m, n, k) in Self.shapes {
            let w = rng.matrix(n, k), x = rng.matrix(m, k), b = rng.vector(n)
            let q = try Int4Weights(quantizing: w, groupSize: group, path: .integer)
            let wd = q.densified()
            let ref = try ReferenceBackend().prepare(LinearLayer(weights: .dense(wd), bias: b)).apply(x)
            for isa in runnableISAs {
                let p = try NativeBackend(isa: isa, threads: 2).prepare(LinearLayer(weights: .int4(q), bias: b))
                let y = try p.apply(x)
                for i in 0..<m {
                    let row = x.row(i)
                    let sx = (max(0, row.max()!) - min(0, row.min()!)) / 255
                    for j in 0..<n {
                        let bound = (0..<k).reduce(Float(0)) { $0 + abs(wd[j, $1]) } * sx / 2 * 1.01 + 1e-4
                        #expect(abs(y[i, j] - ref[i, j]) <= bound,
                                "\(p.kernelName) g=\(group) M=\(m) N=\(n) K=\(k) (\(i),\(j)): \(y[i, j]) vs \(ref[i, j]) ± \(bound)")
                    }
                }
            }
        }
    }

    @Test func packingAndErrors() throws {
        let w = try Matrix<Float>(rows: 1, columns: 3, elements: [-7, 7, 0])
        let q = try Int4Weights(quantizing: w, groupSize: 16)
        #expect(q.packed == [0x79, 0x00] && q.q(0, 0) == -7 && q.q(0, 1) == 7 && q.q(0, 2) == 0)
        #expect(throws: CondenseError.invalidArgument(
            "native int4 kernels need a group size that is a multiple of 16, got 24 (the reference backend runs any)")) {
            try NativeBackend().prepare(LinearLayer(weights: .int4(try Int4Weights(quantizing: randomMatrix(4, 48, seed: 1), groupSize: 24))))
        }
        #expect(throws: CondenseError.invalidArgument("int4 group size must be >= 1, got 0")) {
            try Int4Weights(quantizing: randomMatrix(2, 8, seed: 2), groupSize: 0)
        }
        #expect(throws: CondenseError.shapeMismatch("int4 2×3 needs 4 packed bytes, got 3")) {
            try Int4Weights(rows: 2, columns: 3, groupSize: 16, packed: [0, 0, 0], scales: [1, 1])
        }
        // The registry can prepare the same layer as int4, the reference backend for any group.
        let layer = try LinearLayer(weights: .dense(randomMatrix(6, 40, seed: 3)))
        let r = BackendRegistry.standard()
        #expect(try r.prepare(layer, as: .int4(group: 32)).placement.backend == "native")
        #expect(try r.prepare(layer, as: .int4(group: 24), policy: .forced("reference")).kernelName == "f32_gemm_reference")
    }
}
