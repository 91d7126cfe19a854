import ArgumentParser
import Condense
import CondenseInference
import CondenseServer
import Foundation

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "An OpenAI-compatible HTTP server: /v1/embeddings, /v1/chat/completions, /v1/completions, /v1/models, /health, /ready, /metrics.",
        discussion: "Embeddings are batched dynamically, generation continuously (every active stream advances in one batched step). SIGTERM or SIGINT drains: requests in flight finish. Binds to 127.0.0.1 unless --host says otherwise; PORT from the environment is used when --port is not given.")

    @Option(help: "A sentence-encoder folder (config.json, vocab.txt, model.safetensors), e.g. all-MiniLM-L6-v2.")
    var embeddingModel: String?
    @Option(help: "A GGUF language model (or a folder written by `compress --llm`) for chat and completions; repeatable (a request's 'model' chooses, the first by default).")
    var chatModel: [String] = []
    @Option(help: "The id of a chat model in requests and /v1/models, in the order of --chat-model (repeatable; default: the GGUF's general.name, else its file name).")
    var alias: [String] = []
    @Option(help: "The id of the embedding model in requests and /v1/models (default: its folder's name, or the parent's for a folder named 'model').")
    var embeddingModelName: String?
    @Option(help: "The id of the first chat model (as --alias).")
    var chatModelName: String?
    @Option(help: "Address to bind.")
    var host = "127.0.0.1"
    @Option(help: "Port (default: $PORT, else 8080).")
    var port: Int?
    @Option(help: "Tokens per embedding batch at most.")
    var maxBatchTokens = 8192
    @Option(help: "Generation streams decoding at once; as many again wait, then requests get 429.")
    var maxConcurrent = 8
    @Option(help: "MB of prompt prefixes kept per chat model for requests that start with the same tokens (a system prompt, a conversation so far); 0 turns the prefix cache off.")
    var prefixCacheMb = 256
    @Option(help: "MB of KV cache all chat sessions of a model may hold together; a request waits in the queue until its cache (prompt + max_tokens) fits (default: half the machine's memory).")
    var kvCacheMb: Int?
    @Option(help: "A file holding the API key that /v1/ requests must send as 'Authorization: Bearer KEY'.")
    var apiKeyFile: String?
    @OptionGroup var decoder: DecoderOptions
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard embeddingModel != nil || !chatModel.isEmpty else { throw ValidationError("give --embedding-model, --chat-model or both") }
        guard alias.count <= chatModel.count else {
            throw ValidationError("\(alias.count) --alias for \(chatModel.count) --chat-model: each alias names the chat model in the same place")
        }
        guard chatModelName == nil || alias.isEmpty else { throw ValidationError("give --chat-model-name or --alias, not both") }
        guard maxBatchTokens >= 1 else { throw ValidationError("--max-batch-tokens must be >= 1, got \(maxBatchTokens)") }
        guard maxConcurrent >= 1 else { throw ValidationError("--max-concurrent must be >= 1, got \(maxConcurrent)") }
        guard prefixCacheMb >= 0, prefixCacheMb <= 1 << 20 else { throw ValidationError("--prefix-cache-mb must be in 0…1048576, got \(prefixCacheMb)") }
        if let kvCacheMb { guard kvCacheMb >= 1, kvCacheMb <= 1 << 30 else { throw ValidationError("--kv-cache-mb must be in 1…1073741824, got \(kvCacheMb)") } }
        if let port { guard (1...65535).contains(port) else { throw ValidationError("--port must be in 1…65535, got \(port)") } }
    }

    func run() async throws {
        try runtime.apply()
        var options = ServerOptions()
        options.host = host
        if let port {
            options.port = port
        } else if let env = ProcessInfo.processInfo.environment["PORT"] {
            guard let p = Int(env), (1...65535).contains(p) else { throw ValidationError("PORT must be a port number in 1…65535, got '\(env)'") }
            options.port = p
        }
        options.maxBatchTokens = maxBatchTokens
        options.maxConcurrent = maxConcurrent
        options.maxQueued = 8 * maxConcurrent
        options.prefixCacheBytes = prefixCacheMb << 20
        // Half the machine's memory by default: the weights, the prefix cache and the process
        // itself share the rest.
        options.kvCacheBytes = kvCacheMb.map { $0 << 20 } ?? Int(ProcessInfo.processInfo.physicalMemory / 2)
        (options.kvCache, options.valueCache) = (decoder.keys, decoder.values)
        if let apiKeyFile {
            let key = try FileInput.text(apiKeyFile).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !key.isEmpty, !key.contains(where: { $0.isNewline }) else { throw ValidationError("\(apiKeyFile): the API key must be one non-empty line") }
            options.apiKey = key
        }
        var models = ServedModels()
        if let dir = embeddingModel {
            let encoder = try SentenceEncoder(directory: dir)
            let session = try InferenceSession(encoder, registry: cliRegistry(), policy: .fastest(batch: 128))
            // The folder's name, or its parent's when the folder is just "model" (as PyPI packages ship it).
            let url = URL(fileURLWithPath: dir).standardizedFileURL
            let folder = url.lastPathComponent == "model" ? url.deletingLastPathComponent().lastPathComponent : url.lastPathComponent
            models.embedding = (embeddingModelName ?? folder, session)
        }
        let names = chatModelName.map { [$0] } ?? alias
        for (i, path) in chatModel.enumerated() {
            let file = try GGUFFile(contentsOf: DecoderFolder.metadataPath(path))
            do {
                let lm = try LanguageModel(contentsOf: path, registry: cliRegistry())
                // A cache type the model cannot hold is an error now, not a failed request later.
                _ = try lm.session(contextLength: 1, kvCache: decoder.keys, valueCache: decoder.values)
                models.chats.append((i < names.count ? names[i] : lm.name, lm, try ChatTemplate(gguf: file)))
            } catch let e as CondenseError { throw e.inFile(path) }
        }
        var seen = Set<String>()
        for name in models.names where !seen.insert(name).inserted {
            throw ValidationError("two models are named '\(name)'; name them with --alias (chat) or --embedding-model-name")
        }
        let server = CondenseServer(models: models, options: options)
        FileHandle.standardError.write(Data("condense serve on http://\(options.host):\(options.port) — \(models.names.joined(separator: ", "))\n".utf8))
        try await server.application().runService(gracefulShutdownSignals: [.sigterm, .sigint])
        server.shutdown()
    }
}
