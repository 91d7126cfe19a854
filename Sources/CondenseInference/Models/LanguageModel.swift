import CCondenseKernels
import Condense
import Foundation

/// A decoder LLM loaded from a GGUF file (or a folder written by `condense compress --llm`):
/// any architecture of ``DecoderArchitecture/all`` (Llama 1–3, Mistral, Qwen 2/2.5/3, Gemma 3,
/// Phi-3) with the tokenizer its file describes (byte-level BPE or SentencePiece). Projections are
/// `LinearLayer`s placed through the registry; sessions share the weights and each holds its own
/// KV cache.
///
/// ```swift
/// let lm = try LanguageModel(gguf: "SmolLM2-135M-Instruct.Q4_1.gguf")
/// let session = try lm.session()
/// for try await piece in session.generate("The capital of France is", GenerationOptions(maxTokens: 8)) {
///     print(piece, terminator: "")
/// }
/// ```
public final class LanguageModel: Sendable {
    public let config: DecoderConfig
    public let tokenizer: any Tokenizer
    /// The ISA of the helper kernels (attention): the registry's pinned native level, else the active one.
    public let isa: ISA
    /// `general.name`, or the file name.
    public let name: String

    /// One block's weights. Projections that read the same input are stacked into one layer
    /// (Q, K, V; gate, up): one kernel call per input instead of three or two.
    struct Layer: Sendable {
        let attnNorm: [Float], ffnNorm: [Float]
        /// Per-head RMSNorm weights of Q and K (headDim each), when the architecture has QK-norm.
        let qNorm: [Float]?, kNorm: [Float]?
        /// Norms of the attention and FFN outputs before their residual adds (Gemma 3).
        let postAttnNorm: [Float]?, postFFNNorm: [Float]?
        let qkv: any PreparedLinear      // outputs: Q (qDim), K (kvDim), V (kvDim)
        let o: any PreparedLinear
        let gateUp: any PreparedLinear   // outputs: gate (ff), up (ff)
        let down: any PreparedLinear
        /// Bytes its projections read per generated token.
        let bytesPerToken: Int
    }

    /// The token embedding as stored; each looked-up row is dequantized exactly when used.
    let tokenEmbedding: GGUFFile.Tensor
    let layers: [Layer]
    let outputNorm: [Float]
    let head: any PreparedLinear
    package let vocabSize: Int
    /// Llama 3's RoPE frequency divisors (headDim / 2), when the file has `rope_freqs.weight`.
    let ropeFrequencyFactors: [Float]?
    /// The layers as one job of the thread team, when every projection runs on GGUF blocks.
    let fused: FusedDecoder?

    /// Where each projection runs: the kernel, and the registry's placement for f32 ones.
    public let placements: [(name: String, placement: String)]
    /// Bytes of projection and head weights read for one generated token (M = 1), in the
    /// formats they run in.
    public let weightBytesPerToken: Int
    /// Of ``weightBytesPerToken``, the output head's (tied to the embedding or not): reported
    /// apart, since a small model's head can be a third of what a token reads.
    public let headBytesPerToken: Int

    /// Loads and validates `path`: metadata, every tensor's shape, the tokenizer.
    /// - Throws: `CondenseError` naming the file and the key or tensor.
    public convenience init(gguf path: String, registry: BackendRegistry = .standard(), keepBlocks: Bool = true) throws {
        let f = try GGUFFile(contentsOf: path)
        do {
            try self.init(file: f, registry: registry, fallbackName: URL(fileURLWithPath: path).lastPathComponent, keepBlocks: keepBlocks)
        } catch let e as CondenseError {
            throw e.inFile(path)
        }
    }

