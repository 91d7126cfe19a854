import Condense
import Foundation

/// BERT's tokenizer: the basic tokenizer (cleaning, CJK splitting, lower-casing with accent
/// stripping, punctuation splitting) followed by greedy longest-match WordPiece over `vocab.txt`,
/// as Hugging Face's `BertTokenizer` (uncased) does it.
///
/// ```swift
/// let tok = try WordPieceTokenizer(vocabulary: "model/vocab.txt")
/// let ids = tok.encode("Héllo, world!", maxLength: 256)   // [CLS] hello , world ! [SEP]
/// ```
public struct WordPieceTokenizer: Sendable {
    public let vocabulary: [String: Int32]
    public let tokens: [String]
    public let lowercase: Bool
    public let cls: Int32, sep: Int32, unk: Int32, pad: Int32
    /// Words longer than this become [UNK] (BERT's rule).
    public let maxWordCharacters = 100

    /// - Throws: `CondenseError/invalidModel(_:)` when the file cannot be read or lacks
    ///   [CLS], [SEP], [UNK] or [PAD].
    public init(vocabulary path: String, lowercase: Bool = true) throws {
        let text = try FileInput.text(path)
        do {
            try self.init(tokens: FileInput.lines(text).map(String.init), lowercase: lowercase)
        } catch let e as CondenseError { throw e.inFile(path) }
    }

    /// - Throws: `CondenseError/invalidModel(_:)` for a token listed twice (its ids would shift
    ///   every later token), naming both lines, or a missing special token.
    public init(tokens: [String], lowercase: Bool = true) throws {
        guard tokens.count <= Int(Int32.max) else { throw CondenseError.invalidModel("vocabulary of \(tokens.count) tokens is too large") }
        var v: [String: Int32] = [:]
        for (i, t) in tokens.enumerated() {
            if let first = v[t] {
                throw CondenseError.invalidModel("token '\(t)' on line \(i + 1) repeats line \(first + 1)")
            }
            v[t] = Int32(i)
        }
        func id(_ t: String) throws -> Int32 {
            guard let i = v[t] else { throw CondenseError.invalidModel("the vocabulary has no \(t) token") }
            return i
        }
        self.tokens = tokens
        vocabulary = v
        self.lowercase = lowercase
        cls = try id("[CLS]")
        sep = try id("[SEP]")
        unk = try id("[UNK]")
        pad = try id("[PAD]")
    }

    /// `[CLS] pieces… [SEP]`, truncated so the whole fits in `maxLength` (≥ 2).
    public func encode(_ text: String, maxLength: Int = 512) -> [Int32] {
        let pieces = wordPieces(text)
        let keep = max(0, maxLength - 2)
        return [cls] + pieces.prefix(keep) + [sep]
    }

    /// The WordPiece ids of `text`, without special tokens.
    public func wordPieces(_ text: String) -> [Int32] {
        var ids: [Int32] = []
        for word in basicTokens(text) { ids += wordPiece(word) }
        return ids
    }

    /// The basic tokenizer's words.
    public func basicTokens(_ text: String) -> [String] {
        // Clean and space out CJK characters, then split on whitespace.
        var cleaned = String.UnicodeScalarView()
        for s in text.unicodeScalars {
            let v = s.value
            if v == 0 || v == 0xFFFD || (Self.isControl(s) && !Self.isWhitespace(s)) { continue }
            if Self.isWhitespace(s) { cleaned.append(" "); continue }
            if Self.isCJK(v) {
                cleaned.append(" "); cleaned.append(s); cleaned.append(" ")
            } else {
                cleaned.append(s)
            }
        }
        var out: [String] = []
        for raw in String(cleaned).split(separator: " ", omittingEmptySubsequences: true) {
            var w = String(raw)
            if lowercase {
                w = w.lowercased()
                // Strip accents: canonical decomposition, then drop the combining marks (Mn).
                w = String(String.UnicodeScalarView(w.decomposedStringWithCanonicalMapping.unicodeScalars.filter {
                    $0.properties.generalCategory != .nonspacingMark
                }))
            }
            // Split off every punctuation character as its own word.
            var current = String.UnicodeScalarView()
            for s in w.unicodeScalars {
                if Self.isPunctuation(s) {
                    if !current.isEmpty { out.append(String(current)); current = String.UnicodeScalarView() }
                    out.append(String(s))
                } else {
                    current.append(s)
                }
            }
            if !current.isEmpty { out.append(String(current)) }
        }
        return out
    }

    /// Greedy longest-match-first; a word with an unmatched remainder is [UNK] as a whole.
    func wordPiece(_ word: String) -> [Int32] {
        let scalars = Array(word.unicodeScalars)
        if scalars.count > maxWordCharacters { return [unk] }
        var pieces: [Int32] = []
        var start = 0
        while start < scalars.count {
            var end = scalars.count
            var found: Int32?
            while start < end {
                var sub = String(String.UnicodeScalarView(scalars[start..<end]))
                if start > 0 { sub = "##" + sub }
                if let id = vocabulary[sub] { found = id; break }
                end -= 1
            }
            guard let id = found else { return [unk] }
            pieces.append(id)
            start = end
        }
        return pieces
    }

    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        s == " " || s == "\t" || s == "\n" || s == "\r" || s.properties.generalCategory == .spaceSeparator
    }

    static func isControl(_ s: Unicode.Scalar) -> Bool {
        if s == "\t" || s == "\n" || s == "\r" { return false }
        let c = s.properties.generalCategory
        return c == .control || c == .format
    }

    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) { return true }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }

    static func isCJK(_ v: UInt32) -> Bool {
        (0x4E00...0x9FFF).contains(v) || (0x3400...0x4DBF).contains(v) || (0x20000...0x2A6DF).contains(v)
            || (0x2A700...0x2B73F).contains(v) || (0x2B740...0x2B81F).contains(v) || (0x2B820...0x2CEAF).contains(v)
            || (0xF900...0xFAFF).contains(v) || (0x2F800...0x2FA1F).contains(v)
    }
}

@available(*, deprecated, renamed: "CondenseError", message: "one error type: CondenseError")
/// The errors of the inference module (an alias kept for source compatibility).
public typealias InferenceError = CondenseError
