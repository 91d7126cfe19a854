import CCondenseKernels
import Condense
import CondenseInference
import Foundation

/// Compression of a Llama-family decoder read from GGUF (its weights dequantized to f32 as the
/// starting point), one block at a time on calibration sequences:
///
/// 1. each projection, in the order the block uses them (Q/K/V, output, gate/up, down), gets
///    the Gram matrix of its inputs in the compressed model so far and is pruned to 2:4
///    (SparseGPT, or Wanda's |w|·‖x‖) and/or rounded to 4 bits (GPTQ) with error compensation;
/// 2. with `recoveryEpochs` > 0 the block then trains (``DecoderBlockTuning``, masks kept)
///    towards the dense model's outputs of the block, and the 4-bit rounding happens after it;
/// 3. the compressed block's outputs feed the next block.
///
/// The output head (tied to the embedding in small models) is compressed on the final hidden
/// states; the token embedding is kept as stored (one row is read per token).
///
/// ```swift
/// let gguf = try GGUFFile(contentsOf: "SmolLM2-135M-Instruct.Q4_1.gguf")
/// let lm = try LanguageModel(file: gguf)
/// let calib = try LLMCompression.selfGenerated(lm, sequences: 32, length: 128)
/// let r = try LLMCompression.compress(gguf, calibration: calib, options: .init(format: .sparse24Int4))
/// try DecoderFolder.write(to: "smol-24", metadata: gguf, tensors: r.parts, report: r.report)
/// ```
public enum LLMCompression {
    /// The format every projection is written in by `--format`.
    public enum Format: String, Sendable, CaseIterable {
        /// 4-bit with scale and minimum per 32 (ggml's Q4_1 blocks), GPTQ.
        case int4
        /// 2:4 with f32 values.
        case sparse24 = "2:4"
        /// 2:4 with int8 values (per-row scales).
        case sparse24Int8 = "2:4-int8"
        /// 2:4 with signed 4-bit values, one scale per 64 columns (`Sparse24Int4Weights`).
        case sparse24Int4 = "2:4-int4"

        var prunes: Bool { self != .int4 }
        var grid: WeightGrid? { self == .int4 ? .q4_1 : self == .sparse24Int4 ? .s24q4 : nil }
    }

    /// The output head's format.
    public enum HeadFormat: String, Sendable, CaseIterable {
        /// As stored in the GGUF file.
        case keep
        /// ggml's Q4_0 blocks (4.5 bits per weight), GPTQ.
        case int4
        /// Like the projections' 2:4-int4.
        case sparse24Int4 = "2:4-int4"
    }

    /// How 2:4 masks are chosen.
    public enum Method: String, Sendable, CaseIterable {
        /// OBS saliency with error compensation (SparseGPT).
        case sparsegpt
        /// |w|·‖x‖ per input column, no compensation of the pruned weights (Wanda); the 4-bit
        /// rounding still compensates.
        case wanda
    }

    /// The one-shot format, the head's treatment and the reconstruction's settings.
    public struct Options: Sendable {
        public var format: Format
        public var head: HeadFormat
        public var method: Method = .sparsegpt
        /// Training epochs per block after pruning; 0: one-shot.
        public var recoveryEpochs = 0
        public var learningRate: Float = 1e-4
        public var batchSequences = 4
        public var damping = 0.01
        /// Projections left as stored: each entry matches a tensor name that contains it
        /// (`attn_v`, `blk.0.`, `blk.3.ffn_down`).
        public var keep: [String] = []
        /// Recovery weighs every channel of the residual stream alike
        /// (``DecoderBlockTuning/balancedChannelWeights(_:hidden:)``) instead of by its size.
        /// Off by default: on SmolLM2 2:4-int4 (4 epochs at 10⁻³) it gave perplexity 96.5 against
        /// 89.7 with the plain error.
        public var balancedLoss = false

        /// The head defaults to int4 for 2:4-int4 (generation reads it every token: a third of
        /// SmolLM2's bytes) and stays as stored otherwise (`int4` then reproduces a Q4_1 file).
        public init(format: Format, head: HeadFormat? = nil) {
            self.format = format
            self.head = head ?? (format == .sparse24Int4 ? .int4 : .keep)
        }
    }

