import Condense
import CondenseTraining
import Foundation

extension BlockTuning {
    /// A whole post-LayerNorm BERT layer: `h = LN₁(x + Attn(x)·W_oᵀ + b_o)`,
    /// `y = LN₂(h + GELU(h·W₁ᵀ + b₁)·W₂ᵀ + b₂)`, where Attn is multi-head softmax attention over
    /// the fused QKV projection (`[Q | K | V]` columns, head `j` on columns `j·d ..< (j+1)·d` of
    /// each, scale 1/√d, every token of a sequence attends to every token of it).
    ///
    /// ```swift
    /// var layer = try BlockTuning.EncoderLayer(qkv: q, attentionOutput: o, intermediate: i, output: out,
    ///                                          attentionNorm: (g1, b1), outputNorm: (g2, b2), heads: 12, eps: 1e-12)
    /// let (before, after) = try BlockTuning.fit(&layer, input: x, lengths: tokensPerSentence, target: y, epochs: 4)
    /// ```
    public struct EncoderLayer: Sendable {
        public var qkv: Linear
        public var attentionOutput: Linear
        public var intermediate: Linear
        public var output: Linear
        public var gamma1: [Float], beta1: [Float], gamma2: [Float], beta2: [Float]
        public let heads: Int
        public let eps: Float

        /// - Throws: `CondenseError/invalidArgument(_:)` when the shapes do not make a layer of
        ///   hidden size H = `attentionOutput.n` with `heads` dividing it.
        public init(qkv: Linear, attentionOutput: Linear, intermediate: Linear, output: Linear,
                    attentionNorm: (gamma: [Float], beta: [Float]), outputNorm: (gamma: [Float], beta: [Float]),
                    heads: Int, eps: Float) throws {
            let h = attentionOutput.n
            guard heads >= 1, h % heads == 0, qkv.n == 3 * h, qkv.k == h, attentionOutput.k == h, intermediate.k == h,
                  output.k == intermediate.n, output.n == h, [attentionNorm.gamma, attentionNorm.beta, outputNorm.gamma, outputNorm.beta].allSatisfy({ $0.count == h })
            else {
                throw CondenseError.invalidArgument("not an encoder layer: qkv \(qkv.n)×\(qkv.k), attention output \(attentionOutput.n)×\(attentionOutput.k), intermediate \(intermediate.n)×\(intermediate.k), output \(output.n)×\(output.k), \(heads) heads")
            }
            (self.qkv, self.attentionOutput, self.intermediate, self.output) = (qkv, attentionOutput, intermediate, output)
            (gamma1, beta1, gamma2, beta2) = (attentionNorm.gamma, attentionNorm.beta, outputNorm.gamma, outputNorm.beta)
            (self.heads, self.eps) = (heads, eps)
        }

        var hidden: Int { attentionOutput.n }
        /// QKV, attention output, intermediate, output.
        public var linears: [Linear] { [qkv, attentionOutput, intermediate, output] }
    }

    /// Fits the whole layer so that its output for `input` approaches `target`: the four
    /// projections (masks respected), their biases and both LayerNorms. `lengths` are the
    /// tokens of each sequence, in the order their rows are packed; mini-batches are whole
    /// sequences of about `batchRows` tokens. Returns the mean squared error per element before
    /// and after.
    /// - Throws: `CondenseError/shapeMismatch(_:)` when the rows, widths or lengths disagree.
    public static func fit(_ layer: inout EncoderLayer, input: Matrix<Float>, lengths: [Int], target: Matrix<Float>,
                           epochs: Int, batchRows: Int = 256, optimizer: Optimizer = .adam(learningRate: 1e-4),
                           seed: UInt64 = 1) throws -> (before: Double, after: Double) {
        var stack = [layer]
        defer { layer = stack[0] }
        return try fit(&stack, input: input, lengths: lengths, target: target, epochs: epochs, batchRows: batchRows,
                       optimizer: optimizer, seed: seed)
    }

