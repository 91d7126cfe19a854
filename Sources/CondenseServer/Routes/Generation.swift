import Condense
import CondenseInference
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// A chat or completions request, checked: what to run, where, and how to answer.
struct GenerationRequest {
    let chat: Bool
    let name: String
    let model: LanguageModel
    let scheduler: GenerationScheduler
    let ids: [Int32]
    let options: GenerationOptions
    /// Choices (seeds seed, seed + 1, …).
    let n: Int
    let stream: Bool
    let includeUsage: Bool
    /// Tools were rendered: an answer that holds calls becomes tool_calls.
    let withTools: Bool
}

/// `POST /v1/chat/completions` and `POST /v1/completions`: the request's fields into generation
/// options, n streams on the model's engine, the answer whole or as server-sent events.
extension CondenseServer {
    /// The request's body (``CompletionBody``), checked (a 400 names the field), as what the
    /// engine runs.
    func generationRequest(_ f: Fields, chat: Bool) throws -> GenerationRequest {
        let body = try decodeBody(CompletionBody.self, from: f.data)
        let ((name, model, template), scheduler) = try chatModel(f)
        let ids: [Int32]
        // Tools: rendered by a template that has a place for them (the definitions go to it as
        // the JSON they came as); the answer's calls come back as tool_calls. tool_choice "none"
        // leaves them out; forcing a call is not supported.
        var tools: [Any]?
        if chat, body.tools != nil, let list = f.o["tools"] as? [Any] {
            switch body.toolChoice {
            case nil, .mode("auto")?: tools = list
            case .mode("none")?: tools = nil
            default: throw APIError(.badRequest, "'tool_choice' must be \"auto\" or \"none\" (forcing a call is not supported)", param: "tool_choice")
            }
            if tools != nil && !template.supportsTools {
                throw APIError(.badRequest, "\(name)'s chat template does not render tools", param: "tools")
            }
        }
        if chat {
            guard let raw = body.messages, !raw.isEmpty else {
                throw APIError(.badRequest, "'messages' must be a non-empty array", param: "messages")
            }
            let messages = try raw.enumerated().map { i, m -> ChatTemplate.Message in
                guard ["system", "user", "assistant", "developer", "tool"].contains(m.role) else {
                    throw APIError(.badRequest, "messages[\(i)].role must be system, user, assistant or tool", param: "messages")
                }
                let role = m.role == "developer" ? "system" : m.role
                // An assistant turn's calls and a tool turn's answer, for templates that render them.
                let calls = (m.toolCalls ?? []).enumerated().map { j, c in
                    ChatTemplate.ToolCall(id: c.id ?? "call_\(j)", name: c.function.name, arguments: c.function.arguments ?? "{}")
                }
                switch m.content {
                case nil where !calls.isEmpty: return .init(role: role, content: "", toolCalls: calls)
                case let .text(s)?: return .init(role: role, content: s, toolCalls: calls, toolCallID: m.toolCallID)
                case let .parts(parts)?:
                    let texts = try parts.map { p -> String in
                        guard p.type == "text", let t = p.text else {
                            throw APIError(.badRequest, "messages[\(i)].content: only text parts are supported", param: "messages")
                        }
                        return t
                    }
                    return .init(role: role, content: texts.joined(), toolCalls: calls, toolCallID: m.toolCallID)
                case nil:
                    throw APIError(.badRequest, "messages[\(i)].content must be a string or an array of text parts", param: "messages")
                }
            }
            // The messages stay text: only the template's markup yields control tokens.
            do {
                ids = try template.tokens(messages, tokenizer: model.tokenizer, tools: tools)
            } catch let e as CondenseError {
                // The template refused the conversation (raise_exception) or hit a limit: the request's fault.
                throw APIError(.badRequest, "\(e)", param: "messages")
            }
        } else {
            guard let prompt = body.prompt?.text else {
                throw APIError(.badRequest, "'prompt' must be a string (one prompt per request)", param: "prompt")
            }
            ids = model.tokenizer.encode(prompt)
        }
        let context = model.config.contextLength
        guard !ids.isEmpty else { throw APIError(.badRequest, "the prompt has no tokens", param: chat ? "messages" : "prompt") }
        guard ids.count < context else {
            throw APIError(.badRequest, "the prompt has \(ids.count) tokens; the model's context is \(context)", param: chat ? "messages" : "prompt")
        }
        typealias B = CompletionBody
        var o = GenerationOptions(maxTokens: min(1024, context - ids.count))
        if let m = try B.integer(body.maxCompletionTokens, "max_completion_tokens", 0...Int(Int32.max)) ?? B.integer(body.maxTokens, "max_tokens", 0...Int(Int32.max)) {
            guard ids.count + m <= context else {
                throw APIError(.badRequest, "the prompt (\(ids.count) tokens) and max_tokens (\(m)) exceed the model's context of \(context)", param: "max_tokens")
            }
            o.maxTokens = m
        }
        // llama-server's defaults for what OpenAI clients do not send.
        o.temperature = Float(try B.number(body.temperature, "temperature", 0...2) ?? 0.8)
        o.topP = Float(try B.number(body.topP, "top_p", 0...1) ?? 0.95)
        guard o.topP > 0 else { throw APIError(.badRequest, "'top_p' must be in (0, 1]", param: "top_p") }
        o.topK = try B.integer(body.topK, "top_k", 0...Int(Int32.max)) ?? 40
        o.minP = Float(try B.number(body.minP, "min_p", 0...1) ?? 0.05)
        o.repeatPenalty = Float(try B.number(body.repeatPenalty, "repeat_penalty", 0.01...10) ?? 1)
        o.seed = UInt64(try B.integer(body.seed, "seed", Int(Int64.min)...Int(Int64.max)).map { UInt64(bitPattern: Int64($0)) } ?? UInt64.random(in: 0...UInt64.max))
        var stops = body.stop?.strings ?? []
        // Each token re-checks the held-back text against every stop: bound their size.
        guard stops.count <= 16, stops.allSatisfy({ !$0.isEmpty && $0.count <= 256 }) else {
            throw APIError(.badRequest, "'stop' takes at most 16 non-empty strings of at most 256 characters", param: "stop")
        }
        // Structured output (OpenAI's response_format): constrained sampling keeps the answer a
        // JSON value of the schema; `json_object` asks for any object.
        if let rf = body.responseFormat {
            switch rf.type {
            case "text": break
            case "json_object": o.json = JSONGrammar(.object(properties: [:], order: [], required: [], additional: true))
            case "json_schema":
                guard let js = (f.o["response_format"] as? [String: Any])?["json_schema"] as? [String: Any], let schema = js["schema"] else {
                    throw APIError(.badRequest, "'response_format.json_schema.schema' is required for type json_schema", param: "response_format.json_schema")
                }
                do {
                    o.json = JSONGrammar(try JSONSchema(schema, path: "response_format.json_schema.schema"))
                } catch let e as CondenseError {
                    throw APIError(.badRequest, "\(e)", param: "response_format.json_schema.schema")
                }
            default:
                throw APIError(.badRequest, "'response_format.type' must be text, json_object or json_schema, got '\(rf.type)'", param: "response_format.type")
            }
        }
        // vLLM's fields for load tests of equal work: generate past the end tokens, or not before a minimum.
        let ignoreEOS = body.ignoreEOS ?? false
        o.stopAtEOS = !ignoreEOS
        if let m = try B.integer(body.minTokens, "min_tokens", 0...Int(Int32.max)) {
            guard m <= o.maxTokens else {
                throw APIError(.badRequest, "'min_tokens' (\(m)) exceeds max_tokens (\(o.maxTokens))", param: "min_tokens")
            }
            o.minTokens = m
        }
        if chat && !ignoreEOS { stops.append(template.endOfTurn) }
        o.stop = stops
        // n choices: n streams of the same prompt (seeds seed, seed + 1, …), each its own session.
        let n = try B.integer(body.n, "n", 1...16) ?? 1
        // Log-probabilities: chat's logprobs + top_logprobs, or the legacy completions' logprobs: k.
        switch body.logprobs {
        case .flag(true)? where chat: o.logprobs = try B.integer(body.topLogprobs, "top_logprobs", 0...20) ?? 0
        case let .count(k)? where !chat: o.logprobs = try B.integer(k, "logprobs", 0...5)
        case nil, .flag(false)?:
            if body.topLogprobs != nil { throw APIError(.badRequest, "'top_logprobs' needs 'logprobs': true", param: "top_logprobs") }
        default:
            throw APIError(.badRequest, chat ? "'logprobs' must be a boolean" : "'logprobs' must be an integer in 0…5", param: "logprobs")
        }
        return GenerationRequest(chat: chat, name: name, model: model, scheduler: scheduler, ids: ids, options: o, n: n, stream: body.stream ?? false,
                                 includeUsage: body.streamOptions?.includeUsage ?? false, withTools: tools != nil)
    }

    func generation(_ f: Fields, chat: Bool) async throws -> Response {
        let r = try generationRequest(f, chat: chat)
        let (chat, name, model, scheduler, ids, o, n, stream, includeUsage, withTools) =
            (r.chat, r.name, r.model, r.scheduler, r.ids, r.options, r.n, r.stream, r.includeUsage, r.withTools)
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
            let texts = entries.map { token($0.id).0 }
            var offsets: [Int] = [], at = offset
            for t in texts { offsets.append(at); at += t.count }
            return ["tokens": texts, "token_logprobs": entries.map(\.logprob),
                    "top_logprobs": entries.map { e in Dictionary(e.top.map { (token($0.id).0, $0.logprob) }, uniquingKeysWith: max) },
                    "text_offset": offsets]
        }
        let wantLogprobs = o.logprobs != nil
        // With tools, an answer that holds calls becomes OpenAI's tool_calls (finish "tool_calls").
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
                    case let .failed(e): throw APIError(generationFailure: e)
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
                                    let e = APIError(generationFailure: m)
                                    out.yield(event(["error": ["message": e.message, "type": e.status.code >= 500 ? "server_error" : "invalid_request_error",
                                                               "code": e.status.code]]))
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
