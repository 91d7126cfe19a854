import Condense
import Foundation

/// The hyperparameters of a Llama-family decoder, read from GGUF metadata (`<arch>.*`).
public struct DecoderConfig: Sendable, Equatable {
    /// `llama` (also `mistral`) or `qwen2`.
    public let architecture: String
    public let layers: Int
    public let hidden: Int
    public let feedForward: Int
    public let heads: Int
    public let kvHeads: Int
    public let headDim: Int
    public let contextLength: Int
    public let ropeBase: Float
    public let rmsEpsilon: Float
    /// NeoX rotation (pairs i, i + d/2: qwen2) or the normal one (adjacent pairs: llama, whose
    /// GGUF conversion permutes Q and K for it).
    public let ropeNeoX: Bool
    /// Q, K and V projections carry biases (qwen2).
    public let qkvBias: Bool

    /// - Throws: ``CondenseError/invalidModel(_:)`` naming the key and the value.
    public init(gguf f: GGUFFile) throws {
        guard let arch = f.metadata["general.architecture"]?.string else {
            throw CondenseError.invalidModel("metadata 'general.architecture' is missing")
        }
        guard ["llama", "mistral", "qwen2"].contains(arch) else {
            throw CondenseError.invalidModel("general.architecture '\(arch)' is not supported (llama, mistral, qwen2)")
        }
        func int(_ key: String, _ range: ClosedRange<Int>, default d: Int? = nil) throws -> Int {
            guard let v = f.metadata[arch + "." + key] else {
                if let d { return d }
                throw CondenseError.invalidModel("metadata '\(arch).\(key)' is missing")
            }
            guard let i = v.int, range.contains(i) else {
                throw CondenseError.invalidModel("\(arch).\(key) must be an integer in \(range.lowerBound)…\(range.upperBound), got \(v)")
            }
            return i
        }
        func float(_ key: String, _ ok: (Double) -> Bool, default d: Double) throws -> Float {
            guard let v = f.metadata[arch + "." + key] else { return Float(d) }
            guard let x = v.double, x.isFinite, ok(x) else { throw CondenseError.invalidModel("\(arch).\(key) is \(v)") }
            return Float(x)
        }
        architecture = arch
        layers = try int("block_count", 1...1024)
        hidden = try int("embedding_length", 1...65_536)
        feedForward = try int("feed_forward_length", 1...1_048_576)
        heads = try int("attention.head_count", 1...hidden)
        kvHeads = try int("attention.head_count_kv", 1...heads, default: heads)
        guard hidden % heads == 0, heads % kvHeads == 0 else {
            throw CondenseError.invalidModel("\(arch): \(heads) heads do not divide hidden \(hidden) or are not a multiple of \(kvHeads) KV heads")
        }
        headDim = hidden / heads
        let ropeDims = try int("rope.dimension_count", 2...headDim, default: headDim)
        guard ropeDims == headDim else {
            throw CondenseError.invalidModel("\(arch).rope.dimension_count \(ropeDims) ≠ head size \(headDim) (partial rotary is not supported)")
        }
        contextLength = try int("context_length", 1...1 << 20, default: 2048)
        ropeBase = try float("rope.freq_base", { $0 > 1 }, default: 10_000)
        rmsEpsilon = try float("attention.layer_norm_rms_epsilon", { $0 > 0 && $0 < 1 }, default: 1e-5)
        ropeNeoX = arch == "qwen2"
        qkvBias = arch == "qwen2"
    }
}