    static func stackForward(_ stack: [EncoderLayer], x: [Float], lengths: [Int]) throws -> [LayerPass] {
        var passes: [LayerPass] = []
        for l in stack { passes.append(try layerForward(l, x: passes.last?.y ?? x, lengths: lengths)) }
        return passes
    }

    /// What a stack is fitted to.
    public enum Objective: Sendable {
        /// The mean squared error of every token's last hidden state (per element).
        case hiddenStates
        /// 1 − cosine between each sequence's mean-pooled last hidden states and the target's,
        /// averaged over sequences: the sentence embedding a mean-pooling encoder returns (its
        /// L2 normalisation does not change the cosine), so training minimises what users measure.
        case pooledEmbedding
    }

    /// The objective's loss (summed over the batch, not yet averaged) and its gradient at `y`
    /// (already divided by what averages the summed loss: elements, or sequences).
    static func objective(_ o: Objective, y: [Float], target: [Float], lengths: [Int], h: Int) -> (loss: Double, dy: [Float]) {
        switch o {
        case .hiddenStates:
            let s = 2 / Float(y.count)
            var loss = 0.0
            let dy = (0..<y.count).map { i -> Float in
                let d = Double(y[i] - target[i])
                loss += d * d
                return s * Float(d)
            }
            return (loss, dy)
        case .pooledEmbedding:
            var dy = [Float](repeating: 0, count: y.count), loss = 0.0, o = 0
            for n in lengths {
                var p = [Double](repeating: 0, count: h), t = p
                for r in o..<(o + n) { for c in 0..<h { p[c] += Double(y[r * h + c]); t[c] += Double(target[r * h + c]) } }
                let pn = max(p.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12), tn = max(t.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
                let cos = zip(p, t).reduce(0) { $0 + $1.0 * $1.1 } / (pn * tn)
                loss += 1 - cos
                // d(1 − cos)/dp = −(t̂ − cos·p̂)/|p|; p is a sum over n rows (the mean's 1/n cancels in the cosine).
                let g = (0..<h).map { c in Float(-(t[c] / tn - cos * p[c] / pn) / pn / Double(lengths.count)) }
                for r in o..<(o + n) { for c in 0..<h { dy[r * h + c] = g[c] } }
                o += n
            }
            return (loss, dy)
        }
    }

    /// Gradients of `objective` at the last layer's output, for every layer.
    static func stackGradients(_ stack: [EncoderLayer], x: [Float], lengths: [Int], target: [Float],
                               objective o: Objective = .hiddenStates) throws -> [LayerGradients] {
        let passes = try stackForward(stack, x: x, lengths: lengths)
        var dy = objective(o, y: passes.last!.y, target: target, lengths: lengths, h: stack[0].hidden).dy
        var grads = [LayerGradients](repeating: LayerGradients(), count: stack.count)
        for li in stride(from: stack.count - 1, through: 0, by: -1) {
            let (g, dx) = try layerBackward(stack[li], x: li == 0 ? x : passes[li - 1].y, lengths: lengths, pass: passes[li],
                                        dy: dy, input: li > 0)
            grads[li] = g
            if let dx { dy = dx }
        }
        return grads
    }

    /// The layer's output rows for packed sequences (for tests and evaluation).
    public static func outputs(_ layer: EncoderLayer, input: Matrix<Float>, lengths: [Int]) throws -> Matrix<Float> {
        guard input.columns == layer.hidden, lengths.reduce(0, +) == input.rows, lengths.allSatisfy({ $0 >= 1 }) else {
            throw CondenseError.shapeMismatch("encoder layer of width \(layer.hidden): input \(input.rows)×\(input.columns), lengths summing to \(lengths.reduce(0, +))")
        }
        let y = try layerForward(layer, x: input.withUnsafeBufferPointer(Array.init), lengths: lengths).y
        return try Matrix(rows: input.rows, columns: layer.hidden, elements: y)
    }

    struct LayerPass {
        var qkv: [Float] = [], probs: [[Float]] = [], ctx: [Float] = []
        var xhat1: [Float] = [], inv1: [Float] = [], hidden: [Float] = []
        var pre: [Float] = [], act: [Float] = [], xhat2: [Float] = [], inv2: [Float] = [], y: [Float] = []
    }

    static func layerForward(_ l: EncoderLayer, x: [Float], lengths: [Int]) throws -> LayerPass {
        let rows = lengths.reduce(0, +), h = l.hidden, d = h / l.heads
        let scale = 1 / Float(d).squareRoot()
        var p = LayerPass()
        p.qkv = try linear(l.qkv, x, rows: rows)
        p.ctx = [Float](repeating: 0, count: rows * h)
        var o = 0
        p.qkv.withUnsafeBufferPointer { q in
            p.ctx.withUnsafeMutableBufferPointer { c in
                for n in lengths {
                    for j in 0..<l.heads {
                        var prob = [Float](repeating: 0, count: n * n)
                        for i in 0..<n {
                            let qi = q.baseAddress! + (o + i) * 3 * h + j * d
                            var mx = -Float.infinity
                            for t in 0..<n {
                                let kt = q.baseAddress! + (o + t) * 3 * h + h + j * d
                                var s: Float = 0
                                for e in 0..<d { s += qi[e] * kt[e] }
                                prob[i * n + t] = s * scale
                                mx = max(mx, s * scale)
                            }
                            var sum: Float = 0
                            for t in 0..<n { let e = expf(prob[i * n + t] - mx); prob[i * n + t] = e; sum += e }
                            let ci = c.baseAddress! + (o + i) * h + j * d
                            for t in 0..<n {
                                prob[i * n + t] /= sum
                                let vt = q.baseAddress! + (o + t) * 3 * h + 2 * h + j * d
                                let w = prob[i * n + t]
                                for e in 0..<d { ci[e] += w * vt[e] }
                            }
                        }
                        p.probs.append(prob)
                    }
                    o += n
                }
            }
        }
        var u1 = try linear(l.attentionOutput, p.ctx, rows: rows)
        for i in u1.indices { u1[i] += x[i] }
        (p.hidden, p.xhat1, p.inv1) = layerNorm(u1, rows: rows, h: h, gamma: l.gamma1, beta: l.beta1, eps: l.eps)
        p.pre = try linear(l.intermediate, p.hidden, rows: rows)
        p.act = p.pre.map { Activation.gelu.apply($0) }
        var u2 = try linear(l.output, p.act, rows: rows)
        for i in u2.indices { u2[i] += p.hidden[i] }
        (p.y, p.xhat2, p.inv2) = layerNorm(u2, rows: rows, h: h, gamma: l.gamma2, beta: l.beta2, eps: l.eps)
        return p
    }

    struct LayerGradients {
        var weights: [[Float]] = []  // qkv, attention output, intermediate, output
        var biases: [[Float]] = []
        var norms: [[Float]] = []    // γ₁, β₁, γ₂, β₂
    }

    static func layerGradients(_ l: EncoderLayer, x: [Float], lengths: [Int], target: [Float]) throws -> LayerGradients {
        let p = try layerForward(l, x: x, lengths: lengths)
        let s = 2 / Float(p.y.count)
        return try layerBackward(l, x: x, lengths: lengths, pass: p, dy: (0..<p.y.count).map { s * (p.y[$0] - target[$0]) }).gradients
    }

    /// Backward through one layer from `dy` (the loss gradient at its output): the parameter
    /// gradients and, when `input` is set, the gradient at the layer's input.
    static func layerBackward(_ l: EncoderLayer, x: [Float], lengths: [Int], pass p: LayerPass, dy: [Float], input: Bool = false) throws
        -> (gradients: LayerGradients, dx: [Float]?) {
        let rows = lengths.reduce(0, +), h = l.hidden, d = h / l.heads
        let scale = 1 / Float(d).squareRoot()
        let (du2, dg2, db2n) = layerNormBackward(dy, xhat: p.xhat2, invStd: p.inv2, gamma: l.gamma2, rows: rows, h: h)
        let (dw2, db2) = try linearGradients(du2, p.act, rows: rows, n: l.output.n, k: l.output.k)
        var da = try inputGradient(du2, l.output, rows: rows)
        geluBackward(&da, pre: p.pre)
        let (dw1, db1) = try linearGradients(da, p.hidden, rows: rows, n: l.intermediate.n, k: l.intermediate.k)
        var dh = try inputGradient(da, l.intermediate, rows: rows)
        for i in dh.indices { dh[i] += du2[i] }
        let (du1, dg1, db1n) = layerNormBackward(dh, xhat: p.xhat1, invStd: p.inv1, gamma: l.gamma1, rows: rows, h: h)
        let (dwo, dbo) = try linearGradients(du1, p.ctx, rows: rows, n: l.attentionOutput.n, k: l.attentionOutput.k)
        let dctx = try inputGradient(du1, l.attentionOutput, rows: rows)
        // Attention: dV = Pᵀ·dC, dP = dC·Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dQ = dS·K/√d, dK = dSᵀ·Q/√d.
        var dqkv = [Float](repeating: 0, count: rows * 3 * h)
        var o = 0, ph = 0
        p.qkv.withUnsafeBufferPointer { q in
            dctx.withUnsafeBufferPointer { dc in
                dqkv.withUnsafeMutableBufferPointer { dq in
                    for n in lengths {
                        for j in 0..<l.heads {
                            let prob = p.probs[ph]
                            ph += 1
                            var ds = [Float](repeating: 0, count: n * n)
                            for i in 0..<n {
                                let dci = dc.baseAddress! + (o + i) * h + j * d
                                var dot: Float = 0
                                for t in 0..<n {
                                    let vt = q.baseAddress! + (o + t) * 3 * h + 2 * h + j * d
                                    let dvt = dq.baseAddress! + (o + t) * 3 * h + 2 * h + j * d
                                    let w = prob[i * n + t]
                                    var dp: Float = 0
                                    for e in 0..<d { dp += dci[e] * vt[e]; dvt[e] += w * dci[e] }
                                    ds[i * n + t] = dp
                                    dot += dp * w
                                }
                                for t in 0..<n { ds[i * n + t] = prob[i * n + t] * (ds[i * n + t] - dot) * scale }
                            }
                            for i in 0..<n {
                                let qi = q.baseAddress! + (o + i) * 3 * h + j * d
                                let dqi = dq.baseAddress! + (o + i) * 3 * h + j * d
                                for t in 0..<n {
                                    let kt = q.baseAddress! + (o + t) * 3 * h + h + j * d
                                    let dkt = dq.baseAddress! + (o + t) * 3 * h + h + j * d
                                    let g = ds[i * n + t]
                                    if g == 0 { continue }
                                    for e in 0..<d { dqi[e] += g * kt[e]; dkt[e] += g * qi[e] }
                                }
                            }
                        }
                        o += n
                    }
                }
            }
        }
        let (dwq, dbq) = try linearGradients(dqkv, x, rows: rows, n: l.qkv.n, k: l.qkv.k)
        var dx: [Float]?
        if input {  // through QKV and the residual around attention
            dx = try inputGradient(dqkv, l.qkv, rows: rows)
            for i in du1.indices { dx![i] += du1[i] }
        }
        return (LayerGradients(weights: [dwq, dwo, dw1, dw2], biases: [dbq, dbo, db1, db2], norms: [dg1, db1n, dg2, db2n]), dx)
    }

    /// Fits a stack of layers jointly (the output of each feeding the next) so that the last
    /// one's output for `input` approaches `target`: end-to-end distillation of the hidden states
    /// or, with `objective: .pooledEmbedding`, of the pooled sentence embedding, where the
    /// layer-by-layer fits see one layer at a time. Same conventions as the one-layer `fit`;
    /// returns the objective's loss (per element, or per sequence) before and after.
    ///
    /// ```swift
    /// let (before, after) = try BlockTuning.fit(&layers, input: x, lengths: tokensPerSentence, target: y,
    ///                                           epochs: 2, objective: .pooledEmbedding)
    /// ```
    /// - Throws: `CondenseError/shapeMismatch(_:)` as the one-layer `fit`, or for an empty stack.
    public static func fit(_ layers: inout [EncoderLayer], input: Matrix<Float>, lengths: [Int], target: Matrix<Float>,
                           epochs: Int, batchRows: Int = 256, optimizer: Optimizer = .adam(learningRate: 1e-4),
                           objective: Objective = .hiddenStates, seed: UInt64 = 1) throws -> (before: Double, after: Double) {
        guard let first = layers.first else { throw CondenseError.shapeMismatch("an empty stack of layers") }
        let h = first.hidden
        guard layers.allSatisfy({ $0.hidden == h }), input.columns == h, target.columns == h, input.rows == target.rows,
              lengths.allSatisfy({ $0 >= 1 }), lengths.reduce(0, +) == input.rows else {
            throw CondenseError.shapeMismatch("stack of width \(h): input \(input.rows)×\(input.columns), target \(target.rows)×\(target.columns), lengths summing to \(lengths.reduce(0, +))")
        }
        guard epochs >= 0 else { throw CondenseError.invalidArgument("epochs must be >= 0, got \(epochs)") }
        var offsets = [0]
        for l in lengths { offsets.append(offsets.last! + l) }
        var batches: [[Int]] = [], current: [Int] = [], rows = 0
        for s in lengths.indices {
            current.append(s)
            rows += lengths[s]
            if rows >= batchRows { batches.append(current); current = []; rows = 0 }
        }
        if !current.isEmpty { batches.append(current) }
        func rowsOf(_ seqs: [Int]) -> [Int] { seqs.flatMap { Array(offsets[$0]..<offsets[$0 + 1]) } }
        func lossAll(_ stack: [EncoderLayer]) throws -> Double {
            var total = 0.0
            for b in batches {
                let r = rowsOf(b), ls = b.map { lengths[$0] }
                let y = try stackForward(stack, x: gather(input, r), lengths: ls).last!.y
                total += Self.objective(objective, y: y, target: gather(target, r), lengths: ls, h: h).loss
            }
            return total / Double(objective == .hiddenStates ? input.rows * h : lengths.count)
        }
        let before = try lossAll(layers)
        var state = OptimizerState(shapes: layers.flatMap { l in l.linears.flatMap { [$0.weight.count, $0.bias.count] } + [h, h, h, h] })
        var rng = SplitMix64(seed: seed)
        var order = Array(batches.indices)
        for _ in 0..<epochs {
            for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.below(i + 1)) }
            for bi in order {
                let b = batches[bi], r = rowsOf(b)
                let grads = try stackGradients(layers, x: gather(input, r), lengths: b.map { lengths[$0] }, target: gather(target, r),
                                               objective: objective)
                state.step += 1
                for li in layers.indices {
                    var g = grads[li]
                    let base = 12 * li
                    func step(_ l: inout Linear, _ i: Int) {
                        if let mask = l.mask { for j in mask.indices where !mask[j] { g.weights[i][j] = 0 } }
                        state.apply(optimizer, params: &l.weight, grads: g.weights[i], slot: base + 2 * i, scale: 1)
                        state.apply(optimizer, params: &l.bias, grads: g.biases[i], slot: base + 2 * i + 1, scale: 1)
                    }
                    step(&layers[li].qkv, 0)
                    step(&layers[li].attentionOutput, 1)
                    step(&layers[li].intermediate, 2)
                    step(&layers[li].output, 3)
                    state.apply(optimizer, params: &layers[li].gamma1, grads: g.norms[0], slot: base + 8, scale: 1)
                    state.apply(optimizer, params: &layers[li].beta1, grads: g.norms[1], slot: base + 9, scale: 1)
                    state.apply(optimizer, params: &layers[li].gamma2, grads: g.norms[2], slot: base + 10, scale: 1)
                    state.apply(optimizer, params: &layers[li].beta2, grads: g.norms[3], slot: base + 11, scale: 1)
                }
            }
        }
        return (before, try lossAll(layers))
    }
}
