import ArgumentParser
import Condense
import CondenseInference
import Foundation

struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity of a GGUF language model on a text file, by llama-perplexity's method (windows of --ctx tokens, the second half of each scored).")

    @Option(help: "The model: a GGUF file, or a folder written by `compress --llm`.")
    var model: String
    @Option(help: "The text (UTF-8).")
    var input: String
    @Option(help: "Window length in tokens.")
    var ctx = 512
    @Flag(help: "Print {ppl, tokens, scored} as JSON.")
    var json = false
    @Flag(help: "With --json: also the most likely token at every scored position (\"top1\"), for teacher-forced agreement checks.")
    var top1 = false
    @OptionGroup var decoder: DecoderOptions
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard ctx >= 4 else { throw ValidationError("--ctx must be >= 4, got \(ctx)") }
    }

    func run() throws {
        try runtime.apply()
        let text = try FileInput.text(input)
        let lm = try LanguageModel(contentsOf: model, registry: cliRegistry())
        let started = Date()
        let r = try Perplexity.measure(lm, text: text, context: ctx, kvCache: decoder.keys, valueCache: decoder.values) { done, total, ppl in
            if !json { FileHandle.standardError.write(Data(String(format: "[%d/%d] %.4f\n", done, total, ppl).utf8)) }
        }
        if json {
            var record: [String: Any] = ["ppl": r.perplexity, "tokens": r.tokens, "scored": r.scored, "windows": r.windows, "ctx": ctx,
                                         "seconds": Date().timeIntervalSince(started)]
            if top1 { record["top1"] = r.top1.map(Int.init) }
            print(String(decoding: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print(String(format: "perplexity %.4f over %d scored tokens (%d windows of %d; %d tokens in the text)", r.perplexity, r.scored, r.windows, ctx, r.tokens))
        }
    }
}