    /// A model from a parsed file. `keepBlocks`: projections stored as Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K or Q6_K run on
    /// their blocks (`GGUFBlockLinear`: read at their stored size, activations quantized per
    /// block as llama.cpp does); F16 and BF16 projections stay 16-bit (`HalfPrecisionMatrix`); the
    /// others, or all with `keepBlocks: false`, are dequantized exactly to f32. Both kinds are
    /// placed through the registry.
    public convenience init(file f: GGUFFile, registry: BackendRegistry = .standard(), fallbackName: String = "model", keepBlocks: Bool = true) throws {
        var source = GGUFTensorSource(file: f, placer: ProjectionPlacer(registry: registry, isa: registry.helperISA, keepBlocks: keepBlocks))
        try self.init(metadata: f, source: &source, registry: registry, fallbackName: fallbackName)
    }

    /// The one loader: the architecture's table walked over a tensor source (the GGUF file or
    /// the compressed folder), every shape checked.
    convenience init(metadata f: GGUFFile, source: inout some TensorSource, registry: BackendRegistry, fallbackName: String) throws {
        let c = try DecoderConfig(gguf: f)
        let arch = try DecoderArchitecture.named(c.architecture)
        let tokenizer = try makeTokenizer(gguf: f)
        let name = f.metadata["general.name"]?.string ?? fallbackName
        let (d, hd) = (c.hidden, c.headDim)
        let embd = try source.embedding(hidden: d)
        try Self.checkEmbedding(embd, hidden: d, tokenizer: tokenizer)
        let vocabSize = embd.dims[1]
        for t in ["rope_factors_long.weight", "rope_factors_short.weight"] where source.has(t) {
            throw CondenseError.invalidTensor(name: t, reason: "LongRoPE scaling (Phi-3 128k) is not supported")
        }
        var ls: [Layer] = []
        let has = Set(arch.block)
        for l in 0..<c.layers { ls.append(try Self.layer(l, c, has: has, source: &source)) }
        // A layer in the file beyond block_count would be a different model: refuse it.
        if let extra = source.tensorNames.first(where: { $0.hasPrefix("blk.\(c.layers).") }) {
            throw CondenseError.invalidModel("tensor '\(extra)' belongs to a layer beyond block_count \(c.layers)")
        }
        let outputNorm = try source.vector(ModelTensor.outputNorm, d)
        let factors = source.has(ModelTensor.ropeFrequencies) ? try source.vector(ModelTensor.ropeFrequencies, hd / 2) : nil
        if let bad = factors?.first(where: { !($0.isFinite && $0 > 0) }) {
            throw CondenseError.invalidTensor(name: ModelTensor.ropeFrequencies, reason: "holds \(bad); every divisor must be finite and > 0")
        }
        // The output head is tied to the embedding when `output.weight` is absent.
        let before = source.placer.perToken
        let head = try source.head(vocab: vocabSize, hidden: d, embedding: embd)
        self.init(config: c, tokenizer: tokenizer, isa: registry.helperISA, name: name, tokenEmbedding: embd, layers: ls,
                  outputNorm: outputNorm, head: head, vocabSize: vocabSize, ropeFrequencyFactors: factors,
                  placements: source.placer.places, weightBytesPerToken: source.placer.perToken,
                  headBytesPerToken: source.placer.perToken - before)
    }

