import Condense
import Foundation

/// The subset of JSON Schema that constrained generation follows: `type` (`object`, `array`,
/// `string`, `number`, `integer`, `boolean`, `null`), `properties`, `required`,
/// `additionalProperties`, `items`, `enum`, `const`, `minItems`/`maxItems` and `maxLength`.
/// Anything else is refused by name rather than silently ignored, so an answer never claims a
/// schema it was not held to.
///
/// ```swift
/// let schema = try JSONSchema(["type": "object", "properties": ["name": ["type": "string"]], "required": ["name"]])
/// var o = GenerationOptions(maxTokens: 64)
/// o.json = JSONGrammar(schema)
/// ```
public indirect enum JSONSchema: Sendable, Equatable {
    /// Any JSON value.
    case any
    case object(properties: [String: JSONSchema], order: [String], required: Set<String>, additional: Bool)
    case array(items: JSONSchema, minItems: Int, maxItems: Int)
    case string(maxLength: Int)
    case number(integer: Bool)
    case boolean
    case null
    /// One of these values, as their JSON text.
    case literals([String])

    /// Strings longer than this are closed (a model that never ends a string cannot run forever).
    public static let defaultMaxLength = 512

    /// Reads a schema from its JSON object (`JSONSerialization`'s types).
    /// - Throws: `CondenseError/invalidArgument(_:)` naming the path of a keyword that is not
    ///   supported or a value of the wrong type.
    public init(_ json: Any, path: String = "schema") throws {
        guard let o = json as? [String: Any] else {
            if let b = json as? Bool, b { self = .any; return }
            throw CondenseError.invalidArgument("\(path) must be an object, got \(type(of: json))")
        }
        let known: Set<String> = ["type", "properties", "required", "additionalProperties", "items", "enum", "const", "minItems", "maxItems",
                                  "maxLength", "title", "description", "$schema", "default", "examples", "strict", "name"]
        if let unknown = o.keys.sorted().first(where: { !known.contains($0) }) {
            throw CondenseError.invalidArgument("\(path).\(unknown) is not supported by constrained generation (supported: type, properties, required, additionalProperties, items, enum, const, minItems, maxItems, maxLength)")
        }
        if let c = o["const"] { self = .literals([try Self.literal(c, path: path + ".const")]); return }
        if let e = o["enum"] {
            guard let values = e as? [Any], !values.isEmpty else { throw CondenseError.invalidArgument("\(path).enum must be a non-empty array") }
            self = .literals(try values.enumerated().map { try Self.literal($1, path: "\(path).enum[\($0)]") })
            return
        }
        guard let t = o["type"] else { self = .any; return }
        guard let type = t as? String else { throw CondenseError.invalidArgument("\(path).type must be a string (one type), got \(t)") }
        func int(_ key: String, _ fallback: Int) throws -> Int {
            guard let v = o[key] else { return fallback }
            guard let n = v as? Int, n >= 0 else { throw CondenseError.invalidArgument("\(path).\(key) must be an integer >= 0, got \(v)") }
            return n
        }
        switch type {
        case "object":
            var props: [String: JSONSchema] = [:], order: [String] = []
            if let p = o["properties"] {
                guard let p = p as? [String: Any] else { throw CondenseError.invalidArgument("\(path).properties must be an object") }
                for k in p.keys.sorted() {
                    props[k] = try JSONSchema(p[k]!, path: "\(path).properties.\(k)")
                    order.append(k)
                }
            }
            var required: Set<String> = []
            if let r = o["required"] {
                guard let r = r as? [String] else { throw CondenseError.invalidArgument("\(path).required must be an array of strings") }
                required = Set(r)
            }
            var additional = true
            if let a = o["additionalProperties"] {
                guard let a = a as? Bool else { throw CondenseError.invalidArgument("\(path).additionalProperties must be true or false (a schema there is not supported)") }
                additional = a
            }
            if !additional, let missing = required.sorted().first(where: { props[$0] == nil }) {
                throw CondenseError.invalidArgument("\(path).required names '\(missing)', which is not among the properties")
            }
            self = .object(properties: props, order: order, required: required, additional: additional)
        case "array":
            let items = try o["items"].map { try JSONSchema($0, path: path + ".items") } ?? .any
            let lo = try int("minItems", 0), hi = try int("maxItems", Int.max)
            guard lo <= hi else { throw CondenseError.invalidArgument("\(path).minItems \(lo) exceeds maxItems \(hi)") }
            self = .array(items: items, minItems: lo, maxItems: hi)
        case "string": self = .string(maxLength: try int("maxLength", Self.defaultMaxLength))
        case "number": self = .number(integer: false)
        case "integer": self = .number(integer: true)
        case "boolean": self = .boolean
        case "null": self = .null
        default: throw CondenseError.invalidArgument("\(path).type '\(type)' is not a JSON Schema type")
        }
    }

    /// The JSON text of an `enum` or `const` value (strings, numbers, booleans, null).
    static func literal(_ v: Any, path: String) throws -> String {
        if v is NSNull { return "null" }
        if let s = v as? String { return String(decoding: try JSONSerialization.data(withJSONObject: [s]), as: UTF8.self).dropFirst().dropLast().description }
        if let n = v as? NSNumber {
            if n.isJSONBoolean { return n.boolValue ? "true" : "false" }
            return n.stringValue
        }
        throw CondenseError.invalidArgument("\(path) must be a string, number, boolean or null")
    }
}

