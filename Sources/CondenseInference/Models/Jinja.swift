import Condense
import Foundation

/// The subset of Jinja that chat templates use, rendered as Hugging Face's `apply_chat_template`
/// renders them (jinja2 with `trim_blocks` and `lstrip_blocks`, `tojson` as `json.dumps`), with
/// one addition: every string remembers whether it came from the template (markup) or from the
/// conversation (text), so ``ChatTemplate`` can tokenize a user's words as text only.
///
/// Supported: `{{ }}`, `{% %}`, `{# #}` with `-` whitespace control; `for` (tuple targets,
/// `if` filters, `else`, `loop.index`/`index0`/`first`/`last`/`length`/`revindex`), `if`/`elif`/
/// `else`, `set` (also `ns.attr` on a `namespace`), literals, subscripts and slices, attribute
/// access, `and`/`or`/`not`/`in`/`is`, comparisons, `+ - * / // % ~`, the conditional
/// expression; the filters and tests the common templates use, string and dict methods,
/// `range`, `namespace` and `raise_exception`. Anything else is an error naming the construct.
/// The template comes from an untrusted file: output size, loop iterations and nesting are
/// bounded, and nothing outside the given context (no file, no environment) is reachable.
///
/// ```swift
/// let t = try JinjaTemplate("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}")
/// let parts = try t.render(["messages": .list([.dict(["role": .text("user"), "content": .text("Hi")])])])
/// ```
public struct JinjaTemplate: Sendable, Equatable {
    public let source: String
    let body: [JNode]

    public static func == (a: JinjaTemplate, b: JinjaTemplate) -> Bool { a.source == b.source }

    /// - Throws: `CondenseError/invalidModel(_:)` naming the unsupported construct or the
    ///   syntax error and its line.
    public init(_ source: String) throws {
        self.source = source
        body = try Self.wrap {
            var p = JParser(tokens: try JLexer.lex(source))
            return try p.parseBody(until: [])
        }
    }

    /// Limits on what one rendering may do.
    public struct Limits: Sendable {
        public var outputCharacters = 4 << 20
        public var iterations = 1 << 20
        /// An empty namespace (`namespace()` in a template).
        public init() {}
    }

    /// Renders with `context`; the output as runs of markup (from the template) and text (from
    /// strings the context marked as text).
    /// - Throws: `CondenseError/invalidInput(_:)` for `raise_exception`, a limit reached, or an
    ///   operation on values of the wrong kind.
    public func render(_ context: [String: JValue], limits: Limits = Limits()) throws -> [(text: String, markup: Bool)] {
        try Self.wrap {
            var r = JRenderer(limits: limits)
            var scope = JScope(globals: context)
            try r.run(body, &scope)
            return r.output.parts
        }
    }
}

// MARK: - Values

/// A string whose pieces remember where they came from: the template (markup) or the
/// conversation (text).
public struct JString: Sendable, Equatable {
    public var parts: [(text: String, markup: Bool)]
    /// A string that is markup (the template's, may become control tokens) or text (the conversation's, never does).
    public init(_ s: String, markup: Bool) { parts = s.isEmpty ? [] : [(s, markup)] }
    init(parts: [(text: String, markup: Bool)]) { self.parts = parts }
    public var string: String { parts.map(\.text).joined() }
    var isMarkup: Bool { parts.allSatisfy(\.markup) }
    static func + (a: JString, b: JString) -> JString { JString(parts: a.parts + b.parts) }
    public static func == (a: JString, b: JString) -> Bool { a.string == b.string }
    /// A new string made from this one: text if any piece was text.
    func derived(_ s: String) -> JString { JString(s, markup: isMarkup) }
}

/// A namespace object (`namespace(...)`): the one mutable value, shared by reference.
public final class JNamespace: @unchecked Sendable {
    // @unchecked: used by one rendering on one thread.
    var values: [String: JValue]
    init(_ v: [String: JValue]) { values = v }
}