    /// Block `l` from `source`: its norms and its projections, stacked by input.
    static func layer(_ l: Int, _ c: DecoderConfig, has: Set<BlockTensor>, source: inout some TensorSource) throws -> Layer {
        let (d, qd, kvd, ff, hd) = (c.hidden, c.qDim, c.kvDim, c.feedForward, c.headDim)
        func norm(_ t: BlockTensor, _ n: Int) throws -> [Float]? { has.contains(t) ? try source.vector(t.name(l), n) : nil }
        let before = source.placer.perToken
        // Fused tensors where the architecture fuses them, unless the source holds them split
        // (a compressed folder stores each projection on its own).
        let fusedQKV = has.contains(.qkv) && !source.has(BlockTensor.q.name(l))
        let qkv = fusedQKV
            ? try source.projection([BlockTensor.qkv.stem(l)], outs: [qd + 2 * kvd], inp: d, bias: c.qkvBias)
            : try source.projection([BlockTensor.q, .k, .v].map { $0.stem(l) }, outs: [qd, kvd, kvd], inp: d, bias: c.qkvBias)
        let gateUp = has.contains(.gate) || source.has(BlockTensor.gate.name(l))
            ? try source.projection([BlockTensor.gate.stem(l), BlockTensor.up.stem(l)], outs: [ff, ff], inp: d, bias: false)
            : try source.projection([BlockTensor.up.stem(l)], outs: [2 * ff], inp: d, bias: false)
        let o = try source.projection([BlockTensor.output.stem(l)], outs: [d], inp: qd, bias: false)
        let down = try source.projection([BlockTensor.down.stem(l)], outs: [d], inp: ff, bias: false)
        return Layer(attnNorm: try source.vector(BlockTensor.attnNorm.name(l), d), ffnNorm: try source.vector(BlockTensor.ffnNorm.name(l), d),
                     qNorm: try norm(.qNorm, hd), kNorm: try norm(.kNorm, hd),
                     postAttnNorm: try norm(.postAttnNorm, d), postFFNNorm: try norm(.postFFNNorm, d),
                     qkv: qkv, o: o, gateUp: gateUp, down: down, bytesPerToken: source.placer.perToken - before)
    }

    init(config: DecoderConfig, tokenizer: any Tokenizer, isa: ISA, name: String, tokenEmbedding: GGUFFile.Tensor,
         layers: [Layer], outputNorm: [Float], head: any PreparedLinear, vocabSize: Int, ropeFrequencyFactors: [Float]?,
         placements: [(name: String, placement: String)], weightBytesPerToken: Int, headBytesPerToken: Int) {
        (self.config, self.tokenizer, self.isa, self.name, self.tokenEmbedding) = (config, tokenizer, isa, name, tokenEmbedding)
        (self.layers, self.outputNorm, self.head, self.vocabSize) = (layers, outputNorm, head, vocabSize)
        (self.placements, self.weightBytesPerToken, self.ropeFrequencyFactors) = (placements, weightBytesPerToken, ropeFrequencyFactors)
        self.headBytesPerToken = headBytesPerToken
        fused = FusedDecoder(config: config, layers: layers)
    }

    /// The token embedding is looked up one row at a time, each dequantized whole: a known
    /// type, rows of whole blocks, one row per token of the vocabulary (or more).
    static func checkEmbedding(_ embd: GGUFFile.Tensor, hidden d: Int, tokenizer: any Tokenizer) throws {
        guard embd.dims.count == 2, embd.dims[0] == d else {
            throw CondenseError.invalidTensor(name: "token_embd.weight", reason: "shape \(embd.dims), expected [\(d), vocab]")
        }
        guard embd.dims[1] >= tokenizer.tokens.count else {
            throw CondenseError.invalidModel("token_embd.weight has \(embd.dims[1]) rows for a vocabulary of \(tokenizer.tokens.count)")
        }
        guard GGUFDequantize.supported.contains(embd.type) else {
            throw CondenseError.invalidTensor(name: "token_embd.weight", reason: "\(embd.type) tensors are not supported")
        }
        guard d % embd.type.blockSize == 0 else {
            throw CondenseError.invalidTensor(name: "token_embd.weight", reason: "rows of \(d) are not whole \(embd.type) blocks")
        }
        let need = try CheckedSize.product(embd.dims[1], d / embd.type.blockSize, embd.type.blockBytes, of: "token_embd.weight")
        guard embd.data.count == need else {
            throw CondenseError.invalidTensor(name: "token_embd.weight", reason: "\(embd.data.count) bytes, \(need) needed")
        }
    }

