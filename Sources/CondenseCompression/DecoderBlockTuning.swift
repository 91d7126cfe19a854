import CCondenseKernels
import Condense
import CondenseInference
import CondenseTraining
import Foundation

/// Recovery by training, one Llama-family decoder block at a time (RMSNorm, rotary attention
/// with grouped KV heads, SwiGLU):
///
///     u = x + Attn(RMSNorm(x))·Woᵀ,   y = u + (SiLU(h·Wgᵀ) ⊙ h·Wuᵀ)·Wdᵀ,  h = RMSNorm(u)
///
/// Given the block's inputs in the compressed model and the dense model's outputs for the same
/// tokens, Adam fits the kept weights (masks hold pruned ones at zero), the two norms and the
/// Q/K/V biases where the architecture has them, to minimise the mean squared error.
/// Attention is causal within each calibration sequence (all of one length), positions from 0.
///
/// ```swift
/// var block = try DecoderBlockTuning.Block(shape: s, attnNorm: g1, ffnNorm: g2, q: q, k: k, v: v, o: o,
///                                          gate: gate, up: up, down: down)
/// let (before, after) = try DecoderBlockTuning.fit(&block, input: x, sequenceLength: 128, target: teacher, epochs: 2)
/// ```
public enum DecoderBlockTuning {
    /// The sizes and constants of a block.
    public struct Shape: Sendable, Equatable {
        public let hidden, heads, kvHeads, headDim, feedForward: Int
        public let ropeBase: Float, eps: Float
        /// Rotation pairs (i, i + d/2) instead of adjacent ones.
        public let neox: Bool
        /// The rest of the decoder op set (`DecoderConfig`'s switches), for the forward pass of
        /// any architecture; training (``fit(_:input:sequenceLength:target:epochs:batchSequences:optimizer:channelWeights:seed:)``)
        /// takes the Llama block only, where these keep their defaults.
        public var ropeScale: Float = 1
        public var ropeFactors: [Float]? = nil
        public var attentionScale: Float? = nil
        /// Scores become c·tanh(score / c) (Gemma 2); 0: off.
        public var attentionSoftcap: Float = 0
        /// Tokens a query sees, itself included; 0: all earlier ones.
        public var window = 0
        public var activation: FFNActivation = .silu

        /// A decoder block's shapes and its attention's constants.
        public init(hidden: Int, heads: Int, kvHeads: Int, headDim: Int, feedForward: Int, ropeBase: Float, eps: Float, neox: Bool) {
            (self.hidden, self.heads, self.kvHeads, self.headDim, self.feedForward) = (hidden, heads, kvHeads, headDim, feedForward)
            (self.ropeBase, self.eps, self.neox) = (ropeBase, eps, neox)
        }

        /// Q's width (and the attention output's): heads × headDim.
        public var qDim: Int { heads * headDim }
        var isLlama: Bool {
            ropeScale == 1 && ropeFactors == nil && attentionScale == nil && attentionSoftcap == 0 && window == 0 && activation == .silu && qDim == hidden
        }
    }

    /// One decoder block's weights and norms as the tuner trains them.
    public struct Block: Sendable {
        public let shape: Shape
        public var attnNorm: [Float], ffnNorm: [Float]
        public var q, k, v, o, gate, up, down: BlockTuning.Linear
        /// Whether Q, K and V biases train (qwen2 has them; llama's stay zero).
        public let qkvBias: Bool
        /// Per-head RMSNorm of Q and K (qwen3, gemma3), and the norms of the attention and FFN
        /// outputs before their residual adds (gemma3): forward only.
        public var qNorm: [Float]? = nil, kNorm: [Float]? = nil
        public var postAttnNorm: [Float]? = nil, postFFNNorm: [Float]? = nil
        /// Whether ``fit(_:input:sequenceLength:target:epochs:batchSequences:optimizer:channelWeights:seed:)`` can train it.
        public var trainable: Bool { shape.isLlama && qNorm == nil && kNorm == nil && postAttnNorm == nil && postFFNNorm == nil }

