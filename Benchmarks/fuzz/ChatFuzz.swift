// libFuzzer entry point for the chat-template interpreter and the SentencePiece tokenizer: any
// input must parse and render (or throw) within the limits, and any text must tokenize into ids
// of the vocabulary that decode back to it — never crash, hang or grow without bound. Built and
// run by fuzz_chat.sh.
import Foundation

private let vocabulary: SentencePieceTokenizer = {
    var tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<ud>", "\u{2581}", "\u{2581}a", "ab", "\u{2581}ab", "b\u{2581}"]
    tokens += (0..<256).map { String(format: "<0x%02X>", $0) }
    let types: [Int32] = [2, 3, 3, 3, 3, 4, 1, 1, 1, 1, 1] + [Int32](repeating: 6, count: 256)
    let scores: [Float] = [0, 0, 0, 0, 0, 0, -1, -2, -3, -1.5, -4] + [Float](repeating: 0, count: 256)
    return try! SentencePieceTokenizer(tokens: tokens, scores: scores, tokenTypes: types, bos: 1, eos: 2, unknown: 0, addSpacePrefix: false)
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeRawBufferPointer(start: start, count: count), as: UTF8.self)
    var limits = JinjaTemplate.Limits()
    limits.iterations = 10_000
    limits.outputCharacters = 100_000
    if let t = try? JinjaTemplate(text) {
        let messages: JValue = .list([.dict(["role": .text("user"), "content": .text(text)])])
        if let parts = try? t.render(["messages": messages, "add_generation_prompt": .bool(true)], limits: limits) {
            precondition(parts.reduce(0) { $0 + $1.text.unicodeScalars.count } <= limits.outputCharacters, "output limit let through")
        }
    }
    for parse in [true, false] {
        let ids = vocabulary.encode(text, addSpecial: false, parseSpecial: parse)
        precondition(ids.allSatisfy { $0 >= 0 && Int($0) < vocabulary.tokens.count }, "id outside the vocabulary")
        // A literal ▁ in the text is SentencePiece's space marker and decodes as a space, as in llama.cpp.
        // (Replaced per scalar: a ▁ followed by a combining mark is one Character.)
        if !parse {
            let want = String(String.UnicodeScalarView(text.unicodeScalars.map { $0 == "\u{2581}" ? " " : $0 }))
            precondition(vocabulary.decode(ids).unicodeScalars.elementsEqual(want.unicodeScalars), "plain text did not come back")
        }
    }
    return 0
}