    /// What happened to one projection.
    public struct ProjectionReport: Sendable {
        public let name: String
        public let format: String
        /// Why it is not in the requested format; nil when it is.
        public let reason: String?
        /// ‖X·(W − Ŵ)ᵀ‖² / ‖X·Wᵀ‖² on its calibration inputs (one-shot, before recovery).
        public let relativeError: Double
    }

    /// The compressed parts of a one-shot run with what each projection's reconstruction cost.
    public struct Result: Sendable {
        public let parts: [(name: String, part: DecoderFolder.Part)]
        public let projections: [ProjectionReport]
        /// Per block: the mean squared error against the dense block's output before and after
        /// recovery (equal without recovery).
        public let blockLoss: [(before: Double, after: Double)]
        public let seconds: Double
        /// For the folder's `compression-report.json`.
        public var report: [String: Any] {
            [
                "projections": projections.map { p -> [String: Any] in
                    var d: [String: Any] = ["name": p.name, "format": p.format, "relative_error": p.relativeError]
                    if let r = p.reason { d["reason"] = r }
                    return d
                },
                "block_loss": blockLoss.map { ["before": $0.before, "after": $0.after] },
                "seconds": seconds,
            ]
        }
    }

    /// Calibration sequences from text: its tokens in windows of `length`, at most `sequences`.
    public static func sequences(from text: String, tokenizer: any Tokenizer, length: Int, sequences: Int) -> [[Int32]] {
        let ids = tokenizer.encode(text, addSpecial: false)
        return stride(from: 0, to: ids.count - length + 1, by: length).prefix(sequences).map { Array(ids[$0..<($0 + length)]) }
    }

    /// Prompts for self-generated calibration text: varied registers, so no one domain shapes the Hessians.
    public static let prompts = [
        "The history of the Roman Empire", "def quicksort(items):", "Dear hiring manager,", "In quantum mechanics, the wave function",
        "Once upon a time in a small village", "The recipe calls for two cups of flour", "User: How do I reset my password?\nAssistant:",
        "The stock market fell sharply today as", "Photosynthesis is the process by which", "import numpy as np\n",
        "The rules of chess are simple:", "A list of the largest cities in Europe:", "SELECT name, age FROM users WHERE",
        "The patient presented with a fever and", "In 1969, the Apollo 11 mission", "My favourite book is",
        "Climate change affects agriculture because", "The theorem states that for every integer n", "Q: What is the capital of Japan?\nA:",
        "The committee met on Tuesday to discuss", "How to change a flat tyre: first,", "<html>\n<head>\n<title>",
        "The mitochondria is known as", "Ladies and gentlemen, welcome to", "The French Revolution began in",
        "To install the package, run", "Water boils at 100 degrees Celsius", "The following poem describes the sea:",
        "Machine learning models are trained by", "The train departs from platform 4 at", "Translate to French: Good morning",
        "Our quarterly revenue increased by",
    ]

    /// Calibration sequences generated by the model itself (temperature 0.8, top-k 40), `length`
    /// tokens each, prompt included: text in the model's own distribution when none is given.
    public static func selfGenerated(_ lm: LanguageModel, sequences: Int, length: Int, seed: UInt64 = 1, first: Int = 0) throws -> [[Int32]] {
        guard length >= 2, length <= lm.config.contextLength else {
            throw CondenseError.invalidArgument("calibration sequences of \(length) tokens: the model's context is \(lm.config.contextLength)")
        }
        var out: [[Int32]] = []
        for i in first..<(first + sequences) {
            let prompt = Array(lm.tokenizer.encode(prompts[i % prompts.count]).prefix(length / 2))
            var o = GenerationOptions(maxTokens: length - prompt.count)
            (o.temperature, o.topK, o.seed, o.stopAtEOS) = (0.8, 40, seed &+ UInt64(i), false)
            let s = try lm.session(contextLength: length)
            let r = try s.generate(tokenIDs: prompt, o) { _ in }
            var ids = Array((prompt + r.tokens).prefix(length))
            while ids.count < length { ids.append(ids.last ?? 0) }
            out.append(ids)
        }
        return out
    }

