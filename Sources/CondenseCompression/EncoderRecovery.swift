import Condense
import CondenseInference
import CondenseTraining
import Foundation

/// 2:4 pruning of a BERT-family encoder with recovery, layer by layer: each projection is
/// pruned by SparseGPT-style reconstruction (``Reconstruction``) on the inputs it sees in the
/// already pruned model, then each residual block (attention output + LayerNorm, feed-forward +
/// LayerNorm) is trained to reproduce the dense model's block output for the same tokens
/// (``BlockTuning``), which also corrects the error the earlier pruned layers pass on.
///
/// Training data: the calibration sentences plus `variants` made from them (two spliced, 15 %
/// of the word pieces replaced by random vocabulary), since 40 sentences (≈ 600 tokens) are too
/// few rows to fit a 1536-wide block without overfitting. No labels and no teacher beyond the
/// dense encoder itself.
///
/// ```swift
/// let dense = try SentenceEncoder(directory: dir)
/// let pruned = try EncoderRecovery(scope: .feedForward).run(dense, calibration: sentences)
/// let model = try pruned.mapLinears { name, l in
///     name.hasSuffix(".intermediate") || name.hasSuffix(".output") ? try l.converted(to: .sparse24) : l
/// }
/// ```
/// The result keeps the pruned projections as dense f32 with exact zeros in a 2:4 pattern;
/// convert them to `.sparse24` or `.sparse24Int8` to store and run them compressed.
public struct EncoderRecovery {
    /// Which projections are pruned.
    public enum Scope: String, Sendable {
        /// All four per layer: QKV, attention output, feed-forward in and out.
        case all
        /// The feed-forward projections only (2/3 of the projection weights).
        case feedForward
    }

    public var scope: Scope
    /// Passes over the training rows per block.
    public var epochs: Int
    /// Adam's learning rate.
    public var learningRate: Float
    /// Variants of the calibration sentences added as training data.
    public var variants: Int
    /// With scope `.all`: passes of training the whole layer (attention included) after its
    /// blocks; 0 skips it.
    public var layerEpochs: Int
    /// Finally: passes of training every layer jointly on the dense model's last hidden states
    /// (end-to-end hidden-state distillation); 0 skips it.
    public var stackEpochs = 0
    /// Finally: passes of training every layer jointly on the sentence embedding itself (the
    /// cosine of the mean-pooled last hidden states to the dense model's), after `stackEpochs`;
    /// 0 skips it.
    public var embeddingEpochs = 0
    /// Adam's learning rate for the joint passes (nil: a third of `learningRate`).
    public var jointLearningRate: Float?
    public var seed: UInt64 = 7
    /// Called with a line per step (block errors before and after), e.g. to print progress.
    public var progress: ((String) -> Void)?

    /// - Throws: `CondenseError/invalidArgument(_:)` for epochs or variants < 0, or a learning
    ///   rate that is not finite and > 0.
    /// The defaults are the settings measured on all-MiniLM-L6-v2 (docs/performance.md).
    public init(scope: Scope = .all, epochs: Int = 12, learningRate: Float = 3e-4, variants: Int = 1600, layerEpochs: Int = 0) throws {
        guard epochs >= 0, layerEpochs >= 0 else {
            throw CondenseError.invalidArgument("recovery epochs must be >= 0, got \(min(epochs, layerEpochs))")
        }
        guard learningRate.isFinite, learningRate > 0 else {
            throw CondenseError.invalidArgument("recovery learning rate must be finite and > 0, got \(learningRate)")
        }
        guard variants >= 0 else { throw CondenseError.invalidArgument("recovery variants must be >= 0, got \(variants)") }
        (self.scope, self.epochs, self.learningRate, self.variants, self.layerEpochs) = (scope, epochs, learningRate, variants, layerEpochs)
    }

    /// Names of the projections this scope prunes.
    public func prunes(_ name: String) -> Bool {
        scope == .all || name.hasSuffix(".intermediate") || name.hasSuffix(".output")
    }

    /// The calibration sentences' token ids and `variants` more made from them.
    func sequences(_ model: SentenceEncoder, _ text: [String]) -> [[Int32]] {
        let tok = model.tokenizer
        let base = text.map { tok.encode($0, maxLength: model.maxLength) }.filter { $0.count > 2 }
        guard !base.isEmpty else { return [] }
        // Replacements: any ordinary vocabulary entry (not [CLS], [PAD], [unused…] and the like).
        let pool = tok.tokens.indices.filter { !tok.tokens[$0].hasPrefix("[") }.map(Int32.init)
        var rng = SplitMix64(seed: seed)
        var out = base
        while out.count < base.count + variants {
            var body = Array(base[rng.below(base.count)].dropFirst().dropLast())
            if rng.below(2) == 0 { body += base[rng.below(base.count)].dropFirst().dropLast() }
            if !pool.isEmpty { for i in body.indices where rng.below(100) < 15 { body[i] = pool[rng.below(pool.count)] } }
            out.append([tok.cls] + body.prefix(model.maxLength - 2) + [tok.sep])
        }
        return out
    }