/// A value in a rendering.
public indirect enum JValue: Sendable {
    case undefined, none
    case bool(Bool), int(Int), double(Double)
    case string(JString)
    case list([JValue])
    /// Keys in insertion order (for `tojson` and `items()`).
    case dict([String], [String: JValue])
    case namespace(JNamespace)
    case function(String)

    /// A string from the conversation: tokenized as text, never as control tokens.
    public static func text(_ s: String) -> JValue { .string(JString(s, markup: false)) }

    /// A value `JSONSerialization` read from a request (tool definitions, call arguments): its
    /// strings are text; object keys in sorted order (the reader keeps no order).
    public static func json(_ v: Any) -> JValue {
        switch v {
        case is NSNull: return .none
        case let s as String: return .text(s)
        case let n as NSNumber:
            if n.isJSONBoolean { return .bool(n.boolValue) }
            let d = n.doubleValue
            return d == d.rounded() && abs(d) < 9e15 && !String(cString: n.objCType).contains("d") ? .int(n.intValue) : .double(d)
        case let a as [Any]: return .list(a.map(json))
        case let o as [String: Any]:
            let keys = o.keys.sorted()
            return .dict(keys, Dictionary(uniqueKeysWithValues: keys.map { ($0, json(o[$0]!)) }))
        default: return .text("\(v)")
        }
    }
    /// A string from the template's side (special token texts).
    public static func markup(_ s: String) -> JValue { .string(JString(s, markup: true)) }
    /// A dictionary with its keys in this order (for `tojson` and `items()`).
    public static func dict(_ d: KeyValuePairs<String, JValue>) -> JValue {
        .dict(d.map(\.0), Dictionary(d.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a }))
    }

    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case let .bool(b): return b
        case let .int(i): return i != 0
        case let .double(d): return d != 0
        case let .string(s): return !s.string.isEmpty
        case let .list(l): return !l.isEmpty
        case let .dict(k, _): return !k.isEmpty
        case .namespace, .function: return true
        }
    }

    var typeName: String {
        switch self {
        case .undefined: return "undefined"
        case .none: return "none"
        case .bool: return "boolean"
        case .int: return "integer"
        case .double: return "float"
        case .string: return "string"
        case .list: return "list"
        case .dict: return "mapping"
        case .namespace: return "namespace"
        case .function: return "function"
        }
    }

    /// Python's `str()` of the value, as jinja2 prints it: text when any string inside it is.
    var str: JString {
        switch self {
        case let .string(s): return s
        default: return JString(repr(top: true), markup: !containsText)
        }
    }

    /// Whether a string from the conversation is in the value (at any depth): what is printed
    /// from it — its `str()`, its `tojson` — is then text, never control tokens.
    var containsText: Bool {
        switch self {
        case let .string(s): return !s.isMarkup
        case let .list(items): return items.contains { $0.containsText }
        case let .dict(_, d): return d.values.contains { $0.containsText }
        default: return false
        }
    }

    /// Python's `repr()` (inside lists and dicts) or `str()` (top level).
    func repr(top: Bool = false) -> String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case let .bool(b): return b ? "True" : "False"
        case let .int(i): return String(i)
        case let .double(d): return JValue.pythonFloat(d)
        case let .string(s):
            if top { return s.string }
            let t = s.string
            let q: Character = t.contains("'") && !t.contains("\"") ? "\"" : "'"
            var out = String(q)
            for c in t.unicodeScalars {
                switch c {
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default: if Character(c) == q { out += "\\" + String(q) } else { out.unicodeScalars.append(c) }
                }
            }
            return out + String(q)
        case let .list(l): return "[" + l.map { $0.repr() }.joined(separator: ", ") + "]"
        case let .dict(keys, d): return "{" + keys.map { JValue.text($0).repr() + ": " + d[$0]!.repr() }.joined(separator: ", ") + "}"
        case .namespace: return "<Namespace>"
        case let .function(n): return "<function \(n)>"
        }
    }

    static func pythonFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d > 0 ? "inf" : "-inf" }
        if d == d.rounded(), abs(d) < 1e16 { return String(format: "%.1f", d) }
        return "\(d)"
    }

    /// `json.dumps(value, ensure_ascii=False)` (Hugging Face's `tojson`), with `indent`.
    func json(indent: Int?, level: Int = 0) throws -> String {
        let pad = indent.map { "\n" + String(repeating: " ", count: $0 * (level + 1)) }
        let close = indent.map { "\n" + String(repeating: " ", count: $0 * level) }
        let sep = indent == nil ? ", " : ","
        switch self {
        case .undefined, .none: return "null"
        case let .bool(b): return b ? "true" : "false"
        case let .int(i): return String(i)
        case let .double(d): return JValue.pythonFloat(d) == "nan" ? "NaN" : d.isInfinite ? (d > 0 ? "Infinity" : "-Infinity") : JValue.pythonFloat(d)
        case let .string(s):
            var out = "\""
            for c in s.string.unicodeScalars {
                switch c {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case "\u{08}": out += "\\b"
                case "\u{0C}": out += "\\f"
                default:
                    if c.value < 0x20 { out += String(format: "\\u%04x", c.value) } else { out.unicodeScalars.append(c) }
                }
            }
            return out + "\""
        case let .list(l):
            if l.isEmpty { return "[]" }
            return "[" + (pad ?? "") + (try l.map { try $0.json(indent: indent, level: level + 1) }.joined(separator: sep + (pad ?? ""))) + (close ?? "") + "]"
        case let .dict(keys, d):
            if keys.isEmpty { return "{}" }
            return "{" + (pad ?? "") + (try keys.map { try JValue.text($0).json(indent: nil) + ": " + d[$0]!.json(indent: indent, level: level + 1) }
                .joined(separator: sep + (pad ?? ""))) + (close ?? "") + "}"
        case .namespace, .function: throw JError.type("\(typeName) is not JSON serializable")
        }
    }
}

enum JError: Error {
    case syntax(String, line: Int)
    case unsupported(String, line: Int)
    case type(String)
    case raised(String)
    case limit(String)

    var condense: CondenseError {
        switch self {
        case let .syntax(m, line): return .invalidModel("chat template, line \(line): \(m)")
        case let .unsupported(c, line): return .invalidModel("chat template, line \(line): '\(c)' is not supported by Condense's template interpreter")
        case let .type(m): return .invalidInput("chat template: \(m)")
        case let .raised(m): return .invalidInput("the chat template refused the conversation: \(m)")
        case let .limit(m): return .invalidInput("chat template: \(m)")
        }
    }
}

// MARK: - Lexer

enum JTok: Equatable {
    case text(String)
    case exprOpen, exprClose, stmtOpen, stmtClose
    case name(String), str(String), int(Int), float(Double)
    case op(String)
    case end
}

struct JToken { let tok: JTok; let line: Int }

