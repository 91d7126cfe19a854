import Condense
import Foundation

/// The byte-level BPE tokenizer of GPT-2-style models (`tokenizer.ggml.model = gpt2` in GGUF
/// files: SmolLM, Llama 3, Qwen 2): text is split by the pre-tokenizer regex the file names
/// (`tokenizer.ggml.pre`), each piece's UTF-8 bytes are mapped to printable characters and merged
/// pair by pair in the order of the merge list. Control tokens (`<|im_start|>`, …) written in the
/// text are recognised as themselves.
///
/// ```swift
/// let tok = try ByteLevelBPETokenizer(gguf: GGUFFile(contentsOf: "SmolLM2-135M-Instruct.Q4_1.gguf"))
/// let ids = tok.encode("The capital of France is")   // [504, 3575, 282, 4649, 314]
/// print(tok.decode(ids))                               // The capital of France is
/// ```
public struct ByteLevelBPETokenizer: Tokenizer {
    /// The pre-tokenizers of `tokenizer.ggml.pre` this tokenizer knows (llama.cpp's definitions).
    public enum PreTokenizer: String, Sendable, CaseIterable {
        case gpt2, smollm, llama3, qwen2
        /// llama.cpp's `default`: punctuation runs, the GPT-2 pattern, digit runs, then groups of three digits.
        case `default`

        /// A whole pre-token that is itself a token is emitted as it is, merges ignored
        /// (llama.cpp's `ignore_merges`, set for Llama 3's pre-tokenizer).
        var ignoresMerges: Bool { self == .llama3 }

