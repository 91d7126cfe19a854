import Condense
import CondenseTraining
import Foundation

/// Quantization a pipeline ends in.
public enum QuantTarget: Sendable, Equatable, CustomStringConvertible {
    case int8
    case int4(group: Int)

    public var description: String {
        switch self {
        case .int8: return "int8"
        case let .int4(g): return "int4-g\(g)"
        }
    }

    /// The fake quantization that simulates it: int8 with per-row u8 activations (the integer
    /// kernels), int4 weight-only (the exact dequantizing path).
    public var fakeQuant: FakeQuantization {
        switch self {
        case .int8: return FakeQuantization(weights: .int8, activations: true)
        case let .int4(g): return FakeQuantization(weights: .int4(group: g), activations: false)
        }
    }
}

/// One step of a compression pipeline.
public enum PipelineStage: Sendable, CustomStringConvertible {
    /// Train the current model (from its current weights) for `epochs`.
    case train(epochs: Int)
    /// Replace the model by a student with these hidden sizes, trained by distillation from the
    /// current model (temperature T, loss weights α, β; optional hidden-feature matching).
    case distill(hidden: [Int], epochs: Int, temperature: Float, alpha: Float, beta: Float, featureMatching: Bool)
    /// One-shot pruning to the pattern (no retraining).
    case prune(SparsityPattern, score: ModelPruningScore)
    /// Unstructured pruning to `sparsity` along the cubic schedule while fine-tuning for `epochs`.
    case pruneGradually(sparsity: Double, epochs: Int, score: ModelPruningScore)
    /// Shrink every hidden layer to `fraction` of its neurons (structured), then nothing else.
    case shrink(fraction: Double)
    /// Fine-tune with the masks held (zeros stay zero); with `distill`, learn from the pipeline's
    /// teacher instead of the labels alone.
    case fineTune(epochs: Int, distill: Bool)
    /// Post-training quantization (min–max, zero-preserving): the export format changes.
    case quantize(QuantTarget)
    /// Quantization-aware training for `epochs`, then export in that format.
    case qat(QuantTarget, epochs: Int, distill: Bool)

    public var description: String {
        switch self {
        case let .train(e): return "train \(e) ep"
        case let .distill(h, e, t, _, _, f): return "distill → \(h.map(String.init).joined(separator: "-")) (T=\(t)\(f ? ", features" : ""), \(e) ep)"
        case let .prune(p, s): return "prune \(p) (\(s))"
        case let .pruneGradually(s, e, score): return "prune \(Int((s * 100).rounded())) % gradually (cubic, \(score), \(e) ep)"
        case let .shrink(f): return "shrink neurons to \(Int((f * 100).rounded())) %"
        case let .fineTune(e, d): return "fine-tune \(e) ep\(d ? " (distilled)" : "")"
        case let .quantize(q): return "quantize \(q) (PTQ)"
        case let .qat(q, e, d): return "QAT \(q) \(e) ep\(d ? " (distilled)" : "")"
        }
    }
}

/// A named sequence of stages applied to a trained model.
public struct Pipeline: Sendable {
    public let name: String
    public let stages: [PipelineStage]
    /// ```swift
    /// let p = Pipeline("2:4 + QAT", [.prune(.nm(n: 2, m: 4), score: .activationAware),
    ///                                .fineTune(epochs: 2, distill: false), .qat(.int8, epochs: 1, distill: false)])
    /// let result = try runner.run(p)
    /// ```
    public init(_ name: String, _ stages: [PipelineStage]) {
        self.name = name
        self.stages = stages
    }
}

/// Where a pipeline stands: the f32 weights, their masks and pattern, and the quantization the
/// export will use.
public struct PipelineState: Sendable {
    public var model: MLP
    public var masks: WeightMasks
    public var pattern: SparsityPattern?
    public var quant: QuantTarget?

    /// The state before the first stage: the trained model, no masks.
    public init(model: MLP) {
        self.model = model
        masks = WeightMasks(repeating: nil, count: model.layers.count)
    }

