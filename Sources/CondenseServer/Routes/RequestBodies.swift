import Condense
import Foundation

/// OpenAI's chat and completions request body as a `Decodable` type: OpenAI's field names,
/// unknown fields ignored (as OpenAI does), a field of the wrong type a 400 naming it
/// (``decodeBody(_:from:)``). Ranges and cross-field rules are checked where the body becomes a
/// ``GenerationRequest``. Free-form JSON — a JSON Schema, tool definitions — is also kept as JSON
/// (`Fields.o`) for the code that reads it as such.
struct CompletionBody: Decodable {
    var model: String?
    var messages: [MessageBody]?
    var prompt: PromptBody?
    var maxTokens: Double?
    var maxCompletionTokens: Double?
    var temperature: Double?
    var topP: Double?
    var topK: Double?
    var minP: Double?
    var repeatPenalty: Double?
    var seed: Double?
    var stop: StopBody?
    var stream: Bool?
    var streamOptions: StreamOptions?
    var n: Double?
    var logprobs: LogprobsBody?
    var topLogprobs: Double?
    var ignoreEOS: Bool?
    var minTokens: Double?
    var responseFormat: ResponseFormatBody?
    var tools: [ToolBody]?
    var toolChoice: ToolChoiceBody?

    enum CodingKeys: String, CodingKey {
        case model, messages, prompt, temperature, seed, stop, stream, n, logprobs, tools
        case maxTokens = "max_tokens", maxCompletionTokens = "max_completion_tokens", topP = "top_p", topK = "top_k", minP = "min_p"
        case repeatPenalty = "repeat_penalty", streamOptions = "stream_options", topLogprobs = "top_logprobs", ignoreEOS = "ignore_eos"
        case minTokens = "min_tokens", responseFormat = "response_format", toolChoice = "tool_choice"
    }

    struct StreamOptions: Decodable {
        var includeUsage: Bool?
        enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
    }

    /// A chat message: its role, its text (a string, or text parts), the tool calls an assistant
    /// turn made, the call a tool turn answers.
    struct MessageBody: Decodable {
        var role: String
        var content: ContentBody?
        var toolCalls: [ToolCallBody]?
        var toolCallID: String?
        enum CodingKeys: String, CodingKey { case role, content, toolCalls = "tool_calls", toolCallID = "tool_call_id" }
    }

    enum ContentBody: Decodable {
        case text(String)
        case parts([Part])
        struct Part: Decodable { var type: String; var text: String? }
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { self = .text(s); return }
            if let p = try? c.decode([Part].self) { self = .parts(p); return }
            throw DecodingError.typeMismatch(ContentBody.self, .init(codingPath: decoder.codingPath, debugDescription: "a string or an array of text parts"))
        }
    }

    struct ToolCallBody: Decodable {
        var id: String?
        var function: Function
        struct Function: Decodable { var name: String; var arguments: String? }
    }

    /// One prompt per request: a string, or an array holding one string.
    struct PromptBody: Decodable {
        var text: String
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { text = s; return }
            if let a = try? c.decode([String].self), a.count == 1 { text = a[0]; return }
            throw DecodingError.typeMismatch(PromptBody.self, .init(codingPath: decoder.codingPath, debugDescription: "a string (one prompt per request)"))
        }
    }

    struct StopBody: Decodable {
        var strings: [String]
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { strings = [s]; return }
            if let a = try? c.decode([String].self) { strings = a; return }
            throw DecodingError.typeMismatch(StopBody.self, .init(codingPath: decoder.codingPath, debugDescription: "a string or an array of strings"))
        }
    }

    /// Chat's `logprobs: true`, or the legacy completions' `logprobs: k`.
    enum LogprobsBody: Decodable {
        case flag(Bool)
        case count(Double)
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let b = try? c.decode(Bool.self) { self = .flag(b); return }
            if let n = try? c.decode(Double.self) { self = .count(n); return }
            throw DecodingError.typeMismatch(LogprobsBody.self, .init(codingPath: decoder.codingPath, debugDescription: "a boolean (chat) or an integer (completions)"))
        }
    }

    /// The typed part of `response_format`; its `json_schema.schema` is read as JSON.
    struct ResponseFormatBody: Decodable {
        var type: String
        var jsonSchema: SchemaBody?
        enum CodingKeys: String, CodingKey { case type, jsonSchema = "json_schema" }
        struct SchemaBody: Decodable { var name: String?; var strict: Bool? }
    }

    /// The typed part of a tool definition (the whole definition goes to the template as JSON).
    struct ToolBody: Decodable {
        var type: String?
        var function: Function
        struct Function: Decodable { var name: String }
    }

    /// `"auto"`, `"none"`, `"required"` or `{"type": "function", …}`.
    enum ToolChoiceBody: Decodable {
        case mode(String)
        case named
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { self = .mode(s); return }
            if (try? c.decode([String: String].self)) != nil || (try? c.decode(ToolBody.self)) != nil { self = .named; return }
            throw DecodingError.typeMismatch(ToolChoiceBody.self, .init(codingPath: decoder.codingPath, debugDescription: "\"auto\", \"none\" or a named function"))
        }
    }
}