    static func gram(_ x: Matrix<Float>) throws -> [Double] {
        let k = x.columns
        var g = [Float](repeating: 0, count: k * k)
        try x.withUnsafeBufferPointer { p in
            try g.withUnsafeMutableBufferPointer { gp in
                try TrainGEMM.gradWeight(p.baseAddress!, m: x.rows, n: k, p.baseAddress!, k: k, into: gp.baseAddress!)
            }
        }
        return g.map(Double.init)
    }

    static func pruned(_ l: LinearLayer, _ x: Matrix<Float>) throws -> LinearLayer {
        let w = try Reconstruction.pruneNM(l.weights.densified(), gram: gram(x))
        return try LinearLayer(weights: .dense(w), bias: l.bias, activation: l.activation)
    }

    static func layer(_ l: BlockTuning.Linear, activation: Activation) throws -> LinearLayer {
        try LinearLayer(weights: .dense(Matrix(rows: l.n, columns: l.k, elements: l.weight)), bias: l.bias, activation: activation)
    }

    /// An encoder layer as the trainer takes it: the scope's pruned projections keep their zeros.
    func trainable(_ c: SentenceEncoder.Layer, heads: Int, eps: Float) throws -> BlockTuning.EncoderLayer {
        try BlockTuning.EncoderLayer(
            qkv: BlockTuning.Linear(c.qkv, keepZeros: prunes(".qkv")),
            attentionOutput: BlockTuning.Linear(c.attentionOutput, keepZeros: prunes(".attention_output")),
            intermediate: BlockTuning.Linear(c.intermediate, keepZeros: true), output: BlockTuning.Linear(c.output, keepZeros: true),
            attentionNorm: c.attentionNorm, outputNorm: c.outputNorm, heads: heads, eps: eps)
    }

    /// The trained layer's weights and norms back into the encoder layer.
    static func write(_ w: BlockTuning.EncoderLayer, into c: inout SentenceEncoder.Layer) throws {
        c.qkv = try layer(w.qkv, activation: c.qkv.activation)
        c.attentionOutput = try layer(w.attentionOutput, activation: c.attentionOutput.activation)
        c.intermediate = try layer(w.intermediate, activation: c.intermediate.activation)
        c.output = try layer(w.output, activation: c.output.activation)
        c.attentionNorm = (w.gamma1, w.beta1)
        c.outputNorm = (w.gamma2, w.beta2)
    }