    /// The storage format each layer exports to: 2:4 (+int8) on the sparse kernels, CSR for
    /// unstructured sparsity, int8/int4 otherwise; quantization keeps pruned zeros at zero.
    public var formats: [WeightFormat] {
        switch (pattern, quant) {
        case (.nm(2, 4)?, .int8?): return [.sparse24Int8]
        case (.nm(2, 4)?, nil): return [.sparse24]
        case (.unstructured?, nil): return [.csr]
        case (_, .int8?): return [.int8]
        case let (_, .int4(g)?): return [.int4(group: g)]
        default: return [.dense]
        }
    }

    /// The model as the stages left it, in the formats they chose.
    public func export() throws -> CompressedMLP {
        var c = try CompressedMLP(exporting: model, formats: formats)
        if case .int4? = quant {
            // The exact weight-only path, as QAT simulated it.
            c = try CompressedMLP(layers: c.layers.map { l in
                guard case let .int4(w) = l.weights else { return l }
                return try LinearLayer(weights: .int4(w.with(path: .dequantize)), bias: l.bias, activation: l.activation)
            })
        }
        return c
    }
}

/// What a stage cost and gained.
public struct StageResult: Sendable, Codable {
    public let stage: String
    public let seconds: Double
    public let evaluation: Evaluation
    /// Agreement of the QAT model (fake-quantized, f32) with its exported integer model on the
    /// evaluation set: QAT stages only.
    public let qatExportAgreement: Double?
}

/// A pipeline's run: every stage evaluated.
public struct PipelineResult: Sendable, Codable {
    public let name: String
    public let stages: [StageResult]
    /// The exported model after the last stage (not serialized with the result).
    public var model: CompressedMLP?
    public var final: Evaluation { stages.last!.evaluation }

    enum CodingKeys: String, CodingKey { case name, stages }
}

/// Runs pipelines on a trained teacher with shared settings.
public struct PipelineRunner: Sendable {
    public var train: Dataset
    public var test: Dataset
    public var teacher: MLP
    public var registry: BackendRegistry
    public var policy: SelectionPolicy = .fastest(batch: 1)
    public var options: TrainingOptions
    /// Rows of `train` used as calibration for activation-aware and Taylor scores.
    public var calibrationRows = 512
    public var latencyRuns = 200
    /// Teacher predictions on `test`, for agreement.
    public var reference: [Int]?

    /// A runner over this data and teacher, evaluating each stage's model on `registry`.
    public init(train: Dataset, test: Dataset, teacher: MLP, registry: BackendRegistry, options: TrainingOptions) {
        self.train = train
        self.test = test
        self.teacher = teacher
        self.registry = registry
        self.options = options
    }

