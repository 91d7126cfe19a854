import ArgumentParser
import Condense
import CondenseInference
import Foundation

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat with a GGUF language model: one user turn per line on stdin, the reply streamed to stdout (template from the file).")

    @Option(help: "The model: a GGUF file, or a folder written by `compress --llm`.")
    var model: String
    @Option(help: "A system message (default: the template's own, if it has one).")
    var system: String?
    @Option(help: "Tokens per reply at most.")
    var maxTokens = 512
    @Option(help: "Sampling temperature (0: greedy).")
    var temperature: Float = 0.8
    @Option(help: "Random seed (default: a random one).")
    var seed: UInt64?
    @OptionGroup var decoder: DecoderOptions
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be >= 1 (tokens per reply), got \(maxTokens)") }
        guard temperature.isFinite, temperature >= 0 else { throw ValidationError("--temperature must be >= 0, got \(temperature)") }
    }

    func run() throws {
        try runtime.apply()
        let file = try GGUFFile(contentsOf: DecoderFolder.metadataPath(model))
        let lm: LanguageModel
        let template: ChatTemplate
        do {
            lm = try LanguageModel(contentsOf: model, registry: cliRegistry())
            template = try ChatTemplate(gguf: file)
        } catch let e as CondenseError { throw e.inFile(model) }
        if template.family == .generic { FileHandle.standardError.write(Data("note: \(model) has no chat template; using a plain 'User:/Assistant:' format\n".utf8)) }
        if let why = template.fallbackReason {
            FileHandle.standardError.write(Data("note: \(model)'s chat template is rendered by the built-in \(template.family.rawValue) format: \(why)\n".utf8))
        }
        if template.fromArchitecture {
            FileHandle.standardError.write(Data("note: \(model) has no chat template; using \(lm.config.architecture)'s \(template.family.rawValue) turn format\n".utf8))
        }
        let session = try lm.session(kvCache: decoder.keys, valueCache: decoder.values)
        var messages: [ChatTemplate.Message] = system.map { [.init(role: "system", content: $0)] } ?? []
        var options = GenerationOptions(maxTokens: maxTokens)
        options.temperature = temperature
        options.seed = seed ?? UInt64.random(in: 0...UInt64.max)
        options.stop = [template.endOfTurn]
        let interactive = isatty(0) != 0
        if interactive { FileHandle.standardError.write(Data("\(lm.name) (\(template.family.rawValue) template). Ctrl-D ends.\n> ".utf8)) }
        while let line = readLine() {
            guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
            messages.append(.init(role: "user", content: line))
            let ids = try template.tokens(messages, tokenizer: lm.tokenizer)
            // Reuse the cache when the conversation so far is its prefix; otherwise start over.
            if !ids.starts(with: session.tokens) || session.tokens.count >= ids.count { session.reset() }
            let fresh = Array(ids.dropFirst(session.tokens.count))
            let r = try session.generate(tokenIDs: fresh, options) { piece in FileHandle.standardOutput.write(Data(piece.utf8)) }
            FileHandle.standardOutput.write(Data("\n".utf8))
            messages.append(.init(role: "assistant", content: r.text))
            if interactive { FileHandle.standardError.write(Data("> ".utf8)) }
        }
    }
}