    /// The encoder with the scope's projections pruned 2:4 and every block recovered.
    /// - Throws: `CondenseError/invalidArgument(_:)` without calibration sentences, or for a
    ///   SmoothQuant-smoothed encoder (its weights are scaled against inputs the trainer does
    ///   not see; recover first, then smooth).
    public func run(_ teacher: SentenceEncoder, calibration text: [String]) throws -> SentenceEncoder {
        if let l = teacher.layers.firstIndex(where: { s in
            [s.smoothing.qkv, s.smoothing.attentionOutput, s.smoothing.intermediate, s.smoothing.output].contains { $0 != nil } }) {
            throw CondenseError.invalidArgument("recovery needs an unsmoothed encoder; layer \(l) has SmoothQuant factors")
        }
        let seqs = sequences(teacher, text)
        guard !seqs.isEmpty else { throw CondenseError.invalidArgument("recovery needs calibration sentences, got none") }
        let n = teacher.layers.count
        let targetNames = Set((0..<n).map { "layer.\($0).intermediate" } + (0..<n).map { "layer.\($0).qkv" } + ["final"])
        let targets = try InferenceSession(teacher, policy: .priority).inputs(of: targetNames, tokenIDs: seqs)
        progress?("recovery: \(seqs.count) sequences, \(targets["final"]!.rows) tokens")
        var current = teacher
        let eps = teacher.config.layerNormEps
        for l in 0..<n {
            let p = "layer.\(l)."
            var layerInput: Matrix<Float>?
            if scope == .all {
                var seen = try InferenceSession(current, policy: .priority).inputs(of: [p + "qkv"], tokenIDs: seqs)
                layerInput = seen[p + "qkv"]!
                current.layers[l].qkv = try Self.pruned(current.layers[l].qkv, seen[p + "qkv"]!)
                seen = try InferenceSession(current, policy: .priority).inputs(of: [p + "attention_output"], tokenIDs: seqs)
                let ao = try Self.pruned(current.layers[l].attentionOutput, seen[p + "attention_output"]!)
                let norm = current.layers[l].attentionNorm
                var block = try BlockTuning.Block(linears: [BlockTuning.Linear(ao, keepZeros: true)],
                                                  gamma: norm.gamma, beta: norm.beta, eps: eps)
                let fit = try BlockTuning.fit(&block, input: seen[p + "attention_output"]!, residual: layerInput!,
                                              target: targets[p + "intermediate"]!, epochs: epochs,
                                              optimizer: .adam(learningRate: learningRate), seed: seed &+ UInt64(2 * l))
                progress?("layer \(l) attention block: mse \(String(format: "%.5f", fit.before)) → \(String(format: "%.5f", fit.after))")
                current.layers[l].attentionOutput = try Self.layer(block.linears[0], activation: ao.activation)
                current.layers[l].attentionNorm = (block.gamma, block.beta)
            }
            var seen = try InferenceSession(current, policy: .priority).inputs(of: [p + "intermediate"], tokenIDs: seqs)
            let h = seen[p + "intermediate"]!
            current.layers[l].intermediate = try Self.pruned(current.layers[l].intermediate, h)
            seen = try InferenceSession(current, policy: .priority).inputs(of: [p + "output"], tokenIDs: seqs)
            let out = try Self.pruned(current.layers[l].output, seen[p + "output"]!)
            let norm = current.layers[l].outputNorm
            var block = try BlockTuning.Block(
                linears: [BlockTuning.Linear(current.layers[l].intermediate, keepZeros: true), BlockTuning.Linear(out, keepZeros: true)],
                gamma: norm.gamma, beta: norm.beta, eps: eps)
            let target = targets[l + 1 < n ? "layer.\(l + 1).qkv" : "final"]!
            let fit = try BlockTuning.fit(&block, input: h, residual: h, target: target, epochs: epochs,
                                          optimizer: .adam(learningRate: learningRate), seed: seed &+ UInt64(2 * l + 1))
            progress?("layer \(l) feed-forward block: mse \(String(format: "%.5f", fit.before)) → \(String(format: "%.5f", fit.after))")
            current.layers[l].intermediate = try Self.layer(block.linears[0], activation: current.layers[l].intermediate.activation)
            current.layers[l].output = try Self.layer(block.linears[1], activation: out.activation)
            current.layers[l].outputNorm = (block.gamma, block.beta)
            if let x = layerInput, layerEpochs > 0 {
                // The whole layer, attention included: QKV gets trained too, and the blocks adjust
                // to each other.
                var whole = try trainable(current.layers[l], heads: teacher.config.numAttentionHeads, eps: eps)
                let fit = try BlockTuning.fit(&whole, input: x, lengths: seqs.map(\.count), target: target, epochs: layerEpochs,
                                              optimizer: .adam(learningRate: learningRate), seed: seed &+ UInt64(100 + l))
                progress?("layer \(l) whole layer: mse \(String(format: "%.5f", fit.before)) → \(String(format: "%.5f", fit.after))")
                try Self.write(whole, into: &current.layers[l])
            }
        }
        for (epochs, objective) in [(stackEpochs, BlockTuning.Objective.hiddenStates), (embeddingEpochs, .pooledEmbedding)] where epochs > 0 {
            var stack = try current.layers.map { try trainable($0, heads: teacher.config.numAttentionHeads, eps: eps) }
            // The embeddings are not pruned: the dense model's first-layer input is the pruned one's too.
            let fit = try BlockTuning.fit(&stack, input: targets["layer.0.qkv"]!, lengths: seqs.map(\.count), target: targets["final"]!,
                                          epochs: epochs, optimizer: .adam(learningRate: jointLearningRate ?? learningRate / 3),
                                          objective: objective, seed: seed &+ 1000)
            progress?(objective == .hiddenStates
                      ? "all layers jointly: mse \(String(format: "%.5f", fit.before)) → \(String(format: "%.5f", fit.after))"
                      : "all layers jointly on the sentence embedding: 1 − cosine \(String(format: "%.5f", fit.before)) → \(String(format: "%.5f", fit.after))")
            for (l, w) in stack.enumerated() { try Self.write(w, into: &current.layers[l]) }
        }
        return current
    }
}