enum JLexer {
    static func lex(_ src: String) throws -> [JToken] {
        let s = Array(src.unicodeScalars)
        var out: [JToken] = []
        var i = 0, line = 1
        var pendingText: [Unicode.Scalar] = []
        var stripNextLeading = false   // `-%}` / `-}}` / `-#}`
        var trimNextNewline = false    // trim_blocks after `%}` / `#}`
        var lineStarting = true        // the text since the last tag starts a line (lstrip_blocks)
        func flushText(stripTrailing: Bool) {
            var t = pendingText
            if stripTrailing { while let l = t.last, l.properties.isWhitespace { t.removeLast() } }
            if !t.isEmpty { out.append(JToken(tok: .text(String(String.UnicodeScalarView(t))), line: line)) }
            pendingText = []
        }
        while i < s.count {
            if s[i] == "{", i + 1 < s.count, s[i + 1] == "{" || s[i + 1] == "%" || s[i + 1] == "#" {
                let kind = s[i + 1]
                var j = i + 2
                var leftStrip = false, plus = false
                if j < s.count, s[j] == "-" { leftStrip = true; j += 1 } else if j < s.count, s[j] == "+" { plus = true; j += 1 }
                // lstrip_blocks: a block or comment tag alone after a line's indentation takes it away.
                if kind != "{", !leftStrip, !plus {
                    var k = pendingText.count
                    while k > 0, pendingText[k - 1] == " " || pendingText[k - 1] == "\t" { k -= 1 }
                    if k > 0 ? pendingText[k - 1] == "\n" : lineStarting { pendingText.removeLast(pendingText.count - k) }
                }
                flushText(stripTrailing: leftStrip)
                if kind == "#" {
                    // A comment: skip to its end.
                    var k = j
                    while k + 1 < s.count, !(s[k] == "#" && s[k + 1] == "}") { if s[k] == "\n" { line += 1 }; k += 1 }
                    guard k + 1 < s.count else { throw JError.syntax("unterminated comment", line: line) }
                    stripNextLeading = k > j && s[k - 1] == "-"
                    trimNextNewline = !stripNextLeading
                    lineStarting = false
                    i = k + 2
                    continue
                }
                out.append(JToken(tok: kind == "{" ? .exprOpen : .stmtOpen, line: line))
                // Expression tokens up to the closing delimiter.
                var k = j
                let closer: Unicode.Scalar = kind == "{" ? "}" : "%"
                while true {
                    while k < s.count, s[k].properties.isWhitespace { if s[k] == "\n" { line += 1 }; k += 1 }
                    guard k < s.count else { throw JError.syntax("unterminated tag", line: line) }
                    if s[k] == "-", k + 2 < s.count, s[k + 1] == closer, s[k + 2] == "}" {
                        stripNextLeading = true; trimNextNewline = false; k += 3; break
                    }
                    if s[k] == closer, k + 1 < s.count, s[k + 1] == "}" {
                        stripNextLeading = false; trimNextNewline = kind == "%"; k += 2; break
                    }
                    let c = s[k]
                    if c == "'" || c == "\"" {
                        var v = String.UnicodeScalarView()
                        k += 1
                        while k < s.count, s[k] != c {
                            if s[k] == "\\", k + 1 < s.count {
                                k += 1
                                switch s[k] {
                                case "n": v.append("\n")
                                case "t": v.append("\t")
                                case "r": v.append("\r")
                                default: v.append(s[k])
                                }
                            } else {
                                if s[k] == "\n" { line += 1 }
                                v.append(s[k])
                            }
                            k += 1
                        }
                        guard k < s.count else { throw JError.syntax("unterminated string", line: line) }
                        k += 1
                        out.append(JToken(tok: .str(String(v)), line: line))
                    } else if c.properties.numericType != nil, c.isASCII {
                        var t = ""
                        var isFloat = false
                        while k < s.count, s[k].isASCII, s[k].properties.numericType != nil || (s[k] == "." && !isFloat && k + 1 < s.count && s[k + 1].properties.numericType != nil) {
                            if s[k] == "." { isFloat = true }
                            t.unicodeScalars.append(s[k]); k += 1
                        }
                        out.append(JToken(tok: isFloat ? .float(Double(t)!) : .int(Int(t) ?? Int.max), line: line))
                    } else if c == "_" || c.properties.isAlphabetic {
                        var t = ""
                        while k < s.count, s[k] == "_" || s[k].properties.isAlphabetic || (s[k].isASCII && s[k].properties.numericType != nil) {
                            t.unicodeScalars.append(s[k]); k += 1
                        }
                        out.append(JToken(tok: .name(t), line: line))
                    } else {
                        let two = k + 1 < s.count ? String(String.UnicodeScalarView([s[k], s[k + 1]])) : ""
                        if ["==", "!=", "<=", ">=", "//", "**"].contains(two) {
                            out.append(JToken(tok: .op(two), line: line)); k += 2
                        } else if "()[]{}.,:|~+-*/%<>=".unicodeScalars.contains(c) {
                            out.append(JToken(tok: .op(String(c)), line: line)); k += 1
                        } else {
                            throw JError.syntax("unexpected character '\(c)'", line: line)
                        }
                    }
                }
                out.append(JToken(tok: kind == "{" ? .exprClose : .stmtClose, line: line))
                lineStarting = false
                i = k
                continue
            }
            // Plain text, after a tag's whitespace control.
            if stripNextLeading {
                if s[i].properties.isWhitespace { if s[i] == "\n" { line += 1 }; i += 1; continue }
                stripNextLeading = false
            }
            if trimNextNewline {
                trimNextNewline = false
                if s[i] == "\n" { line += 1; i += 1; lineStarting = true; continue }
                if s[i] == "\r", i + 1 < s.count, s[i + 1] == "\n" { line += 1; i += 2; lineStarting = true; continue }
            }
            if s[i] == "\n" { line += 1 }
            pendingText.append(s[i])
            i += 1
        }
        flushText(stripTrailing: false)
        out.append(JToken(tok: .end, line: line))
        return out
    }

}

// MARK: - Syntax tree

indirect enum JExpr {
    case literal(JValue)
    case name(String)
    case list([JExpr])
    case dict([(JExpr, JExpr)])
    case attr(JExpr, String)
    case item(JExpr, JExpr)
    case slice(JExpr, JExpr?, JExpr?, JExpr?)
    case call(JExpr, [JExpr], [(String, JExpr)])
    case filter(JExpr, String, [JExpr], [(String, JExpr)])
    case test(JExpr, String, [JExpr], negated: Bool)
    case unary(String, JExpr)
    case binary(String, JExpr, JExpr)
    case cond(JExpr, JExpr, JExpr?)
}

indirect enum JNode {
    case text(String)
    case output(JExpr)
    case forLoop(targets: [String], iterable: JExpr, filter: JExpr?, body: [JNode], orElse: [JNode])
    case ifs([(JExpr, [JNode])], orElse: [JNode])
    case set(target: String, attribute: String?, value: JExpr)
    case setBlock(target: String, body: [JNode])
}

extension JExpr: @unchecked Sendable {}
extension JNode: @unchecked Sendable {}

struct JParser {
    let tokens: [JToken]
    var pos = 0
    var depth = 0

    init(tokens: [JToken]) { self.tokens = tokens }

    var peek: JTok { tokens[pos].tok }
    var line: Int { tokens[pos].line }
    mutating func next() -> JTok { defer { pos += 1 }; return tokens[pos].tok }

    mutating func expect(_ t: JTok, _ what: String) throws {
        guard peek == t else { throw JError.syntax("expected \(what)", line: line) }
        pos += 1
    }

    mutating func name() throws -> String {
        guard case let .name(n) = peek else { throw JError.syntax("expected a name", line: line) }
        pos += 1
        return n
    }

    func isKeyword(_ k: String) -> Bool { peek == .name(k) }

    /// Nodes until a `{% name %}` in `until` (left unconsumed) or the end.
    mutating func parseBody(until: Set<String>) throws -> [JNode] {
        // Blocks inside blocks recurse here and in the renderer: bounded like expressions.
        depth += 1
        defer { depth -= 1 }
        guard depth < 200 else { throw JError.syntax("blocks nested too deeply", line: line) }
        var nodes: [JNode] = []
        while true {
            switch peek {
            case .end:
                if !until.isEmpty { throw JError.syntax("missing {% \(until.sorted().joined(separator: " / ")) %}", line: line) }
                return nodes
            case let .text(t): pos += 1; nodes.append(.text(t))
            case .exprOpen:
                pos += 1
                let e = try expression()
                try expect(.exprClose, "}}")
                nodes.append(.output(e))
            case .stmtOpen:
                guard case let .name(kw) = tokens[pos + 1].tok else { throw JError.syntax("expected a statement", line: line) }
                if until.contains(kw) { return nodes }
                pos += 2
                nodes.append(try statement(kw))
            default: throw JError.syntax("unexpected token", line: line)
            }
        }
    }