    /// Runs one pipeline; `progress` gets (stage description, fraction of that stage done).
    public func run(_ pipeline: Pipeline, progress: ((String, Double) -> Void)? = nil) throws -> PipelineResult {
        var state = PipelineState(model: teacher)
        var results: [StageResult] = []
        let calibration = try train.slice(0..<min(calibrationRows, train.count))
        for stage in pipeline.stages {
            let t0 = Date()
            let label = stage.description
            var qatAgreement: Double?
            func report(_ p: TrainingProgress) { progress?(label, Double(p.step) / Double(max(p.totalSteps, 1))) }
            var opts = options
            switch stage {
            case let .train(e):
                opts.epochs = e
                var none: Distillation?
                try Trainer.train(&state.model, on: train, options: opts, masks: &state.masks, distillation: &none, progress: report)
            case let .distill(hidden, e, t, a, b, features):
                var student = try MLP(sizes: [train.features] + hidden + [train.classes], hidden: teacher.layers[0].activation, seed: opts.seed &+ 101)
                var d: Distillation? = try Distillation(
                    teacher: state.model, temperature: t, alpha: a, beta: b,
                    features: features ? FeatureMatching(studentLayer: hidden.count - 1, teacherLayer: state.model.layers.count - 2,
                                                         student: student, teacher: state.model) : nil)
                opts.epochs = e
                var masks = WeightMasks(repeating: nil, count: student.layers.count)
                try Trainer.train(&student, on: train, options: opts, masks: &masks, distillation: &d, progress: report)
                state = PipelineState(model: student)
            case let .prune(pattern, score):
                state.masks = try Pruning.masks(for: state.model, pattern: pattern, score: score, calibration: calibration)
                Trainer.applyMasks(state.masks, to: &state.model)
                state.pattern = pattern
                progress?(label, 1)
            case let .pruneGradually(s, e, score):
                opts.epochs = e
                let steps = e * ((train.count + opts.batchSize - 1) / opts.batchSize)
                // Reach the target at 70 % of the run, then fine-tune at that sparsity.
                let schedule = try CubicSparsitySchedule(final: s, startStep: 0, endStep: max(1, steps * 7 / 10), frequency: max(1, steps / 40))
                var none: Distillation?
                try Trainer.train(&state.model, on: train, options: opts, masks: &state.masks, distillation: &none,
                                  onStep: gradualPruning(schedule, score: score, calibration: calibration), progress: report)
                state.pattern = .unstructured(s)
            case let .shrink(fraction):
                guard fraction > 0, fraction <= 1 else { throw CondenseError.invalidArgument("shrink fraction must be in (0, 1], got \(fraction)") }
                for l in state.model.layers.indices.dropLast() {
                    state.model = try Pruning.shrinkNeurons(state.model, layer: l, keep: max(1, Int(Double(state.model.layers[l].outFeatures) * fraction)))
                }
                state.masks = WeightMasks(repeating: nil, count: state.model.layers.count)
                progress?(label, 1)
            case let .fineTune(e, distill):
                opts.epochs = e
                opts.optimizer = .adam(learningRate: opts.optimizer.learningRate * 0.3)
                var d: Distillation? = distill ? try Distillation(teacher: teacher, temperature: 4, alpha: 0.5, beta: 0.5) : nil
                try Trainer.train(&state.model, on: train, options: opts, masks: &state.masks, distillation: &d, progress: report)
            case let .quantize(q):
                state.quant = q
                progress?(label, 1)
            case let .qat(q, e, distill):
                opts.epochs = e
                opts.optimizer = .adam(learningRate: opts.optimizer.learningRate * 0.1)
                var d: Distillation? = distill ? try Distillation(teacher: teacher, temperature: 4, alpha: 0.5, beta: 0.5) : nil
                try Trainer.train(&state.model, on: train, options: opts, masks: &state.masks, fakeQuant: q.fakeQuant, distillation: &d, progress: report)
                state.quant = q
                // The trained (fake-quantized) model against its export, on the evaluation set.
                let fq = Loss.softmax(try state.model.logits(test.matrix, fakeQuant: q.fakeQuant).elements, rows: test.count, classes: test.classes)
                let fqPred = Evaluator.quality(probs: fq, labels: test.y, classes: test.classes).predictions
                let exported = try state.export().prepare(on: registry)
                let ex = Loss.softmax(try exported.logits(test.matrix).elements, rows: test.count, classes: test.classes)
                let exPred = Evaluator.quality(probs: ex, labels: test.y, classes: test.classes).predictions
                qatAgreement = Double(zip(fqPred, exPred).filter { $0 == $1 }.count) / Double(test.count)
            }
            let seconds = Date().timeIntervalSince(t0)
            let e = try Evaluator.evaluate(state.export(), on: test, registry: registry, policy: policy, reference: reference,
                                           latencyRuns: latencyRuns)
            results.append(StageResult(stage: label, seconds: seconds, evaluation: e, qatExportAgreement: qatAgreement))
        }
        return PipelineResult(name: pipeline.name, stages: results, model: try state.export())
    }
}
