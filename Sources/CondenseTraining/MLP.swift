import Condense

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One trainable fully connected layer, `y = act(x · Wᵀ + b)`.
public struct DenseLayer: Sendable, Equatable {
    /// `[outFeatures, inFeatures]`, row-major (the layout every Condense format starts from).
    public var weight: Matrix<Float>
    public var bias: [Float]
    public var activation: Activation

    public var inFeatures: Int { weight.columns }
    public var outFeatures: Int { weight.rows }

    /// - Throws: `CondenseError/invalidModel(_:)` when the bias length is not the output count.
    public init(weight: Matrix<Float>, bias: [Float], activation: Activation) throws {
        guard bias.count == weight.rows else {
            throw CondenseError.invalidModel("bias has \(bias.count) values for \(weight.rows) outputs")
        }
        self.weight = weight
        self.bias = bias
        self.activation = activation
    }
}

/// A multilayer perceptron trained on Condense's own kernels: hidden layers with one activation,
/// the last layer linear (its outputs are logits).
///
/// ```swift
/// var model = try MLP(sizes: [784, 256, 10], hidden: .relu, seed: 1)
/// let history = try Trainer.train(&model, on: train, options: TrainingOptions(epochs: 3))
/// let logits = try model.logits(x)                                  // [rows, 10]
/// ```
public struct MLP: Sendable, Equatable {
    public var layers: [DenseLayer]

    /// Layers of the given sizes (`[in, hidden…, out]`), initialised He-uniform
    /// (U(±√(6/fan_in))) from `seed`, biases zero.
    /// - Throws: `CondenseError/invalidModel(_:)` for fewer than two sizes or a size below 1.
    public init(sizes: [Int], hidden: Activation = .relu, seed: UInt64) throws {
        guard sizes.count >= 2, sizes.allSatisfy({ $0 >= 1 }) else {
            throw CondenseError.invalidModel("an MLP needs at least two sizes, all >= 1; got \(sizes)")
        }
        var rng = SplitMix64(seed: seed)
        layers = try (0..<(sizes.count - 1)).map { l in
            let (fanIn, fanOut) = (sizes[l], sizes[l + 1])
            let bound = (6 / Float(fanIn)).squareRoot()
            let w = try Matrix<Float>(rows: fanOut, columns: fanIn) { _, _ in rng.uniform(-bound, bound) }
            return try DenseLayer(weight: w, bias: [Float](repeating: 0, count: fanOut),
                                  activation: l == sizes.count - 2 ? .none : hidden)
        }
    }

    /// - Throws: `CondenseError/invalidModel(_:)` when consecutive layers do not chain.
    public init(layers: [DenseLayer]) throws {
        guard !layers.isEmpty else { throw CondenseError.invalidModel("an MLP needs at least one layer") }
        for i in 1..<layers.count where layers[i].inFeatures != layers[i - 1].outFeatures {
            throw CondenseError.invalidModel(
                "layer \(i) takes \(layers[i].inFeatures) inputs but layer \(i - 1) gives \(layers[i - 1].outFeatures)")
        }
        self.layers = layers
    }

    public var inFeatures: Int { layers[0].inFeatures }
    public var outFeatures: Int { layers[layers.count - 1].outFeatures }
    /// `[in, hidden…, out]`.
    public var sizes: [Int] { [inFeatures] + layers.map(\.outFeatures) }
    public var parameterCount: Int { layers.reduce(0) { $0 + $1.weight.count + $1.bias.count } }

    /// The logits for `x` (`[rows, inFeatures]`) in f32, on the native GEMM.
    /// - Throws: `CondenseError/shapeMismatch(_:)` for a wrong column count.
    public func logits(_ x: Matrix<Float>, fakeQuant: FakeQuantization? = nil) throws -> Matrix<Float> {
        guard x.columns == inFeatures else {
            throw CondenseError.shapeMismatch("input has \(x.columns) columns, the model takes \(inFeatures)")
        }
        let pass = try ForwardPass(self, input: x.elements, rows: x.rows, fakeQuant: fakeQuant)
        return try Matrix(rows: x.rows, columns: outFeatures, elements: pass.output)
    }
}

/// Simulated quantization in the forward pass (quantization-aware training), with exactly the
/// arithmetic of Condense's int8 runtime so the exported model predicts what the trained one did:
/// weights symmetric per output channel (`s = max|w|/127`, round half to even, clamp ±127);
/// activations, optionally, asymmetric u8 per row as the int8 kernels quantize them at run time
/// (`s = (max(0, max x) − min(0, min x))/255`, `z = rint(−lo/s)`). int4 weights use symmetric
/// groups along K (`s = max|w|/7`, clamp −8…7), as `Int4Weights` does. Gradients pass straight
/// through (STE); min–max ranges never clip, so the STE is exact outside rounding.
public struct FakeQuantization: Sendable, Equatable {
    /// The grid weights are rounded to in training: int8 per channel or int4 in groups.
    public enum Weights: Sendable, Equatable {
        case int8
        case int4(group: Int)
    }
    public var weights: Weights
    public var activations: Bool

