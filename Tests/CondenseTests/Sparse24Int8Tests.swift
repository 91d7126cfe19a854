import Condense
import Testing

@Suite struct Sparse24Int8Tests {
    /// The layer equals the integer model: u8 rows of X (as for int8) times the s8 values at the
    /// stored positions, dequantized with both scales.
    @Test(arguments: runnableISAs)
    func matchesTheIntegerModel(_ isa: ISA) throws {
        var rng = TestRNG(700)
        for (m, n, k) in [(1, 9, 4), (1, 37, 63), (3, 20, 64), (5, 33, 65), (9, 17, 130), (2, 6, 1), (4, 70, 300), (2, 5, 4095), (3, 4, 8195)] {
            let w24 = try Sparse24Matrix(dense: SparseKernelTests.matrix24(n, k, seed: UInt64(m * 1000 + k)))
            let q = try Sparse24Int8Weights(quantizing: w24)
            let x = rng.matrix(m, k), bias = rng.vector(n)
            let qd = q.densified()
            for threads in [1, 2] {
                let p = try NativeBackend(isa: isa, threads: threads).prepare(LinearLayer(weights: .sparse24Int8(q), bias: bias, activation: .relu))
                let y = try p.apply(x)
                for i in 0..<m {
                    let (s, z, xq) = quantizedRowModel(x.row(i))
                    for j in 0..<n {
                        var acc = 0, wsum = 0
                        for c in 0..<k {
                            let wq = Int((qd[j, c] / q.scales[j]).rounded())
                            acc += Int(xq[c]) * wq
                            wsum += wq
                        }
                        let want = Activation.relu.apply(s * q.scales[j] * Float(acc - Int(z) * wsum) + bias[j])
                        #expect(abs(y[i, j] - want) <= 1e-4 * max(1, abs(want)),
                                "\(p.kernelName) M=\(m) N=\(n) K=\(k) t=\(threads) (\(i),\(j)): \(y[i, j]) vs \(want)")
                    }
                }
            }
        }
    }

    @Test func prunedZerosStayZeroAndBadInput() throws {
        let w = SparseKernelTests.matrix24(12, 40, seed: 710)
        let q = try Sparse24Int8Weights(quantizing: Sparse24Matrix(dense: w))
        let d = q.densified()
        for r in 0..<12 { for c in 0..<40 where w[r, c] == 0 { #expect(d[r, c] == 0) } }
        #expect(q.byteCount <= w.count * 4 / 5)  // 0.5 B values + 0.125 B masks per weight, + scales
        #expect(throws: CondenseError.self) {
            try LinearLayer(weights: .dense(randomMatrix(4, 8, seed: 711))).converted(to: .sparse24Int8)
        }
        let p = try BackendRegistry.standard().prepare(LinearLayer(weights: .dense(w)), as: .sparse24Int8)
        #expect(p.placement.backend == "native" && p.kernelName.hasPrefix("s24q8_dot_"))
    }
}