    mutating func statement(_ kw: String) throws -> JNode {
        let at = line
        switch kw {
        case "for":
            var targets = [try name()]
            while peek == .op(",") { pos += 1; targets.append(try name()) }
            guard isKeyword("in") else { throw JError.syntax("expected 'in'", line: line) }
            pos += 1
            let iterable = try orExpr()
            var filter: JExpr?
            if isKeyword("if") { pos += 1; filter = try orExpr() }
            if isKeyword("recursive") { throw JError.unsupported("for … recursive", line: at) }
            try expect(.stmtClose, "%}")
            let body = try parseBody(until: ["endfor", "else"])
            var orElse: [JNode] = []
            if tokens[pos + 1].tok == .name("else") {
                pos += 2
                try expect(.stmtClose, "%}")
                orElse = try parseBody(until: ["endfor"])
            }
            try endTag("endfor")
            return .forLoop(targets: targets, iterable: iterable, filter: filter, body: body, orElse: orElse)
        case "if":
            var branches: [(JExpr, [JNode])] = []
            var cond = try expression()
            try expect(.stmtClose, "%}")
            var orElse: [JNode] = []
            while true {
                let body = try parseBody(until: ["elif", "else", "endif"])
                branches.append((cond, body))
                guard case let .name(k) = tokens[pos + 1].tok else { throw JError.syntax("expected elif, else or endif", line: line) }
                pos += 2
                if k == "elif" { cond = try expression(); try expect(.stmtClose, "%}"); continue }
                if k == "else" {
                    try expect(.stmtClose, "%}")
                    orElse = try parseBody(until: ["endif"])
                    try endTag("endif")
                } else {
                    try expect(.stmtClose, "%}")
                }
                break
            }
            return .ifs(branches, orElse: orElse)
        case "set":
            let target = try name()
            var attribute: String?
            if peek == .op(".") { pos += 1; attribute = try name() }
            if peek == .stmtClose, attribute == nil {
                pos += 1
                let body = try parseBody(until: ["endset"])
                try endTag("endset")
                return .setBlock(target: target, body: body)
            }
            if peek == .op(",") { throw JError.unsupported("set with several targets", line: at) }
            try expect(.op("="), "=")
            let value = try expression()
            try expect(.stmtClose, "%}")
            return .set(target: target, attribute: attribute, value: value)
        case "generation":
            // Hugging Face's marker for assistant-token masks: renders its body as it is.
            try expect(.stmtClose, "%}")
            let body = try parseBody(until: ["endgeneration"])
            try endTag("endgeneration")
            return .ifs([(.literal(.bool(true)), body)], orElse: [])
        default:
            throw JError.unsupported(kw, line: at)
        }
    }

    mutating func endTag(_ k: String) throws {
        try expect(.stmtOpen, "{% \(k) %}")
        try expect(.name(k), k)
        try expect(.stmtClose, "%}")
    }

    // Expressions, by jinja2's precedence.

    mutating func expression() throws -> JExpr {
        depth += 1
        defer { depth -= 1 }
        guard depth < 200 else { throw JError.syntax("expression nested too deeply", line: line) }
        let e = try orExpr()
        if isKeyword("if") {
            pos += 1
            let c = try orExpr()
            var other: JExpr?
            if isKeyword("else") { pos += 1; other = try expression() }
            return .cond(c, e, other)
        }
        return e
    }

    mutating func orExpr() throws -> JExpr {
        var e = try andExpr()
        while isKeyword("or") { pos += 1; e = .binary("or", e, try andExpr()) }
        return e
    }

    mutating func andExpr() throws -> JExpr {
        var e = try notExpr()
        while isKeyword("and") { pos += 1; e = .binary("and", e, try notExpr()) }
        return e
    }

    mutating func notExpr() throws -> JExpr {
        if isKeyword("not") { pos += 1; return .unary("not", try notExpr()) }
        return try compare()
    }

    mutating func compare() throws -> JExpr {
        var e = try math1()
        while true {
            if case let .op(o) = peek, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                pos += 1; e = .binary(o, e, try math1())
            } else if isKeyword("in") {
                pos += 1; e = .binary("in", e, try math1())
            } else if isKeyword("not"), tokens[pos + 1].tok == .name("in") {
                pos += 2; e = .unary("not", .binary("in", e, try math1()))
            } else {
                return e
            }
        }
    }

    mutating func math1() throws -> JExpr {
        var e = try concat()
        while case let .op(o) = peek, o == "+" || o == "-" { pos += 1; e = .binary(o, e, try concat()) }
        return e
    }

    mutating func concat() throws -> JExpr {
        var e = try math2()
        while peek == .op("~") { pos += 1; e = .binary("~", e, try math2()) }
        return e
    }

    mutating func math2() throws -> JExpr {
        var e = try pow()
        while case let .op(o) = peek, ["*", "/", "//", "%"].contains(o) { pos += 1; e = .binary(o, e, try pow()) }
        return e
    }

    mutating func pow() throws -> JExpr {
        let e = try unary()
        if peek == .op("**") { pos += 1; return .binary("**", e, try unary()) }
        return e
    }

    /// As jinja2: a sign binds tighter than the filters after it (`-3 | abs` is 3).
    mutating func unary(withFilter: Bool = true) throws -> JExpr {
        var node: JExpr
        if peek == .op("-") {
            pos += 1
            node = .unary("-", try unary(withFilter: false))
        } else if peek == .op("+") {
            pos += 1
            node = try unary(withFilter: false)
        } else {
            node = try primary()
        }
        node = try postfix(node)
        return withFilter ? try filters(node) : node
    }

    mutating func primary() throws -> JExpr {
        let at = line
        switch next() {
        case let .name(n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case let .str(s):
            var t = s
            while case let .str(more) = peek { pos += 1; t += more }   // adjacent literals join
            return .literal(.markup(t))
        case let .int(i): return .literal(.int(i))
        case let .float(d): return .literal(.double(d))
        case .op("("):
            let e = try expression()
            if peek == .op(",") { throw JError.unsupported("tuple", line: at) }
            try expect(.op(")"), ")")
            return e
        case .op("["):
            var items: [JExpr] = []
            while peek != .op("]") {
                items.append(try expression())
                if peek == .op(",") { pos += 1 } else { break }
            }
            try expect(.op("]"), "]")
            return .list(items)
        case .op("{"):
            var items: [(JExpr, JExpr)] = []
            while peek != .op("}") {
                let k = try expression()
                try expect(.op(":"), ":")
                items.append((k, try expression()))
                if peek == .op(",") { pos += 1 } else { break }
            }
            try expect(.op("}"), "}")
            return .dict(items)
        default:
            throw JError.syntax("unexpected token in an expression", line: at)
        }
    }

    mutating func postfix(_ base: JExpr) throws -> JExpr {
        var e = base
        while true {
            if peek == .op(".") {
                pos += 1
                if case let .int(i) = peek { pos += 1; e = .item(e, .literal(.int(i))); continue }
                e = .attr(e, try name())
            } else if peek == .op("[") {
                pos += 1
                var parts: [JExpr?] = [nil]
                var colons = 0
                while peek != .op("]") {
                    if peek == .op(":") { pos += 1; colons += 1; parts.append(nil); continue }
                    parts[parts.count - 1] = try expression()
                }
                try expect(.op("]"), "]")
                if colons == 0 {
                    guard let i = parts[0] else { throw JError.syntax("empty subscript", line: line) }
                    e = .item(e, i)
                } else {
                    e = .slice(e, parts[0], parts.count > 1 ? parts[1] : nil, parts.count > 2 ? parts[2] : nil)
                }
            } else if peek == .op("(") {
                let (args, kwargs) = try arguments()
                e = .call(e, args, kwargs)
            } else {
                return e
            }
        }
    }

    mutating func arguments() throws -> ([JExpr], [(String, JExpr)]) {
        try expect(.op("("), "(")
        var args: [JExpr] = [], kwargs: [(String, JExpr)] = []
        while peek != .op(")") {
            if case let .name(n) = peek, tokens[pos + 1].tok == .op("=") {
                pos += 2
                kwargs.append((n, try expression()))
            } else {
                args.append(try expression())
            }
            if peek == .op(",") { pos += 1 } else { break }
        }
        try expect(.op(")"), ")")
        return (args, kwargs)
    }

    mutating func filters(_ base: JExpr) throws -> JExpr {
        var e = base
        while true {
            if peek == .op("|") {
                pos += 1
                let n = try name()
                var args: [JExpr] = [], kwargs: [(String, JExpr)] = []
                if peek == .op("(") { (args, kwargs) = try arguments() }
                e = .filter(e, n, args, kwargs)
            } else if isKeyword("is") {
                pos += 1
                var negated = false
                if isKeyword("not") { pos += 1; negated = true }
                let n = try name()
                var args: [JExpr] = []
                if peek == .op("(") {
                    args = try arguments().0
                } else if case .str = peek {
                    args = [try primary()]
                } else if case .int = peek {
                    args = [try primary()]
                }
                e = .test(e, n, args, negated: negated)
            } else {
                return e
            }
        }
    }
}

