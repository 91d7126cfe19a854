import Condense
import CondenseTraining
import Foundation

/// Recovery by training, one residual block at a time: the post-LayerNorm blocks of a BERT
/// layer, `y = LayerNorm(r + f(x))` with `f` one linear (attention output: `x·Wᵀ + b`) or two
/// with GELU between (feed-forward: `GELU(x·W₁ᵀ + b₁)·W₂ᵀ + b₂`). Given the block's inputs in
/// the pruned model and the dense model's outputs for the same tokens, Adam fits the kept
/// weights (masks hold the pruned ones at zero), the biases and the LayerNorm to minimise the
/// mean squared error. Tokens are independent in these blocks, so mini-batches are shuffled
/// token rows. Layer-wise reconstruction (``Reconstruction``) matches each projection alone;
/// this matches the block's output, through the nonlinearity and the norm, and corrects the
/// error the pruned earlier layers pass on.
///
/// ```swift
/// var block = BlockTuning.Block(linears: [w1, w2], gamma: g, beta: b, eps: 1e-12)
/// let (before, after) = try BlockTuning.fit(&block, input: h, residual: h, target: teacherOut, epochs: 8)
/// ```
public enum BlockTuning {
    /// One linear of a block: row-major `W[n, k]`, its bias, and an optional keep-mask.
    public struct Linear: Sendable {
        public var weight: [Float]
        public var bias: [Float]
        public let n: Int
        public let k: Int
        /// `true` where the weight may move; nil: every weight trains.
        public let mask: [Bool]?

        /// - Throws: `CondenseError/shapeMismatch(_:)` when the counts do not match `n × k`.
        public init(weight: [Float], bias: [Float], n: Int, k: Int, mask: [Bool]? = nil) throws {
            guard weight.count == n * k, bias.count == n, mask.map({ $0.count == n * k }) ?? true else {
                throw CondenseError.shapeMismatch("block linear \(n)×\(k): \(weight.count) weights, \(bias.count) biases, \(mask?.count ?? n * k) mask entries")
            }
            (self.weight, self.bias, self.n, self.k, self.mask) = (weight, bias, n, k, mask)
        }

        /// The layer's weights densified, with the mask of its non-zeros (a pruned layer keeps
        /// its pattern; a dense one trains every weight).
        public init(_ layer: LinearLayer, keepZeros: Bool) throws {
            let w = layer.weights.densified().withUnsafeBufferPointer(Array.init)
            try self.init(weight: w, bias: layer.bias ?? [Float](repeating: 0, count: layer.outFeatures),
                          n: layer.outFeatures, k: layer.inFeatures, mask: keepZeros ? w.map { $0 != 0 } : nil)
        }
    }

    /// `LayerNorm(r + f(x))`: one or two linears (GELU between two), then the norm.
    public struct Block: Sendable {
        public var linears: [Linear]
        public var gamma: [Float]
        public var beta: [Float]
        public let eps: Float

        /// - Throws: `CondenseError/invalidArgument(_:)` unless there are one or two linears
        ///   that chain (`linears[1].k == linears[0].n`) and the norm has `linears.last.n` entries.
        public init(linears: [Linear], gamma: [Float], beta: [Float], eps: Float) throws {
            guard (1...2).contains(linears.count) else {
                throw CondenseError.invalidArgument("a block has one or two linears, got \(linears.count)")
            }
            if linears.count == 2, linears[1].k != linears[0].n {
                throw CondenseError.invalidArgument("block linears do not chain: \(linears[0].n) outputs into \(linears[1].k) inputs")
            }
            guard gamma.count == linears.last!.n, beta.count == linears.last!.n else {
                throw CondenseError.invalidArgument("block norm has \(gamma.count)/\(beta.count) entries, the block \(linears.last!.n) outputs")
            }
            (self.linears, self.gamma, self.beta, self.eps) = (linears, gamma, beta, eps)
        }

        var inFeatures: Int { linears[0].k }
        var outFeatures: Int { linears.last!.n }
    }

