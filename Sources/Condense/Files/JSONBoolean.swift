import Foundation

extension NSNumber {
    /// Whether `JSONSerialization` read this number from `true` or `false` rather than from a
    /// number: its booleans are char-typed (`objCType` "c"), and on Linux `as? Bool` also
    /// accepts 0 and 1, so the type is the only reliable test.
    ///
    /// ```swift
    /// let o = try JSONSerialization.jsonObject(with: Data(#"[true, 1]"#.utf8)) as! [NSNumber]
    /// print(o.map(\.isJSONBoolean))   // [true, false]
    /// ```
    public var isJSONBoolean: Bool { objCType.pointee == CChar(UInt8(ascii: "c")) }
}