// MARK: - Rendering

struct JScope {
    var frames: [[String: JValue]]
    init(globals: [String: JValue]) { frames = [globals] }
    func lookup(_ n: String) -> JValue {
        for f in frames.reversed() { if let v = f[n] { return v } }
        switch n {
        case "range", "namespace", "raise_exception": return .function(n)
        default: return .undefined
        }
    }
    mutating func set(_ n: String, _ v: JValue) { frames[frames.count - 1][n] = v }
}

struct JOutput {
    var parts: [(text: String, markup: Bool)] = []
    var count = 0
    mutating func append(_ s: JString, limit: Int) throws {
        for p in s.parts where !p.text.isEmpty {
            count += p.text.unicodeScalars.count
            guard count <= limit else { throw JError.limit("the rendered prompt exceeds \(limit) characters") }
            if let last = parts.last, last.markup == p.markup { parts[parts.count - 1].text += p.text } else { parts.append(p) }
        }
    }
}

struct JRenderer {
    let limits: JinjaTemplate.Limits
    var output = JOutput()
    var iterations = 0

    init(limits: JinjaTemplate.Limits) { self.limits = limits }

    mutating func run(_ nodes: [JNode], _ scope: inout JScope) throws {
        for n in nodes {
            switch n {
            case let .text(t): try output.append(JString(t, markup: true), limit: limits.outputCharacters)
            case let .output(e): try output.append(try eval(e, scope).str, limit: limits.outputCharacters)
            case let .ifs(branches, orElse):
                var done = false
                for (c, body) in branches where try eval(c, scope).truthy { try run(body, &scope); done = true; break }
                if !done { try run(orElse, &scope) }
            case let .set(target, attribute, value):
                let v = try eval(value, scope)
                if let attribute {
                    guard case let .namespace(ns) = scope.lookup(target) else { throw JError.type("'\(target)' is not a namespace; cannot set .\(attribute)") }
                    ns.values[attribute] = v
                } else {
                    scope.set(target, v)
                }
            case let .setBlock(target, body):
                var inner = JRenderer(limits: limits)
                inner.iterations = iterations
                try inner.run(body, &scope)
                iterations = inner.iterations
                scope.set(target, .string(JString(parts: inner.output.parts)))
            case let .forLoop(targets, iterable, filter, body, orElse):
                let items = try iterate(try eval(iterable, scope))
                // The loop filter runs first: `loop` counts the items that pass.
                var kept: [JValue] = []
                for item in items {
                    if let filter {
                        var probe = scope
                        probe.frames.append([:])
                        try bind(targets, item, &probe)
                        if !(try eval(filter, probe).truthy) { continue }
                    }
                    kept.append(item)
                }
                if kept.isEmpty { try run(orElse, &scope); continue }
                for (i, item) in kept.enumerated() {
                    iterations += 1
                    guard iterations <= limits.iterations else { throw JError.limit("more than \(limits.iterations) loop iterations") }
                    scope.frames.append([:])
                    try bind(targets, item, &scope)
                    let n = kept.count
                    scope.set("loop", .dict(["index": .int(i + 1), "index0": .int(i), "revindex": .int(n - i), "revindex0": .int(n - i - 1),
                                             "first": .bool(i == 0), "last": .bool(i == n - 1), "length": .int(n),
                                             "previtem": i > 0 ? kept[i - 1] : .undefined, "nextitem": i + 1 < n ? kept[i + 1] : .undefined]))
                    // A `set` inside a loop does not leak out of it (jinja2's scoping).
                    defer { scope.frames.removeLast() }
                    try run(body, &scope)
                }
            }
        }
    }

    func bind(_ targets: [String], _ item: JValue, _ scope: inout JScope) throws {
        if targets.count == 1 { scope.set(targets[0], item); return }
        let parts = try iterate(item)
        guard parts.count == targets.count else { throw JError.type("cannot unpack \(parts.count) values into \(targets.count) names") }
        for (t, v) in zip(targets, parts) { scope.set(t, v) }
    }

    func iterate(_ v: JValue) throws -> [JValue] {
        switch v {
        case let .list(l): return l
        case let .dict(keys, _): return keys.map { .text($0) }
        case let .string(s): return s.string.map { s.derived(String($0)) }.map { .string($0) }
        case .undefined, .none: return []
        default: throw JError.type("\(v.typeName) is not iterable")
        }
    }

