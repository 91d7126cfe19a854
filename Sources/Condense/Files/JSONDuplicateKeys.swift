import Foundation

/// Foundation's JSON parser keeps one of two equal keys in an object and drops the other without
/// a word, so a file could carry a second tensor entry or config value that is never validated.
/// This scan runs over the raw bytes before parsing and refuses any object with a repeated key
/// (keys compared after unescaping, as a JSON parser sees them).
public enum JSONDuplicateKeys {
    /// - Throws: ``CondenseError/malformedFile(_:)`` naming the key and the object's path.
    public static func check(_ data: Data) throws {
        enum Frame { case object(keys: Set<String>, expectKey: Bool, name: String), array }
        var stack: [Frame] = []
        var lastKey = ""
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let b = raw.bindMemory(to: UInt8.self)
            var i = 0
            while i < b.count {
                let c = b[i]
                switch c {
                case UInt8(ascii: "{"):
                    stack.append(.object(keys: [], expectKey: true, name: lastKey))
                case UInt8(ascii: "["):
                    stack.append(.array)
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    if !stack.isEmpty { stack.removeLast() }
                case UInt8(ascii: ","):
                    if case let .object(keys, _, name)? = stack.last { stack[stack.count - 1] = .object(keys: keys, expectKey: true, name: name) }
                case UInt8(ascii: "\""):
                    let start = i
                    i += 1
                    while i < b.count, b[i] != UInt8(ascii: "\"") { i += b[i] == UInt8(ascii: "\\") ? 2 : 1 }
                    guard i < b.count else { return }  // unterminated: the parser reports it
                    if case .object(var keys, true, let name)? = stack.last {
                        let literal = Data(UnsafeBufferPointer(rebasing: b[start...i]))
                        let key = (try? JSONSerialization.jsonObject(with: literal, options: .fragmentsAllowed) as? String) ?? String(decoding: literal, as: UTF8.self)
                        guard keys.insert(key).inserted else {
                            throw CondenseError.malformedFile("duplicate key '\(key)'" + (name.isEmpty ? "" : " in '\(name)'"))
                        }
                        stack[stack.count - 1] = .object(keys: keys, expectKey: false, name: name)
                        lastKey = key
                    }
                default:
                    break
                }
                i += 1
            }
        }
    }
}