    /// Fake quantization of weights (int8 per channel or int4 in groups) and, optionally, of activations.
    public init(weights: Weights = .int8, activations: Bool = true) {
        self.weights = weights
        self.activations = activations
    }

    /// `w` rounded to the grid the exported format stores.
    public func quantizeWeights(_ w: [Float], rows: Int, columns: Int) -> [Float] {
        var out = w
        switch weights {
        case .int8:
            for r in 0..<rows {
                var a: Float = 0
                for c in 0..<columns where w[r * columns + c].isFinite { a = max(a, abs(w[r * columns + c])) }
                let s: Float = a > 0 ? a / 127 : 1
                for c in 0..<columns {
                    let q = (w[r * columns + c] / s).rounded(.toNearestOrEven)
                    out[r * columns + c] = (q.isNaN ? 0 : max(-127, min(127, q))) * s
                }
            }
        case let .int4(group):
            for r in 0..<rows {
                var g0 = 0
                while g0 < columns {
                    let g1 = min(g0 + group, columns)
                    var a: Float = 0
                    for c in g0..<g1 where w[r * columns + c].isFinite { a = max(a, abs(w[r * columns + c])) }
                    let s: Float = a > 0 ? a / 7 : 1
                    for c in g0..<g1 {
                        let q = (w[r * columns + c] / s).rounded(.toNearestOrEven)
                        out[r * columns + c] = (q.isNaN ? 0 : max(-8, min(7, q))) * s
                    }
                    g0 = g1
                }
            }
        }
        return out
    }

    /// Each row of `x` rounded to its dynamic u8 grid, as the int8 kernels do per call.
    public static func quantizeRows(_ x: inout [Float], rows: Int, columns: Int) {
        x.withUnsafeMutableBufferPointer { p in
            for i in 0..<rows {
                let row = p.baseAddress! + i * columns
                var lo: Float = 0, hi: Float = 0
                for c in 0..<columns {
                    let v = row[c]
                    if v < lo && v > -.infinity { lo = v }
                    if v > hi && v < .infinity { hi = v }
                }
                let s: Float = hi > lo ? (hi - lo) / 255 : 1
                let z = min(255, max(0, (-lo / s).rounded(.toNearestOrEven)))
                let inv = 1 / s
                for c in 0..<columns {
                    var q = (row[c] * inv).rounded(.toNearestOrEven) + z
                    q = q.isNaN ? z : min(255, max(0, q))
                    row[c] = (q - z) * s
                }
            }
        }
    }
}

/// One forward pass with what the backward pass needs.
struct ForwardPass {
    /// Input of each layer as the GEMM saw it (after activation fake-quantization).
    var inputs: [[Float]] = []
    /// Weights each layer used (fake-quantized under QAT, else the layer's own).
    var weights: [[Float]] = []
    /// Pre-activation of each layer.
    var pre: [[Float]] = []
    var output: [Float] = []
    let rows: Int

    init(_ model: MLP, input: [Float], rows: Int, fakeQuant: FakeQuantization?) throws {
        self.rows = rows
        var x = input
        for layer in model.layers {
            let (n, k) = (layer.outFeatures, layer.inFeatures)
            var w = layer.weight.elements
            if let fq = fakeQuant {
                w = fq.quantizeWeights(w, rows: n, columns: k)
                if fq.activations { FakeQuantization.quantizeRows(&x, rows: rows, columns: k) }
            }
            var z = [Float](repeating: 0, count: rows * n)
            try x.withUnsafeBufferPointer { xp in
                try w.withUnsafeBufferPointer { wp in
                    try layer.bias.withUnsafeBufferPointer { bp in
                        try z.withUnsafeMutableBufferPointer { zp in
                            try TrainGEMM.forward(xp.baseAddress!, m: rows, k: k, wp.baseAddress!, n: n,
                                              bias: bp.baseAddress, into: zp.baseAddress!)
                        }
                    }
                }
            }
            inputs.append(x)
            weights.append(w)
            var a = z
            switch layer.activation {
            case .none: break
            case .relu: a.withUnsafeMutableBufferPointer { p in for i in p.indices where !(p[i] > 0) && !p[i].isNaN { p[i] = 0 } }
            case .gelu: a.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] = Activation.gelu.apply(p[i]) } }
            }
            pre.append(z)
            x = a
        }
        output = x
    }

    /// Output of layer `l` (after its activation).
    func layerOutput(_ l: Int, of model: MLP) -> [Float] {
        l == model.layers.count - 1 ? output : pre[l].map { model.layers[l].activation.apply($0) }
    }
}

