import ArgumentParser
import Condense
import CondenseInference
import Foundation

/// `condense tokenize`: a model's token ids for a text, as llama-tokenize and llama-server's
/// `/tokenize` give them, without loading the weights.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Token ids of a text under a model's tokenizer (byte-level BPE or SentencePiece), as JSON; the weights are not loaded.")

    @Option(help: "The model: a GGUF file, or a folder written by `compress --llm`.")
    var model: String
    @Option(help: "The text.")
    var text: String?
    @Option(help: "A file whose text (UTF-8) is tokenized instead; with --lines, a JSON array of strings, each tokenized on its own.")
    var file: String?
    @Flag(help: "With --file: the file is a JSON array of strings; print one array of ids per string.")
    var lines = false
    @Flag(help: "Add BOS/EOS as the model says (llama-server's /tokenize adds none).")
    var addSpecial = false
    @Flag(inversion: .prefixedNo, help: "Control tokens written in the text become their ids.")
    var parseSpecial = true

    func validate() throws {
        guard (text == nil) != (file == nil) else { throw ValidationError("give exactly one of --text and --file") }
        if lines && file == nil { throw ValidationError("--lines needs --file") }
    }

    func run() throws {
        let tokenizer: any Tokenizer
        do {
            tokenizer = try makeTokenizer(gguf: GGUFFile(contentsOf: DecoderFolder.metadataPath(model)))
        } catch let e as CondenseError { throw e.inFile(model) }
        let texts: [String]
        if let text {
            texts = [text]
        } else if lines {
            let data = try FileInput.mapped(file!)
            guard let a = try? JSONSerialization.jsonObject(with: data) as? [String] else {
                throw ValidationError("\(file!) is not a JSON array of strings")
            }
            texts = a
        } else {
            texts = [try FileInput.text(file!)]
        }
        let ids = texts.map { tokenizer.encode($0, addSpecial: addSpecial, parseSpecial: parseSpecial).map(Int.init) }
        let out: Any = lines ? ids : ids[0]
        print(String(decoding: try JSONSerialization.data(withJSONObject: out), as: UTF8.self))
    }
}
