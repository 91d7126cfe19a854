import Condense
import Foundation

/// Chat formatting for a model, detected from its `tokenizer.chat_template` text: ChatML
/// (`<|im_start|>`, Qwen, SmolLM), Llama 3 (`<|start_header_id|>`), or a generic plain-text
/// fallback when the file has no template. A template of another family is refused by name
/// rather than rendered wrong.
///
/// ```swift
/// let t = try ChatTemplate(gguf: file)
/// let prompt = t.render([.init(role: "user", content: "Hi!")])   // ends with the assistant's header
/// ```
public struct ChatTemplate: Sendable, Equatable {
    public enum Family: String, Sendable { case chatML = "ChatML", llama3 = "Llama 3", generic = "generic" }

    public struct Message: Sendable, Equatable {
        public var role: String
        public var content: String
        public init(role: String, content: String) { self.role = role; self.content = content }
    }

    public let family: Family
    /// The system message the template adds when the conversation has none (SmolLM2's does).
    public let defaultSystem: String?

    /// Text that ends an assistant turn (generation stops there).
    public var endOfTurn: String {
        switch family {
        case .chatML: return "<|im_end|>"
        case .llama3: return "<|eot_id|>"
        case .generic: return "\nUser:"
        }
    }

    public init(family: Family, defaultSystem: String? = nil) {
        self.family = family
        self.defaultSystem = defaultSystem
    }

    /// - Throws: ``CondenseError/invalidModel(_:)`` for a template of an unsupported family.
    public init(gguf f: GGUFFile) throws {
        guard let text = f.metadata["tokenizer.chat_template"]?.string else {
            self.init(family: .generic)
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
        } else {
            throw CondenseError.invalidModel("the chat template is not one of the supported families (ChatML, Llama 3); its start: \(text.prefix(60).debugDescription)")
        }
    }

    /// The conversation as the model's prompt, ending with the assistant's turn header.
    public func render(_ messages: [Message]) -> String {
        var ms = messages
        if let defaultSystem, ms.first?.role != "system" { ms.insert(Message(role: "system", content: defaultSystem), at: 0) }
        switch family {
        case .chatML:
            return ms.map { "<|im_start|>\($0.role)\n\($0.content)<|im_end|>\n" }.joined() + "<|im_start|>assistant\n"
        case .llama3:
            return "<|begin_of_text|>" + ms.map { "<|start_header_id|>\($0.role)<|end_header_id|>\n\n\($0.content)<|eot_id|>" }.joined()
                + "<|start_header_id|>assistant<|end_header_id|>\n\n"
        case .generic:
            return ms.map { "\($0.role.prefix(1).uppercased() + $0.role.dropFirst()): \($0.content)\n" }.joined() + "Assistant:"
        }
    }
}