    /// Compresses every projection of the model in `f`.
    /// - Throws: `CondenseError` for a model the decoder does not read, calibration sequences
    ///   that are empty, of different lengths or with ids outside the vocabulary.
    public static func compress(_ f: GGUFFile, calibration: [[Int32]], options o: Options,
                                log: (String) -> Void = { _ in }) throws -> Result {
        let start = ContinuousClock.now
        let c = try DecoderConfig(gguf: f)
        let d = c.hidden
        guard let t = calibration.first?.count, t >= 1, calibration.allSatisfy({ $0.count == t }) else {
            throw CondenseError.invalidArgument("calibration needs sequences of one length, got lengths \(Set(calibration.map(\.count)).sorted())")
        }
        let rows = try CheckedSize.product(calibration.count, t, of: "calibration rows")
        var xs = try embed(f, c, calibration)
        let embd = try f.tensor(ModelTensor.tokenEmbedding)
        let vocab = embd.dims[1]
        var xd = xs   // the dense model's hidden states
        func vector(_ name: String, _ n: Int) throws -> [Float] { try Self.vector(f, name, n) }
        var parts: [(name: String, part: DecoderFolder.Part)] = []
        var reports: [ProjectionReport] = []
        var losses: [(Double, Double)] = []
        parts.append((ModelTensor.tokenEmbedding, .ggml(embd.type, rows: vocab, columns: d, embd.data)))
        let (roles, paths, stages) = (Self.roles, Self.paths, Self.stages)

        for l in 0..<c.layers {
            let dense = try Self.denseBlock(f, c, layer: l)
            // One-shot compression runs every architecture's block (its forward pass composes the
            // same op set as the decoder's); recovery trains the Llama block only, so another block
            // is refused at the first layer, before any projection is compressed.
            guard o.recoveryEpochs == 0 || dense.trainable else {
                throw CondenseError.invalidArgument("recovery (--recovery-*) trains the Llama block only; general.architecture '\(c.architecture)' compresses one-shot (recovery epochs 0)")
            }
            let target = try DecoderBlockTuning.forward(dense, x: xd, sequenceLength: t).y
            var block = dense
            var chosen = [String](repeating: "", count: 7), reasons = [String?](repeating: nil, count: 7)
            var finals = [ReconstructedWeights?](repeating: nil, count: 7)
            /// One pass over the stages: each projection compressed on its inputs in the block as
            /// compressed so far. `quantize`: round to the grid (masks kept from an earlier pass
            /// when `fixedMasks`).
            func pass(prune: Bool, quantize: Bool, fixedMasks: Bool) throws {
                for (members, input) in stages {
                    let pa = try DecoderBlockTuning.forward(block, x: xs, sequenceLength: t)
                    let xin = input(pa)
                    let kk = block[keyPath: paths[members[0]]].k
                    var gram = [Double](repeating: 0, count: kk * kk)   // Wanda's column norms read it too
                    try xin.withUnsafeBufferPointer { try Reconstruction.accumulateGram($0.baseAddress!, rows: rows, k: kk, into: &gram) }
                    let hf = try Reconstruction.HessianFactor(gram: gram, k: kk, damping: o.damping)
                    for m in members {
                        let lin = block[keyPath: paths[m]]
                        let tensorName = roles[m].name(l)
                        if let k = o.keep.first(where: { tensorName.contains($0) }) {
                            reasons[m] = "kept as stored (--keep \(k))"
                            continue
                        }
                        let (fits24, fitsGrid) = (kk % 4 == 0, o.format.grid.map { kk % $0.group == 0 } ?? true)
                        let doPrune = prune && o.format.prunes && fits24
                        let grid = quantize && fitsGrid ? o.format.grid : nil
                        if o.format.prunes && !fits24 { reasons[m] = "K = \(kk) is not a multiple of 4" }
                        if quantize, let g = o.format.grid, !fitsGrid { reasons[m] = "K = \(kk) is not a multiple of \(g.group)" }
                        if !doPrune && grid == nil && !fixedMasks { continue }
                        var w = try Matrix(rows: lin.n, columns: kk, elements: lin.weight)
                        var mask = fixedMasks ? lin.mask : nil
                        if doPrune, o.method == .wanda {
                            mask = try Pruning.semiStructured(w, score: .activationAware(inputNorms: Self.columnNorms(gram, kk))).keep
                            w = try PruningMask(rows: lin.n, columns: kk, keep: mask!).apply(to: w)
                        }
                        let r = try Reconstruction.compress(w, hessian: hf, prune24: doPrune && mask == nil, mask: mask,
                                                            grid: grid)
                        let updated = try BlockTuning.Linear(weight: r.weights.elements, bias: lin.bias, n: lin.n, k: kk,
                                                             mask: doPrune || mask != nil ? r.mask : nil)
                        block[keyPath: paths[m]] = updated
                        finals[m] = r
                    }
                }
            }
            let grid = o.format.grid
            var b0 = 0.0   // the error before recovery
            if o.recoveryEpochs > 0 {
                try pass(prune: true, quantize: false, fixedMasks: false)
                let cw = o.balancedLoss ? DecoderBlockTuning.balancedChannelWeights(target, hidden: d) : nil
                b0 = try DecoderBlockTuning.loss(block, input: xs, sequenceLength: t, target: target)
                _ = try DecoderBlockTuning.fit(&block, input: xs, sequenceLength: t, target: target, epochs: o.recoveryEpochs,
                                                          batchSequences: o.batchSequences, optimizer: .adam(learningRate: o.learningRate),
                                                          channelWeights: cw)
                if grid != nil { try pass(prune: false, quantize: true, fixedMasks: true) }
            } else {
                try pass(prune: true, quantize: true, fixedMasks: false)
            }
            // The compressed block's outputs: its error, and the next block's inputs.
            let out = try DecoderBlockTuning.forward(block, x: xs, sequenceLength: t).y
            let after = try DecoderBlockTuning.meanSquaredError(out, target, hidden: d)
            losses.append((o.recoveryEpochs > 0 ? b0 : after, after))
            // Each projection's error on its dense inputs, and its stored form.
            let densePass = try DecoderBlockTuning.forward(dense, x: xs, sequenceLength: t)
            for (members, input) in stages {
                let xin = input(densePass)
                for m in members {
                    let (a, b) = (dense[keyPath: paths[m]], block[keyPath: paths[m]])
                    let err = try Self.relativeError(x: xin, rows: rows, dense: a, compressed: b)
                    let name = roles[m].name(l)
                    let (part, format) = try Self.stored(b, final: finals[m], format: reasons[m] == nil ? o.format : nil,
                                                         source: Self.sourceTensor(f, c, layer: l, roles[m]), name: name)
                    chosen[m] = format
                    parts.append((name, part))
                    reports.append(ProjectionReport(name: name, format: format, reason: reasons[m], relativeError: err))
                }
            }
            parts.append((BlockTensor.attnNorm.name(l), .vector(block.attnNorm)))
            parts.append((BlockTensor.ffnNorm.name(l), .vector(block.ffnNorm)))
            for (t, v) in [(BlockTensor.qNorm, block.qNorm), (.kNorm, block.kNorm), (.postAttnNorm, block.postAttnNorm), (.postFFNNorm, block.postFFNNorm)] {
                if let v { parts.append((t.name(l), .vector(v))) }
            }
            if c.qkvBias {
                parts.append((BlockTensor.q.name(l, "bias"), .vector(block.q.bias)))
                parts.append((BlockTensor.k.name(l, "bias"), .vector(block.k.bias)))
                parts.append((BlockTensor.v.name(l, "bias"), .vector(block.v.bias)))
            }
            xs = out
            xd = target
            log("block \(l): \(chosen.joined(separator: " ")), output MSE \(String(format: "%.3g", losses.last!.0))"
                + (o.recoveryEpochs > 0 ? " → \(String(format: "%.3g", losses.last!.1)) after recovery" : ""))
        }
        let outNorm = try vector(ModelTensor.outputNorm, d)
        parts.append((ModelTensor.outputNorm, .vector(outNorm)))
        if f.tensors.contains(where: { $0.name == ModelTensor.ropeFrequencies }) {
            parts.append((ModelTensor.ropeFrequencies, .vector(try vector(ModelTensor.ropeFrequencies, c.headDim / 2))))
        }
        // The head: on the final hidden states of the compressed model.
        let headName = f.tensors.contains { $0.name == ModelTensor.output } ? ModelTensor.output : ModelTensor.tokenEmbedding
        if o.head != .keep || headName == ModelTensor.output {
            let src = try f.tensor(headName)
            if o.head == .keep {
                parts.append((ModelTensor.output, .ggml(src.type, rows: vocab, columns: d, src.data)))
                reports.append(ProjectionReport(name: ModelTensor.output, format: "ggml:\(src.type)", reason: "--head keep", relativeError: 0))
            } else {
                let (hs, _) = DecoderBlockTuning.rmsNorm(xs, rows: rows, outNorm, eps: c.rmsEpsilon)
                let hf = try Reconstruction.HessianFactor(inputs: hs, rows: rows, k: d, damping: o.damping)
                let w = try Matrix(rows: vocab, columns: d, elements: f.dequantized(headName))
                let grid: WeightGrid = o.head == .int4 ? .q4_0 : .s24q4
                guard d % grid.group == 0 else { throw CondenseError.invalidArgument("the head's K = \(d) is not a multiple of \(grid.group) for \(o.head.rawValue)") }
                let r = try Reconstruction.compress(w, hessian: hf, prune24: grid == .s24q4, grid: grid)
                let lin = try BlockTuning.Linear(weight: r.weights.elements, bias: [Float](repeating: 0, count: vocab), n: vocab, k: d)
                let err = try Self.relativeError(x: hs, rows: rows,
                                                 dense: BlockTuning.Linear(weight: w.elements, bias: lin.bias, n: vocab, k: d), compressed: lin)
                let part: DecoderFolder.Part = grid == .q4_0
                    ? .ggml(.q4_0, rows: vocab, columns: d, GGMLBlocks.encode(.q4_0, r))
                    : .sparse24Int4(try Sparse24Int4Weights(quantizing: r.weights, scales: r.scales))
                parts.append((ModelTensor.output, part))
                reports.append(ProjectionReport(name: ModelTensor.output, format: grid == .q4_0 ? "ggml:q4_0" : "2:4-int4", reason: nil, relativeError: err))
                log("head: \(o.head.rawValue), relative error \(String(format: "%.3g", err))")
            }
        }
        return Result(parts: parts, projections: reports, blockLoss: losses,
                      seconds: Double((ContinuousClock.now - start).components.seconds))
    }

