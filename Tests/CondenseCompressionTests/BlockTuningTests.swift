import Condense
@testable import CondenseCompression
import CondenseTraining
import Foundation
import Testing

/// Block-wise recovery: the gradients of `LayerNorm(r + f(x))` against finite differences, and
/// a fit that moves only the kept weights and lowers the error.
@Suite struct BlockTuningTests {
    static func matrix(_ rows: Int, _ columns: Int, seed: UInt64, scale: Float = 1) throws -> Matrix<Float> {
        var rng = SplitMix64(seed: seed)
        return try Matrix(rows: rows, columns: columns) { _, _ in rng.uniform(-scale, scale) }
    }

    static func block(ffn: Bool, seed: UInt64) throws -> BlockTuning.Block {
        var rng = SplitMix64(seed: seed)
        func linear(_ n: Int, _ k: Int) throws -> BlockTuning.Linear {
            let w = (0..<(n * k)).map { i in i % 4 < 2 ? rng.uniform(-0.5, 0.5) : 0 }  // 2:4 pattern
            return try BlockTuning.Linear(weight: w, bias: (0..<n).map { _ in rng.uniform(-0.1, 0.1) }, n: n, k: k,
                                          mask: w.map { $0 != 0 })
        }
        let linears = ffn ? [try linear(12, 8), try linear(8, 12)] : [try linear(8, 8)]
        return try BlockTuning.Block(linears: linears, gamma: (0..<8).map { _ in 1 + rng.uniform(-0.2, 0.2) },
                                     beta: (0..<8).map { _ in rng.uniform(-0.1, 0.1) }, eps: 1e-5)
    }

    @Test(arguments: [false, true])
    func gradientsMatchFiniteDifferences(ffn: Bool) throws {
        let b = try Self.block(ffn: ffn, seed: 1)
        let (x, r, t) = (try Self.matrix(5, 8, seed: 2), try Self.matrix(5, 8, seed: 3), try Self.matrix(5, 8, seed: 4))
        // One optimizer step of plain SGD with rate ε moves every parameter by −ε·g: the loss
        // change then equals −ε·‖g‖², which a wrong gradient (sign, a missing term) breaks.
        var probe = b
        let before = try BlockTuning.loss(b, input: x, residual: r, target: t)
        let lr: Float = 1e-3
        _ = try BlockTuning.fit(&probe, input: x, residual: r, target: t, epochs: 1, batchRows: 5,
                                optimizer: .sgd(learningRate: lr, momentum: 0))
        let after = try BlockTuning.loss(probe, input: x, residual: r, target: t)
        var g2 = 0.0
        for (l0, l1) in zip(b.linears, probe.linears) {
            for (p0, p1) in zip(l0.weight + l0.bias, l1.weight + l1.bias) { g2 += Double((p0 - p1) / lr) * Double((p0 - p1) / lr) }
        }
        for (p0, p1) in zip(b.gamma + b.beta, probe.gamma + probe.beta) { g2 += Double((p0 - p1) / lr) * Double((p0 - p1) / lr) }
        #expect(g2 > 0)
        #expect(abs((before - after) - Double(lr) * g2) <= 0.05 * Double(lr) * g2)
        // And each gradient component against a central difference, on a few weights.
        for (l, j) in [(0, 0), (0, 5), (b.linears.count - 1, 9)] where b.linears[l].mask![j] {
            var plus = b, minus = b
            let h: Float = 1e-2
            plus.linears[l].weight[j] += h
            minus.linears[l].weight[j] -= h
            let numeric = (try BlockTuning.loss(plus, input: x, residual: r, target: t)
                - BlockTuning.loss(minus, input: x, residual: r, target: t)) / Double(2 * h)
            let analytic = Double((b.linears[l].weight[j] - probe.linears[l].weight[j]) / lr)
            #expect(abs(numeric - analytic) <= 2e-3 + 0.03 * abs(numeric), "linear \(l) weight \(j)")
        }
    }

