import Condense
import CondenseInference
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// What `condense serve` takes.
public struct ServerOptions: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// Tokens per embedding batch at most.
    public var maxBatchTokens = 8192
    /// Generation streams decoding at once (continuous batching); as many again may wait.
    public var maxConcurrent = 8
    /// Requests waiting beyond the active ones before 429.
    public var maxQueued = 64
    /// The chat sessions' key and value cache types (llama-server's `-ctk`, `-ctv`).
    public var kvCache: KVCacheType = .f16
    public var valueCache: KVCacheType?
    /// When set, every `/v1/` request needs `Authorization: Bearer <key>`.
    public var apiKey: String?
    /// Request bodies larger than this get 413.
    public var maxBodyBytes = 4 << 20
    /// Per chat model, the bytes of prompt prefixes kept for reuse (`PrefixCache`; 0: none).
    public var prefixCacheBytes = 256 << 20
    /// Per chat model, the most bytes its sessions' KV caches hold together (0: no bound): a
    /// request waits until its cache fits; one whose cache alone exceeds this gets 400.
    public var kvCacheBytes = 0
    /// The defaults: loopback, port 8080, 8 streams, f16 KV cache, 256 MB prefix cache, no KV bound.
    public init() {}
}

/// The served models.
public struct ServedModels: Sendable {
    /// A served chat model: its id in requests, the model, and the chat template that renders its
    /// conversations.
    public typealias Chat = (name: String, model: LanguageModel, template: ChatTemplate)
    public var embedding: (name: String, session: InferenceSession)?
    /// The chat models, chosen by a request's `model` (the first when it names none). Names are
    /// unique; a later model of an already served name is left out.
    public var chats: [Chat] = []
    /// The first chat model (the default).
    public var chat: Chat? {
        get { chats.first }
        set { if let newValue { if chats.isEmpty { chats = [newValue] } else { chats[0] = newValue } } else { chats.removeAll() } }
    }
    /// An embedding model, a first chat model, or both (add more to ``chats``).
    public init(embedding: (name: String, session: InferenceSession)? = nil, chat: Chat? = nil) {
        self.embedding = embedding
        self.chat = chat
    }
    /// Every served model's name, embedding first.
    public var names: [String] { (embedding.map { [$0.name] } ?? []) + chats.map(\.name) }
}

/// The served routes: one list for the router and the metrics' labels.
enum Route: String, CaseIterable {
    case health = "/health", ready = "/ready", metrics = "/metrics", models = "/v1/models", embeddings = "/v1/embeddings"
    case chatCompletions = "/v1/chat/completions", completions = "/v1/completions"

    var path: RouterPath { RouterPath(rawValue) }
}

/// An OpenAI-compatible HTTP server for embeddings and chat (Hummingbird 2): `/v1/embeddings`,
/// `/v1/chat/completions`, `/v1/completions` (with server-sent events), `/v1/models`, `/health`,
/// `/ready` and `/metrics`. Embeddings are batched dynamically, generation continuously.
///
/// ```swift
/// let lm = try LanguageModel(gguf: path)
/// let server = CondenseServer(models: ServedModels(chat: ("smollm2", lm, try ChatTemplate(gguf: GGUFFile(contentsOf: path)))),
///                             options: ServerOptions())
/// try await server.application().runService()      // SIGTERM / SIGINT drain it
/// ```
public final class CondenseServer: Sendable {
    public let models: ServedModels
    public let options: ServerOptions
    public let metrics: ServerMetrics
    let batcher: EmbeddingBatcher?
    /// One generation engine per chat model, by name.
    let schedulers: [String: GenerationScheduler]
    let draining = Flag()

    /// A server for `models`: starts one generation engine per chat model and the embedding batcher.
    public init(models: ServedModels, options: ServerOptions) {
        self.models = models
        self.options = options
        let metrics = ServerMetrics()
        self.metrics = metrics
        batcher = models.embedding.map {
            EmbeddingBatcher(session: $0.session, maxBatchTokens: options.maxBatchTokens, maxQueued: options.maxQueued + options.maxConcurrent,
                             metrics: metrics)
        }
        var schedulers: [String: GenerationScheduler] = [:]
        for c in models.chats where schedulers[c.name] == nil {
            schedulers[c.name] = GenerationScheduler(model: c.model, maxActive: options.maxConcurrent, maxQueued: options.maxQueued,
                                                     kvCache: options.kvCache, valueCache: options.valueCache,
                                                     prefixCacheBytes: options.prefixCacheBytes, kvBudgetBytes: options.kvCacheBytes,
                                                     observer: metrics)
        }
        self.schedulers = schedulers
    }