    /// A block's projections in the order it uses them: by their role in the architecture's
    /// table, and by their place in ``DecoderBlockTuning/Block``.
    static let roles: [BlockTensor] = [.q, .k, .v, .output, .gate, .up, .down]
    static var paths: [WritableKeyPath<DecoderBlockTuning.Block, BlockTuning.Linear>] { [\.q, \.k, \.v, \.o, \.gate, \.up, \.down] }
    /// The projections (indices into ``roles``) that read one input, and that input in a pass.
    static var stages: [([Int], (DecoderBlockTuning.Pass) -> [Float])] {
        [([0, 1, 2], { $0.h1 }), ([3], { $0.ctx }), ([4, 5], { $0.h2 }), ([6], { $0.act })]
    }

    /// The scaled token embeddings of `sequences`, one row of `hidden` per token.
    /// - Throws: ``CondenseError`` for an embedding of the wrong shape or type, or an id
    ///   outside the vocabulary.
    static func embed(_ f: GGUFFile, _ c: DecoderConfig, _ sequences: [[Int32]]) throws -> [Float] {
        let d = c.hidden
        let rows = try CheckedSize.product(sequences.count, sequences.first?.count ?? 0, of: "calibration rows")
        let embd = try f.tensor(ModelTensor.tokenEmbedding)
        guard embd.dims.count == 2, embd.dims[0] == d, d % embd.type.blockSize == 0, GGUFDequantize.supported.contains(embd.type) else {
            throw CondenseError.invalidTensor(name: ModelTensor.tokenEmbedding, reason: "shape \(embd.dims) type \(embd.type)")
        }
        let vocab = embd.dims[1], rowBytes = d / embd.type.blockSize * embd.type.blockBytes
        guard embd.data.count >= (try CheckedSize.product(vocab, rowBytes, of: ModelTensor.tokenEmbedding)) else {
            throw CondenseError.invalidTensor(name: ModelTensor.tokenEmbedding, reason: "\(embd.data.count) bytes for \(vocab) rows of \(rowBytes)")
        }
        var xs = [Float](repeating: 0, count: try CheckedSize.product(rows, d, of: "calibration rows"))
        try embd.data.withUnsafeBytes { e in
            try xs.withUnsafeMutableBufferPointer { x in
                for (i, id) in sequences.joined().enumerated() {
                    guard id >= 0, Int(id) < vocab else { throw CondenseError.invalidInput("calibration token id \(id) is outside the vocabulary of \(vocab)") }
                    try NativeStatus.check(condense_gguf_dequantize(embd.type.rawValue, e.baseAddress! + Int(id) * rowBytes, d, x.baseAddress! + i * d),
                                           kernel: "dequantize token_embd.weight")
                }
            }
        }
        if c.embeddingScale != 1 { for i in xs.indices { xs[i] *= c.embeddingScale } }
        return xs
    }

