import Condense
import CondenseInference
@testable import CondenseServer
import CondenseTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// A server over the tiny test models (a 2-layer BERT and a 2-layer Llama), in process.
func makeServer(_ configure: (inout ServerOptions) -> Void = { _ in }) throws -> CondenseServer {
    let dir = try scratchFolder("server")
    let encoder = try SentenceEncoder(directory: makeTinyBERT(in: dir + "/bert"))
    let llama = try makeTinyLlama(in: dir, tiedOutput: false)
    let lm = try LanguageModel(gguf: llama)
    var o = ServerOptions()
    configure(&o)
    return CondenseServer(models: ServedModels(embedding: ("tiny-bert", try InferenceSession(encoder)),
                                               chat: ("tiny-llama", lm, try ChatTemplate(gguf: GGUFFile(contentsOf: llama)))),
                          options: o)
}

func post(_ client: some TestClientProtocol, _ uri: String, _ body: Any, headers: HTTPFields = [:]) async throws -> (status: Int, json: [String: Any], raw: String, headers: HTTPFields) {
    let data = body is String ? Data((body as! String).utf8) : try JSONSerialization.data(withJSONObject: body)
    return try await client.execute(uri: uri, method: .post, headers: headers.isEmpty ? [.contentType: "application/json"] : headers,
                                    body: ByteBuffer(bytes: [UInt8](data))) { r in
        let raw = String(buffer: r.body)
        let json = (try? JSONSerialization.jsonObject(with: Data(raw.utf8))) as? [String: Any] ?? [:]
        return (r.status.code, json, raw, r.headers)
    }
}

func errorMessage(_ json: [String: Any]) -> String { ((json["error"] as? [String: Any])?["message"] as? String) ?? "" }