    /// Stops the compute threads once their work is done.
    public func shutdown() {
        batcher?.shutdown()
        for s in schedulers.values { s.shutdown() }
    }

    /// The Hummingbird application: the router, bound to the options' host and port.
    public func application(logger: Logger? = nil) -> some ApplicationProtocol {
        var log = logger ?? Logger(label: "condense.server")
        if logger == nil { log.logLevel = .info }
        return Application(router: router(), configuration: .init(address: .hostname(options.host, port: options.port), serverName: "condense"),
                           services: [Drain(server: self)], logger: log)
    }

    /// Every route, behind the middleware that checks the key, counts and times requests and
    /// answers errors in OpenAI's shape.
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: Guard(server: self))
        router.get(Route.health.path) { _, _ in JSON.response(["status": "ok"]) }
        router.get(Route.ready.path) { [self] _, _ in
            draining.value ? JSON.response(["status": "draining"], status: .serviceUnavailable) : JSON.response(["status": "ready"])
        }
        router.get(Route.metrics.path) { [self] _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: metrics.text())))
        }
        router.get(Route.models.path) { [self] _, _ in
            var data: [[String: Any]] = []
            if let e = models.embedding { data.append(["id": e.name, "object": "model", "created": 0, "owned_by": "condense", "type": "embedding"]) }
            for c in models.chats where schedulers[c.name] != nil && !data.contains(where: { $0["id"] as? String == c.name }) {
                data.append(["id": c.name, "object": "model", "created": 0, "owned_by": "condense", "type": "chat"])
            }
            return JSON.response(["object": "list", "data": data])
        }
        router.post(Route.embeddings.path) { [self] request, _ in try await embeddings(try await body(request)) }
        router.post(Route.chatCompletions.path) { [self] request, _ in try await generation(try await body(request), chat: true) }
        router.post(Route.completions.path) { [self] request, _ in try await generation(try await body(request), chat: false) }
        return router
    }

    func body(_ request: Request) async throws -> Fields {
        var r = request
        let buffer: ByteBuffer
        do {
            buffer = try await r.collectBody(upTo: options.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "the body is larger than \(options.maxBodyBytes) bytes")
        } catch let e as HTTPError where e.status == .contentTooLarge {
            throw APIError(.contentTooLarge, "the body is larger than \(options.maxBodyBytes) bytes")
        }
        return Fields(o: try JSON.object(buffer), data: Data(buffer: buffer))
    }

    /// A served model by the request's `model`: the embedding model or a chat model with its
    /// engine; nil when the request names none. One lookup for every route, so every route
    /// answers an unknown name alike (404 listing what is served).
    enum Served { case embedding, chat(ServedModels.Chat, GenerationScheduler) }
    func served(_ f: Fields) throws -> (name: String, model: Served)? {
        guard let m = try f.string("model") else { return nil }
        if m == models.embedding?.name { return (m, .embedding) }
        if let c = models.chats.first(where: { $0.name == m }), let s = schedulers[m] { return (m, .chat(c, s)) }
        throw APIError(.notFound, "model '\(m)' not found; served: \(models.names.joined(separator: ", "))", param: "model")
    }

    /// The chat model a request names (the first served when it names none).
    func chatModel(_ f: Fields) throws -> (chat: ServedModels.Chat, scheduler: GenerationScheduler) {
        switch try served(f) {
        case let (_, .chat(c, s))?: return (c, s)
        case let (m, .embedding)?:
            throw APIError(.badRequest, "'\(m)' is not a chat model; the chat models are \(models.chats.map { "'\($0.name)'" }.joined(separator: ", "))", param: "model")
        case nil:
            guard let first = models.chats.first, let s = schedulers[first.name] else { throw APIError(.notFound, "no chat model is served", param: "model") }
            return (first, s)
        }
    }

    /// The embedding model, when the request names it or none.
    func embeddingModel(_ f: Fields) throws -> (name: String, session: InferenceSession) {
        let named = try served(f)
        guard let e = models.embedding else { throw APIError(.notFound, "no embedding model is served", param: "model") }
        if let (m, kind) = named, case .chat = kind {
            throw APIError(.badRequest, "'\(m)' is not a embedding model; the embedding model is '\(e.name)'", param: "model")
        }
        return e
    }
}
