import Condense
import Foundation

/// What a decoder needs of its tokenizer, whatever its kind: byte-level BPE
/// (``ByteLevelBPETokenizer``, `tokenizer.ggml.model = gpt2`) or SentencePiece
/// (``SentencePieceTokenizer``, `llama`). ``makeTokenizer(gguf:)`` picks the one a file names.
///
/// ```swift
/// let tok = try makeTokenizer(gguf: GGUFFile(contentsOf: "gemma-3-270m-q4_k_m.gguf"))
/// let ids = tok.encode("Hello world")                          // [2, 9259, 1902]: BOS first
/// let plain = tok.encode("<start_of_turn>", parseSpecial: false) // text, never a control token
/// ```
public protocol Tokenizer: Sendable {
    /// Every token's text as stored in the file.
    var tokens: [String] { get }
    /// Control, unknown and user-defined tokens, matched in text before the model's own
    /// splitting (user-defined always, control and unknown only when special tokens are parsed).
    var specialTokens: [String: Int32] { get }
    var bos: Int32? { get }
    var eos: Int32? { get }
    var addBOS: Bool { get }
    var addEOS: Bool { get }
    /// Tokens that end a generation: EOS and the end-of-turn tokens the vocabulary has
    /// (`<|eot_id|>`, `<|im_end|>`, `<end_of_turn>`, `<|end|>`, …), as llama.cpp collects them.
    var endOfGeneration: Set<Int32> { get }
    /// Token ids of `text`. `addSpecial`: BOS/EOS as the model says. `parseSpecial`: control
    /// tokens written in the text become their ids; false for text a user sent, so that it stays
    /// text (user-defined tokens are split out either way, as llama.cpp does).
    func encode(_ text: String, addSpecial: Bool, parseSpecial: Bool) -> [Int32]
    /// Token ids of text made of parts: control tokens are recognised only in the parts whose
    /// `parseSpecial` is true (a chat template's markup), never in the others (the messages),
    /// while the text runs are tokenized across part boundaries as if the parts were one string.
    /// BOS is not added again when the first part begins with it.
    func encode(parts: [(text: String, parseSpecial: Bool)], addSpecial: Bool) -> [Int32]
    /// The bytes a token stands for (control tokens: their text).
    func bytes(of id: Int32) -> [UInt8]
}

extension Tokenizer {
    /// One text: control tokens only with `parseSpecial`, BOS/EOS as the vocabulary asks with `addSpecial`.
    public func encode(_ text: String, addSpecial: Bool, parseSpecial: Bool) -> [Int32] {
        encode(parts: [(text, parseSpecial)], addSpecial: addSpecial)
    }

    /// Token ids of `text`, control tokens parsed (a template's or a prompt's own markup).
    public func encode(_ text: String, addSpecial: Bool = true) -> [Int32] { encode(text, addSpecial: addSpecial, parseSpecial: true) }

    /// Token ids of `text`, with `parseSpecial` (BOS/EOS as the model says).
    public func encode(_ text: String, parseSpecial: Bool) -> [Int32] { encode(text, addSpecial: true, parseSpecial: parseSpecial) }

    /// The text of `ids` (invalid UTF-8 from a cut multi-byte character becomes U+FFFD).
    public func decode(_ ids: [Int32]) -> String {
        var d = TokenStreamDecoder(self)
        var s = ids.map { d.append($0) }.joined()
        s += d.flush()
        return s
    }
}

/// The tokenizer a GGUF file describes: `tokenizer.ggml.model` `gpt2` (byte-level BPE) or `llama`
/// (SentencePiece).
/// - Throws: `CondenseError/invalidModel(_:)` naming the key and the value.
public func makeTokenizer(gguf f: GGUFFile) throws -> any Tokenizer {
    let model = try f.value("tokenizer.ggml.model").string
    switch model {
    case "gpt2": return try ByteLevelBPETokenizer(gguf: f)
    case "llama": return try SentencePieceTokenizer(gguf: f)
    default:
        throw CondenseError.invalidModel("tokenizer.ggml.model '\(model ?? "?")' is not supported (gpt2: byte-level BPE, llama: SentencePiece)")
    }
}

/// Decodes token by token, emitting only whole UTF-8 characters: a character split across
/// tokens appears once its last byte has arrived.
public struct TokenStreamDecoder: Sendable {
    let tokenizer: any Tokenizer
    var pending: [UInt8] = []
    /// A decoder of `tokenizer`'s tokens into whole characters.
    public init(_ tokenizer: any Tokenizer) { self.tokenizer = tokenizer }

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

/// What both tokenizers share: the vocabulary's special tokens and llama.cpp's way of cutting
/// them out of text.
struct SpecialTokens: Sendable {
    /// Every special token (control 3, unknown 2, user-defined 4), longest first: llama.cpp
    /// splits the text at each in turn, all occurrences of one before the next.
    let ordered: [(text: [UInt8], id: Int32, control: Bool)]
    let byText: [String: Int32]
    /// Per id: a control or unknown token (its text is markup, not content).
    let isControl: [Bool]
    let endOfGeneration: Set<Int32>
    /// Tokens that swallow the whitespace after them (llama.cpp's RSTRIP attribute).
    let rstrip: Set<Int32>