    func eval(_ e: JExpr, _ scope: JScope) throws -> JValue {
        switch e {
        case let .literal(v): return v
        case let .name(n): return scope.lookup(n)
        case let .list(items): return .list(try items.map { try eval($0, scope) })
        case let .dict(items):
            var keys: [String] = [], d: [String: JValue] = [:]
            for (k, v) in items {
                guard case let .string(ks) = try eval(k, scope) else { throw JError.type("dict keys must be strings") }
                if d[ks.string] == nil { keys.append(ks.string) }
                d[ks.string] = try eval(v, scope)
            }
            return .dict(keys, d)
        case let .attr(base, n): return member(try eval(base, scope), n)
        case let .item(base, i): return try subscriptValue(try eval(base, scope), try eval(i, scope))
        case let .slice(base, a, b, c):
            return try slice(try eval(base, scope), try a.map { try eval($0, scope) }, try b.map { try eval($0, scope) }, try c.map { try eval($0, scope) })
        case let .call(f, args, kwargs):
            let a = try args.map { try eval($0, scope) }
            let kw = try kwargs.map { ($0.0, try eval($0.1, scope)) }
            if case let .attr(base, method) = f { return try call(method, on: try eval(base, scope), a, kw) }
            return try callFunction(try eval(f, scope), a, kw)
        case let .filter(base, n, args, kwargs):
            return try filter(n, try eval(base, scope), try args.map { try eval($0, scope) }, try kwargs.map { ($0.0, try eval($0.1, scope)) }, scope)
        case let .test(base, n, args, negated):
            let r = try test(n, try eval(base, scope), try args.map { try eval($0, scope) })
            return .bool(negated ? !r : r)
        case let .unary(op, x):
            let v = try eval(x, scope)
            if op == "not" { return .bool(!v.truthy) }
            switch v {
            case let .int(i): return .int(-i)
            case let .double(d): return .double(-d)
            default: throw JError.type("cannot negate \(v.typeName)")
            }
        case let .binary(op, l, r):
            if op == "and" { let a = try eval(l, scope); return a.truthy ? try eval(r, scope) : a }
            if op == "or" { let a = try eval(l, scope); return a.truthy ? a : try eval(r, scope) }
            return try binary(op, try eval(l, scope), try eval(r, scope))
        case let .cond(c, a, b):
            if try eval(c, scope).truthy { return try eval(a, scope) }
            return try b.map { try eval($0, scope) } ?? .undefined
        }
    }

    func member(_ v: JValue, _ n: String) -> JValue {
        switch v {
        case let .dict(_, d): return d[n] ?? .undefined
        case let .namespace(ns): return ns.values[n] ?? .undefined
        default: return .undefined
        }
    }

    func subscriptValue(_ v: JValue, _ i: JValue) throws -> JValue {
        switch (v, i) {
        case let (.dict(_, d), .string(k)): return d[k.string] ?? .undefined
        case let (.namespace(ns), .string(k)): return ns.values[k.string] ?? .undefined
        case let (.list(l), .int(k)):
            let j = k < 0 ? l.count + k : k
            return l.indices.contains(j) ? l[j] : .undefined
        case let (.string(s), .int(k)):
            let c = Array(s.string)
            let j = k < 0 ? c.count + k : k
            return c.indices.contains(j) ? .string(s.derived(String(c[j]))) : .undefined
        case (.undefined, _), (.none, _): return .undefined
        default: return .undefined
        }
    }

    func slice(_ v: JValue, _ a: JValue?, _ b: JValue?, _ c: JValue?) throws -> JValue {
        func int(_ x: JValue?) throws -> Int? {
            guard let x else { return nil }
            if case .none = x { return nil }
            guard case let .int(i) = x else { throw JError.type("slice indices must be integers") }
            return i
        }
        let step = try int(c) ?? 1
        guard step != 0 else { throw JError.type("slice step cannot be zero") }
        func indices(_ n: Int) throws -> [Int] {
            func clamp(_ x: Int?, _ def: Int) -> Int {
                guard var x else { return def }
                if x < 0 { x += n }
                return step > 0 ? min(max(x, 0), n) : min(max(x, -1), n - 1)
            }
            let start = clamp(try int(a), step > 0 ? 0 : n - 1), end = clamp(try int(b), step > 0 ? n : -1)
            return Array(stride(from: start, to: end, by: step))
        }
        switch v {
        case let .list(l): return .list(try indices(l.count).map { l[$0] })
        case let .string(s):
            let chars = Array(s.string)
            return .string(s.derived(String(try indices(chars.count).map { chars[$0] })))
        default: throw JError.type("cannot slice \(v.typeName)")
        }
    }

    func string(_ v: JValue, _ what: String) throws -> JString {
        guard case let .string(s) = v else { throw JError.type("\(what) needs a string, got \(v.typeName)") }
        return s
    }

    func call(_ method: String, on v: JValue, _ a: [JValue], _ kw: [(String, JValue)]) throws -> JValue {
        switch v {
        case let .string(s):
            let t = s.string
            func chars(_ i: Int) throws -> Set<Character>? {
                guard i < a.count else { return nil }
                if case .none = a[i] { return nil }
                return Set(try string(a[i], method).string)
            }
            func strip(_ t: Substring, leading: Bool, trailing: Bool, _ set: Set<Character>?) -> String {
                let drop: (Character) -> Bool = { set?.contains($0) ?? $0.isWhitespace }
                var x = t
                if leading { x = x.drop(while: drop) }
                if trailing { while let l = x.last, drop(l) { x = x.dropLast() } }
                return String(x)
            }
            switch method {
            case "strip": return .string(s.derived(strip(t[...], leading: true, trailing: true, try chars(0))))
            case "lstrip": return .string(s.derived(strip(t[...], leading: true, trailing: false, try chars(0))))
            case "rstrip": return .string(s.derived(strip(t[...], leading: false, trailing: true, try chars(0))))
            case "upper": return .string(s.derived(t.uppercased()))
            case "lower": return .string(s.derived(t.lowercased()))
            case "title": return .string(s.derived(t.capitalized))
            case "capitalize": return .string(s.derived(t.prefix(1).uppercased() + t.dropFirst().lowercased()))
            case "startswith", "endswith":
                guard let x = a.first else { throw JError.type("\(method) needs an argument") }
                let options: [String]
                if case let .list(l) = x { options = try l.map { try string($0, method).string } } else { options = [try string(x, method).string] }
                return .bool(options.contains { method == "startswith" ? t.hasPrefix($0) : t.hasSuffix($0) })
            case "replace":
                guard a.count >= 2 else { throw JError.type("replace needs two arguments") }
                return .string(s.derived(t.replacingOccurrences(of: try string(a[0], method).string, with: try string(a[1], method).string)))
            case "split":
                let maxsplit: Int
                if a.count > 1, case let .int(m) = a[1] { maxsplit = m } else { maxsplit = -1 }
                if a.isEmpty || { if case .none = a[0] { return true }; return false }() {
                    let words = t.split(whereSeparator: { $0.isWhitespace }).map(String.init)
                    return .list(words.map { .string(s.derived($0)) })
                }
                let sep = try string(a[0], method).string
                guard !sep.isEmpty else { throw JError.type("empty separator") }
                var pieces: [String] = []
                var rest = t[...]
                while maxsplit < 0 || pieces.count < maxsplit, let r = rest.range(of: sep) {
                    pieces.append(String(rest[..<r.lowerBound]))
                    rest = rest[r.upperBound...]
                }
                pieces.append(String(rest))
                return .list(pieces.map { .string(s.derived($0)) })
            case "join":
                guard let x = a.first else { throw JError.type("join needs a list") }
                return .string(try join(try iterate(x), s))
            case "find":
                guard let x = a.first else { throw JError.type("find needs an argument") }
                guard let r = t.range(of: try string(x, method).string) else { return .int(-1) }
                return .int(t.distance(from: t.startIndex, to: r.lowerBound))
            case "count":
                guard let x = a.first else { throw JError.type("count needs an argument") }
                return .int(t.components(separatedBy: try string(x, method).string).count - 1)
            case "isdigit": return .bool(!t.isEmpty && t.allSatisfy { $0.isNumber })
            case "isspace": return .bool(!t.isEmpty && t.allSatisfy { $0.isWhitespace })
            default: break
            }
        case let .dict(keys, d):
            switch method {
            case "items": return .list(keys.map { .list([.text($0), d[$0]!]) })
            case "keys": return .list(keys.map { .text($0) })
            case "values": return .list(keys.map { d[$0]! })
            case "get":
                guard let k = a.first else { throw JError.type("get needs a key") }
                return d[try string(k, method).string] ?? (a.count > 1 ? a[1] : .none)
            default: break
            }
        default: break
        }
        throw JError.type("\(v.typeName) has no method '\(method)'")
    }

