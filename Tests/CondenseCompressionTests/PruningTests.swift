import Condense
import CondenseCompression
import Testing

func rand(_ r: Int, _ c: Int, seed: UInt64) -> Matrix<Float> {
    var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return try! Matrix<Float>(rows: r, columns: c) { _, _ in
        s ^= s << 13; s ^= s >> 7; s ^= s << 17
        return Float(s >> 40) / Float(1 << 23) - 1
    }
}

@Suite struct PruningTests {
    @Test(arguments: [0.0, 0.5, 0.7, 0.9, 0.95, 0.99, 1.0])
    func unstructuredHitsSparsityExactlyAndKeepsLargest(_ s: Double) throws {
        let w = rand(37, 53, seed: 1)
        let mask = try Pruning.unstructured(w, sparsity: s)
        let pruned = mask.keep.filter { !$0 }.count
        #expect(pruned == Int((s * Double(w.count)).rounded()))
        let mags = w.elements.map(abs)
        let keptMin = zip(mags, mask.keep).filter { $0.1 }.map(\.0).min() ?? .infinity
        let prunedMax = zip(mags, mask.keep).filter { !$0.1 }.map(\.0).max() ?? -1
        #expect(prunedMax <= keptMin)
        let out = try mask.apply(to: w)
        #expect(out.elements.filter { $0 == 0 }.count == pruned)
        #expect(abs(CSRMatrix(dense: out).sparsity - s) < 1e-3)
    }

    @Test func badSparsityIsAnError() {
        let w = rand(4, 4, seed: 2)
        for s in [1.5, -0.1, Double.nan] {
            #expect(throws: CondenseError.invalidArgument("sparsity must be in [0, 1], got \(s)")) {
                try Pruning.unstructured(w, sparsity: s)
            }
        }
        #expect(throws: CondenseError.self) { try Pruning.global([w], sparsity: 2) }
    }

    @Test(arguments: [(2, 4), (1, 4), (4, 8)])
    func nmKeepsTheLargestNOfEveryGroup(_ nm: (Int, Int)) throws {
        let (n, m) = nm
        for k in [8, 13, 30, 3] {  // 13, 30, 3: a partial last group
            let w = rand(9, k, seed: UInt64(k))
            let mask = try Pruning.semiStructured(w, n: n, m: m)
            for r in 0..<9 {
                for g in stride(from: 0, to: k, by: m) {
                    let cols = Array(g..<min(g + m, k))
                    let kept = cols.filter { mask.keep[r * k + $0] }
                    #expect(kept.count == min(n, cols.count), "row \(r) group at \(g)")
                    let keptMin = kept.map { abs(w[r, $0]) }.min() ?? .infinity
                    let prunedMax = cols.filter { !mask.keep[r * k + $0] }.map { abs(w[r, $0]) }.max() ?? -1
                    #expect(prunedMax <= keptMin)
                }
            }
            if n == 2 && m == 4 {  // a 2:4 mask always gives a valid Sparse24Matrix
                #expect(Sparse24Matrix.isValid(try mask.apply(to: w)))
            }
        }
        #expect(throws: CondenseError.invalidArgument("N:M pruning needs 1 <= N <= M, got 5:4")) {
            try Pruning.semiStructured(rand(2, 8, seed: 3), n: 5, m: 4)
        }
    }

    /// Activation-aware scores keep a small weight whose input is large over a large weight whose
    /// input is always zero.
    @Test func activationAwareUsesInputNorms() throws {
        let w = try Matrix<Float>(rows: 1, columns: 4, elements: [0.1, 0.9, 0.8, 0.2])
        let x = try Matrix<Float>(rows: 3, columns: 4, elements: [5, 0, 1, 1, -5, 0, 1, 1, 5, 0, 1, 1])
        let norms = Pruning.inputNorms(x)
        #expect(abs(norms[0] - Float(75).squareRoot()) < 1e-5 && norms[1] == 0)
        let byMagnitude = try Pruning.semiStructured(w)
        let byActivation = try Pruning.semiStructured(w, score: .activationAware(inputNorms: norms))
        #expect(byMagnitude.keep == [false, true, true, false])
        #expect(byActivation.keep == [true, false, true, false])
        #expect(throws: CondenseError.shapeMismatch(
            "activation-aware scores need 4 input norms (one per column), got 3")) {
            try Pruning.unstructured(w, sparsity: 0.5, score: .activationAware(inputNorms: [1, 2, 3]))
        }
    }

    @Test func globalThresholdAcrossLayers() throws {
        var big = rand(10, 10, seed: 4)
        big.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] *= 10 } }
        let small = rand(10, 10, seed: 5)
        let (tau, masks) = try Pruning.global([big, small], sparsity: 0.5)
        let pruned = masks.map { $0.keep.filter { !$0 }.count }
        #expect(pruned.reduce(0, +) == 100)
        #expect(pruned[1] > pruned[0])  // one threshold: the small-magnitude layer loses more
        for (w, m) in zip([big, small], masks) {
            for (v, k) in zip(w.elements, m.keep) { #expect(k ? abs(v) >= tau : abs(v) <= tau) }
        }
    }

    /// Removing neurons whose rows (and biases) are zero keeps a 2-layer ReLU network's output.
    @Test func neuronPruningShrinksBothLayersAndKeepsTheFunction() throws {
        var w1 = rand(8, 5, seed: 6)
        var b1: [Float] = (0..<8).map { Float($0) * 0.1 - 0.3 }
        for dead in [1, 4, 6] { for c in 0..<5 { w1[dead, c] = 0 }; b1[dead] = 0 }
        let w2 = rand(3, 8, seed: 7)
        let p = try Pruning.neurons(w1, bias: b1, keep: 5, norm: .l1)
        #expect(p.kept == [0, 2, 3, 5, 7] && p.weight.rows == 5 && p.bias?.count == 5)
        let w2small = try Pruning.keepInputs(p.kept, of: w2)
        #expect(w2small.rows == 3 && w2small.columns == 5)
        let r = BackendRegistry.standard()
        let x = rand(4, 5, seed: 8)
        let full = try r.prepare(LinearLayer(weights: .dense(w2))).apply(
            try r.prepare(LinearLayer(weights: .dense(w1), bias: b1, activation: .relu)).apply(x))
        let shrunk = try r.prepare(LinearLayer(weights: .dense(w2small))).apply(
            try r.prepare(LinearLayer(weights: .dense(p.weight), bias: p.bias, activation: .relu)).apply(x))
        for (a, b) in zip(full.elements, shrunk.elements) { #expect(abs(a - b) <= 1e-5 * max(1, abs(a))) }
        #expect(throws: CondenseError.invalidArgument("neuron pruning must keep 1…8 rows, got 0")) {
            try Pruning.neurons(w1, keep: 0)
        }
        #expect(throws: CondenseError.invalidArgument("kept index 9 is outside the next layer's 8 inputs")) {
            try Pruning.keepInputs([0, 9], of: w2)
        }
    }
}
