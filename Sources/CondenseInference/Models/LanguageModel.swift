import CCondenseKernels
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

    /// One block's projections. Projections that read the same input are stacked into one
    /// layer (Q, K, V; gate, up): one kernel call per input instead of three or two.
    struct Layer: Sendable {
        let attnNorm: [Float], ffnNorm: [Float]
        let qkv: any PreparedLinear      // outputs: Q (hidden), K (kv), V (kv)
        let o: any PreparedLinear
        let gateUp: any PreparedLinear   // outputs: gate (ff), up (ff)
        let down: any PreparedLinear
    }

    /// The token embedding as stored; each looked-up row is dequantized exactly when used.
    let tokenEmbedding: GGUFFile.Tensor
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

    /// A model from a parsed file. `keepBlocks`: projections stored as Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K or Q6_K run on
    /// their blocks (``GGUFBlockLinear``: read at their stored size, activations quantized per
    /// block as llama.cpp does); F16 and BF16 projections stay 16-bit (``HalfPrecisionMatrix``); the
    /// others, or all with `keepBlocks: false`, are dequantized exactly to f32. Both kinds are
    /// placed through the registry.
    public convenience init(file f: GGUFFile, registry: BackendRegistry = .standard(), fallbackName: String = "model", keepBlocks: Bool = true) throws {
        let c = try DecoderConfig(gguf: f)
        let level = registry.helperISA
        let tokenizer = try ByteLevelBPETokenizer(gguf: f)
        let name = f.metadata["general.name"]?.string ?? fallbackName
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
        let vocabSize = embd.dims[1]
        try Self.checkEmbedding(embd, hidden: d, tokenizer: tokenizer)
        var placer = ProjectionPlacer(registry: registry, isa: level, keepBlocks: keepBlocks)
        func linear(_ names: [String], outs: [Int], inp: Int, bias: Bool = false) throws -> any PreparedLinear {
            var ts: [GGUFFile.Tensor] = []
            var bs: [Float] = []
            for (n, out) in zip(names, outs) {
                let t = try f.tensor(n + ".weight")
                guard t.dims == [inp, out] else { throw CondenseError.invalidTensor(name: n + ".weight", reason: "shape \(t.dims), expected \([inp, out])") }
                ts.append(t)
                if bias { bs += try tensor(n + ".bias", [out]) }
            }
            return try placer.place(names.joined(separator: "+"), ts, bias: bias ? bs : nil)
        }
        var ls: [Layer] = []
        for l in 0..<c.layers {
            let p = "blk.\(l)."
            ls.append(Layer(attnNorm: try tensor(p + "attn_norm.weight", [d]), ffnNorm: try tensor(p + "ffn_norm.weight", [d]),
                            qkv: try linear([p + "attn_q", p + "attn_k", p + "attn_v"], outs: [d, kvd, kvd], inp: d, bias: c.qkvBias),
                            o: try linear([p + "attn_output"], outs: [d], inp: d),
                            gateUp: try linear([p + "ffn_gate", p + "ffn_up"], outs: [c.feedForward, c.feedForward], inp: d),
                            down: try linear([p + "ffn_down"], outs: [d], inp: c.feedForward)))
        }
        // A layer in the file beyond block_count would be a different model: refuse it.
        if let extra = f.tensors.first(where: { $0.name.hasPrefix("blk.\(c.layers).") }) {
            throw CondenseError.invalidModel("tensor '\(extra.name)' belongs to a layer beyond block_count \(c.layers)")
        }
        let outputNorm = try tensor("output_norm.weight", [d])
        // The output head is tied to the embedding when `output.weight` is absent.
        let head: any PreparedLinear
        if f.tensors.contains(where: { $0.name == "output.weight" }) {
            head = try linear(["output"], outs: [vocabSize], inp: d)
        } else {
            head = try placer.place("output (tied to token_embd)", [embd], bias: nil)
        }
        self.init(config: c, tokenizer: tokenizer, isa: level, name: name, tokenEmbedding: embd, layers: ls, outputNorm: outputNorm,
                  head: head, vocabSize: vocabSize, placements: placer.places, weightBytesPerToken: placer.perToken)
    }

    init(config: DecoderConfig, tokenizer: ByteLevelBPETokenizer, isa: ISA, name: String, tokenEmbedding: GGUFFile.Tensor,
         layers: [Layer], outputNorm: [Float], head: any PreparedLinear, vocabSize: Int,
         placements: [(name: String, placement: String)], weightBytesPerToken: Int) {
        (self.config, self.tokenizer, self.isa, self.name, self.tokenEmbedding) = (config, tokenizer, isa, name, tokenEmbedding)
        (self.layers, self.outputNorm, self.head, self.vocabSize) = (layers, outputNorm, head, vocabSize)
        (self.placements, self.weightBytesPerToken) = (placements, weightBytesPerToken)
    }

    /// The token embedding is looked up one row at a time, each dequantized whole: a known
    /// type, rows of whole blocks, one row per token of the vocabulary (or more).
    static func checkEmbedding(_ embd: GGUFFile.Tensor, hidden d: Int, tokenizer: ByteLevelBPETokenizer) throws {
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

    /// Writes the embedding of token `id` (in range) to `out` (hidden floats).
    func embed(_ id: Int32, into out: UnsafeMutablePointer<Float>) throws {
        let t = tokenEmbedding
        let d = config.hidden
        let rowBytes = d / t.type.blockSize * t.type.blockBytes
        let status = t.data.withUnsafeBytes { p in
            condense_gguf_dequantize(t.type.rawValue, p.baseAddress! + Int(id) * rowBytes, d, out)
        }
        try NativeStatus.check(status, kernel: "dequantize token_embd.weight")
    }

    /// A session of its own: a KV cache of `contextLength` tokens (at most the model's; 4096 or
    /// the model's if smaller by default) in `kvCache`'s element type.
    public func session(contextLength: Int? = nil, kvCache: KVCacheType = .f16) throws -> DecoderSession {
        try DecoderSession(self, contextLength: contextLength ?? min(config.contextLength, 4096), kvCache: kvCache)
    }
}

/// Where a model's projections run, and what each reads per token: one place for the GGUF file
/// and the compressed folder, so both stack and fall back alike.
struct ProjectionPlacer {
    let registry: BackendRegistry
    let isa: ISA
    let keepBlocks: Bool
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

    /// 2:4-int4 matrices of one input, their rows stacked: one kernel call.
    mutating func place(_ label: String, _ ws: [Sparse24Int4Weights], bias: [Float]?) throws -> any PreparedLinear {
        let b = try GGUFBlockLinear(stacking: ws, bias: bias, isa: isa)
        places.append((label, "2:4-int4 blocks → native/\(b.kernelName)"))
        perToken += ws.reduce(0) { $0 + $1.blocks.count }
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
