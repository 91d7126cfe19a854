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
public struct ByteLevelBPETokenizer: Sendable {
    /// The pre-tokenizers of `tokenizer.ggml.pre` this tokenizer knows (llama.cpp's definitions).
    public enum PreTokenizer: String, Sendable, CaseIterable {
        case gpt2, smollm, llama3, qwen2

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
            }
        }
    }

    public let tokens: [String]
    public let vocabulary: [String: Int32]
    /// Control and user-defined tokens, matched in text before the pre-tokenizer.
    public let specialTokens: [String: Int32]
    public let preTokenizer: PreTokenizer
    public let bos: Int32?
    public let eos: Int32?
    public let addBOS: Bool
    public let addEOS: Bool
    let ranks: [String: Int]
    let specialsByLength: [(String, Int32)]
    let isSpecial: [Bool]

    /// - Throws: ``CondenseError/invalidModel(_:)`` for a token listed twice, a merge that is not
    ///   two tokens, an unknown pre-tokenizer, or BOS/EOS ids outside the vocabulary.
    public init(tokens: [String], merges: [String], tokenTypes: [Int32]? = nil, preTokenizer: PreTokenizer,
                bos: Int32? = nil, eos: Int32? = nil, addBOS: Bool = false, addEOS: Bool = false) throws {
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
        for (name, id) in [("bos", bos), ("eos", eos)] {
            if let id, !(0..<Int32(tokens.count)).contains(id) {
                throw CondenseError.invalidModel("\(name) token id \(id) is outside the vocabulary of \(tokens.count)")
            }
        }
        // Control (3) and user-defined (4) tokens are matched as themselves in the text.
        var specials: [String: Int32] = [:]
        var flags = [Bool](repeating: false, count: tokens.count)
        for (i, t) in (tokenTypes ?? []).enumerated() where t == 3 || t == 4 {
            if !tokens[i].isEmpty { specials[tokens[i]] = Int32(i) }
            flags[i] = t == 3
        }
        self.tokens = tokens
        vocabulary = v
        specialTokens = specials
        specialsByLength = specials.sorted { $0.key.utf8.count > $1.key.utf8.count }.map { ($0.key, $0.value) }
        isSpecial = flags
        self.ranks = ranks
        self.preTokenizer = preTokenizer
        self.bos = bos
        self.eos = eos
        self.addBOS = addBOS
        self.addEOS = addEOS
    }

    /// The tokenizer a GGUF file describes (`tokenizer.ggml.*`).
    /// - Throws: ``CondenseError/invalidModel(_:)`` naming the key: a model other than `gpt2`, a
    ///   pre-tokenizer this tokenizer does not know, missing or mistyped arrays.
    public init(gguf f: GGUFFile) throws {
        let model = try f.value("tokenizer.ggml.model").string
        guard model == "gpt2" else {
            throw CondenseError.invalidModel("tokenizer.ggml.model '\(model ?? "?")' is not byte-level BPE ('gpt2')")
        }
        func strings(_ key: String) throws -> [String] {
            guard let a = try f.value(key).array else { throw CondenseError.invalidModel("\(key) is not an array") }
            return try a.map { v in
                guard let s = v.string else { throw CondenseError.invalidModel("\(key) holds a \(v), not a string") }
                return s
            }
        }
        let preName = f.metadata["tokenizer.ggml.pre"]?.string ?? "gpt2"
        let pre: PreTokenizer
        switch preName {
        case "default", "gpt2", "gpt-2": pre = .gpt2
        case "smollm": pre = .smollm
        case "llama3", "llama-v3", "llama-bpe": pre = .llama3
        case "qwen2": pre = .qwen2
        default:
            throw CondenseError.invalidModel("tokenizer.ggml.pre '\(preName)' is not supported (\(PreTokenizer.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let types = try f.metadata["tokenizer.ggml.token_type"].map { v -> [Int32] in
            guard let a = v.array else { throw CondenseError.invalidModel("tokenizer.ggml.token_type is not an array") }
            return try a.map { x in
                guard let i = x.int, let t = Int32(exactly: i) else { throw CondenseError.invalidModel("tokenizer.ggml.token_type holds \(x)") }
                return t
            }
        }
        func id(_ key: String) throws -> Int32? {
            guard let v = f.metadata[key] else { return nil }
            guard let i = v.int, let t = Int32(exactly: i) else { throw CondenseError.invalidModel("\(key) is \(v), not a token id") }
            return t
        }
        try self.init(tokens: strings("tokenizer.ggml.tokens"), merges: strings("tokenizer.ggml.merges"), tokenTypes: types,
                      preTokenizer: pre, bos: id("tokenizer.ggml.bos_token_id"), eos: id("tokenizer.ggml.eos_token_id"),
                      addBOS: f.metadata["tokenizer.ggml.add_bos_token"]?.bool ?? false,
                      addEOS: f.metadata["tokenizer.ggml.add_eos_token"]?.bool ?? false)
    }

    /// Token ids of `text`; BOS/EOS added as the model says when `addSpecial` is true. Control
    /// tokens written in the text become their ids.
    public func encode(_ text: String, addSpecial: Bool = true) -> [Int32] {
        var ids: [Int32] = []
        if addSpecial, addBOS, let bos { ids.append(bos) }
        let regexes = preTokenizer.compiled
        for (piece, special) in splitSpecials(text) {
            if let special { ids.append(special); continue }
            for word in Self.preTokenize(piece, regexes) { ids += bpe(word) }
        }
        if addSpecial, addEOS, let eos { ids.append(eos) }
        return ids
    }

    /// The text of `ids` (invalid UTF-8 from a cut multi-byte character becomes U+FFFD).
    public func decode(_ ids: [Int32]) -> String {
        var d = StreamingDecoder(self)
        var s = ids.map { d.append($0) }.joined()
        s += d.flush()
        return s
    }

    /// The bytes a token stands for (control tokens: their text).
    public func bytes(of id: Int32) -> [UInt8] {
        guard id >= 0, Int(id) < tokens.count else { return [] }
        let t = tokens[Int(id)]
        if isSpecial[Int(id)] { return Array(t.utf8) }
        var out: [UInt8] = []
        out.reserveCapacity(t.unicodeScalars.count)
        for u in t.unicodeScalars {
            if let b = ByteMap.byte[u.value] { out.append(b) } else { out.append(contentsOf: Array(String(u).utf8)) }
        }
        return out
    }

    /// Decodes token by token, emitting only whole UTF-8 characters: a character split across
    /// tokens appears once its last byte has arrived.
    public struct StreamingDecoder: Sendable {
        let tokenizer: ByteLevelBPETokenizer
        var pending: [UInt8] = []
        public init(_ tokenizer: ByteLevelBPETokenizer) { self.tokenizer = tokenizer }

        /// The text that token `id` completes.
        public mutating func append(_ id: Int32) -> String {
            pending += tokenizer.bytes(of: id)
            let n = Self.completePrefix(pending)
            let s = String(decoding: pending[..<n], as: UTF8.self)
            pending.removeFirst(n)
            return s
        }

        /// Whatever is left (an incomplete character becomes U+FFFD).
        public mutating func flush() -> String {
            defer { pending.removeAll() }
            return String(decoding: pending, as: UTF8.self)
        }

        /// Bytes that form whole characters: up to a trailing, still incomplete, sequence.
        static func completePrefix(_ b: [UInt8]) -> Int {
            var i = b.count
            var back = 0
            while i > 0, back < 4, b[i - 1] & 0xC0 == 0x80 { i -= 1; back += 1 }
            guard i > 0 else { return back >= 4 ? b.count : 0 }
            let lead = b[i - 1]
            let need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
            return need > back + 1 && lead >= 0xC0 ? i - 1 : b.count
        }
    }

    // MARK: - Internals

    /// Text cut at control tokens (leftmost, longest first).
    func splitSpecials(_ text: String) -> [(Substring, Int32?)] {
        guard !specialsByLength.isEmpty else { return [(text[...], nil)] }
        var out: [(Substring, Int32?)] = []
        var start = text.startIndex, i = text.startIndex
        let u = text.utf8
        while i < text.endIndex {
            if let (s, id) = specialsByLength.first(where: { text[i...].utf8.starts(with: $0.0.utf8) }) {
                if start < i { out.append((text[start..<i], nil)) }
                let end = u.index(i, offsetBy: s.utf8.count)
                out.append((text[i..<end], id))
                i = end
                start = end
                continue
            }
            i = text.unicodeScalars.index(after: i)
        }
        if start < text.endIndex { out.append((text[start...], nil)) }
        return out
    }

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
