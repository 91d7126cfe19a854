import Condense
import Foundation

/// Per-layer pruning masks: `masks[l]` holds 0 or 1 for each weight of layer l (nil: dense).
/// Masked weights are zeroed after every optimizer step, so they stay exactly zero while the
/// rest fine-tune.
public typealias WeightMasks = [[Float]?]

/// Random input changes that make a small training set go further.
public enum Augmentation: Sendable, Equatable {
    case none
    /// Shift each `width`×`height` image by up to `pixels` in x and y (zero fill).
    case shift(width: Int, height: Int, pixels: Int)
}

/// How training runs.
public struct TrainingOptions: Sendable {
    public var epochs: Int
    public var batchSize: Int
    public var optimizer: Optimizer
    /// Cosine decay of the learning rate to `finalLearningRateScale` × the base over the run.
    public var finalLearningRateScale: Float
    public var augmentation: Augmentation
    /// Shuffling, augmentation: the same seed gives the same model.
    public var seed: UInt64

    /// Epochs, batch size, optimizer, learning-rate schedule and seed; the defaults train one epoch with Adam.
    public init(epochs: Int = 1, batchSize: Int = 128, optimizer: Optimizer = .adam(),
                finalLearningRateScale: Float = 0.05, augmentation: Augmentation = .none, seed: UInt64 = 1) {
        self.epochs = epochs
        self.batchSize = batchSize
        self.optimizer = optimizer
        self.finalLearningRateScale = finalLearningRateScale
        self.augmentation = augmentation
        self.seed = seed
    }
}

/// Knowledge distillation from a teacher: temperature-softened targets, optionally hidden-feature
/// matching through a learned projection. See ``Loss/distillation(student:teacher:labels:classes:temperature:alpha:beta:)``.
public struct Distillation: Sendable {
    public var teacher: MLP
    public var temperature: Float
    public var alpha: Float
    public var beta: Float
    public var features: FeatureMatching?

    /// - Throws: `CondenseError/invalidArgument(_:)` for T ≤ 0 or negative weights.
    public init(teacher: MLP, temperature: Float = 4, alpha: Float = 0.5, beta: Float = 0.5, features: FeatureMatching? = nil) throws {
        guard temperature > 0, temperature.isFinite else { throw CondenseError.invalidArgument("temperature must be > 0, got \(temperature)") }
        guard alpha >= 0, beta >= 0 else { throw CondenseError.invalidArgument("alpha and beta must be >= 0, got \(alpha), \(beta)") }
        self.teacher = teacher
        self.temperature = temperature
        self.alpha = alpha
        self.beta = beta
        self.features = features
    }
}

/// Hidden-feature matching (FitNets): `γ·‖P·h_s − h_t‖²` between the student's hidden layer and
/// the teacher's, through a projection P trained with the student.
public struct FeatureMatching: Sendable {
    public var studentLayer: Int
    public var teacherLayer: Int
    public var weight: Float
    public var projection: Matrix<Float>

    /// A zero-initialised-bias projection from the student's width to the teacher's, He-uniform.
    public init(studentLayer: Int, teacherLayer: Int, student: MLP, teacher: MLP, weight: Float = 0.1, seed: UInt64 = 7) throws {
        guard student.layers.indices.dropLast().contains(studentLayer), teacher.layers.indices.dropLast().contains(teacherLayer) else {
            throw CondenseError.invalidArgument("feature matching needs hidden layers: student \(studentLayer), teacher \(teacherLayer)")
        }
        var rng = SplitMix64(seed: seed)
        let (ds, dt) = (student.layers[studentLayer].outFeatures, teacher.layers[teacherLayer].outFeatures)
        let bound = (6 / Float(ds)).squareRoot()
        self.studentLayer = studentLayer
        self.teacherLayer = teacherLayer
        self.weight = weight
        projection = try Matrix(rows: dt, columns: ds) { _, _ in rng.uniform(-bound, bound) }
    }
}

/// What one epoch did.
public struct EpochRecord: Sendable, Codable {
    public let epoch: Int
    public let loss: Double
    public let trainAccuracy: Double
    public let seconds: Double
}

/// Progress of a running training, for bars and logs.
public struct TrainingProgress: Sendable {
    public let step: Int
    public let totalSteps: Int
    public let epoch: Int
    public let loss: Double
}

