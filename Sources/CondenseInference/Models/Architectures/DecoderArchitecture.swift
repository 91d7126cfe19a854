import Condense
import Foundation

/// A tensor of a decoder block, by what it does. Its raw value is the ggml name after
/// `blk.N.` (llama.cpp's `LLM_TENSOR_*` spellings): the only place those names are written.
public enum BlockTensor: String, Sendable, CaseIterable {
    case attnNorm = "attn_norm"
    case q = "attn_q", k = "attn_k", v = "attn_v"
    /// Q, K and V in one matrix, in that order (phi3).
    case qkv = "attn_qkv"
    case qNorm = "attn_q_norm", kNorm = "attn_k_norm"
    case output = "attn_output"
    case postAttnNorm = "post_attention_norm"
    case ffnNorm = "ffn_norm"
    case gate = "ffn_gate", up = "ffn_up", down = "ffn_down"
    case postFFNNorm = "post_ffw_norm"

    /// `blk.<layer>.<name>`: the tensor's name without `.weight` / `.bias`.
    public func stem(_ layer: Int) -> String { "blk.\(layer).\(rawValue)" }
    /// `blk.<layer>.<name>.weight` (or `.bias`).
    public func name(_ layer: Int, _ suffix: String = "weight") -> String { stem(layer) + "." + suffix }
}

/// The model-level tensors' ggml names.
public enum ModelTensor {
    public static let tokenEmbedding = "token_embd.weight"
    public static let outputNorm = "output_norm.weight"
    public static let output = "output.weight"
    /// Llama 3's per-frequency RoPE divisors (`rope_freqs.weight`, head dimension / 2 floats).
    public static let ropeFrequencies = "rope_freqs.weight"
}

/// The feed-forward activation of a gated FFN: act(gate) · up.
public enum FFNActivation: String, Sendable {
    /// SwiGLU: x · σ(x) (Llama, Qwen, Phi-3).
    case silu
    /// GeGLU with GELU's tanh approximation (Gemma).
    case geluTanh
}

/// One architecture: which `general.architecture` names it answers to, how it reads its
/// hyperparameters beyond the common ones, and which tensors its block has. A decoder block is
/// always the same composition of a small op set; an architecture switches parts of it on:
///
/// x ← x·embeddingScale; per layer: h = RMSNorm(x); Q, K, V = h·W (fused or not, ± bias);
/// [QK-norm per head]; RoPE (normal/NeoX, per-layer base, linear or per-frequency scaling);
/// attention (GQA, [sliding window]); o = att·Wo; [post-norm]; x += o; h = RMSNorm(x);
/// f = (act(h·Wg) ⊙ h·Wu)·Wd (gate/up fused or not); [post-norm]; x += f; logits = RMSNorm(x)·Wout
/// [soft-capped].
///
/// Adding an architecture is one file in this folder that defines a static instance, and one
/// line in ``all``. docs/architecture.md walks through it.
///
/// ```swift
/// extension DecoderArchitecture {
///     static let myArch = DecoderArchitecture(names: ["myarch"], ropeNeoX: true,
///         block: [.attnNorm, .q, .k, .v, .output, .ffnNorm, .gate, .up, .down]) { r, c in
///         c.qkNorm = true
///     }
/// }
/// ```
public struct DecoderArchitecture: Sendable {
    /// `general.architecture` values this description reads.
    public let names: [String]
    /// NeoX rotation (pairs i, i + d/2) rather than adjacent pairs.
    public let ropeNeoX: Bool
    /// The tensors every block has (optional ones, like biases, are read by `configure`'s flags).
    public let block: [BlockTensor]
    /// Reads what this architecture has beyond the common keys and sets its switches.
    let configure: @Sendable (HyperparameterReader, inout DecoderConfig) throws -> Void

    /// An architecture: the names it answers to, its RoPE layout, its tensors, and how its hyperparameters are read.
    public init(names: [String], ropeNeoX: Bool, block: [BlockTensor],
                configure: @escaping @Sendable (HyperparameterReader, inout DecoderConfig) throws -> Void = { _, _ in }) {
        (self.names, self.ropeNeoX, self.block, self.configure) = (names, ropeNeoX, block, configure)
    }

    /// Every architecture this runtime runs, in the order `condense info` lists them.
    public static let all: [DecoderArchitecture] = [.llama, .qwen2, .qwen3, .gemma2, .gemma3, .phi3]

    /// The description for `general.architecture` = `name`.
    /// - Throws: `CondenseError/invalidModel(_:)` naming the architecture and the supported ones.
    public static func named(_ name: String) throws -> DecoderArchitecture {
        guard let a = all.first(where: { $0.names.contains(name) }) else {
            throw CondenseError.invalidModel("general.architecture '\(name)' is not supported (\(supportedNames.joined(separator: ", ")))")
        }
        return a
    }

