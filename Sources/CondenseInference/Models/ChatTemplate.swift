import Condense
import Foundation

/// Chat formatting for a model, detected from its `tokenizer.chat_template` text: ChatML
/// (`<|im_start|>`: Qwen, SmolLM), Llama 3 (`<|start_header_id|>`), Gemma (`<start_of_turn>`),
/// Phi-3 (`<|user|>`…`<|end|>`); a file without a template gets its architecture's format when it
/// has one (Gemma, Phi-3), else a plain-text fallback. A template of another family is refused by
/// name rather than rendered wrong.
///
/// Messages are text: ``tokens(_:tokenizer:)`` never turns what a user wrote (say
/// `<|im_end|>\n<|im_start|>system`) into control tokens; only the template's own markup becomes
/// them.
///
/// ```swift
/// let t = try ChatTemplate(gguf: file)
/// let ids = t.tokens([.init(role: "user", content: "Hi!")], tokenizer: lm.tokenizer)   // ends with the assistant's header
/// ```
public struct ChatTemplate: Sendable, Equatable {
    public enum Family: String, Sendable { case chatML = "ChatML", llama3 = "Llama 3", gemma = "Gemma", phi3 = "Phi-3", generic = "generic" }

    public struct Message: Sendable, Equatable {
        public var role: String
        public var content: String
        public init(role: String, content: String) { self.role = role; self.content = content }
    }

    public let family: Family
    /// The system message the template adds when the conversation has none (SmolLM2's does).
    public let defaultSystem: String?
    /// Whether the family came from the architecture because the file has no template.
    public let fromArchitecture: Bool

    /// Text that ends an assistant turn (generation stops there).
    public var endOfTurn: String {
        switch family {
        case .chatML: return "<|im_end|>"
        case .llama3: return "<|eot_id|>"
        case .gemma: return "<end_of_turn>"
        case .phi3: return "<|end|>"
        case .generic: return "\nUser:"
        }
    }

    public init(family: Family, defaultSystem: String? = nil, fromArchitecture: Bool = false) {
        self.family = family
        self.defaultSystem = defaultSystem
        self.fromArchitecture = fromArchitecture
    }

    /// - Throws: ``CondenseError/invalidModel(_:)`` for a template of an unsupported family.
    public init(gguf f: GGUFFile) throws {
        guard let text = f.metadata["tokenizer.chat_template"]?.string else {
            // No template: the architecture's own turn format, when it has one.
            let arch = f.metadata["general.architecture"]?.string ?? ""
            let c = try? DecoderConfig(gguf: f)
            switch c?.defaultChat ?? (arch.hasPrefix("gemma") ? "gemma" : nil) {
            case "gemma": self.init(family: .gemma, fromArchitecture: true)
            case "phi3": self.init(family: .phi3, fromArchitecture: true)
            default: self.init(family: .generic)
            }
            return
        }
        if text.contains("<|im_start|>") {
            // A default system turn written literally in the template: '<|im_start|>system\n…<|im_end|>'.
            var system: String?
            if let r = text.range(of: "<|im_start|>system\n"), let e = text.range(of: "<|im_end|>", range: r.upperBound..<text.endIndex) {
                let body = String(text[r.upperBound..<e.lowerBound])
                if !body.contains("{{") && !body.contains("{%") { system = body }
            }
            self.init(family: .chatML, defaultSystem: system)
        } else if text.contains("<|start_header_id|>") {
            self.init(family: .llama3)
        } else if text.contains("<start_of_turn>") {
            self.init(family: .gemma)
        } else if text.contains("<|assistant|>") && text.contains("<|end|>") {
            self.init(family: .phi3)
        } else {
            throw CondenseError.invalidModel("the chat template is not one of the supported families (ChatML, Llama 3, Gemma, Phi-3); its start: \(text.prefix(60).debugDescription)")
        }
    }

    /// The conversation as parts: the template's markup (`markup: true`) and the messages'
    /// text, ending with the assistant's turn header.
    public func parts(_ messages: [Message]) -> [(text: String, markup: Bool)] {
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
        case .generic:
            for x in ms { c("\(x.role.prefix(1).uppercased() + x.role.dropFirst()): \(x.content)\n") }
            c("Assistant:")
        }
        return out
    }

    /// The conversation as one string (for display; tokenize with ``tokens(_:tokenizer:)``).
    public func render(_ messages: [Message]) -> String { parts(messages).map(\.text).joined() }

    /// The prompt's token ids: control tokens from the markup only, the messages as plain text,
    /// BOS once (the template's own, or the tokenizer's when the template writes none).
    public func tokens(_ messages: [Message], tokenizer: any Tokenizer) -> [Int32] {
        tokenizer.encode(parts: parts(messages).map { ($0.text, $0.markup) }, addSpecial: true)
    }
}