/// Gradients of one batch, shaped like the model's parameters.
public struct Gradients: Sendable {
    public var weights: [[Float]]
    public var biases: [[Float]]
}

extension MLP {
    /// Backpropagates `dOutput` (the loss gradient w.r.t. the logits, `[rows, outFeatures]`)
    /// through the pass; `extra` adds a gradient at a hidden layer's output (feature matching).
    func backward(_ pass: ForwardPass, dOutput: [Float], extra: (layer: Int, grad: [Float])? = nil) throws -> Gradients {
        let m = pass.rows
        var gw = [[Float]](repeating: [], count: layers.count)
        var gb = [[Float]](repeating: [], count: layers.count)
        var d = dOutput
        for l in stride(from: layers.count - 1, through: 0, by: -1) {
            let layer = layers[l]
            let (n, k) = (layer.outFeatures, layer.inFeatures)
            if let extra, extra.layer == l { for i in d.indices { d[i] += extra.grad[i] } }
            // d ← d ⊙ act'(z)
            pass.pre[l].withUnsafeBufferPointer { z in
                d.withUnsafeMutableBufferPointer { dp in
                    switch layer.activation {
                    case .none: break
                    case .relu: for i in dp.indices where !(z[i] > 0) { dp[i] = 0 }
                    case .gelu:
                        for i in dp.indices {
                            let x = z[i]
                            let cdf = 0.5 * (1 + erff(x * 0.707_106_781_186_547_52))
                            let pdf = expf(-0.5 * x * x) * 0.398_942_280_401_432_7
                            dp[i] *= cdf + x * pdf
                        }
                    }
                }
            }
            var dw = [Float](repeating: 0, count: n * k)
            var db = [Float](repeating: 0, count: n)
            try d.withUnsafeBufferPointer { dp in
                for i in 0..<m { for j in 0..<n { db[j] += dp[i * n + j] } }
                try pass.inputs[l].withUnsafeBufferPointer { xp in
                    try dw.withUnsafeMutableBufferPointer { wp in
                        try TrainGEMM.gradWeight(dp.baseAddress!, m: m, n: n, xp.baseAddress!, k: k, into: wp.baseAddress!)
                    }
                }
            }
            gw[l] = dw
            gb[l] = db
            if l > 0 {
                var dx = [Float](repeating: 0, count: m * k)
                try d.withUnsafeBufferPointer { dp in
                    try pass.weights[l].withUnsafeBufferPointer { wp in
                        try dx.withUnsafeMutableBufferPointer { xp in
                            try TrainGEMM.gradInput(dp.baseAddress!, m: m, n: n, wp.baseAddress!, k: k, into: xp.baseAddress!)
                        }
                    }
                }
                d = dx
            }
        }
        return Gradients(weights: gw, biases: gb)
    }
}

/// Deterministic generator for initialisation, shuffling and augmentation.
public struct SplitMix64: Sendable {
    var state: UInt64
    /// A generator whose sequence `seed` fixes.
    public init(seed: UInt64) { state = seed }
    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    public mutating func uniform(_ lo: Float, _ hi: Float) -> Float {
        lo + (hi - lo) * Float(next() >> 40) / Float(1 << 24)
    }
    /// Uniform integer in 0..<n.
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

extension MLP {
    /// Gradients of the mean cross-entropy on one batch (for first-order pruning scores and tests).
    public func gradients(_ x: Matrix<Float>, labels: [Int32], fakeQuant: FakeQuantization? = nil) throws -> (loss: Float, gradients: Gradients) {
        guard x.columns == inFeatures, labels.count == x.rows else {
            throw CondenseError.shapeMismatch("batch is \(x.rows)×\(x.columns) with \(labels.count) labels; the model takes \(inFeatures) features")
        }
        if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= outFeatures }) {
            throw CondenseError.invalidData("label \(labels[bad]) at row \(bad) is outside 0..<\(outFeatures)")
        }
        let pass = try ForwardPass(self, input: x.elements, rows: x.rows, fakeQuant: fakeQuant)
        let (loss, g) = Loss.crossEntropy(logits: pass.output, labels: labels, classes: outFeatures)
        return (loss, try backward(pass, dOutput: g))
    }

    /// The input of every layer for a batch (layer 0's is `x`): calibration for activation-aware
    /// pruning scores and observers.
    public func layerInputs(_ x: Matrix<Float>) throws -> [Matrix<Float>] {
        guard x.columns == inFeatures else { throw CondenseError.shapeMismatch("input has \(x.columns) columns, the model takes \(inFeatures)") }
        let pass = try ForwardPass(self, input: x.elements, rows: x.rows, fakeQuant: nil)
        return try layers.indices.map { try Matrix(rows: x.rows, columns: layers[$0].inFeatures, elements: pass.inputs[$0]) }
    }
}