        /// - Throws: `CondenseError/shapeMismatch(_:)` naming the part whose size does not fit `shape`.
        public init(shape s: Shape, attnNorm: [Float], ffnNorm: [Float], q: BlockTuning.Linear, k: BlockTuning.Linear,
                    v: BlockTuning.Linear, o: BlockTuning.Linear, gate: BlockTuning.Linear, up: BlockTuning.Linear,
                    down: BlockTuning.Linear, qkvBias: Bool = false) throws {
            let (d, kvd, ff, qd) = (s.hidden, s.kvHeads * s.headDim, s.feedForward, s.qDim)
            guard s.heads % s.kvHeads == 0, s.headDim % 2 == 0 else {
                throw CondenseError.shapeMismatch("decoder block: \(s.heads) heads × \(s.headDim) for width \(d), \(s.kvHeads) KV heads")
            }
            for (name, l, n, kk) in [("q", q, qd, d), ("k", k, kvd, d), ("v", v, kvd, d), ("o", o, d, qd), ("gate", gate, ff, d),
                                     ("up", up, ff, d), ("down", down, d, ff)] where l.n != n || l.k != kk {
                throw CondenseError.shapeMismatch("decoder block \(name): \(l.n)×\(l.k), expected \(n)×\(kk)")
            }
            guard attnNorm.count == d, ffnNorm.count == d else { throw CondenseError.shapeMismatch("decoder block norms: \(attnNorm.count), \(ffnNorm.count) for width \(d)") }
            (shape, self.attnNorm, self.ffnNorm, self.qkvBias) = (s, attnNorm, ffnNorm, qkvBias)
            (self.q, self.k, self.v, self.o, self.gate, self.up, self.down) = (q, k, v, o, gate, up, down)
        }

        public var linears: [BlockTuning.Linear] { [q, k, v, o, gate, up, down] }
    }

    /// What the backward pass needs from the forward one, plus the inputs of every projection
    /// (which the compression pass turns into Gram matrices).
    public struct Pass: Sendable {
        public var h1: [Float] = [], ctx: [Float] = [], h2: [Float] = [], act: [Float] = [], y: [Float] = []
        var inv1: [Float] = [], inv2: [Float] = [], q: [Float] = [], k: [Float] = [], v: [Float] = []
        var probs: [Float] = [], u: [Float] = [], gate: [Float] = [], upv: [Float] = []
    }

    /// Rotary angles for positions 0..<t (the same formula as the decoder's).
    static func rotation(_ s: Shape, _ t: Int) -> (cos: [Float], sin: [Float]) {
        let half = s.headDim / 2
        let freqs = (0..<half).map { powf(s.ropeBase, -2 * Float($0) / Float(s.headDim)) / (s.ropeFactors?[$0] ?? 1) }
        var c = [Float](), sn = [Float]()
        for p in 0..<t { for f in freqs { c.append(cosf(Float(p) * s.ropeScale * f)); sn.append(sinf(Float(p) * s.ropeScale * f)) } }
        return (c, sn)
    }

    /// RMSNorm of each `hd`-float head of each row, in place (QK-norm): the decoder's own kernel.
    static func headNorm(_ a: inout [Float], heads: Int, hd: Int, _ g: [Float], eps: Float) {
        let width = heads * hd
        guard !a.isEmpty else { return }
        a.withUnsafeMutableBufferPointer { p in _ = condense_rmsnorm(p.baseAddress!, width, p.baseAddress!, width, p.count / width, heads, hd, g, eps, 0) }
    }

    /// Rotates (`sign` 1) or un-rotates (−1, the transpose: backward) `heads` heads per row.
    static func rotate(_ a: inout [Float], rows: Int, seqLen t: Int, heads: Int, _ s: Shape, _ r: (cos: [Float], sin: [Float]), sign: Float) {
        let (hd, half) = (s.headDim, s.headDim / 2), width = heads * hd
        a.withUnsafeMutableBufferPointer { p in
            for row in 0..<rows {
                let pos = row % t
                for h in 0..<heads {
                    let base = row * width + h * hd
                    for i in 0..<half {
                        let (ia, ib) = s.neox ? (i, i + half) : (2 * i, 2 * i + 1)
                        let (x0, x1, c, sn) = (p[base + ia], p[base + ib], r.cos[pos * half + i], sign * r.sin[pos * half + i])
                        p[base + ia] = x0 * c - x1 * sn
                        p[base + ib] = x0 * sn + x1 * c
                    }
                }
            }
        }
    }

