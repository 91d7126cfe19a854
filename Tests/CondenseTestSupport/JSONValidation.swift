import Condense
import CondenseInference
import Foundation

/// A plain validator of the schema subset, independent of the grammar: what a client checks.
public func validates(_ v: Any, _ s: JSONSchema) -> Bool {
    func isBool(_ x: Any) -> Bool { (x as? NSNumber)?.isJSONBoolean ?? false }
    switch s {
    case .any: return true
    case let .object(props, _, required, additional):
        guard let o = v as? [String: Any] else { return false }
        guard required.isSubset(of: Set(o.keys)) else { return false }
        for (k, x) in o {
            if let p = props[k] { if !validates(x, p) { return false } } else if !additional { return false }
        }
        return true
    case let .array(items, lo, hi):
        guard let a = v as? [Any], a.count >= lo, a.count <= hi else { return false }
        return a.allSatisfy { validates($0, items) }
    case let .string(maxLength): return (v as? String).map { $0.utf8.count <= maxLength } ?? false
    case let .number(integer):
        guard let n = v as? NSNumber, !isBool(v) else { return false }
        return !integer || n.doubleValue == n.doubleValue.rounded()
    case .boolean: return isBool(v)
    case .null: return v is NSNull
    case let .literals(l):
        let text = String(decoding: (try? JSONSerialization.data(withJSONObject: [v], options: [.fragmentsAllowed])) ?? Data(), as: UTF8.self)
        return l.contains { "[\($0)]" == text } || l.contains { lit in
            (try? JSONSerialization.jsonObject(with: Data("[\(lit)]".utf8))).map { ($0 as? [Any])?.first.map { "\($0)" == "\(v)" && isBool($0) == isBool(v) } ?? false } ?? false
        }
    }
}