    /// Writes the embedding of token `id` (in range) to `out` (hidden floats), scaled as the
    /// architecture says.
    func embed(_ id: Int32, into out: UnsafeMutablePointer<Float>) throws {
        let t = tokenEmbedding
        let d = config.hidden
        let rowBytes = d / t.type.blockSize * t.type.blockBytes
        let status = t.data.withUnsafeBytes { p in
            condense_gguf_dequantize(t.type.rawValue, p.baseAddress! + Int(id) * rowBytes, d, out)
        }
        try NativeStatus.check(status, kernel: "dequantize token_embd.weight")
        let s = config.embeddingScale
        if s != 1 { for j in 0..<d { out[j] *= s } }
    }

    /// A session of its own: a KV cache of `contextLength` tokens (at most the model's; 4096 or
    /// the model's if smaller by default) in `kvCache`'s element type.
    public func session(contextLength: Int? = nil, kvCache: KVCacheType = .f16, valueCache: KVCacheType? = nil) throws -> DecoderSession {
        try DecoderSession(self, contextLength: contextLength ?? min(config.contextLength, 4096), kvCache: kvCache, valueCache: valueCache)
    }

    /// Bytes of the KV cache a session of this context and these types allocates (as
    /// ``DecoderSession/cacheBytes``), computed without allocating: what admission control
    /// counts. Saturates at `Int.max` instead of overflowing.
    public func cacheBytes(contextLength: Int, kvCache: KVCacheType = .f16, valueCache: KVCacheType? = nil) -> Int {
        let kvd = config.kvDim, row = kvCache.rowBytes(kvd) + (valueCache ?? kvCache).rowBytes(kvd)
        var rows = 0
        for l in 0..<config.layers {
            let ring = ring(layer: l)
            rows = rows.addingReportingOverflow(ring > 0 ? min(contextLength, ring) : contextLength).partialValue
        }
        let (b, o) = max(0, rows).multipliedReportingOverflow(by: row)
        return o ? Int.max : b
    }
}

/// Where a model's tensors come from: a GGUF file or a compressed folder. The loader asks both
/// by the same ggml names (``BlockTensor``, ``ModelTensor``), so an architecture's table is
/// written once.
protocol TensorSource {
    var placer: ProjectionPlacer { get }
    var tensorNames: [String] { get }
    func has(_ name: String) -> Bool
    /// A norm or bias of `count` floats.
    func vector(_ name: String, _ count: Int) throws -> [Float]
    /// The token embedding as ggml blocks, `[hidden, vocab]`.
    func embedding(hidden: Int) throws -> GGUFFile.Tensor
    /// Projections that read one input (`names` without `.weight`), their rows stacked in order;
    /// `bias`: each has `<name>.bias`.
    mutating func projection(_ names: [String], outs: [Int], inp: Int, bias: Bool) throws -> any PreparedLinear
    /// `output.weight`, or the embedding when the head is tied.
    mutating func head(vocab: Int, hidden: Int, embedding: GGUFFile.Tensor) throws -> any PreparedLinear
}

/// The tensors of a GGUF file.
struct GGUFTensorSource: TensorSource {
    let file: GGUFFile
    var placer: ProjectionPlacer
    var tensorNames: [String] { file.tensors.map(\.name) }

    init(file: GGUFFile, placer: ProjectionPlacer) { (self.file, self.placer) = (file, placer) }

    func has(_ name: String) -> Bool { file.tensors.contains { $0.name == name } }

    func vector(_ name: String, _ count: Int) throws -> [Float] {
        let t = try file.tensor(name)
        guard t.dims == [count] else { throw CondenseError.invalidTensor(name: name, reason: "shape \(t.dims), expected [\(count)]") }
        return try file.dequantized(name)
    }

    /// As stored; the loader checks its shape (``LanguageModel/checkEmbedding(_:hidden:tokenizer:)``).
    func embedding(hidden d: Int) throws -> GGUFFile.Tensor { try file.tensor(ModelTensor.tokenEmbedding) }