    func callFunction(_ f: JValue, _ a: [JValue], _ kw: [(String, JValue)]) throws -> JValue {
        guard case let .function(n) = f else { throw JError.type("\(f.typeName) is not callable") }
        switch n {
        case "range":
            let ints = try a.map { v -> Int in guard case let .int(i) = v else { throw JError.type("range needs integers") }; return i }
            let (start, end, step) = ints.count == 1 ? (0, ints[0], 1) : ints.count == 2 ? (ints[0], ints[1], 1) : ints.count == 3 ? (ints[0], ints[1], ints[2]) : (0, 0, 0)
            guard step != 0, !ints.isEmpty else { throw JError.type("range takes 1 to 3 integers, the step not 0") }
            let count = step > 0 ? max(0, (end - start + step - 1) / step) : max(0, (start - end - step - 1) / -step)
            guard count <= limits.iterations else { throw JError.limit("range of \(count) exceeds \(limits.iterations)") }
            return .list(Array(stride(from: start, to: end, by: step)).map { .int($0) })
        case "namespace":
            var values: [String: JValue] = [:]
            for (k, v) in kw { values[k] = v }
            if let first = a.first, case let .dict(_, d) = first { values.merge(d) { a, _ in a } }
            return .namespace(JNamespace(values))
        case "raise_exception":
            throw JError.raised(a.first.map { $0.str.string } ?? "raise_exception")
        default:
            throw JError.type("'\(n)' is not a function")
        }
    }

    func join(_ items: [JValue], _ sep: JString) throws -> JString {
        var out = JString(parts: [])
        for (i, v) in items.enumerated() {
            if i > 0 { out = out + sep }
            out = out + v.str
        }
        return out
    }

    func filter(_ n: String, _ v: JValue, _ a: [JValue], _ kw: [(String, JValue)], _ scope: JScope) throws -> JValue {
        switch n {
        case "trim":
            let s = try string(v, "trim")
            return .string(s.derived(s.string.trimmingCharacters(in: .whitespacesAndNewlines)))
        case "length", "count":
            switch v {
            case let .string(s): return .int(s.string.count)
            case let .list(l): return .int(l.count)
            case let .dict(k, _): return .int(k.count)
            case .undefined: return .int(0)
            default: throw JError.type("\(v.typeName) has no length")
            }
        case "string": return .string(v.str)
        case "upper", "lower", "title", "capitalize": return try call(n, on: .string(try string(v, n)), [], [])
        case "first": return try iterate(v).first ?? .undefined
        case "last": return try iterate(v).last ?? .undefined
        case "list": return .list(try iterate(v))
        case "reverse":
            if case let .string(s) = v { return .string(s.derived(String(s.string.reversed()))) }
            return .list(try iterate(v).reversed())
        case "join":
            let sep: JString = try a.first.map { try string($0, "join") } ?? JString("", markup: true)
            if let attr = kw.first(where: { $0.0 == "attribute" })?.1 {
                return .string(try join(try iterate(v).map { member($0, try string(attr, "join").string) }, sep))
            }
            return .string(try join(try iterate(v), sep))
        case "default", "d":
            let fallback = a.first ?? .markup("")
            let boolean = a.count > 1 ? a[1].truthy : false
            if case .undefined = v { return fallback }
            if boolean, !v.truthy { return fallback }
            return v
        case "replace": return try call("replace", on: .string(try string(v, n)), a, kw)
        case "items": return try call("items", on: v, [], [])
        case "tojson":
            var indent: Int?
            if let i = kw.first(where: { $0.0 == "indent" })?.1 ?? a.first, case let .int(k) = i { indent = k }
            return .string(JString(try v.json(indent: indent), markup: !v.containsText))
        case "int":
            switch v {
            case let .int(i): return .int(i)
            case let .double(d): return .int(Int(d))
            case let .string(s): return .int(Int(s.string.trimmingCharacters(in: .whitespaces)) ?? 0)
            case let .bool(b): return .int(b ? 1 : 0)
            default: return .int(0)
            }
        case "float":
            switch v {
            case let .int(i): return .double(Double(i))
            case let .double(d): return .double(d)
            case let .string(s): return .double(Double(s.string.trimmingCharacters(in: .whitespaces)) ?? 0)
            default: return .double(0)
            }
        case "abs":
            switch v {
            case let .int(i): return .int(abs(i))
            case let .double(d): return .double(abs(d))
            default: throw JError.type("abs of \(v.typeName)")
            }
        case "selectattr", "rejectattr":
            guard let attr = a.first else { throw JError.type("\(n) needs an attribute") }
            let name = try string(attr, n).string
            return .list(try iterate(v).filter { item in
                let x = member(item, name)
                let r = a.count > 1 ? try test(try string(a[1], n).string, x, Array(a.dropFirst(2))) : x.truthy
                return n == "selectattr" ? r : !r
            })
        case "select", "reject":
            return .list(try iterate(v).filter { item in
                let r = a.isEmpty ? item.truthy : try test(try string(a[0], n).string, item, Array(a.dropFirst()))
                return n == "select" ? r : !r
            })
        case "map":
            if let attr = kw.first(where: { $0.0 == "attribute" })?.1 {
                let name = try string(attr, n).string
                return .list(try iterate(v).map { member($0, name) })
            }
            guard let f = a.first else { throw JError.type("map needs a filter or attribute=") }
            return .list(try iterate(v).map { try filter(try string(f, n).string, $0, Array(a.dropFirst()), [], scope) })
        case "unique":
            var seen = Set<String>()
            return .list(try iterate(v).filter { seen.insert($0.repr()).inserted })
        default:
            throw JError.type("the filter '\(n)' is not supported")
        }
    }

