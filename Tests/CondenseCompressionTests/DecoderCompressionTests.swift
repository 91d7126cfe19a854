import CCondenseKernels
import Condense
@testable import CondenseCompression
import CondenseInference
import CondenseTestSupport
import CondenseTraining
import Foundation
import Testing

/// LLM compression: the f32 decoder block (the calibration and recovery forward) against the
/// runtime's decoder, its gradients against finite differences, the inverse-Hessian factor,
/// GPTQ/SparseGPT against round-to-nearest, and the pipeline into a folder the runtime loads.
@Suite struct DecoderCompressionTests {
    /// The blocks, the final norm and the head, in f32 on one sequence, give the runtime's logits
    /// (f32 KV cache) at every position: same rotation, GQA grouping, norms and SwiGLU.
    @Test(arguments: ["llama", "qwen2"])
    func blockForwardEqualsTheRuntime(arch: String) throws {
        let path = try makeTinyLlama(in: scratchFolder("dec"), arch: arch)
        let f = try GGUFFile(contentsOf: path)
        let c = try DecoderConfig(gguf: f)
        let lm = try LanguageModel(file: f, keepBlocks: false)
        let ids: [Int32] = [71, 72, 257, 3, 100, 200, 17]
        let want = try lm.session(kvCache: .f32).forward(ids, allLogits: true)
        let embd = try f.dequantized("token_embd.weight")
        var x = ids.flatMap { embd[(Int($0) * c.hidden)..<((Int($0) + 1) * c.hidden)] }
        for l in 0..<c.layers { x = try DecoderBlockTuning.forward(LLMCompression.denseBlock(f, c, layer: l), x: x, sequenceLength: ids.count).y }
        let (h, _) = DecoderBlockTuning.rmsNorm(x, rows: ids.count, try f.dequantized("output_norm.weight"), eps: c.rmsEpsilon)
        let head = try BlockTuning.Linear(weight: embd, bias: [Float](repeating: 0, count: embd.count / c.hidden), n: embd.count / c.hidden, k: c.hidden)
        let got = try BlockTuning.linear(head, h, rows: ids.count)
        for p in ids.indices {
            let worst = (0..<head.n).map { abs(got[p * head.n + $0] - want[p][$0]) }.max()!
            #expect(worst < 2e-3, "\(arch) position \(p): \(worst)")
        }
    }

    static func block(seed: UInt64, neox: Bool, masked: Bool) throws -> DecoderBlockTuning.Block {
        var rng = SplitMix64(seed: seed)
        let s = DecoderBlockTuning.Shape(hidden: 8, heads: 4, kvHeads: 2, headDim: 2, feedForward: 12, ropeBase: 10_000, eps: 1e-5, neox: neox)
        func linear(_ n: Int, _ k: Int, scale: Float) throws -> BlockTuning.Linear {
            let w = (0..<(n * k)).map { i in !masked || i % 4 < 2 ? rng.uniform(-scale, scale) : 0 }
            return try BlockTuning.Linear(weight: w, bias: (0..<n).map { _ in rng.uniform(-0.1, 0.1) }, n: n, k: k,
                                          mask: masked ? w.map { $0 != 0 } : nil)
        }
        let norm = { (0..<8).map { _ in 1 + rng.uniform(-0.2, 0.2) } }
        return try DecoderBlockTuning.Block(shape: s, attnNorm: norm(), ffnNorm: norm(), q: linear(8, 8, scale: 1.5), k: linear(4, 8, scale: 1.5),
                                            v: linear(4, 8, scale: 0.8), o: linear(8, 8, scale: 0.6), gate: linear(12, 8, scale: 0.8),
                                            up: linear(12, 8, scale: 0.8), down: linear(8, 12, scale: 0.6), qkvBias: true)
    }