    /// Block `l` of the model in `f`, its weights dequantized to f32 (no masks).
    /// - Throws: `CondenseError/invalidTensor(name:reason:)` for a missing tensor or a wrong shape.
    public static func denseBlock(_ f: GGUFFile, _ c: DecoderConfig, layer l: Int) throws -> DecoderBlockTuning.Block {
        let (d, kvd, ff, qd, hd) = (c.hidden, c.kvDim, c.feedForward, c.qDim, c.headDim)
        let sliding = c.slidingLayers[l]
        var shape = DecoderBlockTuning.Shape(hidden: d, heads: c.heads, kvHeads: c.kvHeads, headDim: hd, feedForward: ff,
                                             ropeBase: sliding ? c.ropeBaseSliding : c.ropeBase, eps: c.rmsEpsilon, neox: c.ropeNeoX)
        shape.ropeScale = sliding ? 1 : c.ropeScale
        if !sliding, f.tensors.contains(where: { $0.name == ModelTensor.ropeFrequencies }) {
            shape.ropeFactors = try vector(f, ModelTensor.ropeFrequencies, hd / 2)
        }
        if c.attentionScale != 1 / Float(hd).squareRoot() { shape.attentionScale = c.attentionScale }
        shape.attentionSoftcap = c.attentionSoftcap
        shape.window = sliding ? c.slidingWindow : 0
        shape.activation = c.activation
        func linear(_ t: BlockTensor, _ n: Int, _ k: Int) throws -> BlockTuning.Linear {
            let src = try sourceTensor(f, c, layer: l, t)
            guard src.dims == [k, n] else { throw CondenseError.invalidTensor(name: src.name, reason: "shape \(src.dims), expected \([k, n])") }
            let w = try GGUFDequantize.floats(src.data, type: src.type, count: n * k, name: src.name)
            return try BlockTuning.Linear(weight: w, bias: [Float](repeating: 0, count: n), n: n, k: k)
        }
        var q = try linear(.q, qd, d), k = try linear(.k, kvd, d), v = try linear(.v, kvd, d)
        if c.qkvBias {
            q.bias = try vector(f, BlockTensor.q.name(l, "bias"), qd)
            k.bias = try vector(f, BlockTensor.k.name(l, "bias"), kvd)
            v.bias = try vector(f, BlockTensor.v.name(l, "bias"), kvd)
        }
        var b = try DecoderBlockTuning.Block(
            shape: shape, attnNorm: vector(f, BlockTensor.attnNorm.name(l), d), ffnNorm: vector(f, BlockTensor.ffnNorm.name(l), d),
            q: q, k: k, v: v, o: linear(.output, d, qd), gate: linear(.gate, ff, d), up: linear(.up, ff, d),
            down: linear(.down, d, ff), qkvBias: c.qkvBias)
        if c.qkNorm {
            b.qNorm = try vector(f, BlockTensor.qNorm.name(l), hd)
            b.kNorm = try vector(f, BlockTensor.kNorm.name(l), hd)
        }
        if c.postNorms {
            b.postAttnNorm = try vector(f, BlockTensor.postAttnNorm.name(l), d)
            b.postFFNNorm = try vector(f, BlockTensor.postFFNNorm.name(l), d)
        }
        return b
    }

