import Condense
import Foundation

/// Chat formatting for a model: the file's own `tokenizer.chat_template`, rendered by
/// ``JinjaTemplate`` as jinja2 renders it. A template with a construct the interpreter lacks
/// falls back to its family's built-in format — ChatML (`<|im_start|>`: Qwen, SmolLM), Llama 3
/// (`<|start_header_id|>`), Gemma (`<start_of_turn>`), Phi-3 (`<|user|>`…`<|end|>`) — and says
/// so; a file without a template gets its architecture's format when it has one (Gemma,
/// Phi-3), else a plain-text fallback.
///
/// Messages are text: ``tokens(_:tokenizer:tools:)`` never turns what a user wrote (say
/// `<|im_end|>\n<|im_start|>system`) into control tokens; only the template's own markup becomes
/// them.
///
/// ```swift
/// let t = try ChatTemplate(gguf: file)
/// let ids = t.tokens([.init(role: "user", content: "Hi!")], tokenizer: lm.tokenizer)   // ends with the assistant's header
/// ```
public struct ChatTemplate: Sendable, Equatable {
    /// The built-in chat formats used when a file's template is missing or uses a construct the
    /// interpreter lacks.
    public enum Family: String, Sendable {
        case chatML = "ChatML", llama3 = "Llama 3", gemma = "Gemma", phi3 = "Phi-3", generic = "generic"
        /// The file's own `tokenizer.chat_template`, rendered by ``JinjaTemplate``.
        case file = "the file's own"
    }

    /// One turn of a conversation: its role (`system`, `user`, `assistant`, `tool`) and its text;
    /// an assistant turn may carry the tool calls it made, a tool turn the id of the call it
    /// answers.
    public struct Message: Sendable, Equatable {
        public var role: String
        public var content: String
        public var toolCalls: [ToolCall] = []
        public var toolCallID: String?
        /// A turn: a role and its text, with the calls an assistant turn made or the call a tool turn answers.
        public init(role: String, content: String, toolCalls: [ToolCall] = [], toolCallID: String? = nil) {
            (self.role, self.content, self.toolCalls, self.toolCallID) = (role, content, toolCalls, toolCallID)
        }
    }

    /// A function call the model asked for: OpenAI's `tool_calls[i]` (`arguments` is JSON text).
    public struct ToolCall: Sendable, Equatable {
        public var id: String
        public var name: String
        public var arguments: String
        /// A call: its id, the function's name and its arguments as JSON text.
        public init(id: String, name: String, arguments: String) { (self.id, self.name, self.arguments) = (id, name, arguments) }
    }

    /// Whether the template renders tool definitions (it reads `tools`): only the file's own
    /// templates do; the built-in formats have no place for them.
    public var supportsTools: Bool { jinja.map { $0.source.contains("tools") } ?? false }