/// A JSON parser that reads one byte at a time and refuses a byte that cannot continue a value
/// of its schema: the state constrained sampling keeps per stream. A token is allowed when all
/// of its bytes are accepted; the generation ends when the value is complete. Caps keep a model
/// that will not finish from running on: strings close at their `maxLength`, at most 8
/// whitespace bytes in a row, numbers at 24 bytes. Strings are well-formed UTF-8.
///
/// ```swift
/// var g = JSONGrammar(.object(properties: [:], order: [], required: [], additional: true))
/// for b in Array(#"{"a": [1, true]}"#.utf8) { precondition(g.feed(b)) }
/// print(g.isComplete)   // true
/// ```
public struct JSONGrammar: Sendable, Equatable {
    enum ObjectPhase: Equatable { case keyOrClose, key, colon, value, commaOrClose }
    /// Exponents have at most two digits: a longer one overflows a double, which JSON readers refuse.
    enum NumberPhase: Equatable { case sign, first, zero, int, dot, frac, exp, expSign, expDigits, expDigits2 }
    enum Frame: Equatable {
        case value(JSONSchema)
        case object(JSONSchema, phase: ObjectPhase, seen: Set<String>, key: String)
        case array(items: JSONSchema, count: Int, minItems: Int, maxItems: Int, afterValue: Bool)
        /// A string: its length so far, its bytes when it is a key, whether a backslash (1) or
        /// \u digits (5…2) are pending.
        case string(count: Int, key: [UInt8], maxLength: Int, escape: Int, isKey: Bool)
        case number(phase: NumberPhase, integer: Bool, length: Int)
        /// One of these byte strings, matched `position` bytes so far; `isKey`: an object's key.
        case literal(candidates: [[UInt8]], position: Int, isKey: Bool)
    }

    var stack: [Frame]
    var blanks = 0
    /// The root value is complete.
    public private(set) var isComplete = false

    /// A reader of one value of `schema`, before its first byte.
    public init(_ schema: JSONSchema) { stack = [.value(schema)] }

    /// Whether every byte of `bytes` continues the value; the state after them, or nil.
    public func accepting(_ bytes: [UInt8]) -> JSONGrammar? {
        guard !bytes.isEmpty else { return nil }
        var g = self
        for b in bytes where !g.step(b) { return nil }
        return g
    }

    /// Takes one byte; false, with the state unchanged, when it cannot come next.
    public mutating func feed(_ b: UInt8) -> Bool {
        let saved = self
        if step(b) { return true }
        self = saved
        return false
    }

    /// Space, newline and tab (not carriage return: a model padding with it gains nothing).
    static func isBlank(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0A || b == 0x09 }