    /// The stored tensor of one projection of layer `l`: its own, or its rows of the fused one
    /// (phi3's `attn_qkv` holds Q, K, V; its `ffn_up` holds gate then up).
    static func sourceTensor(_ f: GGUFFile, _ c: DecoderConfig, layer l: Int, _ t: BlockTensor) throws -> GGUFFile.Tensor {
        let own = t.name(l)
        if f.tensors.contains(where: { $0.name == own }), !(t == .up && !f.tensors.contains(where: { $0.name == BlockTensor.gate.name(l) })) {
            return try f.tensor(own)
        }
        let (fused, offset, rows): (BlockTensor, Int, Int)
        switch t {
        case .q: (fused, offset, rows) = (.qkv, 0, c.qDim)
        case .k: (fused, offset, rows) = (.qkv, c.qDim, c.kvDim)
        case .v: (fused, offset, rows) = (.qkv, c.qDim + c.kvDim, c.kvDim)
        case .gate: (fused, offset, rows) = (.up, 0, c.feedForward)
        case .up: (fused, offset, rows) = (.up, c.feedForward, c.feedForward)
        default: return try f.tensor(own)
        }
        let src = try f.tensor(fused.name(l))
        guard src.dims.count == 2, src.dims[0] % src.type.blockSize == 0, src.dims[1] >= offset + rows else {
            throw CondenseError.invalidTensor(name: src.name, reason: "shape \(src.dims) cannot hold rows \(offset)..<\(offset + rows)")
        }
        let rowBytes = src.dims[0] / src.type.blockSize * src.type.blockBytes
        guard src.data.count >= (offset + rows) * rowBytes else {
            throw CondenseError.invalidTensor(name: src.name, reason: "\(src.data.count) bytes for \(offset + rows) rows of \(rowBytes)")
        }
        let start = src.data.startIndex + offset * rowBytes
        return GGUFFile.Tensor(name: own, dims: [src.dims[0], rows], type: src.type, data: Data(src.data[start..<(start + rows * rowBytes)]))
    }

