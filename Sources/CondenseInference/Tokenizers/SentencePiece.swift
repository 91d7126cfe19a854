import Condense
import Foundation

/// The SentencePiece tokenizer of GGUF files with `tokenizer.ggml.model = llama` (Llama 2,
/// Mistral v0.1, TinyLlama, every Gemma), as llama.cpp implements it: spaces become ▁ (U+2581),
/// a ▁ is put in front when the file says `add_space_prefix`, the text's UTF-8 characters are
/// merged pair by pair, always the pair whose merged piece has the highest score
/// (`tokenizer.ggml.scores`; ties: leftmost), and what forms no token falls back to its bytes'
/// `<0xNN>` tokens. Control, unknown and user-defined tokens are cut out of the text first.
///
/// ```swift
/// let tok = try SentencePieceTokenizer(gguf: GGUFFile(contentsOf: "gemma-3-270m-q4_k_m.gguf"))
/// let ids = tok.encode("Hello world")   // [2, 9259, 1902]
/// ```
public struct SentencePieceTokenizer: Tokenizer {
    public let tokens: [String]
    public let scores: [Float]
    public let vocabulary: [String: Int32]
    public let bos: Int32?
    public let eos: Int32?
    public let unknown: Int32?
    public let addBOS: Bool
    public let addEOS: Bool
    public let addSpacePrefix: Bool
    let specials: SpecialTokens
    /// Per id: the byte a `<0xNN>` token stands for.
    let byteValue: [Int16]
    /// Per byte value: its `<0xNN>` token.
    let byteToken: [Int32?]

    public var specialTokens: [String: Int32] { specials.byText }
    public var endOfGeneration: Set<Int32> { specials.endOfGeneration }

    /// - Throws: `CondenseError/invalidModel(_:)` for arrays of different lengths, a token
    ///   listed twice, a non-finite score, or BOS/EOS/UNK ids outside the vocabulary.
    public init(tokens: [String], scores: [Float], tokenTypes: [Int32]?, bos: Int32? = nil, eos: Int32? = nil, unknown: Int32? = nil,
                eot: Int32? = nil, addBOS: Bool = true, addEOS: Bool = false, addSpacePrefix: Bool = true, modelName: String? = nil) throws {
        guard !tokens.isEmpty, tokens.count <= Int(Int32.max) else { throw CondenseError.invalidModel("a vocabulary of \(tokens.count) tokens") }
        guard scores.count == tokens.count else {
            throw CondenseError.invalidModel("tokenizer.ggml.scores has \(scores.count) entries for \(tokens.count) tokens")
        }
        if let tokenTypes, tokenTypes.count != tokens.count {
            throw CondenseError.invalidModel("tokenizer.ggml.token_type has \(tokenTypes.count) entries for \(tokens.count) tokens")
        }
        if let i = scores.firstIndex(where: { !$0.isFinite }) {
            throw CondenseError.invalidModel("tokenizer.ggml.scores[\(i)] is \(scores[i])")
        }
        for (name, id) in [("bos", bos), ("eos", eos), ("unknown", unknown), ("eot", eot)] {
            if let id, !(0..<Int32(tokens.count)).contains(id) {
                throw CondenseError.invalidModel("\(name) token id \(id) is outside the vocabulary of \(tokens.count)")
            }
        }
        var v: [String: Int32] = [:]
        v.reserveCapacity(tokens.count)
        var byteValue = [Int16](repeating: -1, count: tokens.count)
        var byteToken = [Int32?](repeating: nil, count: 256)
        for (i, t) in tokens.enumerated() {
            // SentencePiece vocabularies may repeat a piece (unused slots); the first id wins, as
            // in llama.cpp's token_to_id map.
            if v[t] == nil { v[t] = Int32(i) }
            let u = Array(t.utf8)
            if u.count == 6, u[0] == UInt8(ascii: "<"), u[1] == UInt8(ascii: "0"), u[2] == UInt8(ascii: "x"), u[5] == UInt8(ascii: ">"),
               let b = UInt8(String(decoding: u[3...4], as: UTF8.self), radix: 16), tokenTypes.map({ $0[i] == 6 }) ?? true {
                byteValue[i] = Int16(b)
                if byteToken[Int(b)] == nil { byteToken[Int(b)] = Int32(i) }
            }
        }
        self.tokens = tokens
        self.scores = scores
        vocabulary = v
        (self.bos, self.eos, self.unknown) = (bos, eos, unknown)
        (self.addBOS, self.addEOS, self.addSpacePrefix) = (addBOS, addEOS, addSpacePrefix)
        specials = SpecialTokens(tokens: tokens, types: tokenTypes, eos: eos, eot: eot, modelName: modelName)
        self.byteValue = byteValue
        self.byteToken = byteToken
    }