    /// One byte; on false the state is left part-way (callers work on a copy).
    mutating func step(_ b: UInt8) -> Bool {
        if isComplete { return false }
        guard let top = stack.last else { return false }
        switch top {
        case let .value(schema):
            if Self.isBlank(b) { return blank() }
            stack.removeLast()
            return start(schema, b)
        case let .object(schema, phase, seen, key):
            guard case let .object(props, _, required, additional) = schema else { return false }
            if Self.isBlank(b) && phase != .value { return blank() }
            switch phase {
            case .keyOrClose, .key:
                if b == UInt8(ascii: "}") && phase == .keyOrClose && required.isSubset(of: seen) { return close() }
                guard b == UInt8(ascii: "\"") else { return false }
                let remaining = props.keys.filter { !seen.contains($0) }
                if !additional {
                    guard !remaining.isEmpty else { return false }
                    stack[stack.count - 1] = .object(schema, phase: .colon, seen: seen, key: "")
                    stack.append(.literal(candidates: remaining.sorted().map { Array(Self.quoted($0).utf8) }, position: 1, isKey: true))
                } else {
                    stack[stack.count - 1] = .object(schema, phase: .colon, seen: seen, key: "")
                    stack.append(.string(count: 0, key: [], maxLength: JSONSchema.defaultMaxLength, escape: 0, isKey: true))
                }
                blanks = 0
                return true
            case .colon:
                guard b == UInt8(ascii: ":") else { return false }
                let valueSchema = props[key] ?? .any
                stack[stack.count - 1] = .object(schema, phase: .commaOrClose, seen: seen.union([key]), key: key)
                stack.append(.value(valueSchema))
                blanks = 0
                return true
            case .commaOrClose:
                if b == UInt8(ascii: "}") { return required.isSubset(of: seen) && close() }
                guard b == UInt8(ascii: ",") else { return false }
                // Another key must exist: with no additional properties, one not yet written.
                if !additional && props.keys.allSatisfy({ seen.contains($0) }) { return false }
                stack[stack.count - 1] = .object(schema, phase: .key, seen: seen, key: "")
                blanks = 0
                return true
            case .value:
                return false
            }
        case let .array(items, count, lo, hi, afterValue):
            if Self.isBlank(b) { return blank() }
            if b == UInt8(ascii: "]") { return count >= lo && close() }
            if afterValue {
                guard b == UInt8(ascii: ","), count < hi else { return false }
                stack[stack.count - 1] = .array(items: items, count: count, minItems: lo, maxItems: hi, afterValue: false)
                blanks = 0
                return true
            }
            guard count < hi else { return false }
            stack[stack.count - 1] = .array(items: items, count: count + 1, minItems: lo, maxItems: hi, afterValue: true)
            return start(items, b)
        case let .string(count, key, maxLength, escape, isKey):
            let kept = isKey ? key + [b] : key
            if escape >= 16 {   // inside a multi-byte character
                guard let next = Self.utf8Step(escape, b) else { return false }
                stack[stack.count - 1] = .string(count: count + 1, key: kept, maxLength: maxLength, escape: next, isKey: isKey)
                return true
            }
            if escape == 1 {
                guard "\"\\/bfnrtu".utf8.contains(b) else { return false }
                stack[stack.count - 1] = .string(count: count + 1, key: kept, maxLength: maxLength, escape: b == UInt8(ascii: "u") ? 5 : 0, isKey: isKey)
                return true
            }
            if escape > 1 {
                guard b.isHexDigit else { return false }
                stack[stack.count - 1] = .string(count: count + 1, key: kept, maxLength: maxLength, escape: escape == 2 ? 0 : escape - 1, isKey: isKey)
                return true
            }
            if b == UInt8(ascii: "\"") {
                if isKey {
                    // A key already written in this object cannot come again.
                    let name = String(decoding: key, as: UTF8.self)
                    if stack.count >= 2, case let .object(_, _, seen, _) = stack[stack.count - 2], seen.contains(name) { return false }
                    stack.removeLast()
                    setKey(name)
                } else {
                    stack.removeLast()
                    finished()
                }
                return true
            }
            // At the cap only the closing quote; control bytes never; UTF-8 well formed.
            guard b >= 0x20, count < maxLength, let next = Self.utf8Step(escape, b) else { return false }
            stack[stack.count - 1] = .string(count: count + 1, key: kept, maxLength: maxLength, escape: b == UInt8(ascii: "\\") ? 1 : next, isKey: isKey)
            return true
        case let .number(phase, integer, length):
            if let next = Self.numberStep(phase, b, integer: integer), length < 24 {
                stack[stack.count - 1] = .number(phase: next, integer: integer, length: length + 1)
                return true
            }
            guard [.zero, .int, .frac, .expDigits, .expDigits2].contains(phase) else { return false }
            return endThenStep(b, key: nil)
        case let .literal(candidates, position, isKey):
            let next = candidates.filter { $0.count > position && $0[position] == b }
            if !next.isEmpty {
                if next.count == 1 && next[0].count == position + 1 {   // the only candidate, complete
                    stack.removeLast()
                    if isKey { setKey(String(decoding: next[0].dropFirst().dropLast(), as: UTF8.self)) } else { finished() }
                    return true
                }
                stack[stack.count - 1] = .literal(candidates: next, position: position + 1, isKey: isKey)
                return true
            }
            // A complete candidate that is a prefix of another (1 and 12): it ends here.
            guard let done = candidates.first(where: { $0.count == position }) else { return false }
            return endThenStep(b, key: isKey ? String(decoding: done.dropFirst().dropLast(), as: UTF8.self) : nil)
        }
    }