/// A request body decoded as `T`, a decoding failure a 400 naming the field: `'temperature'
/// must be a number`, `messages[0].content must be a string or an array of text parts`.
func decodeBody<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
    func path(_ keys: [CodingKey]) -> String {
        keys.reduce("") { p, k in k.intValue.map { p + "[\($0)]" } ?? (p.isEmpty ? k.stringValue : p + "." + k.stringValue) }
    }
    func named(_ keys: [CodingKey]) -> String { keys.count == 1 ? "'\(path(keys))'" : path(keys) }
    func kind(_ t: Any.Type, _ ctx: DecodingError.Context) -> String {
        switch t {
        case is Double.Type, is Float.Type: return "a number"
        case is Int.Type: return "an integer"
        case is Bool.Type: return "a boolean"
        case is String.Type: return "a string"
        case is [Any].Type: return "an array"
        case is [String: Any].Type: return "an object"
        default: return ctx.debugDescription.isEmpty ? "of another type" : ctx.debugDescription
        }
    }
    do {
        return try JSONDecoder().decode(T.self, from: data)
    } catch let DecodingError.typeMismatch(t, ctx) {
        throw APIError(.badRequest, "\(named(ctx.codingPath)) must be \(kind(t, ctx))", param: path(ctx.codingPath).components(separatedBy: CharacterSet(charactersIn: ".[")).first)
    } catch let DecodingError.valueNotFound(t, ctx) {
        throw APIError(.badRequest, "\(named(ctx.codingPath)) must be \(kind(t, ctx)), got null", param: path(ctx.codingPath).components(separatedBy: CharacterSet(charactersIn: ".[")).first)
    } catch let DecodingError.keyNotFound(k, ctx) {
        let keys = ctx.codingPath + [k]
        throw APIError(.badRequest, "\(named(keys)) is required", param: path(keys).components(separatedBy: CharacterSet(charactersIn: ".[")).first)
    } catch let DecodingError.dataCorrupted(ctx) {
        throw APIError(.badRequest, ctx.codingPath.isEmpty ? "the body is not valid JSON" : "\(named(ctx.codingPath)): \(ctx.debugDescription)",
                       param: path(ctx.codingPath).components(separatedBy: CharacterSet(charactersIn: ".[")).first)
    }
}

extension CompletionBody {
    /// `v` checked against `range` (the same words as the other fields' checks).
    static func number(_ v: Double?, _ key: String, _ range: ClosedRange<Double>) throws -> Double? {
        guard let v else { return nil }
        guard v.isFinite, range.contains(v) else { throw APIError(.badRequest, "'\(key)' must be in \(range.lowerBound)…\(range.upperBound), got \(v)", param: key) }
        return v
    }

    /// `v` as an integer in `range`.
    static func integer(_ v: Double?, _ key: String, _ range: ClosedRange<Int>) throws -> Int? {
        guard let d = try number(v, key, Double(range.lowerBound)...Double(range.upperBound)) else { return nil }
        // Double(Int.max) rounds up to 2^63, which passes the range check but is not an Int.
        guard let i = Int(exactly: d), range.contains(i) else {
            throw APIError(.badRequest, "'\(key)' must be an integer in \(range.lowerBound)…\(range.upperBound), got \(d)", param: key)
        }
        return i
    }
}

/// OpenAI's embeddings request body: `input` one string, strings, one token array or token
/// arrays; `encoding_format`, `dimensions`, and `truncate` (text-embeddings-inference's).
struct EmbeddingBody: Decodable {
    var model: String?
    var input: Input?
    var encodingFormat: String?
    var dimensions: Double?
    var truncate: Bool?
    enum CodingKeys: String, CodingKey { case model, input, dimensions, truncate, encodingFormat = "encoding_format" }

    /// Each item a string or token ids (as numbers, checked to be whole and in the vocabulary
    /// where the tokenizer is known); `single` when the request sent one item, not an array.
    struct Input: Decodable {
        enum Item { case text(String), ids([Double]), other(String) }
        var items: [Item]
        var single: Bool
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { (items, single) = ([.text(s)], true); return }
            if let ids = try? c.decode([Double].self), !ids.isEmpty { (items, single) = ([.ids(ids)], true); return }
            guard let raw = try? c.decode([ItemBody].self) else {
                throw DecodingError.typeMismatch(Input.self, .init(codingPath: decoder.codingPath, debugDescription: "a string, an array of strings or token arrays"))
            }
            (items, single) = (raw.map(\.item), false)
        }
        struct ItemBody: Decodable {
            var item: Item
            init(from decoder: Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let s = try? c.decode(String.self) { item = .text(s) } else if let ids = try? c.decode([Double].self) { item = .ids(ids) } else {
                    item = .other((try? c.decode(Bool.self)) != nil ? "a boolean" : (try? c.decode(Double.self)) != nil ? "a number" : "another type")
                }
            }
        }
    }
}