    mutating func projection(_ names: [String], outs: [Int], inp: Int, bias: Bool) throws -> any PreparedLinear {
        var ts: [GGUFFile.Tensor] = []
        var bs: [Float] = []
        for (n, out) in zip(names, outs) {
            let t = try file.tensor(n + ".weight")
            guard t.dims == [inp, out] else { throw CondenseError.invalidTensor(name: n + ".weight", reason: "shape \(t.dims), expected \([inp, out])") }
            ts.append(t)
            if bias { bs += try vector(n + ".bias", out) }
        }
        return try placer.place(names.joined(separator: "+"), ts, bias: bias ? bs : nil)
    }

    mutating func head(vocab: Int, hidden d: Int, embedding: GGUFFile.Tensor) throws -> any PreparedLinear {
        if has(ModelTensor.output) { return try projection(["output"], outs: [vocab], inp: d, bias: false) }
        return try placer.place("output (tied to token_embd)", [embedding], bias: nil)
    }
}

/// Where a model's projections run, and what each reads per token: one place for the GGUF file
/// and the compressed folder, so both stack and fall back alike.
struct ProjectionPlacer {
    let registry: BackendRegistry
    let isa: ISA
    let keepBlocks: Bool
    /// Whether 2:4-int4 layers also get a dense Q4_0 form for the row counts where it is faster.
    var splitRows = true
    private(set) var places: [(name: String, placement: String)] = []
    private(set) var perToken = 0

    init(registry: BackendRegistry, isa: ISA, keepBlocks: Bool = true) {
        (self.registry, self.isa, self.keepBlocks) = (registry, isa, keepBlocks)
    }