    /// Whether the text so far is a whole value (a root number or literal may still grow, but
    /// may also end here).
    public var canEnd: Bool {
        if isComplete { return true }
        guard stack.count == 1, let top = stack.last else { return false }
        switch top {
        case let .number(phase, _, _): return [.zero, .int, .frac, .expDigits, .expDigits2].contains(phase)
        case let .literal(candidates, position, _): return candidates.contains { $0.count == position }
        default: return false
        }
    }

    /// The number or literal on top ended at the byte before `b`: it is popped (an object's
    /// `key`, or a finished value), and `b` goes to what contains it — nothing may follow the
    /// root value. On false the state is as before.
    private mutating func endThenStep(_ b: UInt8, key: String?) -> Bool {
        let saved = self
        stack.removeLast()
        if let key { setKey(key) } else { finished() }
        if !isComplete, step(b) { return true }
        self = saved
        return false
    }

    private mutating func blank() -> Bool {
        guard blanks < 8 else { return false }
        blanks += 1
        return true
    }

    /// A value of `schema` starting with byte `b`.
    private mutating func start(_ schema: JSONSchema, _ b: UInt8) -> Bool {
        blanks = 0
        switch schema {
        case .any:
            switch b {
            case UInt8(ascii: "{"): stack.append(.object(.object(properties: [:], order: [], required: [], additional: true), phase: .keyOrClose, seen: [], key: ""))
            case UInt8(ascii: "["): stack.append(.array(items: .any, count: 0, minItems: 0, maxItems: Int.max, afterValue: false))
            case UInt8(ascii: "\""): stack.append(.string(count: 0, key: [], maxLength: JSONSchema.defaultMaxLength, escape: 0, isKey: false))
            case UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
                stack.append(.literal(candidates: [Array("true".utf8), Array("false".utf8), Array("null".utf8)], position: 0, isKey: false))
                return step(b)
            default:
                stack.append(.number(phase: .sign, integer: false, length: 0))
                if step(b) { return true }
                stack.removeLast()
                return false
            }
            return true
        case .object:
            guard b == UInt8(ascii: "{") else { return false }
            stack.append(.object(schema, phase: .keyOrClose, seen: [], key: ""))
            return true
        case let .array(items, lo, hi):
            guard b == UInt8(ascii: "[") else { return false }
            stack.append(.array(items: items, count: 0, minItems: lo, maxItems: hi, afterValue: false))
            return true
        case let .string(maxLength):
            guard b == UInt8(ascii: "\"") else { return false }
            stack.append(.string(count: 0, key: [], maxLength: maxLength, escape: 0, isKey: false))
            return true
        case let .number(integer):
            stack.append(.number(phase: .sign, integer: integer, length: 0))
            if step(b) { return true }
            stack.removeLast()
            return false
        case .boolean, .null, .literals:
            let c: [String]
            switch schema {
            case .boolean: c = ["true", "false"]
            case .null: c = ["null"]
            case let .literals(l): c = l
            default: c = []
            }
            stack.append(.literal(candidates: c.map { Array($0.utf8) }, position: 0, isKey: false))
            if step(b) { return true }
            stack.removeLast()
            return false
        }
    }

