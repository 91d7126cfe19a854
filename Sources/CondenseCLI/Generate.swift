import ArgumentParser
import Condense
import CondenseInference
import Foundation

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue a prompt with a GGUF language model (llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3), streaming the continuation to stdout.",
        discussion: "The prompt is tokenized as given, control tokens included, no chat template. Sampling defaults are llama.cpp's; --temperature 0 is greedy.")

    @Option(help: "The model: a GGUF file, or a folder written by `compress --llm`.")
    var model: String
    @Option(help: "The text to continue.")
    var prompt: String
    @Option(help: "Tokens to generate at most.")
    var maxTokens = 128
    @Option(help: "Sampling temperature (0: greedy).")
    var temperature: Float = 0.8
    @Option(help: "Keep the K most likely tokens (0: off).")
    var topK = 40
    @Option(help: "Keep the most likely tokens up to this probability mass (1: off).")
    var topP: Float = 0.95
    @Option(help: "Keep tokens at least this fraction as likely as the top one (0: off).")
    var minP: Float = 0.05
    @Option(help: "Penalty for tokens already seen (1: off).")
    var repeatPenalty: Float = 1
    @Option(help: "Random seed (default: a random one; the same seed gives the same text).")
    var seed: UInt64?
    @Option(help: "Stop before this string (repeatable).")
    var stop: [String] = []
    @Option(help: "KV cache length in tokens (default: the model's, at most 4096).")
    var ctx: Int?
    @Option(help: "Constrain the output to a JSON value of this JSON Schema (inline JSON, as llama.cpp's --json-schema; '{}' for any value).")
    var jsonSchema: String?
    @Option(help: "The same, read from a file.")
    var jsonSchemaFile: String?
    @Flag(help: "Print {prompt_tokens, tokens, text, timings} as JSON instead of streaming.")
    var json = false
    @Flag(help: "Print where each projection runs (kernel, and the row counts of a split) to stderr.")
    var placement = false
    @OptionGroup var decoder: DecoderOptions
    @OptionGroup var runtime: RuntimeOptions

    var options: GenerationOptions {
        var o = GenerationOptions(maxTokens: maxTokens)
        o.temperature = temperature
        o.topK = topK
        o.topP = topP
        o.minP = minP
        o.repeatPenalty = repeatPenalty
        o.seed = seed ?? UInt64.random(in: 0...UInt64.max)
        o.stop = stop
        o.json = try? grammar()
        return o
    }

    /// The grammar of --json-schema or --json-schema-file (nil without either).
    func grammar() throws -> JSONGrammar? {
        let text: String
        if let jsonSchema { text = jsonSchema } else if let jsonSchemaFile {
            text = try FileInput.text(jsonSchemaFile)
        } else { return nil }
        let option = jsonSchema != nil ? "--json-schema" : "--json-schema-file"
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) else {
            throw ValidationError("\(option) is not JSON: \(text.prefix(80))")
        }
        do { return JSONGrammar(try JSONSchema(object)) } catch let e as CondenseError { throw ValidationError("\(option): \(e.description)") }
    }

    func validate() throws {
        do { try options.validate() } catch let e as CondenseError { throw ValidationError(e.description) }
        if let ctx, ctx < 1 { throw ValidationError("--ctx must be >= 1, got \(ctx)") }
        guard jsonSchema == nil || jsonSchemaFile == nil else { throw ValidationError("give --json-schema or --json-schema-file, not both") }
        _ = try grammar()
    }

    func run() throws {
        try runtime.apply()
        let lm = try LanguageModel(contentsOf: model, registry: cliRegistry())
        if placement { for p in lm.placements { FileHandle.standardError.write(Data("\(p.name): \(p.placement)\n".utf8)) } }
        if let ctx, ctx > lm.config.contextLength {
            FileHandle.standardError.write(Data("note: --ctx \(ctx) is above \(lm.name)'s trained context; using \(lm.config.contextLength)\n".utf8))
        }
        let session = try lm.session(contextLength: ctx.map { min($0, lm.config.contextLength) }, kvCache: decoder.keys, valueCache: decoder.values)
        let out = FileHandle.standardOutput
        let r = try session.generate(prompt, options) { piece in
            if !json { out.write(Data(piece.utf8)) }
        }
        if json {
            let record: [String: Any] = [
                "prompt_tokens": r.promptTokens.map(Int.init), "tokens": r.tokens.map(Int.init), "text": r.text,
                "finish_reason": r.finishReason,
                "timings": ["prompt_tok_s": Double(r.promptTokens.count) / max(r.promptSeconds, 1e-9),
                            "gen_tok_s": Double(r.tokens.count) / max(r.generationSeconds, 1e-9)],
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]), as: UTF8.self))
        } else {
            out.write(Data("\n".utf8))
        }
    }
}