    static func vector(_ f: GGUFFile, _ name: String, _ n: Int) throws -> [Float] {
        let tn = try f.tensor(name)
        guard tn.dims == [n] else { throw CondenseError.invalidTensor(name: name, reason: "shape \(tn.dims), expected [\(n)]") }
        return try f.dequantized(name)
    }

    /// ‖x_j‖ per input column from the Gram matrix's diagonal (Wanda's activation norms).
    static func columnNorms(_ gram: [Double], _ k: Int) -> [Float] { (0..<k).map { Float(gram[$0 * k + $0].squareRoot()) } }

    /// ‖X·(W − Ŵ)ᵀ‖² / ‖X·Wᵀ‖².
    static func relativeError(x: [Float], rows: Int, dense: BlockTuning.Linear, compressed: BlockTuning.Linear) throws -> Double {
        let a = try BlockTuning.linear(dense, x, rows: rows), b = try BlockTuning.linear(compressed, x, rows: rows)
        var num = 0.0, den = 0.0
        for i in a.indices { let e = Double(a[i] - b[i]); num += e * e; den += Double(a[i]) * Double(a[i]) }
        return den > 0 ? num / den : 0
    }

    /// The stored form of a compressed projection; `format` nil: the source tensor as it was.
    static func stored(_ l: BlockTuning.Linear, final r: ReconstructedWeights?, format: Format?, source: GGUFFile.Tensor,
                       name: String) throws -> (DecoderFolder.Part, String) {
        let w = try Matrix(rows: l.n, columns: l.k, elements: l.weight)
        switch format {
        case nil:
            return (.ggml(source.type, rows: l.n, columns: l.k, source.data), "ggml:\(source.type)")
        case .int4?:
            guard let r else { throw CondenseError.invalidArgument("\(name): no 4-bit codes") }
            return (.ggml(.q4_1, rows: l.n, columns: l.k, GGMLBlocks.encode(.q4_1, r)), "ggml:q4_1")
        case .sparse24Int4?:
            guard let r else { throw CondenseError.invalidArgument("\(name): no 4-bit codes") }
            return (.sparse24Int4(try Sparse24Int4Weights(quantizing: w, scales: r.scales)), "2:4-int4")
        case .sparse24?:
            return (.linear(try LinearLayer(weights: .sparse24(Sparse24Matrix(dense: w)))), "2:4")
        case .sparse24Int8?:
            return (.linear(try LinearLayer(weights: .sparse24Int8(Sparse24Int8Weights(quantizing: Sparse24Matrix(dense: w))))), "2:4-int8")
        }
    }
}

/// ggml's Q4_0 and Q4_1 blocks from 4-bit codes on their grids.
enum GGMLBlocks {
    static func encode(_ type: GGUFFile.TensorType, _ r: ReconstructedWeights) -> Data {
        let (rows, k) = (r.weights.rows, r.weights.columns), groups = k / 32
        var out = Data(capacity: rows * groups * (type == .q4_1 ? 20 : 18))
        func half(_ v: Float) { let b = Float16(v).bitPattern; out.append(UInt8(b & 0xFF)); out.append(UInt8(b >> 8)) }
        for row in 0..<rows {
            for g in 0..<groups {
                half(r.scales[row * groups + g])
                if type == .q4_1 { half(r.mins[row * groups + g]) }
                let base = row * k + g * 32
                for j in 0..<16 { out.append(r.codes[base + j] & 15 | (r.codes[base + 16 + j] & 15) << 4) }
            }
        }
        return out
    }
}