    @Test func fittingLowersTheErrorAndKeepsPrunedWeightsAtZero() throws {
        let teacher = try Self.block(ffn: true, seed: 10)
        var student = try Self.block(ffn: true, seed: 11)
        let x = try Self.matrix(400, 8, seed: 12)
        // Targets from the teacher block (its own residual), the student starts elsewhere.
        let t = try Matrix(rows: 400, columns: 8, elements: teacherOutputs(teacher, x))
        let (before, after) = try BlockTuning.fit(&student, input: x, residual: x, target: t, epochs: 30, batchRows: 32,
                                                  optimizer: .adam(learningRate: 3e-3))
        #expect(after < 0.5 * before)
        for l in student.linears { for (w, keep) in zip(l.weight, l.mask!) where !keep { #expect(w == 0) } }
    }

    @Test func badShapesAreRefused() throws {
        var b = try Self.block(ffn: false, seed: 20)
        let x = try Self.matrix(4, 8, seed: 21)
        #expect(throws: CondenseError.self) {
            try BlockTuning.fit(&b, input: x, residual: try Self.matrix(3, 8, seed: 22), target: x, epochs: 1)
        }
        #expect(throws: CondenseError.invalidArgument("a block has one or two linears, got 0")) {
            try BlockTuning.Block(linears: [], gamma: [], beta: [], eps: 1e-5)
        }
        #expect(throws: CondenseError.self) { try BlockTuning.Linear(weight: [1, 2], bias: [0], n: 1, k: 3) }
    }

    static func encoderLayer(seed: UInt64) throws -> BlockTuning.EncoderLayer {
        var rng = SplitMix64(seed: seed)
        func linear(_ n: Int, _ k: Int, scale: Float) throws -> BlockTuning.Linear {
            let w = (0..<(n * k)).map { i in i % 4 < 2 ? rng.uniform(-scale, scale) : 0 }
            return try BlockTuning.Linear(weight: w, bias: (0..<n).map { _ in rng.uniform(-0.1, 0.1) }, n: n, k: k, mask: w.map { $0 != 0 })
        }
        let norm = { ((0..<8).map { _ in 1 + rng.uniform(-0.2, 0.2) }, (0..<8).map { _ in rng.uniform(-0.1, 0.1) }) }
        // Large QKV weights: peaked attention, so Q and K get gradients worth checking.
        return try BlockTuning.EncoderLayer(qkv: linear(24, 8, scale: 1.5), attentionOutput: linear(8, 8, scale: 0.6),
                                            intermediate: linear(12, 8, scale: 0.6), output: linear(8, 12, scale: 0.6),
                                            attentionNorm: norm(), outputNorm: norm(), heads: 2, eps: 1e-5)
    }