    /// UTF-8 inside a string: `state` 0 between characters, or (continuation bytes left) << 16
    /// | the next byte's lowest << 8 | its highest; the state after `b`, or nil when `b` cannot
    /// come there (a stray continuation, an overlong form, a surrogate, beyond U+10FFFF).
    static func utf8Step(_ state: Int, _ b: UInt8) -> Int? {
        if state >= 16 {
            let left = state >> 16, lo = (state >> 8) & 0xFF, hi = state & 0xFF
            guard Int(b) >= lo && Int(b) <= hi else { return nil }
            return left == 1 ? 0 : (left - 1) << 16 | 0x80 << 8 | 0xBF
        }
        switch b {
        case 0x00...0x7F: return 0
        case 0xC2...0xDF: return 1 << 16 | 0x80 << 8 | 0xBF
        case 0xE0: return 2 << 16 | 0xA0 << 8 | 0xBF
        case 0xED: return 2 << 16 | 0x80 << 8 | 0x9F
        case 0xE1...0xEF: return 2 << 16 | 0x80 << 8 | 0xBF
        case 0xF0: return 3 << 16 | 0x90 << 8 | 0xBF
        case 0xF4: return 3 << 16 | 0x80 << 8 | 0x8F
        case 0xF1...0xF3: return 3 << 16 | 0x80 << 8 | 0xBF
        default: return nil
        }
    }

    private static func numberStep(_ p: NumberPhase, _ b: UInt8, integer: Bool) -> NumberPhase? {
        let digit = b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")
        switch p {
        case .sign: return b == UInt8(ascii: "-") ? .first : b == UInt8(ascii: "0") ? .zero : digit ? .int : nil
        case .first: return b == UInt8(ascii: "0") ? .zero : digit ? .int : nil
        case .zero, .int:
            if p == .int && digit { return .int }
            if integer { return nil }
            return b == UInt8(ascii: ".") ? .dot : (b == UInt8(ascii: "e") || b == UInt8(ascii: "E")) ? .exp : nil
        case .dot: return digit ? .frac : nil
        case .frac: return digit ? .frac : (b == UInt8(ascii: "e") || b == UInt8(ascii: "E")) ? .exp : nil
        case .exp: return b == UInt8(ascii: "+") || b == UInt8(ascii: "-") ? .expSign : digit ? .expDigits : nil
        case .expSign: return digit ? .expDigits : nil
        case .expDigits: return digit ? .expDigits2 : nil
        case .expDigits2: return nil
        }
    }

    /// A closing brace or bracket ends the innermost container.
    private mutating func close() -> Bool {
        stack.removeLast()
        finished()
        return true
    }

    /// A value ended: its container moves on (an array already counted it), or the root is done.
    private mutating func finished() {
        blanks = 0
        if stack.isEmpty { isComplete = true }
    }

    /// An object's key ended: its value's schema is looked up when the colon comes.
    private mutating func setKey(_ k: String) {
        blanks = 0
        guard case let .object(schema, phase, seen, _) = stack.last else { return }
        stack[stack.count - 1] = .object(schema, phase: phase, seen: seen, key: k)
    }

    static func quoted(_ s: String) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: [s])) ?? Data("[\"\"]".utf8), as: UTF8.self).dropFirst().dropLast().description
    }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (self >= 0x30 && self <= 0x39) || (self >= 0x41 && self <= 0x46) || (self >= 0x61 && self <= 0x66)
    }
}