@Suite struct ServerRouteTests {
    @Test func healthReadyModelsAndMetrics() async throws {
        let server = try makeServer()
        defer { server.shutdown() }
        let app = Application(router: server.router())
        try await app.test(.router) { client in
            try await client.execute(uri: "/health", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/ready", method: .get) { #expect($0.status == .ok && String(buffer: $0.body).contains("ready")) }
            try await client.execute(uri: "/v1/models", method: .get) { r in
                let o = try JSONSerialization.jsonObject(with: Data(String(buffer: r.body).utf8)) as? [String: Any]
                let ids = (o?["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
                #expect(ids == ["tiny-bert", "tiny-llama"])
            }
            _ = try await post(client, "/v1/embeddings", ["input": "the cat"])
            try await client.execute(uri: "/metrics", method: .get) { r in
                let text = String(buffer: r.body)
                #expect(text.contains("condense_requests_total{route=\"/v1/embeddings\",status=\"200\"} 1"), "\(text)")
                #expect(text.contains("condense_request_duration_seconds") && text.contains("condense_embedding_batch_tokens"))
            }
            try await client.execute(uri: "/nowhere", method: .get) { #expect($0.status == .notFound) }
        }
    }

    /// Embeddings in every input shape and format, equal to the encoder's own output.
    @Test func embeddingsMatchTheEncoder() async throws {
        let server = try makeServer()
        defer { server.shutdown() }
        let session = try #require(server.models.embedding?.session)
        let want = try session.embed(["the cat sat", "a dog"])
        try await Application(router: server.router()).test(.router) { client in
            let r = try await post(client, "/v1/embeddings", ["input": ["the cat sat", "a dog"], "model": "tiny-bert"])
            #expect(r.status == 200, "\(r.raw)")
            let data = try #require(r.json["data"] as? [[String: Any]])
            for (i, d) in data.enumerated() {
                let v = try #require(d["embedding"] as? [Double])
                #expect(d["index"] as? Int == i && zip(v, want[i]).allSatisfy { abs($0 - Double($1)) < 1e-6 })
            }
            #expect((r.json["usage"] as? [String: Any])?["prompt_tokens"] as? Int == 9)   // [CLS] the cat sat [SEP] + [CLS] a dog [SEP]
            // base64 is the same floats; token arrays are the same sentence; dimensions renormalise.
            let b = try await post(client, "/v1/embeddings", ["input": "a dog", "encoding_format": "base64"])
            let s = try #require((b.json["data"] as? [[String: Any]])?.first?["embedding"] as? String)
            let floats = Data(base64Encoded: s)!.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            #expect(floats == want[1])
            let tok = try await post(client, "/v1/embeddings", ["input": [10, 11]])   // "a", "dog"
            let tv = try #require((tok.json["data"] as? [[String: Any]])?.first?["embedding"] as? [Double])
            #expect(zip(tv, want[1]).allSatisfy { abs($0 - Double($1)) < 1e-6 })
            let cut = try await post(client, "/v1/embeddings", ["input": "a dog", "dimensions": 8])
            let cv = try #require((cut.json["data"] as? [[String: Any]])?.first?["embedding"] as? [Double])
            #expect(cv.count == 8 && abs(cv.reduce(0) { $0 + $1 * $1 } - 1) < 1e-5)
        }
    }

    @Test(arguments: [
        (#"{"model": "tiny-bert"}"#, 400, "'input' is required"),
        (#"{"input": 5}"#, 400, "'input' must be a string"),
        (#"{"input": []}"#, 400, "'input' is an empty array"),
        (#"{"input": [true]}"#, 400, "input 0 must be a string or an array of token ids"),
        (#"{"input": [100000]}"#, 400, "outside the vocabulary"),
        (#"{"input": "x", "model": "gpt-4"}"#, 404, "model 'gpt-4' not found"),
        (#"{"input": "x", "model": "tiny-llama"}"#, 400, "'tiny-llama' is not a embedding model"),
        (#"{"input": "x", "encoding_format": "int8"}"#, 400, "'encoding_format' must be"),
        (#"{"input": "x", "dimensions": 0}"#, 400, "'dimensions' must be in"),
        ("{\"input\": \"" + String(repeating: "cat ", count: 300) + "\"}", 400, "the model takes at most 40"),
    ])
    func badEmbeddingRequestsAreClientErrors(body: String, status: Int, message: String) async throws {
        let server = try makeServer()
        defer { server.shutdown() }
        try await Application(router: server.router()).test(.router) { client in
            let r = try await post(client, "/v1/embeddings", body)
            #expect(r.status == status && errorMessage(r.json).contains(message), "\(r.raw)")
            #expect((r.json["error"] as? [String: Any])?["type"] as? String != nil)
        }
    }

    /// Concurrent one-sentence requests, batched together, each equal to the encoder's own
    /// embedding of that sentence.
    @Test func concurrentEmbeddingsEqualEachAlone() async throws {
        let server = try makeServer()
        defer { server.shutdown() }
        let session = try #require(server.models.embedding?.session)
        let sentences = ["the cat sat on the mat", "a dog", "dogs run", "the mat", "a cat , a dog", "run", "the the the", "sat on a dog"]
        let want = try sentences.map { try session.embed([$0])[0] }
        try await Application(router: server.router()).test(.router) { client in
            let got = try await withThrowingTaskGroup(of: (Int, [Double]).self) { group in
                for (i, s) in sentences.enumerated() {
                    group.addTask {
                        let r = try await post(client, "/v1/embeddings", ["input": s])
                        return (i, (r.json["data"] as? [[String: Any]])?.first?["embedding"] as? [Double] ?? [])
                    }
                }
                var out = [[Double]](repeating: [], count: sentences.count)
                for try await (i, v) in group { out[i] = v }
                return out
            }
            for (g, w) in zip(got, want) { #expect(g.count == w.count && zip(g, w).allSatisfy { abs($0 - Double($1)) < 1e-5 }) }
        }
    }

    @Test func truncationWhenAskedAndMalformedJSON() async throws {
        let server = try makeServer()
        defer { server.shutdown() }
        try await Application(router: server.router()).test(.router) { client in
            let r = try await post(client, "/v1/embeddings", ["input": String(repeating: "cat ", count: 300), "truncate": true])
            #expect(r.status == 200 && (r.json["usage"] as? [String: Any])?["prompt_tokens"] as? Int == 40)
            try await client.execute(uri: "/v1/embeddings", method: .post, body: ByteBuffer(string: "{\"input\": ")) { resp in
                #expect(resp.status == .badRequest && String(buffer: resp.body).contains("not valid JSON"))
            }
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: "[1, 2]")) { resp in
                #expect(resp.status == .badRequest && String(buffer: resp.body).contains("must be a JSON object"))
            }
        }
    }

    @Test func apiKeyAndBodyLimit() async throws {
        let server = try makeServer { $0.apiKey = "s3cret"; $0.maxBodyBytes = 256 }
        defer { server.shutdown() }
        try await Application(router: server.router()).test(.router) { client in
            let none = try await post(client, "/v1/embeddings", ["input": "a"])
            #expect(none.status == 401 && errorMessage(none.json).contains("missing API key"))
            let wrong = try await post(client, "/v1/embeddings", ["input": "a"], headers: [.authorization: "Bearer nope"])
            #expect(wrong.status == 401 && errorMessage(wrong.json).contains("invalid API key"))
            let ok = try await post(client, "/v1/embeddings", ["input": "a"], headers: [.authorization: "Bearer s3cret"])
            #expect(ok.status == 200, "\(ok.raw)")
            let big = try await post(client, "/v1/embeddings", ["input": String(repeating: "a ", count: 400)], headers: [.authorization: "Bearer s3cret"])
            #expect(big.status == 413 && errorMessage(big.json).contains("larger than 256 bytes"), "\(big.status) \(big.raw)")
            try await client.execute(uri: "/health", method: .get) { #expect($0.status == .ok) }   // probes need no key
        }
    }
}

@Suite struct ServerGenerationTests {
    /// Greedy chat and completions: the OpenAI shapes, the session's own greedy text, and the
    /// stream's pieces adding up to the same text, ending in [DONE].
    @Test func chatCompletionsAndStreaming() async throws {
        let server = try makeServer()
        defer { server.shutdown() }
        let (_, lm, template) = try #require(server.models.chat)
        var o = GenerationOptions(maxTokens: 12)
        o.stop = [template.endOfTurn]
        let prompt = try template.render([.init(role: "user", content: "the th")])
        let alone = try lm.session().generate(prompt, o) { _ in }
        try await Application(router: server.router()).test(.router) { client in
            let body: [String: Any] = ["model": "tiny-llama", "messages": [["role": "user", "content": "the th"]], "max_tokens": 12, "temperature": 0]
            let r = try await post(client, "/v1/chat/completions", body)
            #expect(r.status == 200, "\(r.raw)")
            let choice = try #require((r.json["choices"] as? [[String: Any]])?.first)
            #expect((choice["message"] as? [String: Any])?["content"] as? String == alone.text)
            #expect(choice["finish_reason"] as? String == (alone.finishReason == "length" ? "length" : "stop"))
            #expect((r.json["usage"] as? [String: Any])?["completion_tokens"] as? Int == alone.tokens.count)
            #expect(r.json["object"] as? String == "chat.completion")
            var streamed = body
            streamed["stream"] = true
            streamed["stream_options"] = ["include_usage": true]
            let s = try await post(client, "/v1/chat/completions", streamed)
            #expect(s.status == 200 && s.headers[.contentType] == "text/event-stream")
            let events = s.raw.components(separatedBy: "\n\n").filter { !$0.isEmpty }
            #expect(events.allSatisfy { $0.hasPrefix("data: ") } && events.last == "data: [DONE]", "\(s.raw)")
            var text = ""
            for e in events.dropLast() {
                let o = try #require(try JSONSerialization.jsonObject(with: Data(e.dropFirst(6).utf8)) as? [String: Any])
                if let delta = (o["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any], let c = delta["content"] as? String { text += c }
            }
            #expect(text == alone.text)
            #expect(events.dropLast().last?.contains("\"completion_tokens\":\(alone.tokens.count)") == true)
            // /v1/completions: the prompt as given.
            var plain = GenerationOptions(maxTokens: 8)
            plain.stopAtEOS = true
            let p = try lm.session().generate("the th", plain) { _ in }
            let c = try await post(client, "/v1/completions", ["prompt": "the th", "max_tokens": 8, "temperature": 0])
            #expect((c.json["choices"] as? [[String: Any]])?.first?["text"] as? String == p.text, "\(c.raw)")
        }
    }

    /// vLLM's fields for equal-work load tests: `ignore_eos` generates exactly `max_tokens`
    /// (the end-of-turn text included), `min_tokens` holds off the end tokens and stop strings.
    @Test func ignoreEOSAndMinTokens() async throws {
        let server = try makeServer()
        defer { server.shutdown() }
        let (_, lm, _) = try #require(server.models.chat)
        // A stop string that the greedy text hits at once: without min_tokens nothing comes out.
        let free = try lm.session().generate("the th", GenerationOptions(maxTokens: 12)) { _ in }
        let first = try #require(free.text.first.map(String.init))
        var o = GenerationOptions(maxTokens: 12)
        o.stop = [first]
        #expect(try lm.session().generate("the th", o) { _ in }.text.isEmpty)
        o.minTokens = 6
        let held = try lm.session().generate("the th", o) { _ in }
        #expect(held.tokens.count >= 6 && held.text.hasPrefix(first), "\(held.tokens.count) tokens: '\(held.text)'")
        o.minTokens = 13
        #expect(throws: CondenseError.self) { try lm.session().generate("the th", o) { _ in } }
        try await Application(router: server.router()).test(.router) { client in
            for body: [String: Any] in [["messages": [["role": "user", "content": "the th"]], "max_tokens": 12, "temperature": 0, "ignore_eos": true],
                                        ["messages": [["role": "user", "content": "the th"]], "max_tokens": 12, "temperature": 0, "min_tokens": 12]] {
                let r = try await post(client, "/v1/chat/completions", body)
                #expect(r.status == 200, "\(r.raw)")
                #expect((r.json["usage"] as? [String: Any])?["completion_tokens"] as? Int == 12, "\(body): \(r.raw)")
                #expect((r.json["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String == "length")
            }
            let c = try await post(client, "/v1/completions", ["prompt": "the th", "max_tokens": 9, "temperature": 0, "stop": [first], "min_tokens": 5])
            #expect(((c.json["usage"] as? [String: Any])?["completion_tokens"] as? Int ?? 0) >= 5, "\(c.raw)")
        }
    }

    /// Requests that start with the same text reuse its KV rows: the second reports them as
    /// OpenAI does (`usage.prompt_tokens_details.cached_tokens`), answers as the first would
    /// without a cache, and /metrics counts the hit; with the cache off nothing is reused.
    @Test func sharedPrefixesAreCachedAndReported() async throws {
        let shared = String(repeating: "abcdefg ", count: 5)   // 40 bytes, no merges: 40 tokens after BOS
        for budget in [64 << 20, 0] {
            let server = try makeServer { $0.prefixCacheBytes = budget }
            defer { server.shutdown() }
            let (_, lm, _) = try #require(server.models.chat)
            try await Application(router: server.router()).test(.router) { client in
                var cached: [Int] = []
                for tail in ["xy", "zw"] {
                    let alone = try lm.session().generate(shared + tail, GenerationOptions(maxTokens: 4)) { _ in }
                    let r = try await post(client, "/v1/completions", ["prompt": shared + tail, "max_tokens": 4, "temperature": 0])
                    #expect((r.json["choices"] as? [[String: Any]])?.first?["text"] as? String == alone.text, "\(r.raw)")
                    let usage = try #require(r.json["usage"] as? [String: Any])
                    cached.append(try #require((usage["prompt_tokens_details"] as? [String: Any])?["cached_tokens"] as? Int))
                }
                #expect(cached == (budget > 0 ? [0, 41] : [0, 0]), "BOS + 40 shared tokens")
                let metrics = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
                #expect(metrics.contains("condense_prefix_cache_hits_total \(budget > 0 ? 1 : 0)"), "\(metrics)")
                #expect(metrics.contains("condense_prefix_cache_lookups_total 2"))
            }
        }
    }

    /// Memory pressure: a KV bound far below what 64 concurrent streams ask for. Every request
    /// ends in an answer equal to the request's alone or a 429 with Retry-After, the server
    /// keeps serving, and a request that could never fit is a 400 naming max_tokens.
    @Test func kvBoundUnderPressure() async throws {
        let server = try makeServer { o in
            o.maxConcurrent = 8
            o.maxQueued = 16
            o.kvCacheBytes = 3 * 128 * 16   // three sessions of 16 positions (2 layers × 64 B of K and V per position)
        }
        defer { server.shutdown() }
        let (_, lm, _) = try #require(server.models.chat)
        let alone = try lm.session().generate("the th", GenerationOptions(maxTokens: 12)) { _ in }
        try await Application(router: server.router()).test(.router) { client in
            let results = try await withThrowingTaskGroup(of: (Int, String?, String?).self) { group in
                for _ in 0..<64 {
                    group.addTask {
                        let r = try await post(client, "/v1/completions", ["prompt": "the th", "max_tokens": 12, "temperature": 0])
                        return (r.status, (r.json["choices"] as? [[String: Any]])?.first?["text"] as? String, r.headers[.retryAfter])
                    }
                }
                var all: [(Int, String?, String?)] = []
                for try await x in group { all.append(x) }
                return all
            }
            #expect(results.allSatisfy { ($0.0 == 200 && $0.1 == alone.text) || ($0.0 == 429 && $0.2 != nil) }, "\(results.map(\.0))")
            // Whether the burst overflows the queue depends on the machine's speed (a loaded CI
            // host drains it as fast as requests arrive): 429s are allowed, not required here
            // (fullQueueIs429 forces one).
            #expect(results.count == 64 && results.contains { $0.0 == 200 })
            let big = try await post(client, "/v1/completions", ["prompt": "the th", "max_tokens": 50, "temperature": 0])
            #expect(big.status == 400 && (big.json["error"] as? [String: Any])?["param"] as? String == "max_tokens", "\(big.raw)")
            let after = try await post(client, "/v1/completions", ["prompt": "the th", "max_tokens": 12, "temperature": 0])
            #expect(after.status == 200, "\(after.raw)")
        }
    }

    /// Fields OpenAI's API has that this server does not use are ignored, as OpenAI ignores
    /// unknown ones: the answer is the one without them.
    @Test func unknownFieldsAreIgnored() async throws {
        let server = try makeServer()
        defer { server.shutdown() }
        try await Application(router: server.router()).test(.router) { client in
            let plain: [String: Any] = ["messages": [["role": "user", "content": "the th"]], "max_tokens": 6, "temperature": 0]
            let extra = plain.merging(["frequency_penalty": 0.5, "user": "u-1", "metadata": ["k": "v"], "store": false, "parallel_tool_calls": true,
                                       "service_tier": "auto", "future_field": [1, 2, 3]]) { a, _ in a }
            let a = try await post(client, "/v1/chat/completions", plain), b = try await post(client, "/v1/chat/completions", extra)
            #expect(b.status == 200, "\(b.raw)")
            #expect((a.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: String] == (b.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: String])
        }
    }

    /// The server's sessions use the KV cache types it was given (llama-server's -ctk/-ctv):
    /// an answer equals the same generation in a session of those types.
    @Test func sessionsUseTheConfiguredCacheTypes() async throws {
        let server = try makeServer { ($0.kvCache, $0.valueCache) = (.f32, .f16) }
        defer { server.shutdown() }
        let (_, lm, _) = try #require(server.models.chat)
        var o = GenerationOptions(maxTokens: 8)
        o.stopAtEOS = true
        let alone = try lm.session(kvCache: .f32, valueCache: .f16).generate("the th", o) { _ in }
        let engine = try #require(server.schedulers["tiny-llama"])
        #expect(engine.kvCache == .f32 && engine.valueCache == .f16)
        try await Application(router: server.router()).test(.router) { client in
            let r = try await post(client, "/v1/completions", ["prompt": "the th", "max_tokens": 8, "temperature": 0])
            #expect((r.json["choices"] as? [[String: Any]])?.first?["text"] as? String == alone.text, "\(r.raw)")
        }
    }

    /// Several chat models on one server: /v1/models lists them, a request's `model` picks one
    /// (each answers as its own session would), none picks the first, an unknown one is a 404
    /// listing what is served.
    @Test func severalChatModelsChosenByName() async throws {
        let dir = try scratchFolder("server-two")
        let a = try makeTinyLlama(in: dir + "/a", tiedOutput: false), b = try makeTinyLlama(in: dir + "/b", arch: "qwen2")
        let (la, lb) = (try LanguageModel(gguf: a), try LanguageModel(gguf: b))
        var models = ServedModels(chat: ("first", la, try ChatTemplate(gguf: GGUFFile(contentsOf: a))))
        models.chats.append(("second", lb, try ChatTemplate(gguf: GGUFFile(contentsOf: b))))
        let server = CondenseServer(models: models, options: ServerOptions())
        defer { server.shutdown() }
        var o = GenerationOptions(maxTokens: 6)
        o.stopAtEOS = true
        let alone = try [la, lb].map { try $0.session().generate("the th", o) { _ in }.text }
        #expect(alone[0] != alone[1], "the two tiny models answer alike; the test would not tell them apart")
        try await Application(router: server.router()).test(.router) { client in
            let list = try await client.execute(uri: "/v1/models", method: .get) { r in String(buffer: r.body) }
            #expect(list.contains("\"first\"") && list.contains("\"second\""), "\(list)")
            for (model, want) in [("first", alone[0]), ("second", alone[1]), (nil, alone[0])] {
                var body: [String: Any] = ["prompt": "the th", "max_tokens": 6, "temperature": 0]
                if let model { body["model"] = model }
                let r = try await post(client, "/v1/completions", body)
                #expect((r.json["choices"] as? [[String: Any]])?.first?["text"] as? String == want, "\(model ?? "default"): \(r.raw)")
                #expect(r.json["model"] as? String == model ?? "first")
            }
            let unknown = try await post(client, "/v1/completions", ["prompt": "x", "model": "third"])
            #expect(unknown.status == 404 && errorMessage(unknown.json).contains("served: first, second"), "\(unknown.raw)")
        }
    }

    /// Concurrent greedy requests, batched into shared steps, each answer equal to the same
    /// request served alone: no output crosses into another response.
    @Test func concurrentStreamsEqualEachAlone() async throws {
        let server = try makeServer { $0.maxConcurrent = 4 }
        defer { server.shutdown() }
        let (_, lm, _) = try #require(server.models.chat)
        let prompts = ["the th", "th", "hello there", "e", "the the the", "abc", "zz top", "th the"]
        let alone = try prompts.map { p in
            var o = GenerationOptions(maxTokens: 10)
            o.stopAtEOS = true
            return try lm.session().generate(p, o) { _ in }.text
        }
        try await Application(router: server.router()).test(.router) { client in
            let got = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for (i, p) in prompts.enumerated() {
                    group.addTask {
                        let r = try await post(client, "/v1/completions", ["prompt": p, "max_tokens": 10, "temperature": 0])
                        return (i, (r.json["choices"] as? [[String: Any]])?.first?["text"] as? String ?? "error \(r.raw)")
                    }
                }
                var out = [String](repeating: "", count: prompts.count)
                for try await (i, t) in group { out[i] = t }
                return out
            }
            #expect(got == alone)
        }
    }

    @Test(arguments: [
        (#"{"max_tokens": 4}"#, "'messages' must be a non-empty array"),
        (#"{"messages": [{"role": "wizard", "content": "x"}]}"#, "messages[0].role must be"),
        (#"{"messages": [{"role": "user", "content": 3}]}"#, "messages[0].content must be"),
        (#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1000}"#, "exceed the model's context of 64"),
        (#"{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}"#, "'temperature' must be a number"),
        (#"{"messages": [{"role": "user", "content": "x"}], "stop": [1]}"#, "'stop' must be a string"),
        ("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stop\": \"" + String(repeating: "s", count: 300) + "\"}", "at most 256 characters"),
        (#"{"messages": [{"role": "user", "content": "x"}], "n": 17}"#, "'n' must be"),
        (#"{"messages": [{"role": "user", "content": "x"}], "seed": 9223372036854775807}"#, "'seed' must be an integer in"),
        (#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 2.5}"#, "'max_tokens' must be an integer"),
        (#"{"messages": [{"role": "user", "content": "x"}], "top_p": 0}"#, "'top_p' must be in (0, 1]"),
        (#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 4, "min_tokens": 5}"#, "'min_tokens' (5) exceeds max_tokens (4)"),
        (#"{"messages": [{"role": "user", "content": "x"}], "ignore_eos": "yes"}"#, "'ignore_eos' must be"),
        (#"{"messages": [{"role": "user", "content": "x"}], "min_tokens": -1}"#, "'min_tokens' must be"),
        (#"{"messages": [{"role": "user", "content": "x"}], "model": "tiny-bert"}"#, "'tiny-bert' is not a chat model"),
        (#"{"messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": "yes"}}"#, "stream_options.include_usage must be a boolean"),
        (#"{"messages": [{"role": "user", "content": "x", "tool_calls": 5}]}"#, "messages[0].tool_calls must be an array"),
        (#"{"messages": [{"content": "x"}]}"#, "messages[0].role is required"),
        (#"{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": 1}}"#, "response_format.type must be a string"),
        ("{\"messages\": [{\"role\": \"user\", \"content\": \"" + String(repeating: "x ", count: 100) + "\"}]}", "the model's context is 64"),
    ])
    func badChatRequestsAreClientErrors(body: String, message: String) async throws {
        let server = try makeServer()
        defer { server.shutdown() }
        try await Application(router: server.router()).test(.router) { client in
            let r = try await post(client, "/v1/chat/completions", body)
            #expect(r.status == 400 && errorMessage(r.json).contains(message), "\(r.raw)")
        }
    }

    /// A full queue answers 429 with Retry-After at once instead of waiting.
    @Test func fullQueueIs429() async throws {
        let server = try makeServer { $0.maxConcurrent = 1; $0.maxQueued = 0 }
        defer { server.shutdown() }
        try await Application(router: server.router()).test(.router) { client in
            let statuses = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
                for _ in 0..<12 {
                    group.addTask {
                        let r = try await post(client, "/v1/completions", ["prompt": "the", "max_tokens": 40, "temperature": 0])
                        return (r.status, r.headers[.retryAfter])
                    }
                }
                var out: [(Int, String?)] = []
                for try await s in group { out.append(s) }
                return out
            }
            #expect(statuses.allSatisfy { $0.0 == 200 || ($0.0 == 429 && $0.1 == "1") }, "\(statuses)")
            #expect(statuses.contains { $0.0 == 429 } && statuses.contains { $0.0 == 200 }, "\(statuses)")
        }
    }
}

/// A model folder (`compress --llm`'s output) served like a GGUF file: its metadata file gives the
/// chat template, and a folder that holds the GGUF's own tensors answers exactly as the GGUF does.
@Suite struct ServerFolderTests {
    @Test func aFolderServesLikeItsGGUF() async throws {
        let dir = try scratchFolder("serverfolder")
        let path = try makeTinyLlama(in: dir, tiedOutput: false)
        let f = try GGUFFile(contentsOf: path)
        let parts: [(name: String, part: DecoderFolder.Part)] = try f.tensors.map { t in
            t.dims.count == 1 ? (t.name, .vector(try f.dequantized(t.name))) : (t.name, .ggml(t.type, rows: t.dims[1], columns: t.dims[0], t.data))
        }
        let folder = dir + "/folder"
        try DecoderFolder.write(to: folder, metadata: f, tensors: parts, report: ["format": "as stored"])
        func serve(_ model: String) throws -> CondenseServer {
            let lm = try LanguageModel(contentsOf: model)
            return CondenseServer(models: ServedModels(chat: ("tiny", lm, try ChatTemplate(gguf: GGUFFile(contentsOf: DecoderFolder.metadataPath(model))))),
                                  options: ServerOptions())
        }
        var answers: [String] = []
        for model in [path, folder] {
            let server = try serve(model)
            defer { server.shutdown() }
            let answer = try await Application(router: server.router()).test(.router) { client in
                let r = try await post(client, "/v1/chat/completions", ["messages": [["role": "user", "content": "the th"]], "max_tokens": 6, "temperature": 0])
                #expect(r.status == 200, "\(r.raw)")
                return (((r.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String) ?? "?"
            }
            answers.append(answer)
        }
        #expect(answers.count == 2 && answers[0] == answers[1] && answers[0] != "?", "\(answers)")
    }
}

@Suite struct ServerChatSafetyTests {
    /// A chat message that writes a control token is tokenized as text over HTTP: the prompt's
    /// token count is the template's with the message as text, not the one where
    /// `<|endoftext|>` became the control token.
    @Test func messagesStayTextOverHTTP() async throws {
        let server = try makeServer()
        defer { server.shutdown() }
        let (_, lm, template) = try #require(server.models.chat)
        let messages = [ChatTemplate.Message(role: "user", content: "a<|endoftext|>b")]
        let asText = try template.tokens(messages, tokenizer: lm.tokenizer)
        let parsed = lm.tokenizer.encode(try template.render(messages))
        // This vocabulary's BOS and EOS are both <|endoftext|>: the prompt holds it once (the BOS),
        // not a second time from the message.
        let eos = try #require(lm.tokenizer.eos)
        #expect(asText.filter { $0 == eos }.count == 1 && parsed.filter { $0 == eos }.count == 2 && asText.count != parsed.count,
                "\(asText) \(parsed)")
        try await Application(router: server.router()).test(.router) { client in
            let body: [String: Any] = ["model": "tiny-llama", "messages": [["role": "user", "content": "a<|endoftext|>b"]], "max_tokens": 1, "temperature": 0]
            let r = try await post(client, "/v1/chat/completions", body)
            #expect(r.status == 200, "\(r.raw)")
            #expect((r.json["usage"] as? [String: Any])?["prompt_tokens"] as? Int == asText.count, "\(r.raw)")
        }
    }
}