/// A Llama-family decoder (llama, mistral, qwen2) loaded from a GGUF file, with its byte-level BPE
/// tokenizer. Projections are `LinearLayer`s placed through the registry; sessions share the
/// weights and each holds its own KV cache.
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
    public let tokenizer: ByteLevelBPETokenizer
    /// The ISA of the helper kernels (attention): the registry's pinned native level, else the active one.
    public let isa: ISA
    /// `general.name`, or the file name.
    public let name: String

    struct Layer: Sendable {
        let attnNorm: [Float], ffnNorm: [Float]
        let q: any PreparedLinear, k: any PreparedLinear, v: any PreparedLinear, o: any PreparedLinear
        let gate: any PreparedLinear, up: any PreparedLinear, down: any PreparedLinear
    }

    let embeddings: [Float]          // vocab × hidden
    let layers: [Layer]
    let outputNorm: [Float]
    let head: any PreparedLinear
    let vocabSize: Int

    /// Where each projection runs: the kernel, and the registry's placement for f32 ones.
    public let placements: [(name: String, placement: String)]
    /// Bytes of projection and head weights read for one generated token (M = 1), in the
    /// formats they run in.
    public let weightBytesPerToken: Int

    /// Loads and validates `path`: metadata, every tensor's shape, the tokenizer.
    /// - Throws: ``CondenseError`` naming the file and the key or tensor.
    public convenience init(gguf path: String, registry: BackendRegistry = .standard(), keepBlocks: Bool = true) throws {
        let f = try GGUFFile(contentsOf: path)
        do {
            try self.init(file: f, registry: registry, fallbackName: URL(fileURLWithPath: path).lastPathComponent, keepBlocks: keepBlocks)
        } catch let e as CondenseError {
            throw e.inFile(path)
        }
    }

    /// A model from a parsed file. `keepBlocks`: projections stored as Q8_0, Q4_0 or Q4_1 run on
    /// their blocks (``GGUFBlockLinear``, read at their stored size); the others, or all with
    /// `keepBlocks: false`, are dequantized exactly to f32 and placed through the registry.
    public init(file f: GGUFFile, registry: BackendRegistry = .standard(), fallbackName: String = "model", keepBlocks: Bool = true) throws {
        let c = try DecoderConfig(gguf: f)
        config = c
        let level = registry.helperISA
        isa = level
        tokenizer = try ByteLevelBPETokenizer(gguf: f)
        name = f.metadata["general.name"]?.string ?? fallbackName
        let (d, kvd) = (c.hidden, c.kvHeads * c.headDim)
        func tensor(_ n: String, _ dims: [Int]) throws -> [Float] {
            let t = try f.tensor(n)
            guard t.dims == dims else { throw CondenseError.invalidTensor(name: n, reason: "shape \(t.dims), expected \(dims)") }
            return try f.dequantized(n)
        }
        let embd = try f.tensor("token_embd.weight")
        guard embd.dims.count == 2, embd.dims[0] == d else {
            throw CondenseError.invalidTensor(name: "token_embd.weight", reason: "shape \(embd.dims), expected [\(d), vocab]")
        }
        vocabSize = embd.dims[1]
        guard vocabSize >= tokenizer.tokens.count else {
            throw CondenseError.invalidModel("token_embd.weight has \(vocabSize) rows for a vocabulary of \(tokenizer.tokens.count)")
        }
        embeddings = try f.dequantized("token_embd.weight")
        var places: [(String, String)] = []
        var perToken = 0
        // One projection: the f32 GEMM of the exactly dequantized weights `w`, and, for block
        // types with a kernel, the blocks themselves for small batches.
        func place(_ name: String, _ t: GGUFFile.Tensor, _ w: [Float], bias b: [Float]?) throws -> any PreparedLinear {
            let (out, inp) = (t.dims[1], t.dims[0])
            let p = try registry.prepare(LinearLayer(weights: .dense(Matrix(rows: out, columns: inp, elements: w)), bias: b), policy: .priority)
            if keepBlocks, GGUFBlockLinear.supported.contains(t.type) {
                let blocks = try GGUFBlockLinear(t, bias: b, isa: level)
                places.append((name, "\(t.type) blocks → native/\(blocks.kernelName) for M < \(BlocksOrGEMM.threshold), f32 \(p.placement) from there"))
                perToken += t.data.count
                return BlocksOrGEMM(blocks: blocks, gemm: p)
            }
            places.append((name, "\(t.type) as f32: \(p.placement)"))
            perToken += out * inp * 4
            return p
        }
        func linear(_ n: String, out: Int, inp: Int, bias: Bool = false) throws -> any PreparedLinear {
            let t = try f.tensor(n + ".weight")
            guard t.dims == [inp, out] else { throw CondenseError.invalidTensor(name: n + ".weight", reason: "shape \(t.dims), expected \([inp, out])") }
            let b = bias ? try tensor(n + ".bias", [out]) : nil
            return try place(n, t, try f.dequantized(n + ".weight"), bias: b)
        }
        var ls: [Layer] = []
        for l in 0..<c.layers {
            let p = "blk.\(l)."
            ls.append(Layer(attnNorm: try tensor(p + "attn_norm.weight", [d]), ffnNorm: try tensor(p + "ffn_norm.weight", [d]),
                            q: try linear(p + "attn_q", out: d, inp: d, bias: c.qkvBias),
                            k: try linear(p + "attn_k", out: kvd, inp: d, bias: c.qkvBias),
                            v: try linear(p + "attn_v", out: kvd, inp: d, bias: c.qkvBias),
                            o: try linear(p + "attn_output", out: d, inp: d),
                            gate: try linear(p + "ffn_gate", out: c.feedForward, inp: d),
                            up: try linear(p + "ffn_up", out: c.feedForward, inp: d),
                            down: try linear(p + "ffn_down", out: d, inp: c.feedForward)))
        }
        // A layer in the file beyond block_count would be a different model: refuse it.
        if let extra = f.tensors.first(where: { $0.name.hasPrefix("blk.\(c.layers).") }) {
            throw CondenseError.invalidModel("tensor '\(extra.name)' belongs to a layer beyond block_count \(c.layers)")
        }
        layers = ls
        outputNorm = try tensor("output_norm.weight", [d])
        // The output head is tied to the embedding when `output.weight` is absent.
        if f.tensors.contains(where: { $0.name == "output.weight" }) {
            head = try linear("output", out: vocabSize, inp: d)
        } else {
            head = try place("output (tied to token_embd)", embd, embeddings, bias: nil)
        }
        placements = places
        weightBytesPerToken = perToken
    }

    /// A session of its own (KV cache of `contextLength` tokens, at most the model's).
    public func session(contextLength: Int? = nil) throws -> DecoderSession {
        try DecoderSession(self, contextLength: contextLength ?? min(config.contextLength, 4096))
    }
}

/// A projection kept twice: its ggml blocks for small batches (token generation reads the
/// stored bytes) and the f32 GEMM of the exactly dequantized weights for prompt processing,
/// where the block dot per row of X would redo the unpacking for every row.
struct BlocksOrGEMM: PreparedLinear {
    /// Rows of X from which the f32 GEMM runs.
    static let threshold = 8
    let blocks: GGUFBlockLinear
    let gemm: PlacedLinear
    var backendName: String { "native" }
    var kernelName: String { blocks.kernelName }
    var inFeatures: Int { blocks.inFeatures }
    var outFeatures: Int { blocks.outFeatures }
    func kernelName(forBatch m: Int) -> String { m < Self.threshold ? blocks.kernelName : gemm.kernelName(forBatch: m) }
    func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        if x.rows < Self.threshold { try blocks.apply(x, into: &y) } else { try gemm.apply(x, into: &y) }
    }
}