    /// Fits `block` so that `LayerNorm(residual + f(input))` approaches `target`, row by row.
    /// Returns the mean squared error per element before and after.
    /// - Throws: `CondenseError/shapeMismatch(_:)` when the matrices do not have the same rows
    ///   or the block's widths; `CondenseError/invalidArgument(_:)` for epochs < 0 or a batch < 1.
    public static func fit(_ block: inout Block, input: Matrix<Float>, residual: Matrix<Float>, target: Matrix<Float>,
                           epochs: Int, batchRows: Int = 256, optimizer: Optimizer = .adam(learningRate: 1e-4),
                           seed: UInt64 = 1) throws -> (before: Double, after: Double) {
        let rows = input.rows, h = block.outFeatures
        guard input.columns == block.inFeatures, residual.columns == h, target.columns == h,
              residual.rows == rows, target.rows == rows else {
            throw CondenseError.shapeMismatch("block \(block.inFeatures)→\(h): input \(input.rows)×\(input.columns), residual \(residual.rows)×\(residual.columns), target \(target.rows)×\(target.columns)")
        }
        guard epochs >= 0 else { throw CondenseError.invalidArgument("epochs must be >= 0, got \(epochs)") }
        guard batchRows >= 1 else { throw CondenseError.invalidArgument("batch rows must be >= 1, got \(batchRows)") }
        let before = try loss(block, input: input, residual: residual, target: target)
        var state = OptimizerState(shapes: block.linears.flatMap { [$0.weight.count, $0.bias.count] } + [h, h])
        var order = Array(0..<rows)
        var rng = SplitMix64(seed: seed)
        for _ in 0..<epochs {
            for i in stride(from: rows - 1, to: 0, by: -1) { order.swapAt(i, rng.below(i + 1)) }
            for start in stride(from: 0, to: rows, by: batchRows) {
                let idx = Array(order[start..<min(start + batchRows, rows)])
                let x = gather(input, idx), r = gather(residual, idx), t = gather(target, idx)
                var g = try gradients(block, x: x, residual: r, target: t, rows: idx.count)
                state.step += 1
                var slot = 0
                for l in block.linears.indices {
                    if let mask = block.linears[l].mask { for j in mask.indices where !mask[j] { g.weights[l][j] = 0 } }
                    state.apply(optimizer, params: &block.linears[l].weight, grads: g.weights[l], slot: slot, scale: 1)
                    state.apply(optimizer, params: &block.linears[l].bias, grads: g.biases[l], slot: slot + 1, scale: 1)
                    slot += 2
                }
                state.apply(optimizer, params: &block.gamma, grads: g.gamma, slot: slot, scale: 1)
                state.apply(optimizer, params: &block.beta, grads: g.beta, slot: slot + 1, scale: 1)
            }
        }
        return (before, try loss(block, input: input, residual: residual, target: target))
    }

    /// Mean squared error per element of the block's output against `target`.
    public static func loss(_ block: Block, input: Matrix<Float>, residual: Matrix<Float>, target: Matrix<Float>) throws -> Double {
        let rows = input.rows, h = block.outFeatures
        var total = 0.0
        for start in stride(from: 0, to: rows, by: 512) {
            let idx = Array(start..<min(start + 512, rows))
            let f = try forward(block, x: gather(input, idx), residual: gather(residual, idx), rows: idx.count)
            let t = gather(target, idx)
            for i in 0..<(idx.count * h) { let d = Double(f.y[i] - t[i]); total += d * d }
        }
        return rows == 0 ? 0 : total / Double(rows * h)
    }

    /// Forward pass over `rows` rows, keeping what the backward pass needs.
    struct Pass {
        var pre: [Float] = []    // z₁ of a two-linear block
        var hidden: [Float] = [] // GELU(z₁)
        var xhat: [Float] = []
        var invStd: [Float] = []
        var y: [Float] = []
    }

    static func forward(_ b: Block, x: [Float], residual: [Float], rows: Int) throws -> Pass {
        var p = Pass()
        var input = x
        if b.linears.count == 2 {
            let l = b.linears[0]
            p.pre = try linear(l, input, rows: rows)
            p.hidden = p.pre.map { Activation.gelu.apply($0) }
            input = p.hidden
        }
        let last = b.linears.last!
        var u = try linear(last, input, rows: rows)
        for i in u.indices { u[i] += residual[i] }
        (p.y, p.xhat, p.invStd) = layerNorm(u, rows: rows, h: b.outFeatures, gamma: b.gamma, beta: b.beta, eps: b.eps)
        return p
    }

    struct Gradients {
        var weights: [[Float]] = []
        var biases: [[Float]] = []
        var gamma: [Float] = []
        var beta: [Float] = []
    }

    /// Gradients of the mean squared error per element over these rows.
    static func gradients(_ b: Block, x: [Float], residual: [Float], target: [Float], rows: Int) throws -> Gradients {
        let p = try forward(b, x: x, residual: residual, rows: rows)
        let h = b.outFeatures
        var g = Gradients()
        let scale = 2 / Float(rows * h)
        let dy = (0..<(rows * h)).map { scale * (p.y[$0] - target[$0]) }
        let du: [Float]
        (du, g.gamma, g.beta) = layerNormBackward(dy, xhat: p.xhat, invStd: p.invStd, gamma: b.gamma, rows: rows, h: h)
        // Last linear: dW = duᵀ·a, db = Σ du, da = du·W.
        let last = b.linears.last!
        let (dw, db) = try linearGradients(du, b.linears.count == 2 ? p.hidden : x, rows: rows, n: last.n, k: last.k)
        (g.weights, g.biases) = ([dw], [db])
        if b.linears.count == 2 {
            var da = try inputGradient(du, last, rows: rows)
            geluBackward(&da, pre: p.pre)
            let (dw1, db1) = try linearGradients(da, x, rows: rows, n: b.linears[0].n, k: b.linears[0].k)
            g.weights.insert(dw1, at: 0)
            g.biases.insert(db1, at: 0)
        }
        return g
    }

