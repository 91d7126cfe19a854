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
        return Fields(o: try JSON.object(buffer))
    }

    /// Checks the request's `model` against the served ones.
    func checkModel(_ f: Fields, want: String?, others: [String], kind: String) throws {
        guard let m = try f.string("model") else { return }
        guard let want else { throw APIError(.notFound, "no \(kind) model is served", param: "model") }
        if m == want { return }
        if others.contains(m) { throw APIError(.badRequest, "'\(m)' is not a \(kind) model; the \(kind) model is '\(want)'", param: "model") }
        throw APIError(.notFound, "model '\(m)' not found; served: \(models.names.joined(separator: ", "))", param: "model")
    }

    /// The chat model a request names (the first served when it names none).
    func chatModel(_ f: Fields) throws -> (chat: ServedModels.Chat, scheduler: GenerationScheduler) {
        guard let first = models.chats.first, let s = schedulers[first.name] else { throw APIError(.notFound, "no chat model is served", param: "model") }
        guard let m = try f.string("model") else { return (first, s) }
        if let c = models.chats.first(where: { $0.name == m }), let s = schedulers[m] { return (c, s) }
        if m == models.embedding?.name {
            throw APIError(.badRequest, "'\(m)' is not a chat model; the chat models are \(models.chats.map { "'\($0.name)'" }.joined(separator: ", "))", param: "model")
        }
        throw APIError(.notFound, "model '\(m)' not found; served: \(models.names.joined(separator: ", "))", param: "model")
    }

    // MARK: - Embeddings

    func embeddings(_ f: Fields) async throws -> Response {
        try checkModel(f, want: models.embedding?.name, others: models.chats.map(\.name), kind: "embedding")
        guard let (name, session) = models.embedding, let batcher else { throw APIError(.notFound, "no embedding model is served") }
        let tokenizer = session.model.tokenizer, maxLength = session.model.maxLength
        guard let input = f.o["input"], !(input is NSNull) else { throw APIError(.badRequest, "'input' is required", param: "input") }
        let truncate = try f.bool("truncate") ?? false
        var seqs: [[Int32]] = []
        func tokens(_ v: Any, _ i: Int) throws -> [Int32] {
            if let s = v as? String {
                let pieces = tokenizer.wordPieces(s)
                if pieces.count + 2 > maxLength && !truncate {
                    throw APIError(.badRequest, "input \(i) has \(pieces.count + 2) tokens; the model takes at most \(maxLength) (or send \"truncate\": true)", param: "input")
                }
                return tokenizer.encode(s, maxLength: maxLength)
            }
            if let a = v as? [Any], a.allSatisfy({ $0 is NSNumber && !JSON.isBool($0) }) {
                let ids = try a.map { x -> Int32 in
                    let d = (x as! NSNumber).doubleValue
                    guard d == d.rounded(), d >= 0, d < Double(tokenizer.tokens.count) else {
                        throw APIError(.badRequest, "input \(i): token \(d) is outside the vocabulary of \(tokenizer.tokens.count)", param: "input")
                    }
                    return Int32(d)
                }
                if ids.count + 2 > maxLength && !truncate {
                    throw APIError(.badRequest, "input \(i) has \(ids.count + 2) tokens; the model takes at most \(maxLength) (or send \"truncate\": true)", param: "input")
                }
                return [tokenizer.cls] + ids.prefix(maxLength - 2) + [tokenizer.sep]
            }
            throw APIError(.badRequest, "input \(i) must be a string or an array of token ids, got \(JSON.kind(v))", param: "input")
        }
        if input is String {
            seqs = [try tokens(input, 0)]
        } else if let a = input as? [Any] {
            guard !a.isEmpty else { throw APIError(.badRequest, "'input' is an empty array", param: "input") }
            if a.allSatisfy({ $0 is NSNumber && !JSON.isBool($0) }) {
                seqs = [try tokens(a, 0)]
            } else {
                guard a.count <= 2048 else { throw APIError(.badRequest, "'input' has \(a.count) items; at most 2048", param: "input") }
                seqs = try a.enumerated().map { try tokens($0.element, $0.offset) }
            }
        } else {
            throw APIError(.badRequest, "'input' must be a string, an array of strings or token arrays, got \(JSON.kind(input))", param: "input")
        }
        let format = try f.string("encoding_format") ?? "float"
        guard format == "float" || format == "base64" else {
            throw APIError(.badRequest, "'encoding_format' must be \"float\" or \"base64\", got \"\(format)\"", param: "encoding_format")
        }
        let width = session.model.config.hiddenSize
        let dims = try f.integer("dimensions", 1...width)
        var vectors = try await batcher.embed(seqs)
        if let dims {
            vectors = vectors.map { v in
                let cut = Array(v.prefix(dims))
                let norm = cut.reduce(0) { $0 + $1 * $1 }.squareRoot()
                return norm > 0 ? cut.map { $0 / norm } : cut
            }
        }
        let data: [[String: Any]] = vectors.enumerated().map { i, v in
            let e: Any = format == "float" ? v.map { Double($0) } : v.withUnsafeBufferPointer { Data(buffer: $0).base64EncodedString() }
            return ["object": "embedding", "index": i, "embedding": e]
        }
        let used = seqs.reduce(0) { $0 + $1.count }
        return JSON.response(["object": "list", "data": data, "model": name, "usage": ["prompt_tokens": used, "total_tokens": used]])
    }

    // MARK: - Chat and completions

    func generation(_ f: Fields, chat: Bool) async throws -> Response {
        let ((name, model, template), scheduler) = try chatModel(f)
        let ids: [Int32]
        // Tools: rendered by a template that has a place for them; the answer's calls come back
        // as tool_calls. tool_choice "none" leaves them out; forcing a call is not supported.
        var tools: [Any]?
        if chat, let t = f.o["tools"], !(t is NSNull) {
            guard let list = t as? [Any], list.allSatisfy({ (($0 as? [String: Any])?["function"] as? [String: Any])?["name"] is String }) else {
                throw APIError(.badRequest, "'tools' must be an array of {\"type\": \"function\", \"function\": {\"name\": …}}", param: "tools")
            }
            switch f.o["tool_choice"] {
            case nil, is NSNull: tools = list
            case let c as String where c == "auto": tools = list
            case let c as String where c == "none": tools = nil
            default: throw APIError(.badRequest, "'tool_choice' must be \"auto\" or \"none\" (forcing a call is not supported)", param: "tool_choice")
            }
            if tools != nil && !template.supportsTools {
                throw APIError(.badRequest, "\(name)'s chat template does not render tools", param: "tools")
            }
        }
        if chat {
            guard let raw = f.o["messages"] as? [Any], !raw.isEmpty else {
                throw APIError(.badRequest, "'messages' must be a non-empty array", param: "messages")
            }
            let messages = try raw.enumerated().map { i, m -> ChatTemplate.Message in
                guard let o = m as? [String: Any] else { throw APIError(.badRequest, "messages[\(i)] must be an object", param: "messages") }
                guard let role = o["role"] as? String, ["system", "user", "assistant", "developer", "tool"].contains(role) else {
                    throw APIError(.badRequest, "messages[\(i)].role must be system, user, assistant or tool", param: "messages")
                }
                // An assistant turn's calls and a tool turn's answer, for templates that render them.
                var calls: [ChatTemplate.ToolCall] = []
                if let tc = o["tool_calls"], !(tc is NSNull) {
                    guard let list = tc as? [[String: Any]] else { throw APIError(.badRequest, "messages[\(i)].tool_calls must be an array", param: "messages") }
                    calls = try list.enumerated().map { j, c in
                        guard let fn = c["function"] as? [String: Any], let n = fn["name"] as? String else {
                            throw APIError(.badRequest, "messages[\(i)].tool_calls[\(j)].function.name is required", param: "messages")
                        }
                        return .init(id: c["id"] as? String ?? "call_\(j)", name: n, arguments: fn["arguments"] as? String ?? "{}")
                    }
                }
                let callID = o["tool_call_id"] as? String
                if o["content"] == nil || o["content"] is NSNull, !calls.isEmpty { return .init(role: role, content: "", toolCalls: calls) }
                if let s = o["content"] as? String { return .init(role: role == "developer" ? "system" : role, content: s, toolCalls: calls, toolCallID: callID) }
                if let parts = o["content"] as? [Any] {
                    let texts = try parts.map { p -> String in
                        guard let po = p as? [String: Any], po["type"] as? String == "text", let t = po["text"] as? String else {
                            throw APIError(.badRequest, "messages[\(i)].content: only text parts are supported", param: "messages")
                        }
                        return t
                    }
                    return .init(role: role == "developer" ? "system" : role, content: texts.joined())
                }
                throw APIError(.badRequest, "messages[\(i)].content must be a string or an array of text parts", param: "messages")
            }
            // The messages stay text: only the template's markup yields control tokens.
            do {
                ids = try template.tokens(messages, tokenizer: model.tokenizer, tools: tools)
            } catch let e as CondenseError {
                // The template refused the conversation (raise_exception) or hit a limit: the request's fault.
                throw APIError(.badRequest, "\(e)", param: "messages")
            }
        } else {
            guard let prompt = f.o["prompt"] as? String ?? ((f.o["prompt"] as? [Any]).flatMap { $0.count == 1 ? $0[0] as? String : nil }) else {
                throw APIError(.badRequest, "'prompt' must be a string (one prompt per request)", param: "prompt")
            }
            ids = model.tokenizer.encode(prompt)
        }
        let context = model.config.contextLength
        guard !ids.isEmpty else { throw APIError(.badRequest, "the prompt has no tokens", param: chat ? "messages" : "prompt") }
        guard ids.count < context else {
            throw APIError(.badRequest, "the prompt has \(ids.count) tokens; the model's context is \(context)", param: chat ? "messages" : "prompt")
        }
        var o = GenerationOptions(maxTokens: min(1024, context - ids.count))
        if let m = try f.integer("max_completion_tokens", 0...Int(Int32.max)) ?? f.integer("max_tokens", 0...Int(Int32.max)) {
            guard ids.count + m <= context else {
                throw APIError(.badRequest, "the prompt (\(ids.count) tokens) and max_tokens (\(m)) exceed the model's context of \(context)", param: "max_tokens")
            }
            o.maxTokens = m
        }
        // llama-server's defaults for what OpenAI clients do not send.
        o.temperature = Float(try f.number("temperature", 0...2) ?? 0.8)
        o.topP = Float(try f.number("top_p", 0...1) ?? 0.95)
        guard o.topP > 0 else { throw APIError(.badRequest, "'top_p' must be in (0, 1]", param: "top_p") }
        o.topK = try f.integer("top_k", 0...Int(Int32.max)) ?? 40
        o.minP = Float(try f.number("min_p", 0...1) ?? 0.05)
        o.repeatPenalty = Float(try f.number("repeat_penalty", 0.01...10) ?? 1)
        o.seed = UInt64(try f.integer("seed", Int(Int64.min)...Int(Int64.max)).map { UInt64(bitPattern: Int64($0)) } ?? UInt64.random(in: 0...UInt64.max))
        var stops: [String] = []
        if let s = f.o["stop"], !(s is NSNull) {
            if let one = s as? String { stops = [one] } else if let many = s as? [Any], many.allSatisfy({ $0 is String }) { stops = many as! [String] } else {
                throw APIError(.badRequest, "'stop' must be a string or an array of strings", param: "stop")
            }
            // Each token re-checks the held-back text against every stop: bound their size.
            guard stops.count <= 16, stops.allSatisfy({ !$0.isEmpty && $0.count <= 256 }) else {
                throw APIError(.badRequest, "'stop' takes at most 16 non-empty strings of at most 256 characters", param: "stop")
            }
        }
        // Structured output (OpenAI's response_format): constrained sampling keeps the answer a
        // JSON value of the schema; `json_object` asks for any object.
        if let rf = f.o["response_format"], !(rf is NSNull) {
            guard let r = rf as? [String: Any], let type = r["type"] as? String else {
                throw APIError(.badRequest, "'response_format' must be an object with a string 'type'", param: "response_format")
            }
            switch type {
            case "text": break
            case "json_object": o.json = JSONGrammar(.object(properties: [:], order: [], required: [], additional: true))
            case "json_schema":
                guard let js = r["json_schema"] as? [String: Any], let schema = js["schema"] else {
                    throw APIError(.badRequest, "'response_format.json_schema.schema' is required for type json_schema", param: "response_format.json_schema")
                }
                do {
                    o.json = JSONGrammar(try JSONSchema(schema, path: "response_format.json_schema.schema"))
                } catch let e as CondenseError {
                    throw APIError(.badRequest, "\(e)", param: "response_format.json_schema.schema")
                }
            default:
                throw APIError(.badRequest, "'response_format.type' must be text, json_object or json_schema, got '\(type)'", param: "response_format.type")
            }
        }
        // vLLM's fields for load tests of equal work: generate past the end tokens, or not before a minimum.
        let ignoreEOS = try f.bool("ignore_eos") ?? false
        o.stopAtEOS = !ignoreEOS
        if let m = try f.integer("min_tokens", 0...Int(Int32.max)) {
            guard m <= o.maxTokens else {
                throw APIError(.badRequest, "'min_tokens' (\(m)) exceeds max_tokens (\(o.maxTokens))", param: "min_tokens")
            }
            o.minTokens = m
        }
        if chat && !ignoreEOS { stops.append(template.endOfTurn) }
        o.stop = stops
        let stream = try f.bool("stream") ?? false
        let includeUsage = (f.o["stream_options"] as? [String: Any]).flatMap { $0["include_usage"] as? Bool } ?? false
        // n choices: n streams of the same prompt (seeds seed, seed + 1, …), each its own session.
        let n = try f.integer("n", 1...16) ?? 1
        // Log-probabilities: chat's logprobs + top_logprobs, or the legacy completions' logprobs: k.
        if chat {
            if try f.bool("logprobs") == true {
                o.logprobs = try f.integer("top_logprobs", 0...20) ?? 0
            } else if let t = f.o["top_logprobs"], !(t is NSNull) {
                throw APIError(.badRequest, "'top_logprobs' needs 'logprobs': true", param: "top_logprobs")
            }
        } else if let k = try f.integer("logprobs", 0...5) {
            o.logprobs = k
        }
        var streams: [AsyncStream<GenerationScheduler.Event>] = []
        do {
            for i in 0..<n {
                var oi = o
                oi.seed = o.seed &+ UInt64(i)
                streams.append(try scheduler.submit(ids, oi))
            }
        } catch GenerationScheduler.Refusal.shuttingDown {
            throw APIError(.serviceUnavailable, "the server is shutting down")
        } catch let GenerationScheduler.Refusal.queueFull(q) {
            throw APIError(.tooManyRequests, "\(q) generation requests are queued (--max-concurrent); retry later", retryAfter: 1)
        } catch let refusal as GenerationScheduler.Refusal {
            throw APIError(.badRequest, refusal.description, param: "max_tokens")
        }
        let id = (chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let created = Int(Date().timeIntervalSince1970)
        let object = chat ? "chat.completion" : "text_completion"
        func reason(_ r: String) -> String { r == "length" ? "length" : "stop" }
        // OpenAI's usage, with the prompt tokens served from the prefix cache.
        func usage(_ p: Int, _ c: Int, _ cached: Int) -> [String: Any] {
            ["prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c, "prompt_tokens_details": ["cached_tokens": cached]]
        }
        let tokenizer = model.tokenizer
        // OpenAI's shapes: chat's {"content": [{token, logprob, bytes, top_logprobs}]}, the legacy
        // completions' {tokens, token_logprobs, top_logprobs, text_offset}.
        func logprobs(_ entries: [DecoderSession.TokenLogprob], offset: Int) -> Any {
            func token(_ t: Int32) -> (String, [UInt8]) { let b = tokenizer.bytes(of: t); return (String(decoding: b, as: UTF8.self), b) }
            if chat {
                return ["content": entries.map { e -> [String: Any] in
                    let (t, b) = token(e.id)
                    return ["token": t, "logprob": e.logprob, "bytes": b,
                            "top_logprobs": e.top.map { a -> [String: Any] in let (at, ab) = token(a.id); return ["token": at, "logprob": a.logprob, "bytes": ab] }]
                }]
            }
            var offsets: [Int] = [], at = offset
            for e in entries { offsets.append(at); at += token(e.id).0.count }
            return ["tokens": entries.map { token($0.id).0 }, "token_logprobs": entries.map(\.logprob),
                    "top_logprobs": entries.map { e in Dictionary(e.top.map { (token($0.id).0, $0.logprob) }, uniquingKeysWith: max) },
                    "text_offset": offsets]
        }
        let wantLogprobs = o.logprobs != nil
        // With tools, an answer that holds calls becomes OpenAI's tool_calls (finish "tool_calls").
        let withTools = tools != nil
        func toolAnswer(_ text: String) -> ([String: Any], String)? {
            guard withTools else { return nil }
            let (content, calls) = ChatTemplate.toolCalls(in: text)
            guard !calls.isEmpty else { return nil }
            let message: [String: Any] = ["role": "assistant", "content": content.isEmpty ? NSNull() : content,
                                          "tool_calls": calls.map { ["id": $0.id, "type": "function", "function": ["name": $0.name, "arguments": $0.arguments]] }]
            return (message, "tool_calls")
        }
        if !stream {
            var choices: [[String: Any]] = [], completion = 0, prompt = ids.count, cached = 0
            for (i, events) in streams.enumerated() {
                var text = "", entries: [DecoderSession.TokenLogprob] = [], finished = false
                for await e in events {
                    switch e {
                    case let .piece(p): text += p
                    case let .logprobs(l): entries += l
                    case let .failed(m): throw APIError(.internalServerError, m)
                    case let .done(r, p, c, k):
                        let lp: Any = wantLogprobs ? logprobs(entries, offset: 0) : NSNull()
                        if let (message, finish) = toolAnswer(text) {
                            choices.append(["index": i, "message": message, "finish_reason": finish, "logprobs": lp])
                        } else {
                            choices.append(chat ? ["index": i, "message": ["role": "assistant", "content": text], "finish_reason": reason(r), "logprobs": lp]
                                                : ["index": i, "text": text, "finish_reason": reason(r), "logprobs": lp])
                        }
                        (prompt, completion, finished) = (p, completion + c, true)
                        if i == 0 { cached = k }
                    }
                }
                guard finished else { throw APIError(.internalServerError, "the generation ended without an answer") }
            }
            return JSON.response(["id": id, "object": object, "created": created, "model": name, "choices": choices,
                                  "usage": usage(prompt, completion, cached)])
        }
        // Server-sent events: a chunk per piece (choices interleaved by index), each choice's
        // finish reason, optionally usage, then [DONE].
        let chunkObject = chat ? "chat.completion.chunk" : "text_completion"
        func event(_ o: Any) -> ByteBuffer { ByteBuffer(bytes: Array("data: ".utf8) + JSON.encode(o) + Array("\n\n".utf8)) }
        func chunk(_ choices: [Any], usage: Any = NSNull()) -> ByteBuffer {
            var o: [String: Any] = ["id": id, "object": chunkObject, "created": created, "model": name, "choices": choices]
            if includeUsage { o["usage"] = usage }
            return event(o)
        }
        let promptCount = ids.count, choiceStreams = streams
        let body = AsyncStream<ByteBuffer> { out in
            let task = Task {
                let totals = await withTaskGroup(of: (Int, Int, Int).self) { group -> (Int, Int, Int) in
                    for (i, events) in choiceStreams.enumerated() {
                        group.addTask {
                            if chat { out.yield(chunk([["index": i, "delta": ["role": "assistant", "content": ""], "logprobs": NSNull(), "finish_reason": NSNull()]])) }
                            var pending: [DecoderSession.TokenLogprob] = [], offset = 0, result = (promptCount, 0, 0), buffered = ""
                            var finishOverride: String?
                            for await e in events {
                                switch e {
                                case let .logprobs(l): pending += l
                                case let .piece(p) where withTools:
                                    buffered += p   // sent whole at the end: content, or tool calls
                                case let .piece(p):
                                    let lp: Any = wantLogprobs ? logprobs(pending, offset: offset) : NSNull()
                                    offset += p.count
                                    pending = []
                                    out.yield(chunk([chat ? ["index": i, "delta": ["content": p], "logprobs": lp, "finish_reason": NSNull()]
                                                          : ["index": i, "text": p, "logprobs": lp, "finish_reason": NSNull()]]))
                                case let .failed(m):
                                    out.yield(event(["error": ["message": m, "type": "server_error"]]))
                                case let .done(r, p, c, k):
                                    if withTools {
                                        if let (message, finish) = toolAnswer(buffered) {
                                            var delta = message
                                            delta["tool_calls"] = (message["tool_calls"] as? [[String: Any]] ?? []).enumerated().map { j, call in call.merging(["index": j]) { a, _ in a } }
                                            out.yield(chunk([["index": i, "delta": delta, "logprobs": NSNull(), "finish_reason": NSNull()]]))
                                            finishOverride = finish
                                        } else if !buffered.isEmpty {
                                            out.yield(chunk([["index": i, "delta": ["content": buffered], "logprobs": NSNull(), "finish_reason": NSNull()]]))
                                        }
                                    }
                                    let lp: Any = wantLogprobs && !pending.isEmpty ? logprobs(pending, offset: offset) : NSNull()
                                    out.yield(chunk([chat ? ["index": i, "delta": [String: Any](), "logprobs": lp, "finish_reason": finishOverride ?? reason(r)]
                                                          : ["index": i, "text": "", "logprobs": lp, "finish_reason": reason(r)]]))
                                    result = (p, c, i == 0 ? k : 0)
                                }
                            }
                            return result
                        }
                    }
                    var t = (promptCount, 0, 0)
                    for await r in group { t = (r.0, t.1 + r.1, t.2 + r.2) }
                    return t
                }
                // The usage chunk: no choices, as OpenAI sends it.
                if includeUsage { out.yield(chunk([], usage: usage(totals.0, totals.1, totals.2))) }
                out.yield(ByteBuffer(string: "data: [DONE]\n\n"))
                out.finish()
            }
            out.onTermination = { _ in task.cancel() }
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: .init(asyncSequence: body))
    }
}

/// A flag set once, read from any thread.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var v = false
    var value: Bool { lock.withLock { v } }
    func set() { lock.withLock { v = true } }
}