    /// The tool calls in a model's answer, as tool-calling templates teach models to write them:
    /// `<tool_call>{"name": …, "arguments": {…}}</tool_call>` blocks (Qwen, Hermes), or an answer
    /// that is one such object (Llama 3.1, with `parameters`). Returns the text outside the calls
    /// and the calls (ids `call_0`, `call_1`, …); no calls when none parses.
    public static func toolCalls(in text: String) -> (content: String, calls: [ToolCall]) {
        func call(_ json: Substring, _ i: Int) -> ToolCall? {
            guard let o = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any], let name = o["name"] as? String,
                  let args = o["arguments"] ?? o["parameters"] else { return nil }
            let text = args as? String ?? String(decoding: (try? JSONSerialization.data(withJSONObject: args, options: [.sortedKeys])) ?? Data("{}".utf8), as: UTF8.self)
            return ToolCall(id: "call_\(i)", name: name, arguments: text)
        }
        var calls: [ToolCall] = [], content = "", rest = Substring(text)
        while let open = rest.range(of: "<tool_call>") {
            content += rest[..<open.lowerBound]
            guard let close = rest.range(of: "</tool_call>", range: open.upperBound..<rest.endIndex) else {
                // An unclosed call (the answer was cut): what parses counts.
                if let c = call(rest[open.upperBound...].drop(while: \.isWhitespace), calls.count) { calls.append(c) } else { content += rest[open.lowerBound...] }
                rest = ""
                break
            }
            let body = rest[open.upperBound..<close.lowerBound]
            if let c = call(Substring(body.trimmingCharacters(in: .whitespacesAndNewlines)), calls.count) { calls.append(c) } else { content += rest[open.lowerBound..<close.upperBound] }
            rest = rest[close.upperBound...]
        }
        content += rest
        if calls.isEmpty, let c = call(Substring(text.trimmingCharacters(in: .whitespacesAndNewlines)), 0) { return ("", [c]) }
        return (calls.isEmpty ? text : content.trimmingCharacters(in: .whitespacesAndNewlines), calls)
    }

    public let family: Family
    /// The system message the template adds when the conversation has none (SmolLM2's does).
    public let defaultSystem: String?
    /// Whether the family came from the architecture because the file has no template.
    public let fromArchitecture: Bool
    /// The file's template, when ``family`` is ``Family/file``.
    public let jinja: JinjaTemplate?
    /// The texts of the BOS and EOS tokens (the template's `bos_token`, `eos_token`).
    public let bosText: String, eosText: String
    /// Why the file's template is not the one rendered (a construct the interpreter lacks, so
    /// its family's built-in format is used instead), for a note to the user.
    public let fallbackReason: String?

    /// Text that ends an assistant turn (generation stops there).
    public var endOfTurn: String {
        switch family {
        case .chatML: return "<|im_end|>"
        case .llama3: return "<|eot_id|>"
        case .gemma: return "<end_of_turn>"
        case .phi3: return "<|end|>"
        case .generic: return "\nUser:"
        case .file:
            let text = jinja?.source ?? ""
            for marker in ["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>"] where text.contains(marker) { return marker }
            return eosText.isEmpty ? "\nUser:" : eosText
        }
    }

    /// A built-in format (``Family``), for models without a template or with one the interpreter cannot read.
    public init(family: Family, defaultSystem: String? = nil, fromArchitecture: Bool = false, bosText: String = "", eosText: String = "",
                fallbackReason: String? = nil) {
        (self.family, self.defaultSystem, self.fromArchitecture, jinja) = (family, defaultSystem, fromArchitecture, nil)
        (self.bosText, self.eosText, self.fallbackReason) = (bosText, eosText, fallbackReason)
    }

    /// The file's template, rendered as jinja2 would render it.
    public init(jinja: JinjaTemplate, bosText: String = "", eosText: String = "") {
        (family, defaultSystem, fromArchitecture, fallbackReason) = (.file, nil, false, nil)
        (self.jinja, self.bosText, self.eosText) = (jinja, bosText, eosText)
    }

    /// The file's `tokenizer.chat_template`, rendered by ``JinjaTemplate``; a template with a
    /// construct the interpreter lacks falls back to its family's built-in format (and says so
    /// in ``fallbackReason``); a file without a template gets its architecture's format.
    /// - Throws: `CondenseError/invalidModel(_:)` for a template the interpreter cannot read
    ///   and no family recognises, naming the construct.
    public init(gguf f: GGUFFile) throws {
        func tokenText(_ key: String) -> String {
            guard let id = f.metadata[key]?.int, let tokens = f.metadata["tokenizer.ggml.tokens"]?.array, tokens.indices.contains(id) else { return "" }
            return tokens[id].string ?? ""
        }
        let (bos, eos) = (tokenText("tokenizer.ggml.bos_token_id"), tokenText("tokenizer.ggml.eos_token_id"))
        if let text = f.metadata["tokenizer.chat_template"]?.string {
            do {
                self.init(jinja: try JinjaTemplate(text), bosText: bos, eosText: eos)
                return
            } catch let error as CondenseError {
                if let family = try? Self.family(of: text) {
                    self.init(family: family.0, defaultSystem: family.1, bosText: bos, eosText: eos, fallbackReason: "\(error)")
                    return
                }
                throw error
            }
        }
        // No template: the architecture's own turn format, when it has one.
        let arch = f.metadata["general.architecture"]?.string ?? ""
        switch (try? DecoderConfig(gguf: f))?.defaultChat ?? (arch.hasPrefix("gemma") ? "gemma" : nil) {
        case "gemma": self.init(family: .gemma, fromArchitecture: true, bosText: bos, eosText: eos)
        case "phi3": self.init(family: .phi3, fromArchitecture: true, bosText: bos, eosText: eos)
        default: self.init(family: .generic, bosText: bos, eosText: eos)
        }
    }

    /// The family a template's text belongs to, and the default system message ChatML
    /// templates write literally.
    static func family(of text: String) throws -> (Family, String?) {
        if text.contains("<|im_start|>") {
            var system: String?
            if let r = text.range(of: "<|im_start|>system\n"), let e = text.range(of: "<|im_end|>", range: r.upperBound..<text.endIndex) {
                let body = String(text[r.upperBound..<e.lowerBound])
                if !body.contains("{{") && !body.contains("{%") { system = body }
            }
            return (.chatML, system)
        }
        if text.contains("<|start_header_id|>") { return (.llama3, nil) }
        if text.contains("<start_of_turn>") { return (.gemma, nil) }
        if text.contains("<|assistant|>") && text.contains("<|end|>") { return (.phi3, nil) }
        throw CondenseError.invalidModel("the chat template is not one of the supported families (ChatML, Llama 3, Gemma, Phi-3); its start: \(text.prefix(60).debugDescription)")
    }

    /// The conversation as parts: the template's markup (`markup: true`) and the messages'
    /// text, ending with the assistant's turn header.
    /// - Throws: `CondenseError/invalidInput(_:)` when the file's template refuses the
    ///   conversation (`raise_exception`, e.g. roles that do not alternate) or hits a limit.
    /// `tools`: OpenAI's tool definitions (`[{"type": "function", "function": {…}}]`, as
    /// `JSONSerialization` reads them) for a template that ``supportsTools``; their text stays
    /// text, like the messages'.
    public func parts(_ messages: [Message], tools: [Any]? = nil) throws -> [(text: String, markup: Bool)] {
        if let jinja {
            let ms: [JValue] = messages.map { m in
                var keys = ["role", "content"], d: [String: JValue] = ["role": .text(m.role), "content": .text(m.content)]
                if !m.toolCalls.isEmpty {
                    if m.content.isEmpty { d["content"] = JValue.none }
                    keys.append("tool_calls")
                    d["tool_calls"] = .list(m.toolCalls.map { c in
                        let args = (try? JSONSerialization.jsonObject(with: Data(c.arguments.utf8))).map(JValue.json) ?? .text(c.arguments)
                        return .dict(["id": .text(c.id), "type": .text("function"), "function": .dict(["name": .text(c.name), "arguments": args])])
                    })
                }
                if let id = m.toolCallID { keys.append("tool_call_id"); d["tool_call_id"] = .text(id) }
                return .dict(keys, d)
            }
            var context: [String: JValue] = ["messages": .list(ms), "add_generation_prompt": .bool(true),
                                             "bos_token": .markup(bosText), "eos_token": .markup(eosText)]
            if let tools { context["tools"] = .list(tools.map(JValue.json)) }
            return try jinja.render(context)
        }
        var ms = messages
        if let defaultSystem, ms.first?.role != "system" { ms.insert(Message(role: "system", content: defaultSystem), at: 0) }
        var out: [(text: String, markup: Bool)] = []
        func m(_ s: String) { out.append((s, true)) }
        func c(_ s: String) { out.append((s, false)) }
        switch family {
        case .chatML:
            for x in ms { m("<|im_start|>\(x.role)\n"); c(x.content); m("<|im_end|>\n") }
            m("<|im_start|>assistant\n")
        case .llama3:
            m("<|begin_of_text|>")
            for x in ms { m("<|start_header_id|>\(x.role)<|end_header_id|>\n\n"); c(x.content); m("<|eot_id|>") }
            m("<|start_header_id|>assistant<|end_header_id|>\n\n")
        case .gemma:
            // Gemma has no system role: the system text opens the first user turn.
            m("<bos>")
            var system: String?
            if ms.first?.role == "system" { system = ms.removeFirst().content }
            for x in ms {
                m("<start_of_turn>\(x.role == "assistant" ? "model" : x.role)\n")
                if let s = system, x.role == "user" { c(s + "\n\n"); system = nil }
                c(x.content)
                m("<end_of_turn>\n")
            }
            m("<start_of_turn>model\n")
        case .phi3:
            for x in ms { m("<|\(x.role)|>\n"); c(x.content); m("<|end|>\n") }
            m("<|assistant|>\n")
        case .generic, .file:
            for x in ms { c("\(x.role.prefix(1).uppercased() + x.role.dropFirst()): \(x.content)\n") }
            c("Assistant:")
        }
        return out
    }

    /// The conversation as one string (for display; tokenize with ``tokens(_:tokenizer:tools:)``).
    public func render(_ messages: [Message], tools: [Any]? = nil) throws -> String { try parts(messages, tools: tools).map(\.text).joined() }

    /// The prompt's token ids: control tokens from the markup only, the messages as plain text,
    /// BOS once (the template's own, or the tokenizer's when the template writes none).
    public func tokens(_ messages: [Message], tokenizer: any Tokenizer, tools: [Any]? = nil) throws -> [Int32] {
        tokenizer.encode(parts: try parts(messages, tools: tools).map { ($0.text, $0.markup) }, addSpecial: true)
    }
}