    /// Row-wise LayerNorm: `y = γ·x̂ + β`, with x̂ and 1/σ per row kept for the backward pass.
    static func layerNorm(_ u: [Float], rows: Int, h: Int, gamma: [Float], beta: [Float], eps: Float)
        -> (y: [Float], xhat: [Float], invStd: [Float]) {
        var y = [Float](repeating: 0, count: rows * h), xhat = y, invStd = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            var mean: Float = 0, v: Float = 0
            for j in 0..<h { mean += u[r * h + j] }
            mean /= Float(h)
            for j in 0..<h { let d = u[r * h + j] - mean; v += d * d }
            let inv = 1 / (v / Float(h) + eps).squareRoot()
            invStd[r] = inv
            for j in 0..<h {
                let xh = (u[r * h + j] - mean) * inv
                xhat[r * h + j] = xh
                y[r * h + j] = gamma[j] * xh + beta[j]
            }
        }
        return (y, xhat, invStd)
    }

    /// LayerNorm's backward: `du = (1/σ)(d̂ − mean(d̂) − x̂·mean(d̂·x̂))` with `d̂ = dy·γ`.
    static func layerNormBackward(_ dy: [Float], xhat: [Float], invStd: [Float], gamma: [Float], rows: Int, h: Int)
        -> (du: [Float], dgamma: [Float], dbeta: [Float]) {
        var du = [Float](repeating: 0, count: rows * h)
        var dgamma = [Float](repeating: 0, count: h), dbeta = dgamma, dxhat = dgamma
        for r in 0..<rows {
            var sumD: Float = 0, sumDX: Float = 0
            for j in 0..<h {
                let d = dy[r * h + j]
                dgamma[j] += d * xhat[r * h + j]
                dbeta[j] += d
                dxhat[j] = d * gamma[j]
                sumD += dxhat[j]
                sumDX += dxhat[j] * xhat[r * h + j]
            }
            let (meanD, meanDX) = (sumD / Float(h), sumDX / Float(h))
            for j in 0..<h { du[r * h + j] = invStd[r] * (dxhat[j] - meanD - xhat[r * h + j] * meanDX) }
        }
        return (du, dgamma, dbeta)
    }

    /// `d ← d ⊙ GELU'(z)` with GELU' = Φ(z) + z·φ(z).
    static func geluBackward(_ d: inout [Float], pre z: [Float]) {
        for i in d.indices {
            let cdf = 0.5 * (1 + erff(z[i] * 0.707_106_781_186_547_52))
            let pdf = expf(-0.5 * z[i] * z[i]) * 0.398_942_280_401_432_7
            d[i] *= cdf + z[i] * pdf
        }
    }

    /// dW = dyᵀ·x and db = Σ dy for a linear with `n` outputs and `k` inputs.
    static func linearGradients(_ dy: [Float], _ x: [Float], rows: Int, n: Int, k: Int) throws -> (dw: [Float], db: [Float]) {
        var dw = [Float](repeating: 0, count: n * k)
        try dy.withUnsafeBufferPointer { d in try x.withUnsafeBufferPointer { xp in try dw.withUnsafeMutableBufferPointer { w in
            try TrainGEMM.gradWeight(d.baseAddress!, m: rows, n: n, xp.baseAddress!, k: k, into: w.baseAddress!) } } }
        return (dw, columnSums(dy, rows: rows, columns: n))
    }

    /// dx = dy·W.
    static func inputGradient(_ dy: [Float], _ l: Linear, rows: Int) throws -> [Float] {
        var dx = [Float](repeating: 0, count: rows * l.k)
        try dy.withUnsafeBufferPointer { d in try l.weight.withUnsafeBufferPointer { w in try dx.withUnsafeMutableBufferPointer { o in
            try TrainGEMM.gradInput(d.baseAddress!, m: rows, n: l.n, w.baseAddress!, k: l.k, into: o.baseAddress!) } } }
        return dx
    }

    static func linear(_ l: Linear, _ x: [Float], rows: Int) throws -> [Float] {
        var y = [Float](repeating: 0, count: rows * l.n)
        try x.withUnsafeBufferPointer { xp in try l.weight.withUnsafeBufferPointer { w in try l.bias.withUnsafeBufferPointer { bp in
            try y.withUnsafeMutableBufferPointer { yp in
                try TrainGEMM.forward(xp.baseAddress!, m: rows, k: l.k, w.baseAddress!, n: l.n, bias: bp.baseAddress!, into: yp.baseAddress!)
            } } } }
        return y
    }

    static func columnSums(_ a: [Float], rows: Int, columns: Int) -> [Float] {
        var s = [Float](repeating: 0, count: columns)
        for r in 0..<rows { for c in 0..<columns { s[c] += a[r * columns + c] } }
        return s
    }

    static func gather(_ m: Matrix<Float>, _ rows: [Int]) -> [Float] {
        let c = m.columns
        var out = [Float](repeating: 0, count: rows.count * c)
        m.withUnsafeBufferPointer { p in
            for (i, r) in rows.enumerated() { for j in 0..<c { out[i * c + j] = p[r * c + j] } }
        }
        return out
    }
}