/// Marks the server as draining when graceful shutdown begins (SIGTERM/SIGINT through the
/// service group): `/ready` answers 503, new `/v1/` requests get 503, requests in flight finish.
struct Drain: Service {
    let server: CondenseServer
    func run() async throws {
        try? await gracefulShutdown()
        server.draining.set()
        server.shutdown()
    }
}

/// Key check, draining, error shape, and the request metrics, for every route.
struct Guard: RouterMiddleware {
    typealias Context = BasicRequestContext
    let server: CondenseServer

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let path = request.uri.path
        let route = Route(rawValue: path)?.rawValue ?? "other"   // the metrics' label: a served route or "other"
        let response: Response
        do {
            if path.hasPrefix("/v1/") {
                if server.draining.value { throw APIError(.serviceUnavailable, "the server is shutting down") }
                if let key = server.options.apiKey {
                    let auth = request.headers[.authorization] ?? ""
                    guard auth == "Bearer " + key else {
                        throw APIError(.unauthorized, auth.isEmpty ? "missing API key (Authorization: Bearer …)" : "invalid API key")
                    }
                }
            }
            response = try await next(request, context)
        } catch let e as APIError {
            response = e.response()
        } catch let e as HTTPError {
            let message = e.status == .notFound ? "no route \(request.method) \(path)" : (e.body ?? "\(e.status)")
            response = APIError(e.status, message).response()
        } catch {
            response = APIError(.internalServerError, "\(error)").response()
        }
        server.metrics.request(route: route, status: response.status.code, duration: ContinuousClock.now - start)
        return response
    }
}