/// Mini-batch training on Condense's kernels.
public enum Trainer {
    /// Trains `model` in place.
    ///
    /// - Parameters:
    ///   - model: the network, trained in place.
    ///   - data: the training examples.
    ///   - options: epochs, batch size, optimizer, learning-rate schedule, seed.
    ///   - masks: kept weights per layer; masked weights are zeroed after each step. `onStep` may
    ///     replace them (gradual pruning).
    ///   - fakeQuant: quantization-aware training (``FakeQuantization``).
    ///   - distillation: a teacher to learn from; its projection (if any) trains too.
    ///   - onStep: called with (step, total steps, model, gradients) before each optimizer step;
    ///     return new masks to install them.
    ///   - progress: called after each step with the running loss and the steps done.
    /// - Throws: `CondenseError` for mismatched data, teacher or masks, or a non-finite loss.
    @discardableResult
    public static func train(_ model: inout MLP, on data: Dataset, options: TrainingOptions,
                             masks: inout WeightMasks, fakeQuant: FakeQuantization? = nil,
                             distillation: inout Distillation?,
                             onStep: ((Int, Int, MLP, Gradients) throws -> WeightMasks?)? = nil,
                             progress: ((TrainingProgress) -> Void)? = nil) throws -> [EpochRecord] {
        guard data.features == model.inFeatures else {
            throw CondenseError.shapeMismatch("data has \(data.features) features, the model takes \(model.inFeatures)")
        }
        guard data.classes == model.outFeatures else {
            throw CondenseError.shapeMismatch("data has \(data.classes) classes, the model gives \(model.outFeatures) outputs")
        }
        guard options.epochs >= 0, options.batchSize >= 1 else {
            throw CondenseError.invalidArgument("epochs must be >= 0 and batch size >= 1, got \(options.epochs), \(options.batchSize)")
        }
        if let d = distillation {
            guard d.teacher.outFeatures == model.outFeatures, d.teacher.inFeatures == model.inFeatures else {
                throw CondenseError.shapeMismatch(
                    "teacher maps \(d.teacher.inFeatures) → \(d.teacher.outFeatures), student \(model.inFeatures) → \(model.outFeatures)")
            }
        }
        try checkMasks(masks, model)
        applyMasks(masks, to: &model)
        var state = OptimizerState(shapes: model.layers.flatMap { [$0.weight.count, $0.bias.count] })
        var projState = OptimizerState(shapes: [distillation?.features?.projection.count ?? 0])
        var rng = SplitMix64(seed: options.seed)
        let perEpoch = (data.count + options.batchSize - 1) / options.batchSize
        let total = perEpoch * options.epochs
        var records: [EpochRecord] = []
        var step = 0
        for epoch in 0..<options.epochs {
            let start = Date()
            var order = Array(0..<data.count)
            for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.below(i + 1)) }
            var lossSum = 0.0, correct = 0
            for b in 0..<perEpoch {
                let idx = order[(b * options.batchSize)..<min((b + 1) * options.batchSize, data.count)]
                var (x, y) = data.batch(idx)
                augment(&x, rows: y.count, options.augmentation, &rng)
                let pass = try ForwardPass(model, input: x, rows: y.count, fakeQuant: fakeQuant)
                var loss: Float
                var grad: [Float]
                var extra: (layer: Int, grad: [Float])?
                var projGrad: [Float]?
                if let d = distillation {
                    let tpass = try ForwardPass(d.teacher, input: x, rows: y.count, fakeQuant: nil)
                    (loss, grad) = Loss.distillation(student: pass.output, teacher: tpass.output, labels: y,
                                                     classes: data.classes, temperature: d.temperature,
                                                     alpha: d.alpha, beta: d.beta)
                    if let f = d.features {
                        let (l, g, pg) = try featureLoss(f, student: pass.layerOutput(f.studentLayer, of: model),
                                                     teacher: tpass.layerOutput(f.teacherLayer, of: d.teacher), rows: y.count)
                        loss += l
                        extra = (f.studentLayer, g)
                        projGrad = pg
                    }
                } else {
                    (loss, grad) = Loss.crossEntropy(logits: pass.output, labels: y, classes: data.classes)
                }
                guard loss.isFinite else {
                    throw CondenseError.invalidArgument("the loss became \(loss) at step \(step) (learning rate \(options.optimizer.learningRate) too high?)")
                }
                lossSum += Double(loss) * Double(y.count)
                for i in 0..<y.count {
                    let row = pass.output[(i * data.classes)..<((i + 1) * data.classes)]
                    if row.indices.max(by: { row[$0] < row[$1] })! - i * data.classes == Int(y[i]) { correct += 1 }
                }
                let grads = try model.backward(pass, dOutput: grad, extra: extra)
                if let onStep, let newMasks = try onStep(step, total, model, grads) {
                    try checkMasks(newMasks, model)
                    masks = newMasks
                    applyMasks(masks, to: &model)
                }
                state.step += 1
                let progressFraction = Float(step) / Float(max(total, 1))
                let scale = options.finalLearningRateScale
                    + (1 - options.finalLearningRateScale) * 0.5 * (1 + cosf(.pi * progressFraction))
                for l in model.layers.indices {
                    var w = model.layers[l].weight.elements
                    var g = grads.weights[l]
                    if let m = masks[l] { for i in g.indices { g[i] *= m[i] } }
                    state.apply(options.optimizer, params: &w, grads: g, slot: 2 * l, scale: scale)
                    if let m = masks[l] { for i in w.indices { w[i] *= m[i] } }
                    model.layers[l].weight = try Matrix(rows: model.layers[l].outFeatures, columns: model.layers[l].inFeatures, elements: w)
                    state.apply(options.optimizer, params: &model.layers[l].bias, grads: grads.biases[l], slot: 2 * l + 1, scale: scale)
                }
                if let pg = projGrad, var d = distillation, var f = d.features {
                    projState.step += 1
                    var p = f.projection.elements
                    projState.apply(options.optimizer, params: &p, grads: pg, slot: 0, scale: scale)
                    f.projection = try Matrix(rows: f.projection.rows, columns: f.projection.columns, elements: p)
                    d.features = f
                    distillation = d
                }
                step += 1
                progress?(TrainingProgress(step: step, totalSteps: total, epoch: epoch, loss: Double(loss)))
            }
            records.append(EpochRecord(epoch: epoch, loss: lossSum / Double(data.count),
                                       trainAccuracy: Double(correct) / Double(data.count),
                                       seconds: Date().timeIntervalSince(start)))
        }
        return records
    }

    /// Convenience: plain training, no masks, no teacher.
    @discardableResult
    public static func train(_ model: inout MLP, on data: Dataset, options: TrainingOptions,
                             fakeQuant: FakeQuantization? = nil, progress: ((TrainingProgress) -> Void)? = nil) throws -> [EpochRecord] {
        var masks = WeightMasks(repeating: nil, count: model.layers.count)
        var none: Distillation?
        return try train(&model, on: data, options: options, masks: &masks, fakeQuant: fakeQuant, distillation: &none, progress: progress)
    }

    static func checkMasks(_ masks: WeightMasks, _ model: MLP) throws {
        guard masks.count == model.layers.count else {
            throw CondenseError.shapeMismatch("\(masks.count) masks for \(model.layers.count) layers")
        }
        for (l, m) in masks.enumerated() {
            if let m, m.count != model.layers[l].weight.count {
                throw CondenseError.shapeMismatch("mask of layer \(l) has \(m.count) entries, the weight \(model.layers[l].weight.count)")
            }
        }
    }

    /// Zeroes the masked weights.
    public static func applyMasks(_ masks: WeightMasks, to model: inout MLP) {
        for (l, m) in masks.enumerated() {
            guard let m else { continue }
            var w = model.layers[l].weight.elements
            for i in w.indices { w[i] *= m[i] }
            model.layers[l].weight = Matrix(validatedRows: model.layers[l].outFeatures, columns: model.layers[l].inFeatures, elements: w)
        }
    }

    /// Feature-matching loss, the gradient at the student's hidden output, and the projection's gradient.
    static func featureLoss(_ f: FeatureMatching, student hs: [Float], teacher ht: [Float], rows: Int) throws -> (Float, [Float], [Float]) {
        let (dt, ds) = (f.projection.rows, f.projection.columns)
        var p = [Float](repeating: 0, count: rows * dt)
        let pw = f.projection.elements
        try hs.withUnsafeBufferPointer { h in
            try pw.withUnsafeBufferPointer { w in
                try p.withUnsafeMutableBufferPointer { o in try TrainGEMM.forward(h.baseAddress!, m: rows, k: ds, w.baseAddress!, n: dt, bias: nil, into: o.baseAddress!) }
            }
        }
        let (loss, dp) = Loss.meanSquared(p, ht, rows: rows, weight: f.weight)
        var dh = [Float](repeating: 0, count: rows * ds)
        var dP = [Float](repeating: 0, count: dt * ds)
        try dp.withUnsafeBufferPointer { d in
            try pw.withUnsafeBufferPointer { w in
                try dh.withUnsafeMutableBufferPointer { o in try TrainGEMM.gradInput(d.baseAddress!, m: rows, n: dt, w.baseAddress!, k: ds, into: o.baseAddress!) }
            }
            try hs.withUnsafeBufferPointer { h in
                try dP.withUnsafeMutableBufferPointer { o in try TrainGEMM.gradWeight(d.baseAddress!, m: rows, n: dt, h.baseAddress!, k: ds, into: o.baseAddress!) }
            }
        }
        return (loss, dh, dP)
    }

    static func augment(_ x: inout [Float], rows: Int, _ a: Augmentation, _ rng: inout SplitMix64) {
        guard case let .shift(w, h, px) = a, px > 0, w * h > 0 else { return }
        let n = w * h
        guard x.count == rows * n else { return }
        var tmp = [Float](repeating: 0, count: n)
        for r in 0..<rows {
            let dx = rng.below(2 * px + 1) - px, dy = rng.below(2 * px + 1) - px
            if dx == 0 && dy == 0 { continue }
            for i in 0..<n { tmp[i] = 0 }
            for yy in 0..<h {
                let sy = yy - dy
                guard sy >= 0 && sy < h else { continue }
                for xx in 0..<w {
                    let sx = xx - dx
                    if sx >= 0 && sx < w { tmp[yy * w + xx] = x[r * n + sy * w + sx] }
                }
            }
            for i in 0..<n { x[r * n + i] = tmp[i] }
        }
    }
}