    /// The whole layer, attention included: every gradient (Q, K and V rows of the fused
    /// projection, the other projections, biases, both norms) against central differences of
    /// the loss, and a fit that keeps pruned weights at zero and lowers the error.
    @Test func encoderLayerGradientsMatchFiniteDifferences() throws {
        let layer = try Self.encoderLayer(seed: 30)
        let lengths = [3, 1, 4]
        let (x, t) = (try Self.matrix(8, 8, seed: 31), try Self.matrix(8, 8, seed: 32))
        let xs = x.withUnsafeBufferPointer(Array.init), ts = t.withUnsafeBufferPointer(Array.init)
        func loss(_ l: BlockTuning.EncoderLayer) -> Double {
            let y = try! BlockTuning.layerForward(l, x: xs, lengths: lengths).y
            return zip(y, ts).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) } / 64
        }
        let g = try BlockTuning.layerGradients(layer, x: xs, lengths: lengths, target: ts)
        var checked = 0
        func check(_ analytic: Float, _ name: String, _ bump: (inout BlockTuning.EncoderLayer, Float) -> Void) {
            if Self.expectGradient(layer, analytic, name, loss: loss, bump: bump) { checked += 1 }
        }
        for j in [0, 1, 12, 8 * 8 + 1, 8 * 8 + 20, 16 * 8 + 4, 20 * 8 + 5] where layer.qkv.mask![j] {
            check(g.weights[0][j], "qkv \(j)") { $0.qkv.weight[j] += $1 }
        }
        for j in [1, 9, 40] where layer.attentionOutput.mask![j] { check(g.weights[1][j], "attention output \(j)") { $0.attentionOutput.weight[j] += $1 } }
        for j in [0, 13, 50] where layer.intermediate.mask![j] { check(g.weights[2][j], "intermediate \(j)") { $0.intermediate.weight[j] += $1 } }
        for j in [1, 24, 60] where layer.output.mask![j] { check(g.weights[3][j], "output \(j)") { $0.output.weight[j] += $1 } }
        check(g.biases[0][3], "qkv bias 3") { $0.qkv.bias[3] += $1 }     // a Q bias
        check(g.biases[0][20], "qkv bias 20") { $0.qkv.bias[20] += $1 }  // a V bias
        check(g.norms[0][2], "γ₁ 2") { $0.gamma1[2] += $1 }
        check(g.norms[3][5], "β₂ 5") { $0.beta2[5] += $1 }
        #expect(checked >= 8)  // most probes see a real gradient, not two zeros agreeing
        var fitted = layer
        let (before, after) = try BlockTuning.fit(&fitted, input: x, lengths: lengths, target: t, epochs: 40, batchRows: 4,
                                                  optimizer: .adam(learningRate: 1e-2))
        #expect(abs(before - loss(layer)) < 1e-9 && after < 0.7 * before)
        for (l, keep) in zip(fitted.linears, layer.linears) {
            for (w, m) in zip(l.weight, keep.mask!) where !m { #expect(w == 0) }
        }
    }

    /// Two layers trained jointly: the gradient reaches the first layer through the second
    /// (its input gradient through QKV and the residual), against central differences.
    @Test func stackedLayerGradientsMatchFiniteDifferences() throws {
        let stack = [try Self.encoderLayer(seed: 40), try Self.encoderLayer(seed: 41)]
        let lengths = [2, 3]
        let xs = try Self.matrix(5, 8, seed: 42).withUnsafeBufferPointer(Array.init)
        let ts = try Self.matrix(5, 8, seed: 43).withUnsafeBufferPointer(Array.init)
        func loss(_ s: [BlockTuning.EncoderLayer]) -> Double {
            let y = try! BlockTuning.stackForward(s, x: xs, lengths: lengths).last!.y
            return zip(y, ts).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) } / Double(ts.count)
        }
        let g = try BlockTuning.stackGradients(stack, x: xs, lengths: lengths, target: ts)
        var checked = 0
        func check(_ analytic: Float, _ name: String, _ bump: (inout [BlockTuning.EncoderLayer], Float) -> Void) {
            if Self.expectGradient(stack, analytic, name, loss: loss, bump: bump) { checked += 1 }
        }
        for (j, name) in [(0, "Q"), (8 * 8 + 1, "K"), (16 * 8 + 4, "V")] where stack[0].qkv.mask![j] {
            check(g[0].weights[0][j], "layer 0 \(name)") { $0[0].qkv.weight[j] += $1 }
        }
        for j in [0, 13] where stack[0].intermediate.mask![j] {
            check(g[0].weights[2][j], "layer 0 intermediate \(j)") { $0[0].intermediate.weight[j] += $1 }
        }
        _ = Self.expectGradient(stack, g[0].norms[1][3], "layer 0 β₁", loss: loss) { $0[0].beta1[3] += $1 }
        #expect(checked >= 3)
    }

    /// The pooled-embedding objective: its gradient, through two layers, matches central
    /// differences of a loss written out here (mean pooling, L2 normalisation, 1 − cosine), and
    /// a fit on it raises the cosine of every sequence's pooled output to the target's.
    @Test func pooledEmbeddingObjectiveMatchesFiniteDifferencesAndFits() throws {
        let stack = [try Self.encoderLayer(seed: 50), try Self.encoderLayer(seed: 51)]
        let lengths = [2, 4, 1]
        let x = try Self.matrix(7, 8, seed: 52), t = try Self.matrix(7, 8, seed: 53)
        let xs = x.withUnsafeBufferPointer(Array.init), ts = t.withUnsafeBufferPointer(Array.init)
        func cosines(_ y: [Float]) -> [Double] {
            var out: [Double] = [], o = 0
            for n in lengths {
                func pooled(_ v: [Float]) -> [Double] {
                    let m = (0..<8).map { c in (o..<(o + n)).reduce(0.0) { $0 + Double(v[$1 * 8 + c]) } / Double(n) }
                    let norm = m.reduce(0) { $0 + $1 * $1 }.squareRoot()
                    return m.map { $0 / norm }
                }
                out.append(zip(pooled(y), pooled(ts)).reduce(0) { $0 + $1.0 * $1.1 })
                o += n
            }
            return out
        }
        func loss(_ s: [BlockTuning.EncoderLayer]) -> Double {
            let c = cosines(try! BlockTuning.stackForward(s, x: xs, lengths: lengths).last!.y)
            return c.reduce(0) { $0 + 1 - $1 } / Double(c.count)
        }
        let g = try BlockTuning.stackGradients(stack, x: xs, lengths: lengths, target: ts, objective: .pooledEmbedding)
        var checked = 0
        func check(_ analytic: Float, _ name: String, _ bump: (inout [BlockTuning.EncoderLayer], Float) -> Void) {
            if Self.expectGradient(stack, analytic, name, loss: loss, bump: bump) { checked += 1 }
        }
        for j in [0, 3, 8 * 8 + 1, 16 * 8 + 4, 20 * 8 + 7] where stack[0].qkv.mask![j] {
            check(g[0].weights[0][j], "layer 0 qkv \(j)") { $0[0].qkv.weight[j] += $1 }
        }
        for j in [0, 5, 13] where stack[1].output.mask![j] {
            check(g[1].weights[3][j], "layer 1 output \(j)") { $0[1].output.weight[j] += $1 }
        }
        check(g[1].norms[2][1], "layer 1 γ₂") { $0[1].gamma2[1] += $1 }
        check(g[1].norms[3][6], "layer 1 β₂") { $0[1].beta2[6] += $1 }
        #expect(checked >= 3)
        var fitted = stack
        let (before, after) = try BlockTuning.fit(&fitted, input: x, lengths: lengths, target: t, epochs: 60, batchRows: 4,
                                                  optimizer: .adam(learningRate: 1e-2), objective: .pooledEmbedding)
        #expect(abs(before - loss(stack)) < 1e-6, "\(before) vs \(loss(stack))")
        #expect(abs(after - loss(fitted)) < 1e-6 && after < 0.5 * before, "\(before) → \(after)")
        for (l, keep) in zip(fitted[0].linears, stack[0].linears) {
            for (w, m) in zip(l.weight, keep.mask!) where !m { #expect(w == 0) }
        }
    }

    /// Expects `analytic` to match the central difference of `loss` when `bump` moves one
    /// parameter of `base` by ±0.01; returns whether that gradient is large enough to mean
    /// something (two zeros agreeing prove nothing).
    static func expectGradient<T>(_ base: T, _ analytic: Float, _ name: String, loss: (T) -> Double,
                                  bump: (inout T, Float) -> Void) -> Bool {
        let h: Float = 1e-2
        var plus = base, minus = base
        bump(&plus, h)
        bump(&minus, -h)
        let numeric = (loss(plus) - loss(minus)) / Double(2 * h)
        #expect(abs(numeric - Double(analytic)) <= 2e-5 + 0.02 * abs(numeric), "\(name): \(numeric) vs \(analytic)")
        return abs(numeric) > 1e-3
    }

    func teacherOutputs(_ b: BlockTuning.Block, _ x: Matrix<Float>) throws -> [Float] {
        // A plain reference of LayerNorm(x + f(x)), written out independently of the tuner.
        var out: [Float] = []
        for r in 0..<x.rows {
            let row = (0..<x.columns).map { x[r, $0] }
            var a = row
            for (i, l) in b.linears.enumerated() {
                var z = (0..<l.n).map { n in (0..<l.k).reduce(l.bias[n]) { $0 + l.weight[n * l.k + $1] * a[$1] } }
                if i == 0 && b.linears.count == 2 { z = z.map { Activation.gelu.apply($0) } }
                a = z
            }
            let u = zip(a, row).map { $0 + $1 }
            let mean = u.reduce(0, +) / Float(u.count)
            let v = u.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(u.count)
            out += u.enumerated().map { j, e in b.gamma[j] * (e - mean) / (v + b.eps).squareRoot() + b.beta[j] }
        }
        return out
    }
}