        /// Regexes applied in turn: each splits every piece the previous left (matches and the
        /// text between them both become pieces).
        var patterns: [String] {
            let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
            switch self {
            case .gpt2: return [gpt2]
            case .smollm: return [#"\p{N}"#, gpt2]
            case .llama3:
                return [#"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#]
            case .qwen2:
                return [#"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#]
            case .default:
                return [#"[\p{P}\$\+<=>\^~\|]+"#, #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"#, #"\p{N}+"#, "[0-9][0-9][0-9]"]
            }
        }
    }

    public let tokens: [String]
    public let vocabulary: [String: Int32]
    public let preTokenizer: PreTokenizer
    public let bos: Int32?
    public let eos: Int32?
    public let addBOS: Bool
    public let addEOS: Bool
    let ranks: [String: Int]
    let specials: SpecialTokens

    /// Control and user-defined tokens, matched in text before the pre-tokenizer.
    public var specialTokens: [String: Int32] { specials.byText }
    public var endOfGeneration: Set<Int32> { specials.endOfGeneration }

    /// - Throws: `CondenseError/invalidModel(_:)` for a token listed twice, a merge that is not
    ///   two tokens, an unknown pre-tokenizer, or BOS/EOS ids outside the vocabulary.
    public init(tokens: [String], merges: [String], tokenTypes: [Int32]? = nil, preTokenizer: PreTokenizer,
                bos: Int32? = nil, eos: Int32? = nil, eot: Int32? = nil, addBOS: Bool = false, addEOS: Bool = false,
                modelName: String? = nil) throws {
        guard !tokens.isEmpty, tokens.count <= Int(Int32.max) else { throw CondenseError.invalidModel("a vocabulary of \(tokens.count) tokens") }
        if let tokenTypes, tokenTypes.count != tokens.count {
            throw CondenseError.invalidModel("tokenizer.ggml.token_type has \(tokenTypes.count) entries for \(tokens.count) tokens")
        }
        var v: [String: Int32] = [:]
        v.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() {
            if let first = v[t] { throw CondenseError.invalidModel("token \(i) '\(t)' repeats token \(first)") }
            v[t] = Int32(i)
        }
        var ranks: [String: Int] = [:]
        ranks.reserveCapacity(merges.count)
        for (i, m) in merges.enumerated() {
            let parts = m.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw CondenseError.invalidModel("merge \(i) '\(m)' is not two tokens separated by a space")
            }
            if ranks[m] == nil { ranks[m] = i }
        }
        for (name, id) in [("bos", bos), ("eos", eos), ("eot", eot)] {
            if let id, !(0..<Int32(tokens.count)).contains(id) {
                throw CondenseError.invalidModel("\(name) token id \(id) is outside the vocabulary of \(tokens.count)")
            }
        }
        self.tokens = tokens
        vocabulary = v
        specials = SpecialTokens(tokens: tokens, types: tokenTypes, eos: eos, eot: eot, modelName: modelName)
        self.ranks = ranks
        self.preTokenizer = preTokenizer
        self.bos = bos
        self.eos = eos
        self.addBOS = addBOS
        self.addEOS = addEOS
    }

    /// The tokenizer a GGUF file describes (`tokenizer.ggml.*`).
    /// - Throws: `CondenseError/invalidModel(_:)` naming the key: a model other than `gpt2`, a
    ///   pre-tokenizer this tokenizer does not know, missing or mistyped arrays.
    public init(gguf f: GGUFFile) throws {
        let model = try f.value("tokenizer.ggml.model").string
        guard model == "gpt2" else {
            throw CondenseError.invalidModel("tokenizer.ggml.model '\(model ?? "?")' is not byte-level BPE ('gpt2')")
        }
        let preName = f.metadata["tokenizer.ggml.pre"]?.string ?? "gpt2"
        let pre: PreTokenizer
        switch preName {
        case "gpt2", "gpt-2": pre = .gpt2
        case "default": pre = .default
        case "smollm": pre = .smollm
        case "llama3", "llama-v3", "llama-bpe": pre = .llama3
        case "qwen2": pre = .qwen2
        default:
            throw CondenseError.invalidModel("tokenizer.ggml.pre '\(preName)' is not supported (\(PreTokenizer.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        try self.init(tokens: TokenizerMetadata.strings(f, "tokenizer.ggml.tokens"), merges: TokenizerMetadata.strings(f, "tokenizer.ggml.merges"),
                      tokenTypes: TokenizerMetadata.types(f), preTokenizer: pre,
                      bos: TokenizerMetadata.id(f, "tokenizer.ggml.bos_token_id"), eos: TokenizerMetadata.id(f, "tokenizer.ggml.eos_token_id"),
                      eot: TokenizerMetadata.id(f, "tokenizer.ggml.eot_token_id"),
                      // llama.cpp turns BOS on for Llama 3's pre-tokenizer unless the file says otherwise.
                      addBOS: TokenizerMetadata.bool(f, "tokenizer.ggml.add_bos_token") ?? (pre == .llama3),
                      addEOS: TokenizerMetadata.bool(f, "tokenizer.ggml.add_eos_token") ?? false,
                      modelName: f.metadata["general.name"]?.string)
    }

    /// Token ids of text parts; BOS/EOS added as the model says when `addSpecial` is true.
    /// Control tokens written in a part become their ids when its `parseSpecial` is true;
    /// user-defined tokens always do (as llama.cpp splits them).
    public func encode(parts: [(text: String, parseSpecial: Bool)], addSpecial: Bool) -> [Int32] {
        var ids: [Int32] = []
        let pieces = specials.split(parts)
        if addSpecial, addBOS, let bos, pieces.first?.1 != bos { ids.append(bos) }
        let regexes = preTokenizer.compiled
        for (piece, special) in pieces {
            if let special { ids.append(special); continue }
            for word in Self.preTokenize(piece[...], regexes) { ids += bpe(word) }
        }
        if addSpecial, addEOS, let eos { ids.append(eos) }
        return ids
    }

    /// The bytes a token stands for (control tokens: their text).
    public func bytes(of id: Int32) -> [UInt8] {
        guard id >= 0, Int(id) < tokens.count else { return [] }
        let t = tokens[Int(id)]
        if specials.isControl[Int(id)] { return Array(t.utf8) }
        var out: [UInt8] = []
        out.reserveCapacity(t.unicodeScalars.count)
        for u in t.unicodeScalars {
            if let b = ByteMap.byte[u.value] { out.append(b) } else { out.append(contentsOf: Array(String(u).utf8)) }
        }
        return out
    }

    /// Decodes token by token, emitting only whole UTF-8 characters.
    public typealias StreamingDecoder = TokenStreamDecoder

    // MARK: - Internals

    static func preTokenize(_ text: Substring, _ regexes: [Regex<AnyRegexOutput>]) -> [Substring] {
        var pieces = [text]
        for r in regexes {
            var next: [Substring] = []
            for p in pieces {
                var last = p.startIndex
                for m in p.matches(of: r) where !m.range.isEmpty {
                    if last < m.range.lowerBound { next.append(p[last..<m.range.lowerBound]) }
                    next.append(p[m.range])
                    last = m.range.upperBound
                }
                if last < p.endIndex { next.append(p[last...]) }
            }
            pieces = next
        }
        return pieces
    }

    /// BPE over one pre-token: its bytes as mapped characters, merged by rank.
    func bpe(_ word: Substring) -> [Int32] {
        if preTokenizer.ignoresMerges, let id = vocabulary[String(String.UnicodeScalarView(word.utf8.map { ByteMap.scalar[Int($0)] }))] {
            return [id]
        }
        var symbols = word.utf8.map { String(ByteMap.scalar[Int($0)]) }
        while symbols.count > 1 {
            var best = Int.max, at = -1
            for k in 0..<(symbols.count - 1) {
                if let r = ranks[symbols[k] + " " + symbols[k + 1]], r < best { best = r; at = k }
            }
            guard at >= 0 else { break }
            let (a, b) = (symbols[at], symbols[at + 1])
            var merged: [String] = []
            merged.reserveCapacity(symbols.count)
            var k = 0
            while k < symbols.count {
                if k + 1 < symbols.count, symbols[k] == a, symbols[k + 1] == b {
                    merged.append(a + b)
                    k += 2
                } else {
                    merged.append(symbols[k])
                    k += 1
                }
            }
            symbols = merged
        }
        // Every single mapped byte is in a byte-level vocabulary; a symbol that is not falls back
        // to its bytes' tokens.
        return symbols.flatMap { s -> [Int32] in
            if let id = vocabulary[s] { return [id] }
            return s.unicodeScalars.compactMap { vocabulary[String($0)] }
        }
    }

    /// GPT-2's reversible map between bytes and printable characters.
    enum ByteMap {
        static let scalar: [Unicode.Scalar] = {
            var bs = Array(33...126) + Array(161...172) + Array(174...255)
            var cs = bs
            var n = 0
            for b in 0..<256 where !bs.contains(b) {
                bs.append(b)
                cs.append(256 + n)
                n += 1
            }
            var table = [Unicode.Scalar](repeating: " ", count: 256)
            for (b, c) in zip(bs, cs) { table[b] = Unicode.Scalar(UInt32(c))! }
            return table
        }()
        static let byte: [UInt32: UInt8] = {
            var d: [UInt32: UInt8] = [:]
            for (b, s) in scalar.enumerated() { d[s.value] = UInt8(b) }
            return d
        }()
    }
}

extension ByteLevelBPETokenizer.PreTokenizer {
    /// The regexes, matching per Unicode scalar (as PCRE does), not per Character. Compiled per
    /// call: `Regex` is not Sendable, so one instance cannot be shared by concurrent encoders.
    var compiled: [Regex<AnyRegexOutput>] {
        patterns.map { try! Regex($0).matchingSemantics(.unicodeScalar) }
    }
}