    static func rmsNorm(_ x: [Float], rows: Int, _ g: [Float], eps: Float) -> (y: [Float], inv: [Float]) {
        let d = g.count
        var y = [Float](repeating: 0, count: x.count), inv = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            var ss: Float = 0
            for j in 0..<d { ss += x[r * d + j] * x[r * d + j] }
            let i = 1 / (ss / Float(d) + eps).squareRoot()
            inv[r] = i
            for j in 0..<d { y[r * d + j] = x[r * d + j] * i * g[j] }
        }
        return (y, inv)
    }

    /// dx and dγ of y = x·inv·γ.
    static func rmsNormBackward(_ dy: [Float], x: [Float], inv: [Float], _ g: [Float]) -> (dx: [Float], dg: [Float]) {
        let d = g.count, rows = inv.count
        var dx = [Float](repeating: 0, count: x.count), dg = [Float](repeating: 0, count: d)
        for r in 0..<rows {
            var dot: Float = 0
            for j in 0..<d { dot += dy[r * d + j] * g[j] * x[r * d + j]; dg[j] += dy[r * d + j] * x[r * d + j] * inv[r] }
            let c = inv[r] * inv[r] * inv[r] / Float(d) * dot
            for j in 0..<d { dx[r * d + j] = g[j] * dy[r * d + j] * inv[r] - x[r * d + j] * c }
        }
        return (dx, dg)
    }

    /// The block on `rows` = sequences × `t` rows of `x`.
    public static func forward(_ b: Block, x: [Float], sequenceLength t: Int) throws -> Pass {
        let s = b.shape
        let (d, hd, kvd, qd) = (s.hidden, s.headDim, s.kvHeads * s.headDim, s.qDim)
        let rows = x.count / d
        guard x.count == rows * d, t >= 1, rows % t == 0 else {
            throw CondenseError.shapeMismatch("decoder block input of \(x.count) floats: not sequences of \(t) rows of \(d)")
        }
        var p = Pass()
        (p.h1, p.inv1) = rmsNorm(x, rows: rows, b.attnNorm, eps: s.eps)
        p.q = try BlockTuning.linear(b.q, p.h1, rows: rows)
        p.k = try BlockTuning.linear(b.k, p.h1, rows: rows)
        p.v = try BlockTuning.linear(b.v, p.h1, rows: rows)
        if let qn = b.qNorm { headNorm(&p.q, heads: s.heads, hd: hd, qn, eps: s.eps) }
        if let kn = b.kNorm { headNorm(&p.k, heads: s.kvHeads, hd: hd, kn, eps: s.eps) }
        let rot = rotation(s, t)
        rotate(&p.q, rows: rows, seqLen: t, heads: s.heads, s, rot, sign: 1)
        rotate(&p.k, rows: rows, seqLen: t, heads: s.kvHeads, s, rot, sign: 1)
        let group = s.heads / s.kvHeads, scale = s.attentionScale ?? 1 / Float(hd).squareRoot(), seqs = rows / t
        let (window, cap) = (s.window, s.attentionSoftcap)
        p.probs = [Float](repeating: 0, count: seqs * s.heads * t * t)
        p.ctx = [Float](repeating: 0, count: rows * qd)
        p.q.withUnsafeBufferPointer { qp in p.k.withUnsafeBufferPointer { kp in p.v.withUnsafeBufferPointer { vp in
            p.probs.withUnsafeMutableBufferPointer { pp in p.ctx.withUnsafeMutableBufferPointer { cp in
                for sq in 0..<seqs {
                    for h in 0..<s.heads {
                        let g = h / group
                        let prob = pp.baseAddress! + (sq * s.heads + h) * t * t
                        for i in 0..<t {
                            let qi = qp.baseAddress! + (sq * t + i) * qd + h * hd
                            let j0 = window > 0 ? max(0, i + 1 - window) : 0
                            var mx = -Float.infinity
                            for j in j0...i {
                                let kj = kp.baseAddress! + (sq * t + j) * kvd + g * hd
                                var dot: Float = 0
                                for e in 0..<hd { dot += qi[e] * kj[e] }
                                var score = dot * scale
                                if cap > 0 { score = cap * tanhf(score / cap) }
                                prob[i * t + j] = score
                                mx = max(mx, score)
                            }
                            var sum: Float = 0
                            for j in j0...i { let e = expf(prob[i * t + j] - mx); prob[i * t + j] = e; sum += e }
                            let ci = cp.baseAddress! + (sq * t + i) * qd + h * hd
                            for j in j0...i {
                                prob[i * t + j] /= sum
                                let w = prob[i * t + j]
                                let vj = vp.baseAddress! + (sq * t + j) * kvd + g * hd
                                for e in 0..<hd { ci[e] += w * vj[e] }
                            }
                        }
                    }
                }
            } }
        } } }
        p.u = try BlockTuning.linear(b.o, p.ctx, rows: rows)
        if let pn = b.postAttnNorm { p.u = rmsNorm(p.u, rows: rows, pn, eps: s.eps).y }
        for i in p.u.indices { p.u[i] += x[i] }
        (p.h2, p.inv2) = rmsNorm(p.u, rows: rows, b.ffnNorm, eps: s.eps)
        p.gate = try BlockTuning.linear(b.gate, p.h2, rows: rows)
        p.upv = try BlockTuning.linear(b.up, p.h2, rows: rows)
        p.act = [Float](repeating: 0, count: p.gate.count)
        switch s.activation {
        case .silu: for i in p.act.indices { let a = p.gate[i]; p.act[i] = a / (1 + expf(-a)) * p.upv[i] }
        case .geluTanh: for i in p.act.indices { p.act[i] = condense_gelu_tanh_f16(p.gate[i]) * p.upv[i] }
        }
        p.y = try BlockTuning.linear(b.down, p.act, rows: rows)
        if let pn = b.postFFNNorm { p.y = rmsNorm(p.y, rows: rows, pn, eps: s.eps).y }
        for i in p.y.indices { p.y[i] += p.u[i] }
        return p
    }

    /// Gradients, in the order of `Block.linears` (weights then biases), then the two norms.
    public struct Gradients: Sendable {
        public var weights: [[Float]] = [], biases: [[Float]] = [], attnNorm: [Float] = [], ffnNorm: [Float] = []
        public var input: [Float]? = nil
    }

    /// Backward from `dy` (the loss gradient at the block's output).
    public static func backward(_ b: Block, x: [Float], sequenceLength t: Int, pass p: Pass, dy: [Float], input: Bool = false) throws -> Gradients {
        let s = b.shape
        let (d, hd, kvd) = (s.hidden, s.headDim, s.kvHeads * s.headDim)
        let rows = x.count / d, seqs = rows / t, group = s.heads / s.kvHeads, scale = 1 / Float(hd).squareRoot()
        var g = Gradients()
        let (dwd, dbd) = try BlockTuning.linearGradients(dy, p.act, rows: rows, n: b.down.n, k: b.down.k)
        let da = try BlockTuning.inputGradient(dy, b.down, rows: rows)
        var dgate = [Float](repeating: 0, count: da.count), dup = dgate
        for i in da.indices {
            let a = p.gate[i], sg = 1 / (1 + expf(-a))
            dup[i] = da[i] * a * sg
            dgate[i] = da[i] * p.upv[i] * sg * (1 + a * (1 - sg))
        }
        let (dwg, dbg) = try BlockTuning.linearGradients(dgate, p.h2, rows: rows, n: b.gate.n, k: b.gate.k)
        let (dwu, dbu) = try BlockTuning.linearGradients(dup, p.h2, rows: rows, n: b.up.n, k: b.up.k)
        var dh2 = try BlockTuning.inputGradient(dgate, b.gate, rows: rows)
        let dh2u = try BlockTuning.inputGradient(dup, b.up, rows: rows)
        for i in dh2.indices { dh2[i] += dh2u[i] }
        let (duN, dffn) = rmsNormBackward(dh2, x: p.u, inv: p.inv2, b.ffnNorm)
        var du = dy
        for i in du.indices { du[i] += duN[i] }
        let (dwo, dbo) = try BlockTuning.linearGradients(du, p.ctx, rows: rows, n: b.o.n, k: b.o.k)
        let dctx = try BlockTuning.inputGradient(du, b.o, rows: rows)
        // Attention: dV = Pᵀ·dC, dP = dC·Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dQ = dS·K/√d, dK = dSᵀ·Q/√d;
        // the heads of a KV group add into its K and V.
        var dq = [Float](repeating: 0, count: rows * d), dk = [Float](repeating: 0, count: rows * kvd), dv = dk
        var ds = [Float](repeating: 0, count: t)
        p.q.withUnsafeBufferPointer { qp in p.k.withUnsafeBufferPointer { kp in p.v.withUnsafeBufferPointer { vp in
            p.probs.withUnsafeBufferPointer { pp in dctx.withUnsafeBufferPointer { dc in
                dq.withUnsafeMutableBufferPointer { dqp in dk.withUnsafeMutableBufferPointer { dkp in dv.withUnsafeMutableBufferPointer { dvp in
                    for sq in 0..<seqs {
                        for h in 0..<s.heads {
                            let gk = h / group
                            let prob = pp.baseAddress! + (sq * s.heads + h) * t * t
                            for i in 0..<t {
                                let dci = dc.baseAddress! + (sq * t + i) * d + h * hd
                                var dot: Float = 0
                                for j in 0...i {
                                    let vj = vp.baseAddress! + (sq * t + j) * kvd + gk * hd
                                    let dvj = dvp.baseAddress! + (sq * t + j) * kvd + gk * hd
                                    let w = prob[i * t + j]
                                    var dpv: Float = 0
                                    for e in 0..<hd { dpv += dci[e] * vj[e]; dvj[e] += w * dci[e] }
                                    ds[j] = dpv
                                    dot += dpv * w
                                }
                                let qi = qp.baseAddress! + (sq * t + i) * d + h * hd
                                let dqi = dqp.baseAddress! + (sq * t + i) * d + h * hd
                                for j in 0...i {
                                    let gs = prob[i * t + j] * (ds[j] - dot) * scale
                                    if gs == 0 { continue }
                                    let kj = kp.baseAddress! + (sq * t + j) * kvd + gk * hd
                                    let dkj = dkp.baseAddress! + (sq * t + j) * kvd + gk * hd
                                    for e in 0..<hd { dqi[e] += gs * kj[e]; dkj[e] += gs * qi[e] }
                                }
                            }
                        }
                    }
                } } }
            } }
        } } }
        let rot = rotation(s, t)
        rotate(&dq, rows: rows, seqLen: t, heads: s.heads, s, rot, sign: -1)
        rotate(&dk, rows: rows, seqLen: t, heads: s.kvHeads, s, rot, sign: -1)
        let (dwq, dbq) = try BlockTuning.linearGradients(dq, p.h1, rows: rows, n: b.q.n, k: b.q.k)
        let (dwk, dbk) = try BlockTuning.linearGradients(dk, p.h1, rows: rows, n: b.k.n, k: b.k.k)
        let (dwv, dbv) = try BlockTuning.linearGradients(dv, p.h1, rows: rows, n: b.v.n, k: b.v.k)
        var dh1 = try BlockTuning.inputGradient(dq, b.q, rows: rows)
        for (dd, l) in [(dk, b.k), (dv, b.v)] {
            let part = try BlockTuning.inputGradient(dd, l, rows: rows)
            for i in dh1.indices { dh1[i] += part[i] }
        }
        let (dxN, dattn) = rmsNormBackward(dh1, x: x, inv: p.inv1, b.attnNorm)
        g.weights = [dwq, dwk, dwv, dwo, dwg, dwu, dwd]
        g.biases = [dbq, dbk, dbv, dbo, dbg, dbu, dbd]
        (g.attnNorm, g.ffnNorm) = (dattn, dffn)
        if input { g.input = zip(du, dxN).map { $0 + $1 } }
        return g
    }

    /// The mean squared error between the block's output for `input` and `target`, each channel
    /// weighted by `channelWeights` when given.
    public static func loss(_ b: Block, input: [Float], sequenceLength t: Int, target: [Float], channelWeights w: [Float]? = nil) throws -> Double {
        try meanSquaredError(forward(b, x: input, sequenceLength: t).y, target, hidden: b.shape.hidden, channelWeights: w)
    }

    /// The (channel-weighted) mean squared error of outputs `y` already computed.
    public static func meanSquaredError(_ y: [Float], _ target: [Float], hidden d: Int, channelWeights w: [Float]? = nil) throws -> Double {
        guard y.count == target.count else { throw CondenseError.shapeMismatch("target of \(target.count) for \(y.count) outputs") }
        var s = 0.0
        for i in y.indices { let e = Double(y[i] - target[i]); s += e * e * Double(w?[i % d] ?? 1) }
        return s / Double(max(y.count, 1))
    }

    /// Channel weights that make every channel of `target` count alike: 1 / its mean square,
    /// scaled to mean 1. A Llama residual stream carries a few channels hundreds of times larger
    /// than the rest; a plain mean squared error would fit those and little else, while the next
    /// block sees the stream through RMSNorm.
    public static func balancedChannelWeights(_ target: [Float], hidden d: Int) -> [Float] {
        let rows = target.count / d
        var ms = [Double](repeating: 0, count: d)
        for r in 0..<rows { for j in 0..<d { ms[j] += Double(target[r * d + j] * target[r * d + j]) } }
        let floor = ms.reduce(0, +) / Double(d) * 1e-4
        let inv = ms.map { 1 / max($0, floor) }
        let mean = inv.reduce(0, +) / Double(d)
        return inv.map { Float($0 / mean) }
    }

    /// Fits the block: mini-batches of `batchSequences` whole sequences, shuffled each epoch.
    /// Returns the loss over all of `input` before and after.
    /// - Throws: `CondenseError/shapeMismatch(_:)` when input and target are not whole sequences of the block's width.
    public static func fit(_ b: inout Block, input: [Float], sequenceLength t: Int, target: [Float], epochs: Int,
                           batchSequences: Int = 4, optimizer: Optimizer = .adam(learningRate: 1e-4), channelWeights cw: [Float]? = nil,
                           seed: UInt64 = 1) throws
        -> (before: Double, after: Double) {
        let d = b.shape.hidden, seqRows = t * d
        guard input.count == target.count, input.count % seqRows == 0, !input.isEmpty else {
            throw CondenseError.shapeMismatch("decoder block fit: input \(input.count), target \(target.count) floats, sequences of \(t)×\(d)")
        }
        guard epochs >= 0, batchSequences >= 1 else { throw CondenseError.invalidArgument("epochs \(epochs), batch \(batchSequences)") }
        guard b.trainable || epochs == 0 else {
            throw CondenseError.invalidArgument("block recovery trains the Llama block (RMSNorm, SwiGLU, plain attention); this block has QK-norm, post-norms, GELU, a window or a scaled RoPE")
        }
        let seqs = input.count / seqRows
        if let cw, cw.count != d { throw CondenseError.shapeMismatch("\(cw.count) channel weights for width \(d)") }
        let before = try loss(b, input: input, sequenceLength: t, target: target, channelWeights: cw)
        var state = OptimizerState(shapes: b.linears.flatMap { [$0.weight.count, $0.bias.count] } + [d, d])
        var rng = SplitMix64(seed: seed)
        var order = Array(0..<seqs)
        for _ in 0..<epochs {
            for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.below(i + 1)) }
            var start = 0
            while start < seqs {
                let batch = order[start..<min(start + batchSequences, seqs)]
                start += batchSequences
                var x = [Float](), tg = [Float]()
                x.reserveCapacity(batch.count * seqRows)
                for sq in batch { x += input[(sq * seqRows)..<((sq + 1) * seqRows)]; tg += target[(sq * seqRows)..<((sq + 1) * seqRows)] }
                let p = try forward(b, x: x, sequenceLength: t)
                let sc = 2 / Float(p.y.count)
                var gr = try backward(b, x: x, sequenceLength: t, pass: p, dy: (0..<p.y.count).map { sc * (p.y[$0] - tg[$0]) * (cw?[$0 % d] ?? 1) })
                state.step += 1
                func step(_ l: inout BlockTuning.Linear, _ i: Int, bias: Bool) {
                    if let mask = l.mask { for j in mask.indices where !mask[j] { gr.weights[i][j] = 0 } }
                    state.apply(optimizer, params: &l.weight, grads: gr.weights[i], slot: 2 * i, scale: 1)
                    if bias { state.apply(optimizer, params: &l.bias, grads: gr.biases[i], slot: 2 * i + 1, scale: 1) }
                }
                step(&b.q, 0, bias: b.qkvBias); step(&b.k, 1, bias: b.qkvBias); step(&b.v, 2, bias: b.qkvBias)
                step(&b.o, 3, bias: false); step(&b.gate, 4, bias: false); step(&b.up, 5, bias: false); step(&b.down, 6, bias: false)
                state.apply(optimizer, params: &b.attnNorm, grads: gr.attnNorm, slot: 14, scale: 1)
                state.apply(optimizer, params: &b.ffnNorm, grads: gr.ffnNorm, slot: 15, scale: 1)
            }
        }
        return (before, try loss(b, input: input, sequenceLength: t, target: target, channelWeights: cw))
    }
}