    /// `modelName`: `general.name`; llama.cpp gives Phi-3's special tokens RSTRIP by it.
    init(tokens: [String], types: [Int32]?, eos: Int32?, eot: Int32?, modelName: String? = nil) {
        // llama.cpp's end-of-generation tokens by text; each also becomes a control token
        // whatever its type says (a user-defined `</s>` is then markup, not text).
        let eogTexts: Set<String> = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
                                     "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
                                     "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>"]
        var eog = Set<Int32>()
        var first: [String: Int32] = [:]
        for (i, t) in tokens.enumerated() where first[t] == nil { first[t] = Int32(i) }
        for t in eogTexts { if let id = first[t] { eog.insert(id) } }
        // Where the vocabulary has <|tool_response> or <|plamo:eos|>, its </s> is a normal token.
        if let s = first["</s>"], first["<|tool_response>"] != nil || first["<|plamo:eos|>"] != nil { eog.remove(s) }
        // <|end|> is no end where <|return|> and <|call|> (or <|calls|> and <|flush|>) are.
        if let e = first["<|end|>"], (first["<|return|>"] != nil && first["<|call|>"] != nil) || (first["<|calls|>"] != nil && first["<|flush|>"] != nil) {
            eog.remove(e)
        }
        var list: [(text: [UInt8], id: Int32, control: Bool)] = []
        var byText: [String: Int32] = [:]
        var control = [Bool](repeating: false, count: tokens.count)
        for (i, t) in tokens.enumerated() where !t.isEmpty {
            let type = types?[i] ?? 1
            let isControl = type == 2 || type == 3 || eog.contains(Int32(i))
            guard isControl || type == 4 else { continue }
            list.append((Array(t.utf8), Int32(i), isControl))
            if byText[t] == nil { byText[t] = Int32(i) }
            control[i] = isControl
        }
        // Longest first; equal lengths by id, so the order does not depend on a sort's stability.
        ordered = list.sorted { $0.text.count != $1.text.count ? $0.text.count > $1.text.count : $0.id < $1.id }
        self.byText = byText
        isControl = control
        if let eos { eog.insert(eos) }
        if let eot { eog.insert(eot) }
        endOfGeneration = eog
        var strip = Set<Int32>()
        if let name = modelName?.lowercased(), name.contains("phi-3") || name.contains("phi3") {
            strip = Set(list.map(\.id))
            if let id = byText["</s>"] ?? tokens.firstIndex(of: "</s>").map(Int32.init) { strip.insert(id) }
            for keep in ["<unk>", "<s>", "<|endoftext|>"] { if let id = tokens.firstIndex(of: keep) { strip.remove(Int32(id)) } }
        }
        rstrip = strip
    }

    /// Parts cut into pieces of plain text (nil) and special tokens, as llama.cpp's
    /// `tokenizer_st_partition` cuts text (control tokens only where the part allows them),
    /// adjacent text pieces of different parts joined into one run.
    func split(_ parts: [(text: String, parseSpecial: Bool)]) -> [(String, Int32?)] {
        enum Fragment { case text(Range<Int>), token(Int32) }
        var out: [(String, Int32?)] = []
        var run: [UInt8] = []
        for part in parts {
            let bytes = Array(part.text.utf8)
            var frags: [Fragment] = bytes.isEmpty ? [] : [.text(0..<bytes.count)]
            for s in ordered where part.parseSpecial || !s.control {
                var next: [Fragment] = []
                next.reserveCapacity(frags.count)
                for f in frags {
                    guard case var .text(r) = f else { next.append(f); continue }
                    while let m = Self.find(s.text, in: bytes, r) {
                        if m > r.lowerBound { next.append(.text(r.lowerBound..<m)) }
                        next.append(.token(s.id))
                        var rest = m + s.text.count
                        if rstrip.contains(s.id), rest < r.upperBound {
                            while rest < r.upperBound, [0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D].contains(bytes[rest]) { rest += 1 }
                        }
                        r = rest..<r.upperBound
                    }
                    if !r.isEmpty { next.append(.text(r)) }
                }
                frags = next
            }
            // Every cut is at a special token's edge and a special token's text is whole UTF-8,
            // so each text piece is whole UTF-8 too.
            for f in frags {
                switch f {
                case let .text(r): run += bytes[r]
                case let .token(id):
                    if !run.isEmpty { out.append((String(decoding: run, as: UTF8.self), nil)); run.removeAll() }
                    out.append(("", id))
                }
            }
        }
        if !run.isEmpty { out.append((String(decoding: run, as: UTF8.self), nil)) }
        return out
    }

    static func find(_ needle: [UInt8], in hay: [UInt8], _ r: Range<Int>) -> Int? {
        guard let first = needle.first, needle.count <= r.count else { return nil }
        var i = r.lowerBound
        let last = r.upperBound - needle.count
        while i <= last {
            if hay[i] == first {
                var k = 1
                while k < needle.count && hay[i + k] == needle[k] { k += 1 }
                if k == needle.count { return i }
            }
            i += 1
        }
        return nil
    }
}