    /// The tokenizer a GGUF file describes (`tokenizer.ggml.*`).
    /// - Throws: `CondenseError/invalidModel(_:)` naming the key.
    public init(gguf f: GGUFFile) throws {
        let model = try f.value("tokenizer.ggml.model").string
        guard model == "llama" else {
            throw CondenseError.invalidModel("tokenizer.ggml.model '\(model ?? "?")' is not SentencePiece ('llama')")
        }
        let tokens = try TokenizerMetadata.strings(f, "tokenizer.ggml.tokens")
        let scores = try TokenizerMetadata.floats(f, "tokenizer.ggml.scores")
        try self.init(tokens: tokens, scores: scores, tokenTypes: TokenizerMetadata.types(f),
                      bos: TokenizerMetadata.id(f, "tokenizer.ggml.bos_token_id"), eos: TokenizerMetadata.id(f, "tokenizer.ggml.eos_token_id"),
                      unknown: TokenizerMetadata.id(f, "tokenizer.ggml.unknown_token_id"), eot: TokenizerMetadata.id(f, "tokenizer.ggml.eot_token_id"),
                      addBOS: try TokenizerMetadata.bool(f, "tokenizer.ggml.add_bos_token") ?? true,
                      addEOS: try TokenizerMetadata.bool(f, "tokenizer.ggml.add_eos_token") ?? false,
                      addSpacePrefix: try TokenizerMetadata.bool(f, "tokenizer.ggml.add_space_prefix") ?? true,
                      modelName: f.metadata["general.name"]?.string)
    }

    /// Parts of text and markup: only markup parts may yield control tokens.
    public func encode(parts: [(text: String, parseSpecial: Bool)], addSpecial: Bool) -> [Int32] {
        var ids: [Int32] = []
        let pieces = specials.split(parts)
        if addSpecial, addBOS, let bos, pieces.first?.1 != bos { ids.append(bos) }
        var previousSpecial = true   // a space prefix goes before the first text and after each special token
        for (piece, special) in pieces {
            if let special { ids.append(special); previousSpecial = true; continue }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(piece.utf8.count + 3)
            if addSpacePrefix && previousSpecial { bytes += [0xE2, 0x96, 0x81] }
            for b in piece.utf8 { if b == 0x20 { bytes += [0xE2, 0x96, 0x81] } else { bytes.append(b) } }
            merge(bytes, into: &ids)
            previousSpecial = false
        }
        if addSpecial, addEOS, let eos { ids.append(eos) }
        return ids
    }

    /// The bytes a token stands for (byte-fallback tokens their byte, `▁` a space).
    public func bytes(of id: Int32) -> [UInt8] {
        guard id >= 0, Int(id) < tokens.count else { return [] }
        let b = byteValue[Int(id)]
        if b >= 0 { return [UInt8(b)] }
        let t = tokens[Int(id)]
        if specials.isControl[Int(id)] { return Array(t.utf8) }
        // ▁ stands for a space.
        var out: [UInt8] = []
        let u = Array(t.utf8)
        out.reserveCapacity(u.count)
        var i = 0
        while i < u.count {
            if i + 2 < u.count, u[i] == 0xE2, u[i + 1] == 0x96, u[i + 2] == 0x81 { out.append(0x20); i += 3 } else { out.append(u[i]); i += 1 }
        }
        return out
    }

    // MARK: - The merge

    private struct Symbol { var start: Int, length: Int, prev: Int, next: Int }
    private struct Bigram { let left: Int, right: Int, score: Float, size: Int }

    /// One piece of escaped text: its characters merged by score, then each symbol resegmented
    /// into tokens (or bytes).
    private func merge(_ text: [UInt8], into out: inout [Int32]) {
        guard !text.isEmpty else { return }
        var symbols: [Symbol] = []
        symbols.reserveCapacity(text.count)
        var offset = 0
        while offset < text.count {
            let lead = text[offset]
            let len = lead < 0x80 ? 1 : lead >> 5 == 0x6 ? 2 : lead >> 4 == 0xE ? 3 : lead >> 3 == 0x1E ? 4 : 1
            let n = min(len, text.count - offset)
            symbols.append(Symbol(start: offset, length: n, prev: symbols.count - 1, next: offset + n == text.count ? -1 : symbols.count + 1))
            offset += n
        }
        var heap = BigramHeap()
        var revMerge: [String: (Int, Int)] = [:]
        func tryAdd(_ left: Int, _ right: Int) {
            guard left >= 0, right >= 0 else { return }
            let a = symbols[left], b = symbols[right]
            let piece = String(decoding: text[a.start..<(b.start + b.length)], as: UTF8.self)
            guard let id = vocabulary[piece] else { return }
            heap.push(Bigram(left: left, right: right, score: scores[Int(id)], size: a.length + b.length))
            revMerge[piece] = (left, right)
        }
        for i in 1..<symbols.count { tryAdd(i - 1, i) }
        while let bg = heap.pop() {
            let (l, r) = (symbols[bg.left], symbols[bg.right])
            // One side already merged into something else: a stale entry.
            if l.length == 0 || r.length == 0 || l.length + r.length != bg.size { continue }
            symbols[bg.left].length += r.length
            symbols[bg.right].length = 0
            symbols[bg.left].next = r.next
            if r.next >= 0 { symbols[r.next].prev = bg.left }
            tryAdd(symbols[bg.left].prev, bg.left)
            tryAdd(bg.left, symbols[bg.left].next)
        }
        var i = 0
        while i != -1 {
            resegment(i, symbols, text, revMerge, &out)
            i = symbols[i].next
        }
    }

