import Condense
@testable import CondenseInference
import CondenseTestSupport
import Foundation
import Testing

@Suite struct JSONGrammarTests {
    nonisolated(unsafe) static let person: [String: Any] = [
        "type": "object", "additionalProperties": false, "required": ["name", "age"],
        "properties": ["name": ["type": "string", "maxLength": 12], "age": ["type": "integer"],
                       "tags": ["type": "array", "items": ["enum": ["a", "ab", 1, 12, true, NSNull()]], "maxItems": 3],
                       "address": ["type": "object", "properties": ["city": ["type": "string"], "zip": ["type": "number"]], "required": ["city"]]],
    ]

    func run(_ g: JSONGrammar, _ text: String) -> (accepted: Int, grammar: JSONGrammar) {
        var g = g, n = 0
        for b in Array(text.utf8) { guard g.feed(b) else { break }; n += 1 }
        return (n, g)
    }

    /// Valid documents go through byte by byte and complete; each invalid one stops at the
    /// exact byte that breaks it.
    @Test func acceptsValidAndStopsAtTheFirstBadByte() throws {
        let g = JSONGrammar(try JSONSchema(Self.person))
        for ok in [#"{"name": "Al", "age": 30}"#, #"{"age":-0,"name":"\"x\u00e9\n","tags":["ab",12,true]}"#,
                   "{\n  \"name\": \"B\",\n  \"age\": 7,\n  \"address\": {\"city\": \"Oslo\", \"zip\": -1.5e+3, \"x\": [null, {}]}\n}",
                   #"{"name":"ééé","age":1,"tags":[]}"#] {
            let (n, after) = run(g, ok)
            #expect(n == ok.utf8.count && after.isComplete, "\(ok) stopped at \(n)")
            #expect(validates(try JSONSerialization.jsonObject(with: Data(ok.utf8)), try JSONSchema(Self.person)))
        }
        for (bad, at) in [(#"{"x"#, 2), (#"{"name": 5"#, 9), (#"{"name": "Al"}"#, 13), (#"{"age": 3.5"#, 9),
                          (#"{"age": 1, "age""#, 13), (#"{"age": 01"#, 9), (#"{"name": "0123456789abc""#, 22),
                          (#"{"name": "\x"#, 11), (#"{"age": 1, "tags": [1, 2"#, 23), (#"{"age": 1, "tags": [1, 12, 1, 1"#, 28),
                          (#"{"age": 1, "tags": [tru, "#, 23), (#"{"age": 1}  "#, 9), ("{" + String(repeating: " ", count: 9), 9),
                          (#"{"name": "a"} x"#, 0)] where at > 0 {
            #expect(run(g, bad).accepted == at, "\(bad): accepted \(run(g, bad).accepted), expected \(at)")
        }
        // Nothing after a complete value.
        let (_, done) = run(JSONGrammar(.object(properties: [:], order: [], required: [], additional: true)), "{}")
        #expect(done.isComplete && done.accepting([0x20]) == nil)
        // A root number may end where it is, or grow.
        let (_, num) = run(JSONGrammar(.number(integer: false)), "12")
        #expect(num.canEnd && !num.isComplete && num.accepting(Array("3".utf8)) != nil)
    }

    /// Schemas the grammar cannot hold are refused by name, never silently loosened.
    @Test func unsupportedSchemasAreRefusedByName() {
        for (schema, field) in [(["anyOf": [["type": "string"]]] as [String: Any], "schema.anyOf"), (["type": ["string", "null"]], "schema.type"),
                                (["type": "object", "properties": ["a": ["type": "strin"]]], "schema.properties.a.type"),
                                (["type": "object", "properties": ["a": ["pattern": "x"]]], "schema.properties.a.pattern"),
                                (["type": "object", "required": ["b"], "additionalProperties": false], "schema.required"),
                                (["type": "array", "minItems": 3, "maxItems": 2], "schema.minItems"), (["enum": [] as [Any]], "schema.enum")] {
            #expect(throws: CondenseError.self) { try JSONSchema(schema) }
            do { _ = try JSONSchema(schema) } catch { #expect("\(error)".contains(field), "\(error) should name \(field)") }
        }
    }

    /// Soundness: random walks through the grammar (any byte it allows, chosen at random) that
    /// reach a complete value always parse with JSONSerialization and validate against the
    /// schema — what constrained sampling promises of every answer.
    @Test func everyCompleteWalkParsesAndValidates() throws {
        var rng = TestRNG(s: 77)
        let alphabet = Array(" \n{}[]:,\"\\-+.0123456789eEtrufalsnbxyzé".utf8) + [0xC3, 0xA9]
        let schemas: [JSONSchema] = [try JSONSchema(Self.person), .object(properties: [:], order: [], required: [], additional: true),
                                     try JSONSchema(["type": "array", "items": ["type": "number"], "minItems": 1]),
                                     try JSONSchema(["type": "object", "properties": ["color": ["enum": ["red", "green"]], "n": ["type": "integer"]],
                                                     "required": ["color", "n"], "additionalProperties": false])]
        var complete = 0
        for (si, schema) in schemas.enumerated() {
            for _ in 0..<300 {
                var g = JSONGrammar(schema), text: [UInt8] = []
                while !g.isComplete && text.count < 400 {
                    let allowed = alphabet.filter { g.accepting([$0]) != nil }
                    guard !allowed.isEmpty else { break }
                    // Closing bytes more often, so walks end.
                    let closing = allowed.filter { "}]\"".utf8.contains($0) }
                    let b = !closing.isEmpty && rng.next(below: 3) == 0 ? closing[rng.next(below: closing.count)] : allowed[rng.next(below: allowed.count)]
                    _ = g.feed(b)
                    text.append(b)
                }
                guard g.isComplete else { continue }
                complete += 1
                let parsed = try? JSONSerialization.jsonObject(with: Data(text), options: [.fragmentsAllowed])
                #expect(parsed != nil && validates(parsed!, schema), "schema \(si): \(String(decoding: text, as: UTF8.self).debugDescription)")
            }
        }
        #expect(complete > 200)
    }

    /// Constrained generation on a random tiny model: the answer is a valid value of the schema,
    /// and it ends there ("stop").
    @Test func generationFollowsTheSchema() throws {
        let lm = try LanguageModel(gguf: makeTinyLlama(in: scratchFolder("json")))
        // Short, so that even a random model's whitespace fits the tiny context of 64.
        let schema = try JSONSchema(["type": "object", "properties": ["n": ["enum": [1, 2, 3]]], "required": ["n"], "additionalProperties": false])
        for (temperature, seed) in [(Float(0), UInt64(0)), (0.9, 1), (0.9, 2), (1.5, 3)] {
            var o = GenerationOptions(maxTokens: 300)
            o.temperature = temperature
            o.seed = seed
            o.json = JSONGrammar(schema)
            let r = try lm.session().generate("the th", o) { _ in }
            let parsed = try #require(try? JSONSerialization.jsonObject(with: Data(r.text.utf8)), "\(r.text.debugDescription) (\(r.finishReason), \(r.tokens.count) tokens)")
            #expect(validates(parsed, schema) && r.finishReason == "stop", "\(r.text) (\(r.finishReason))")
        }
    }
}