    /// Every parameter kind (Q, K, V with their biases, output, gate, up, down, both norms) and
    /// the input gradient against central differences, both rotation layouts; and a fit that
    /// keeps pruned weights at zero and lowers the error.
    @Test(arguments: [false, true])
    func gradientsMatchFiniteDifferences(neox: Bool) throws {
        let b = try Self.block(seed: neox ? 7 : 8, neox: neox, masked: true)
        let t = 5
        let xs = try BlockTuningTests.matrix(2 * t, 8, seed: 9).withUnsafeBufferPointer(Array.init)
        let ts = try BlockTuningTests.matrix(2 * t, 8, seed: 10).withUnsafeBufferPointer(Array.init)
        func loss(_ b: DecoderBlockTuning.Block) -> Double { try! DecoderBlockTuning.loss(b, input: xs, sequenceLength: t, target: ts) }
        let p = try DecoderBlockTuning.forward(b, x: xs, sequenceLength: t)
        let sc = 2 / Float(p.y.count)
        let g = try DecoderBlockTuning.backward(b, x: xs, sequenceLength: t, pass: p, dy: (0..<p.y.count).map { sc * (p.y[$0] - ts[$0]) }, input: true)
        var checked = 0
        func check(_ analytic: Float, _ name: String, _ bump: (inout DecoderBlockTuning.Block, Float) -> Void) {
            if BlockTuningTests.expectGradient(b, analytic, name, loss: loss, bump: bump) { checked += 1 }
        }
        let paths: [WritableKeyPath<DecoderBlockTuning.Block, BlockTuning.Linear>] = [\.q, \.k, \.v, \.o, \.gate, \.up, \.down]
        for (i, path) in paths.enumerated() {
            let l = b[keyPath: path]
            for j in [0, 1, 5, l.weight.count - 3] where l.mask![j] { check(g.weights[i][j], "linear \(i) weight \(j)") { $0[keyPath: path].weight[j] += $1 } }
        }
        for i in 0..<3 { check(g.biases[i][1], "qkv bias \(i)") { $0[keyPath: paths[i]].bias[1] += $1 } }
        check(g.attnNorm[3], "attention norm 3") { $0.attnNorm[3] += $1 }
        check(g.ffnNorm[6], "ffn norm 6") { $0.ffnNorm[6] += $1 }
        #expect(checked >= 20)
        // The input gradient: the same loss as a function of one input element.
        for j in [0, 13, 2 * t * 8 - 1] {
            let h: Float = 1e-2
            var (a, c) = (xs, xs)
            a[j] += h; c[j] -= h
            let numeric = (try DecoderBlockTuning.loss(b, input: a, sequenceLength: t, target: ts)
                           - DecoderBlockTuning.loss(b, input: c, sequenceLength: t, target: ts)) / Double(2 * h)
            #expect(abs(numeric - Double(g.input![j])) <= 2e-5 + 0.02 * abs(numeric), "input \(j): \(numeric) vs \(g.input![j])")
        }
        // Channel weights: the weighted loss's gradient is the backward of the weighted dy.
        let cw = DecoderBlockTuning.balancedChannelWeights(ts, hidden: 8)
        #expect(abs(cw.reduce(0, +) / 8 - 1) < 1e-5 && Set(cw).count > 1)
        let gw = try DecoderBlockTuning.backward(b, x: xs, sequenceLength: t, pass: p, dy: (0..<p.y.count).map { sc * (p.y[$0] - ts[$0]) * cw[$0 % 8] })
        func weighted(_ b: DecoderBlockTuning.Block) -> Double { try! DecoderBlockTuning.loss(b, input: xs, sequenceLength: t, target: ts, channelWeights: cw) }
        for j in [0, 5] { _ = BlockTuningTests.expectGradient(b, gw.weights[6][j], "weighted down \(j)", loss: weighted) { $0.down.weight[j] += $1 } }
        var fitted = b
        let (before, after) = try DecoderBlockTuning.fit(&fitted, input: xs, sequenceLength: t, target: ts, epochs: 60, batchSequences: 1,
                                                         optimizer: .adam(learningRate: 1e-2))
        #expect(abs(before - loss(b)) < 1e-9 && after < 0.7 * before)
        for path in paths {
            for (w, m) in zip(fitted[keyPath: path].weight, b[keyPath: path].mask!) where !m { #expect(w == 0) }
        }
    }

    /// Causality: a later token does not change an earlier row's output.
    @Test func attentionIsCausalPerSequence() throws {
        let b = try Self.block(seed: 3, neox: false, masked: false)
        var x = try BlockTuningTests.matrix(8, 8, seed: 4).withUnsafeBufferPointer(Array.init)
        let y0 = try DecoderBlockTuning.forward(b, x: x, sequenceLength: 4).y
        for j in 24..<32 { x[j] += 1 }   // row 3, the last of the first sequence
        let y1 = try DecoderBlockTuning.forward(b, x: x, sequenceLength: 4).y
        #expect(Array(y0[0..<24]) == Array(y1[0..<24]) && Array(y0[32...]) == Array(y1[32...]) && y0[24..<32] != y1[24..<32])
        #expect(throws: CondenseError.self) { try DecoderBlockTuning.forward(b, x: x, sequenceLength: 3) }
    }

    /// Correlated inputs (what makes compensation pay): X = Z·A.
    static func inputs(_ rows: Int, _ k: Int, seed: UInt64) throws -> (x: [Float], gram: [Double]) {
        var rng = SplitMix64(seed: seed)
        let z = (0..<(rows * k)).map { _ in rng.uniform(-1, 1) }
        let a = (0..<(k * k)).map { i in (i % (k + 1) == 0 ? 1 : 0) + rng.uniform(-0.4, 0.4) }
        var x = [Float](repeating: 0, count: rows * k)
        for r in 0..<rows { for j in 0..<k { var s: Float = 0; for p in 0..<k { s += z[r * k + p] * a[p * k + j] }; x[r * k + j] = s } }
        var gram = [Double](repeating: 0, count: k * k)
        try x.withUnsafeBufferPointer { try Reconstruction.accumulateGram($0.baseAddress!, rows: rows, k: k, into: &gram) }
        return (x, gram)
    }

    @Test func hessianFactorInvertsTheDampedHessian() throws {
        let k = 24
        var (_, gram) = try Self.inputs(40, k, seed: 1)
        for j in 0..<k { gram[5 * k + j] = 0; gram[j * k + 5] = 0 }   // a dead input
        let hf = try Reconstruction.HessianFactor(gram: gram, k: k, damping: 0.01)
        #expect(hf.dead == (0..<k).map { $0 == 5 })
        var h = gram
        h[5 * k + 5] = 1
        let damp = 0.01 * (0..<k).reduce(0.0) { $0 + h[$1 * k + $1] } / Double(k)
        for i in 0..<k { h[i * k + i] += damp }
        // (UᵀU)·H = I, U upper triangular.
        for i in 0..<k {
            for j in 0..<k {
                var s = 0.0
                for p in 0..<k {
                    var hinv = 0.0
                    for q in 0..<k { hinv += hf.u[q * k + i] * hf.u[q * k + p] }
                    s += hinv * h[p * k + j]
                }
                #expect(abs(s - (i == j ? 1 : 0)) < 1e-8, "(\(i), \(j)): \(s)")
                if j < i { #expect(hf.u[i * k + j] == 0) }
            }
        }
        var bad = gram
        bad[0] = -1e9
        #expect(throws: CondenseError.invalidArgument("calibration Hessian is not positive definite")) {
            try Reconstruction.HessianFactor(gram: bad, k: k)
        }
    }

    /// GPTQ's compensated rounding beats rounding each weight to the same kind of grid, on the
    /// layer's outputs; pruning keeps 2 of every 4; fixed masks are kept; codes and scales
    /// reproduce the weights.
    @Test(arguments: [WeightGrid.q4_0, .q4_1, .s24q4])
    func compensationBeatsRoundingToNearest(grid: WeightGrid) throws {
        let (n, k, rows) = (24, 128, 400)
        let (x, gram) = try Self.inputs(rows, k, seed: 2)
        let w = try BlockTuningTests.matrix(n, k, seed: 3)
        let prune = grid == .s24q4
        let r = try Reconstruction.compress(w, gram: gram, prune24: prune, grid: grid)
        func outputError(_ q: [Float]) throws -> Double {
            let a = try BlockTuning.linear(BlockTuning.Linear(weight: w.elements, bias: [Float](repeating: 0, count: n), n: n, k: k), x, rows: rows)
            let b = try BlockTuning.linear(BlockTuning.Linear(weight: q, bias: [Float](repeating: 0, count: n), n: n, k: k), x, rows: rows)
            return zip(a, b).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
        }
        // Round to nearest on the same grid: 2:4 by magnitude, then the format's own quantizer.
        let rtn: [Float]
        switch grid {
        case .s24q4: rtn = try Sparse24Int4Weights(quantizing: w).dequantized().elements
        default:
            var o = [Float]()
            for v in w.elements.chunks(32) {
                let lo = v.min()!, hi = v.max()!, vmax = v.max { abs($0) < abs($1) }!
                if grid == .q4_1 {
                    let d = Float(Float16((hi - lo) / 15)), m = Float(Float16(lo))
                    o += v.map { m + d * max(0, min(15, (($0 - m) / d).rounded())) }
                } else {
                    let d = Float(Float16(vmax / -8))
                    o += v.map { d * max(-8, min(7, ($0 / d).rounded())) }
                }
            }
            rtn = o
        }
        let (eg, er) = (try outputError(r.weights.elements), try outputError(rtn))
        #expect(eg < 0.8 * er, "\(grid): GPTQ \(eg) vs round-to-nearest \(er)")
        for row in 0..<n {
            for g in 0..<(k / 4) { #expect((0..<4).filter { r.mask[row * k + 4 * g + $0] }.count == (prune ? 2 : 4)) }
            for c in 0..<k where r.mask[row * k + c] {
                let s = r.scales[row * (k / grid.group) + c / grid.group], code = Float(r.codes[row * k + c])
                let v = grid == .q4_1 ? r.mins[row * (k / grid.group) + c / grid.group] + s * code : s * (code - 8)
                #expect(v == r.weights[row, c])
            }
        }
        if grid == .s24q4 {
            // The stored format reproduces them exactly.
            #expect(try Sparse24Int4Weights(quantizing: r.weights, scales: r.scales).dequantized() == r.weights)
            // A fixed mask is kept.
            let again = try Reconstruction.compress(w, gram: gram, prune24: false, mask: r.mask, grid: .s24q4)
            #expect(again.mask == r.mask)
        }
    }
}

extension Array {
    func chunks(_ n: Int) -> [ArraySlice<Element>] { stride(from: 0, to: count, by: n).map { self[$0..<Swift.min($0 + n, count)] } }
}