    private func resegment(_ i: Int, _ symbols: [Symbol], _ text: [UInt8], _ revMerge: [String: (Int, Int)], _ out: inout [Int32]) {
        let s = symbols[i]
        let piece = String(decoding: text[s.start..<(s.start + s.length)], as: UTF8.self)
        if let id = vocabulary[piece] { out.append(id); return }
        if let (a, b) = revMerge[piece] {
            resegment(a, symbols, text, revMerge, &out)
            resegment(b, symbols, text, revMerge, &out)
            return
        }
        for byte in text[s.start..<(s.start + s.length)] {
            if let t = byteToken[Int(byte)] { out.append(t); continue }
            // No <0xNN> token: the byte as a one-character piece, else the unknown token.
            if let t = vocabulary[String(decoding: [byte], as: UTF8.self)] { out.append(t) } else if let unknown { out.append(unknown) }
        }
    }

    /// A max-heap of bigrams: the highest score first, then the leftmost.
    private struct BigramHeap {
        var items: [Bigram] = []
        static func before(_ a: Bigram, _ b: Bigram) -> Bool { a.score > b.score || (a.score == b.score && a.left < b.left) }
        mutating func push(_ b: Bigram) {
            items.append(b)
            var i = items.count - 1
            while i > 0 {
                let p = (i - 1) / 2
                guard Self.before(items[i], items[p]) else { break }
                items.swapAt(i, p)
                i = p
            }
        }
        mutating func pop() -> Bigram? {
            guard let top = items.first else { return nil }
            let last = items.removeLast()
            if !items.isEmpty {
                items[0] = last
                var i = 0
                while true {
                    let (l, r) = (2 * i + 1, 2 * i + 2)
                    var m = i
                    if l < items.count, Self.before(items[l], items[m]) { m = l }
                    if r < items.count, Self.before(items[r], items[m]) { m = r }
                    if m == i { break }
                    items.swapAt(i, m)
                    i = m
                }
            }
            return top
        }
    }
}

/// Typed reads of `tokenizer.ggml.*` keys; every error names the key and what it held.
enum TokenizerMetadata {
    static func array(_ f: GGUFFile, _ key: String) throws -> [GGUFFile.Value] {
        guard let a = try f.value(key).array else { throw CondenseError.invalidModel("\(key) is not an array") }
        return a
    }

    static func strings(_ f: GGUFFile, _ key: String) throws -> [String] {
        try array(f, key).map { v in
            guard let s = v.string else { throw CondenseError.invalidModel("\(key) holds a \(v), not a string") }
            return s
        }
    }

    static func floats(_ f: GGUFFile, _ key: String) throws -> [Float] {
        try array(f, key).map { v in
            guard let x = v.double else { throw CondenseError.invalidModel("\(key) holds a \(v), not a number") }
            return Float(x)
        }
    }

    static func types(_ f: GGUFFile) throws -> [Int32]? {
        guard f.metadata["tokenizer.ggml.token_type"] != nil else { return nil }
        return try array(f, "tokenizer.ggml.token_type").map { x in
            guard let i = x.int, let t = Int32(exactly: i) else { throw CondenseError.invalidModel("tokenizer.ggml.token_type holds \(x)") }
            return t
        }
    }

    static func id(_ f: GGUFFile, _ key: String) throws -> Int32? {
        guard let v = f.metadata[key] else { return nil }
        guard let i = v.int, let t = Int32(exactly: i) else { throw CondenseError.invalidModel("\(key) is \(v), not a token id") }
        return t
    }

    static func bool(_ f: GGUFFile, _ key: String) throws -> Bool? {
        guard let v = f.metadata[key] else { return nil }
        guard let b = v.bool else { throw CondenseError.invalidModel("\(key) is \(v), not a bool") }
        return b
    }
}