    public static var supportedNames: [String] { all.flatMap(\.names) }

    /// The Llama block: the one `compress --llm` recovers block by block.
    public var isLlamaBlock: Bool { Set(block) == [.attnNorm, .q, .k, .v, .output, .ffnNorm, .gate, .up, .down] }
}

/// Reads `<arch>.<key>` from a GGUF file's metadata with range checks; every error names the key
/// and the value seen.
public struct HyperparameterReader: Sendable {
    public let architecture: String
    let metadata: [String: GGUFFile.Value]

    init(_ f: GGUFFile, architecture: String) {
        (self.metadata, self.architecture) = (f.metadata, architecture)
    }

    /// Whether the file has `<architecture>.<key>`.
    public func has(_ key: String) -> Bool { metadata[architecture + "." + key] != nil }

    /// `<architecture>.<key>` as an integer in `range` (or `d` when absent).
    /// - Throws: `CondenseError` naming the key and the value.
    public func int(_ key: String, _ range: ClosedRange<Int>, default d: Int? = nil) throws -> Int {
        guard let v = metadata[architecture + "." + key] else {
            if let d { return d }
            throw CondenseError.invalidModel("metadata '\(architecture).\(key)' is missing")
        }
        guard let i = v.int, range.contains(i) else {
            throw CondenseError.invalidModel("\(architecture).\(key) must be an integer in \(range.lowerBound)…\(range.upperBound), got \(v)")
        }
        return i
    }

    /// `<architecture>.<key>` as a float that `ok` accepts (`what` describes it in the error), or `d` when absent.
    public func float(_ key: String, _ what: String, _ ok: (Double) -> Bool, default d: Double) throws -> Float {
        guard let v = metadata[architecture + "." + key] else { return Float(d) }
        guard let x = v.double, x.isFinite, ok(x) else { throw CondenseError.invalidModel("\(architecture).\(key) must be \(what), got \(v)") }
        return Float(x)
    }

    /// `<architecture>.<key>` as a string, nil when absent.
    /// - Throws: `CondenseError` for another type.
    public func string(_ key: String) throws -> String? {
        guard let v = metadata[architecture + "." + key] else { return nil }
        guard let s = v.string else { throw CondenseError.invalidModel("\(architecture).\(key) must be a string, got \(v)") }
        return s
    }
}

/// The hyperparameters of a decoder, read from GGUF metadata (`<arch>.*`) by its
/// ``DecoderArchitecture``.
public struct DecoderConfig: Sendable, Equatable {
    /// `general.architecture`.
    public let architecture: String
    public let layers: Int
    public let hidden: Int
    public let feedForward: Int
    public let heads: Int
    public let kvHeads: Int
    /// Per head, for Q, K and V (`attention.key_length`; hidden / heads when absent).
    public let headDim: Int
    public let contextLength: Int
    public internal(set) var ropeBase: Float
    /// Multiplies positions (1 / `rope.scaling.factor` for linear scaling).
    public internal(set) var ropeScale: Float = 1
    public internal(set) var rmsEpsilon: Float
    /// NeoX rotation (pairs i, i + d/2) or the normal one (adjacent pairs: llama, whose GGUF
    /// conversion permutes Q and K for it).
    public internal(set) var ropeNeoX: Bool
    /// Q, K and V projections carry biases (qwen2).
    public internal(set) var qkvBias = false
    /// Q and K are RMS-normalised per head before RoPE (qwen3, gemma3).
    public internal(set) var qkNorm = false
    /// Attention and FFN outputs are RMS-normalised before their residual add (gemma3).
    public internal(set) var postNorms = false
    public internal(set) var activation: FFNActivation = .silu
    /// The token embedding is multiplied by this (gemma: √hidden).
    public internal(set) var embeddingScale: Float = 1
    /// Multiplies Q·K (1/√headDim unless the architecture says otherwise).
    public internal(set) var attentionScale: Float
    /// Tokens a sliding-window layer sees (itself included); 0: none.
    public internal(set) var slidingWindow = 0
    /// Per layer: whether it attends through the sliding window.
    public internal(set) var slidingLayers: [Bool]
    /// The RoPE base of sliding-window layers.
    public internal(set) var ropeBaseSliding: Float
    /// Logits become c·tanh(logits / c); 0: off.
    public internal(set) var finalLogitSoftcap: Float = 0
    /// Attention scores become c·tanh(score / c) before the softmax (Gemma 2); 0: off.
    public internal(set) var attentionSoftcap: Float = 0
    /// The chat format to use when the file carries no `tokenizer.chat_template` (nil: generic).
    public internal(set) var defaultChat: String?

