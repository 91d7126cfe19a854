import Condense
import CondenseTraining

/// The gradual pruning schedule of Zhu & Gupta (2017): sparsity rises from `initial` to `final`
/// between `startStep` and `endStep` as `s_t = s_f + (s_i − s_f)·(1 − (t − t₀)/(t₁ − t₀))³`,
/// pruning fast while many redundant weights remain and slowly near the target, updated every
/// `frequency` steps.
///
/// ```swift
/// let schedule = try CubicSparsitySchedule(final: 0.9, startStep: 0, endStep: 400, frequency: 20)
/// schedule.sparsity(at: 200)   // 0.7875
/// ```
public struct CubicSparsitySchedule: Sendable, Equatable {
    public let initial: Double, final: Double
    public let startStep: Int, endStep: Int, frequency: Int

    /// - Throws: `CondenseError/invalidArgument(_:)` for sparsities outside [0, 1), a final below
    ///   the initial, an empty step range, or a frequency below 1.
    public init(initial: Double = 0, final: Double, startStep: Int, endStep: Int, frequency: Int = 1) throws {
        guard (0..<1).contains(initial), (0..<1).contains(final), final >= initial else {
            throw CondenseError.invalidArgument("sparsities must satisfy 0 <= initial <= final < 1, got \(initial) and \(final)")
        }
        guard startStep >= 0, endStep > startStep, frequency >= 1 else {
            throw CondenseError.invalidArgument("need 0 <= startStep < endStep and frequency >= 1, got \(startStep), \(endStep), \(frequency)")
        }
        self.initial = initial
        self.final = final
        self.startStep = startStep
        self.endStep = endStep
        self.frequency = frequency
    }

    /// Target sparsity at `step` (constant before the start and after the end).
    public func sparsity(at step: Int) -> Double {
        if step <= startStep { return initial }
        if step >= endStep { return final }
        let f = 1 - Double(step - startStep) / Double(endStep - startStep)
        return final + (initial - final) * f * f * f
    }

    /// Whether masks are recomputed at `step`.
    public func updates(at step: Int) -> Bool {
        step >= startStep && step <= endStep && (step - startStep) % frequency == 0
    }
}

/// Which weights a pruned model keeps.
public enum SparsityPattern: Sendable, Equatable, CustomStringConvertible {
    /// This fraction of each layer's weights are zero.
    case unstructured(Double)
    /// N of every M consecutive weights along K kept (2:4 runs on the sparse kernels).
    case nm(n: Int, m: Int)

    public var description: String {
        switch self {
        case let .unstructured(s): return "\(Int((s * 100).rounded())) %"
        case let .nm(n, m): return "\(n):\(m)"
        }
    }
}

/// What ranks weights for pruning an MLP.
public enum ModelPruningScore: Sendable, Equatable, CustomStringConvertible {
    case magnitude
    /// `|w|·‖x_k‖` over a calibration batch (Wanda).
    case activationAware
    /// First-order Taylor `|w·∂L/∂w|`, the gradient summed over calibration batches.
    case taylor

    public var description: String {
        switch self {
        case .magnitude: return "magnitude"
        case .activationAware: return "activation-aware"
        case .taylor: return "gradient×weight"
        }
    }
}

extension Pruning {
    /// Masks for every layer of `model` with `pattern`, ranked by `score`. `calibration` (rows of
    /// inputs with labels) is needed by the activation-aware and Taylor scores.
    /// - Throws: `CondenseError/invalidArgument(_:)` for a sparsity outside [0, 1] or missing
    ///   calibration data; the pruning functions' errors for impossible N:M.
    public static func masks(for model: MLP, pattern: SparsityPattern, score: ModelPruningScore,
                             calibration: Dataset? = nil) throws -> WeightMasks {
        if case let .unstructured(s) = pattern, !(0...1).contains(s) {
            throw CondenseError.invalidArgument("sparsity must be in [0, 1], got \(s)")
        }
        var scores: [PruningScore] = model.layers.map { _ in .magnitude }
        var taylor: [[Float]]?
        switch score {
        case .magnitude: break
        case .activationAware:
            guard let calibration else { throw CondenseError.invalidArgument("activation-aware pruning needs calibration data") }
            let inputs = try model.layerInputs(calibration.matrix)
            scores = inputs.map { .activationAware(inputNorms: Pruning.inputNorms($0)) }
        case .taylor:
            guard let calibration else { throw CondenseError.invalidArgument("gradient×weight pruning needs calibration data") }
            taylor = try taylorScores(model, calibration)
        }
        return try model.layers.indices.map { l in
            let w = model.layers[l].weight
            let ranked: Matrix<Float>
            if let taylor {
                // Rank by |w·g| by handing the pruning functions that magnitude matrix.
                ranked = try Matrix(rows: w.rows, columns: w.columns, elements: taylor[l])
            } else {
                ranked = w
            }
            let mask: PruningMask
            switch pattern {
            case let .unstructured(s): mask = try Pruning.unstructured(ranked, sparsity: s, score: scores[l])
            case let .nm(n, m): mask = try Pruning.semiStructured(ranked, n: n, m: m, score: scores[l])
            }
            return mask.keep.map { $0 ? 1 : 0 }
        }
    }

    static func taylorScores(_ model: MLP, _ data: Dataset) throws -> [[Float]] {
        var acc = model.layers.map { [Float](repeating: 0, count: $0.weight.count) }
        let batch = 256
        var start = 0
        while start < data.count {
            let end = min(start + batch, data.count)
            let (x, y) = data.batch(start..<end)
            let (_, g) = try model.gradients(Matrix(rows: end - start, columns: data.features, elements: x), labels: y)
            for l in acc.indices { for i in acc[l].indices { acc[l][i] += g.weights[l][i] } }
            start = end
        }
        return model.layers.indices.map { l in
            let w = model.layers[l].weight.elements
            return w.indices.map { abs(w[$0] * acc[l][$0]) }
        }
    }

    /// Structured pruning that shrinks: keeps the `keep` hidden neurons of hidden layer `layer`
    /// with the largest L2 norm and removes the rest from both that layer and the next, so the
    /// model is smaller and faster on any kernel.
    public static func shrinkNeurons(_ model: MLP, layer: Int, keep: Int) throws -> MLP {
        guard model.layers.indices.dropLast().contains(layer) else {
            throw CondenseError.invalidArgument("layer \(layer) is not a hidden layer of a \(model.layers.count)-layer model")
        }
        var layers = model.layers
        let cut = try Pruning.neurons(layers[layer].weight, bias: layers[layer].bias, keep: keep)
        layers[layer] = try DenseLayer(weight: cut.weight, bias: cut.bias ?? [], activation: layers[layer].activation)
        layers[layer + 1] = try DenseLayer(weight: Pruning.keepInputs(cut.kept, of: layers[layer + 1].weight),
                                           bias: layers[layer + 1].bias, activation: layers[layer + 1].activation)
        return try MLP(layers: layers)
    }
}

/// Gradual pruning during training: at each step the schedule says, masks are recomputed at the
/// schedule's sparsity; use as the trainer's `onStep`.
public func gradualPruning(_ schedule: CubicSparsitySchedule, score: ModelPruningScore = .magnitude,
                           calibration: Dataset? = nil) -> (Int, Int, MLP, Gradients) throws -> WeightMasks? {
    { step, _, model, _ in
        guard schedule.updates(at: step) else { return nil }
        return try Pruning.masks(for: model, pattern: .unstructured(schedule.sparsity(at: step)), score: score, calibration: calibration)
    }
}