    func test(_ n: String, _ v: JValue, _ a: [JValue]) throws -> Bool {
        switch n {
        case "defined": if case .undefined = v { return false }; return true
        case "undefined": if case .undefined = v { return true }; return false
        case "none": if case .none = v { return true }; return false
        case "string": if case .string = v { return true }; return false
        case "number": switch v { case .int, .double: return true; default: return false }
        case "integer": if case .int = v { return true }; return false
        case "float": if case .double = v { return true }; return false
        case "boolean": if case .bool = v { return true }; return false
        case "true": if case .bool(true) = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "mapping": if case .dict = v { return true }; return false
        case "sequence", "iterable": switch v { case .list, .string, .dict: return true; default: return false }
        case "callable": if case .function = v { return true }; return false
        case "odd", "even":
            guard case let .int(i) = v else { throw JError.type("\(n) needs an integer") }
            return (i % 2 != 0) == (n == "odd")
        case "equalto", "eq", "==", "sameas":
            guard let x = a.first else { throw JError.type("\(n) needs a value") }
            return try binary("==", v, x).truthy
        case "ne", "!=":
            guard let x = a.first else { throw JError.type("\(n) needs a value") }
            return !(try binary("==", v, x).truthy)
        case "in":
            guard let x = a.first else { throw JError.type("in needs a container") }
            return try binary("in", v, x).truthy
        case "lower": return (try? string(v, n).string).map { $0 == $0.lowercased() } ?? false
        case "upper": return (try? string(v, n).string).map { $0 == $0.uppercased() } ?? false
        default: throw JError.type("the test '\(n)' is not supported")
        }
    }

    func equal(_ a: JValue, _ b: JValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.double(x), .double(y)): return x == y
        case let (.int(x), .double(y)), let (.double(y), .int(x)): return Double(x) == y
        case let (.bool(x), .int(y)), let (.int(y), .bool(x)): return (x ? 1 : 0) == y
        case let (.string(x), .string(y)): return x.string == y.string
        case let (.list(x), .list(y)): return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case let (.dict(kx, x), .dict(ky, y)): return Set(kx) == Set(ky) && kx.allSatisfy { equal(x[$0]!, y[$0]!) }
        default: return false
        }
    }

    func binary(_ op: String, _ l: JValue, _ r: JValue) throws -> JValue {
        switch op {
        case "==": return .bool(equal(l, r))
        case "!=": return .bool(!equal(l, r))
        case "in":
            switch r {
            case let .string(s):
                let needle = try string(l, "in").string
                return .bool(needle.isEmpty || s.string.contains(needle))
            case let .list(items): return .bool(items.contains { equal($0, l) })
            case let .dict(_, d):
                guard case let .string(k) = l else { return .bool(false) }
                return .bool(d[k.string] != nil)
            case .undefined: throw JError.type("'in' on an undefined value")
            default: throw JError.type("'in' on \(r.typeName)")
            }
        case "~": return .string(l.str + r.str)
        case "<", ">", "<=", ">=":
            let c: Int
            switch (l, r) {
            case let (.string(a), .string(b)): c = a.string < b.string ? -1 : a.string == b.string ? 0 : 1
            default:
                guard let a = number(l), let b = number(r) else { throw JError.type("cannot compare \(l.typeName) and \(r.typeName)") }
                c = a < b ? -1 : a == b ? 0 : 1
            }
            switch op {
            case "<": return .bool(c < 0)
            case ">": return .bool(c > 0)
            case "<=": return .bool(c <= 0)
            default: return .bool(c >= 0)
            }
        case "+":
            switch (l, r) {
            case let (.string(a), .string(b)): return .string(a + b)
            case let (.list(a), .list(b)): return .list(a + b)
            case let (.int(a), .int(b)): return .int(a &+ b)
            default:
                guard let a = number(l), let b = number(r) else { throw JError.type("cannot add \(l.typeName) and \(r.typeName)") }
                return .double(a + b)
            }
        case "-", "*", "/", "//", "%", "**":
            if op == "*", case let .string(s) = l, case let .int(k) = r {
                guard k <= limits.outputCharacters else { throw JError.limit("string repeated \(k) times") }
                return .string(s.derived(String(repeating: s.string, count: max(0, k))))
            }
            if case let .int(a) = l, case let .int(b) = r, op != "/" {
                switch op {
                case "-": return .int(a &- b)
                case "*": return .int(a &* b)
                case "//", "%":
                    guard b != 0 else { throw JError.type("division by zero") }
                    let q = Int((Double(a) / Double(b)).rounded(.down))
                    return .int(op == "//" ? q : a - q * b)
                default: return .double(Foundation.pow(Double(a), Double(b)))
                }
            }
            guard let a = number(l), let b = number(r) else { throw JError.type("'\(op)' on \(l.typeName) and \(r.typeName)") }
            switch op {
            case "-": return .double(a - b)
            case "*": return .double(a * b)
            case "/": guard b != 0 else { throw JError.type("division by zero") }; return .double(a / b)
            case "//": guard b != 0 else { throw JError.type("division by zero") }; return .double((a / b).rounded(.down))
            case "%": guard b != 0 else { throw JError.type("division by zero") }; return .double(a - (a / b).rounded(.down) * b)
            default: return .double(Foundation.pow(a, b))
            }
        default: throw JError.type("unknown operator \(op)")
        }
    }

    func number(_ v: JValue) -> Double? {
        switch v {
        case let .int(i): return Double(i)
        case let .double(d): return d
        case let .bool(b): return b ? 1 : 0
        default: return nil
        }
    }
}

extension JinjaTemplate {
    /// Wraps errors as ``CondenseError``s.
    static func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as JError { throw e.condense }
    }
}