    /// What Gemma 2 and 3 share: the embedding scaled by √hidden, post-norms, GELU-tanh, the
    /// Gemma turn format, and Gemma's query scale for its widest model (`queryScaleLayers` layers:
    /// 1/√(hidden/heads), query_pre_attn_scalar, instead of 1/√headDim).
    mutating func gemma(queryScaleLayers: Int) {
        postNorms = true
        activation = .geluTanh
        embeddingScale = Float(hidden).squareRoot()
        defaultChat = "gemma"
        if layers == queryScaleLayers { attentionScale = 1 / (Float(hidden) / Float(heads)).squareRoot() }
    }

    /// Every `pattern`-th layer attends globally, the others through the window (llama.cpp's
    /// swa pattern: layer l slides when l % pattern < pattern − 1; 0: every layer slides).
    mutating func slide(window: Int, pattern: Int) {
        slidingWindow = window
        slidingLayers = (0..<layers).map { pattern == 0 || $0 % pattern < pattern - 1 }
    }

    /// Q's width: heads × headDim (not always hidden: Gemma 3 270M has 4 × 256 over 640).
    public var qDim: Int { heads * headDim }
    public var kvDim: Int { kvHeads * headDim }

    /// - Throws: `CondenseError/invalidModel(_:)` naming the key and the value.
    public init(gguf f: GGUFFile) throws {
        guard let arch = f.metadata["general.architecture"]?.string else {
            throw CondenseError.invalidModel("metadata 'general.architecture' is missing")
        }
        let description = try DecoderArchitecture.named(arch)
        let r = HyperparameterReader(f, architecture: arch)
        architecture = arch
        layers = try r.int("block_count", 1...1024)
        hidden = try r.int("embedding_length", 1...65_536)
        feedForward = try r.int("feed_forward_length", 1...1_048_576)
        heads = try r.int("attention.head_count", 1...4096)
        kvHeads = try r.int("attention.head_count_kv", 1...heads, default: heads)
        guard heads % kvHeads == 0 else {
            throw CondenseError.invalidModel("\(arch): \(heads) heads are not a multiple of \(kvHeads) KV heads")
        }
        if r.has("attention.key_length") {
            headDim = try r.int("attention.key_length", 2...1024)
        } else {
            guard hidden % heads == 0 else {
                throw CondenseError.invalidModel("\(arch): \(heads) heads do not divide hidden \(hidden) and attention.key_length is missing")
            }
            headDim = hidden / heads
        }
        guard headDim % 2 == 0 else { throw CondenseError.invalidModel("\(arch): head dimension \(headDim) is odd") }
        let valueDim = try r.int("attention.value_length", 1...1024, default: headDim)
        guard valueDim == headDim else {
            throw CondenseError.invalidModel("\(arch).attention.value_length \(valueDim) ≠ key_length \(headDim) (not supported)")
        }
        let ropeDims = try r.int("rope.dimension_count", 2...headDim, default: headDim)
        guard ropeDims == headDim else {
            throw CondenseError.invalidModel("\(arch).rope.dimension_count \(ropeDims) ≠ head size \(headDim) (partial rotary is not supported)")
        }
        contextLength = try r.int("context_length", 1...1 << 24, default: 2048)
        ropeBase = try r.float("rope.freq_base", "> 1", { $0 > 1 }, default: 10_000)
        rmsEpsilon = try r.float("attention.layer_norm_rms_epsilon", "in (0, 1)", { $0 > 0 && $0 < 1 }, default: 1e-5)
        if let type = try r.string("rope.scaling.type"), type != "none" {
            guard type == "linear" else {
                throw CondenseError.invalidModel("\(arch).rope.scaling.type '\(type)' is not supported (none, linear)")
            }
            ropeScale = 1 / (try r.float("rope.scaling.factor", "≥ 1", { $0 >= 1 }, default: 1))
        }
        ropeNeoX = description.ropeNeoX
        attentionScale = 1 / Float(headDim).squareRoot()
        slidingLayers = Array(repeating: false, count: layers)
        ropeBaseSliding = ropeBase
        try description.configure(r, &self)
    }
}

extension DecoderConfig {
    /// Rows of a sliding-window layer's ring cache (its window plus one pass of new tokens);
    /// 0 for a global layer, whose cache has a row per position.
    func ring(layer l: Int) -> Int { slidingLayers[l] ? slidingWindow + DecoderSession.maxStep : 0 }
}

extension LanguageModel {
    /// ``DecoderConfig/ring(layer:)`` of this model.
    func ring(layer l: Int) -> Int { config.ring(layer: l) }
}