    /// One projection from the tensors `ts` (same input), their rows stacked: on the blocks
    /// when every part is one block type with a kernel; parts of different types (Q4_K_M
    /// files keep V in Q6_K) each on their own, side by side; F16 and BF16 tensors as 16-bit
    /// weights (``HalfPrecisionMatrix``); else the f32 GEMM of the exactly dequantized weights.
    mutating func place(_ label: String, _ ts: [GGUFFile.Tensor], bias b: [Float]?) throws -> any PreparedLinear {
        let type = ts[0].type
        let blockable = keepBlocks && ts.allSatisfy { GGUFBlockLinear.supported.contains($0.type) && $0.dims[0] % $0.type.blockSize == 0 }
        if blockable, ts.allSatisfy({ $0.type == type }), ts.dropLast().allSatisfy({ $0.dims[1] % 16 == 0 }) {
            let blocks = try GGUFBlockLinear(stacking: ts, bias: b, isa: isa)
            places.append((label, "\(type) blocks → native/\(blocks.kernelName)"))
            perToken += ts.reduce(0) { $0 + $1.data.count }
            return blocks
        }
        if ts.count > 1, keepBlocks, ts.contains(where: { GGUFBlockLinear.supported.contains($0.type) }) {
            var parts: [any PreparedLinear] = []
            var start = 0
            for t in ts {
                let rows = t.dims[1]
                parts.append(try place(label + " [\(t.name)]", [t], bias: b.map { Array($0[start..<(start + rows)]) }))
                start += rows
            }
            return SideBySide(parts: parts)
        }
        let (out, inp) = (ts.reduce(0) { $0 + $1.dims[1] }, ts[0].dims[0])
        if keepBlocks, type == .f16 || type == .bf16, ts.allSatisfy({ $0.type == type }) {
            // 16-bit floats stay 16-bit: half the bytes per token of widening them to f32.
            var bits: [UInt16] = []
            bits.reserveCapacity(try CheckedSize.product(out, inp, of: label))
            for t in ts {
                let count = t.elementCount
                guard t.data.count >= count * 2 else {
                    throw CondenseError.invalidTensor(name: t.name, reason: "\(t.data.count) bytes, \(count * 2) needed")
                }
                t.data.withUnsafeBytes { raw in
                    for i in 0..<count { bits.append(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
                }
            }
            let h = try HalfPrecisionMatrix(kind: type == .f16 ? .f16 : .bf16, rows: out, columns: inp, bits: bits)
            let p = try registry.prepare(LinearLayer(weights: .half(h), bias: b), policy: .priority)
            places.append((label, "\(type): \(p.placement)"))
            perToken += h.byteCount
            return p
        }
        var w: [Float] = []
        w.reserveCapacity(try CheckedSize.product(out, inp, of: label))
        for t in ts { w += try GGUFDequantize.floats(t.data, type: t.type, count: t.elementCount, name: t.name) }
        let p = try registry.prepare(LinearLayer(weights: .dense(Matrix(rows: out, columns: inp, elements: w)), bias: b), policy: .priority)
        places.append((label, "\(Set(ts.map { "\($0.type)" }).sorted().joined(separator: "+")) as f32: \(p.placement)"))
        perToken += out * inp * 4
        return p
    }

    /// 2:4-int4 matrices of one input, their rows stacked: one kernel call. The same weights
    /// are also packed as dense Q4_0 (exactly equal) and run from the row count where that
    /// measured faster on this machine (prompts, batched decoding); a decode step's single row
    /// stays on the 2:4 kernel, which reads 26 bytes per 64 weights instead of 36.
    mutating func place(_ label: String, _ ws: [Sparse24Int4Weights], bias: [Float]?) throws -> any PreparedLinear {
        let b = try GGUFBlockLinear(stacking: ws, bias: bias, isa: isa)
        perToken += ws.reduce(0) { $0 + $1.blocks.count }
        let key = "2:4-int4|q4_0|\(b.outFeatures)x\(b.inFeatures)|\(isa)|\(CondenseRuntime.threads)"
        // A shape already measured without a split needs no second copy packed to find that out.
        if splitRows, RowSplitLinear.remembered(key) != .some(nil) {
            let q = try GGUFBlockLinear(stacking: ws.map { w in
                GGUFFile.Tensor(name: label + " as Q4_0", dims: [w.columns, w.rows], type: .q4_0, data: w.q4_0Blocks())
            }, bias: bias, isa: isa)
            if let at = try RowSplitLinear.crossover(b, q, key: key) {
                places.append((label, "2:4-int4 blocks → native/\(b.kernelName) below \(at) rows, the same weights as Q4_0 → native/\(q.kernelName) from \(at)"))
                return try RowSplitLinear(small: b, large: q, crossover: at)
            }
        }
        places.append((label, "2:4-int4 blocks → native/\(b.kernelName)"))
        return b
    }

    /// A layer in one of the registry's formats.
    mutating func place(_ label: String, _ l: LinearLayer, bias: [Float]?) throws -> any PreparedLinear {
        let placed = try registry.prepare(LinearLayer(weights: l.weights, bias: bias ?? l.bias), policy: .priority)
        places.append((label, "\(l.format): \(placed.placement)"))
        perToken += l.weights.byteCount
        return placed
    }
}

/// Projections that read the same input but cannot share one kernel call (different block
/// types), their outputs side by side in one matrix.
struct SideBySide: PreparedLinear {
    let parts: [any PreparedLinear]
    var backendName: String { "native" }
    var kernelName: String { parts.map(\.kernelName).joined(separator: " | ") }
    var inFeatures: Int { parts[0].inFeatures }
    var outFeatures: Int { parts.reduce(0) { $0 + $1.outFeatures } }

    func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        try checkShapes(x, y)
        var start = 0
        let (m, n) = (x.rows, y.columns)
        for p in parts {
            let part = try p.apply(x)
            let w = part.columns
            part.withUnsafeBufferPointer { src in y.withUnsafeMutableBufferPointer { dst in
                for i in 0..<m { for j in 0..<w { dst[i * n + start + j] = src[i * w + j] } }
            } }
            start += w
        }
    }
}
