/// Sizes computed from numbers that came from outside (a file, a config, a request): every
/// product and sum is overflow-checked, and an overflow is a thrown error naming what was being
/// computed, never a trap.
///
/// ```swift
/// let bytes = try CheckedSize.product(rows, (columns + 1) / 2, of: "int4 packed bytes")
/// ```
public enum CheckedSize {
    /// `a · b · …` for non-negative factors.
    /// - Throws: ``CondenseError/invalidDimension(name:value:)`` for a negative factor or an overflow.
    public static func product(_ factors: Int..., of what: String) throws -> Int {
        var r = 1
        for f in factors {
            guard f >= 0 else { throw CondenseError.invalidDimension(name: what, value: f) }
            let (p, o) = r.multipliedReportingOverflow(by: f)
            guard !o else { throw CondenseError.invalidArgument("\(what): \(factors.map(String.init).joined(separator: " × ")) overflows") }
            r = p
        }
        return r
    }

    /// `a + b + …` for non-negative terms.
    public static func sum(_ terms: Int..., of what: String) throws -> Int {
        var r = 0
        for t in terms {
            guard t >= 0 else { throw CondenseError.invalidDimension(name: what, value: t) }
            let (s, o) = r.addingReportingOverflow(t)
            guard !o else { throw CondenseError.invalidArgument("\(what): \(terms.map(String.init).joined(separator: " + ")) overflows") }
            r = s
        }
        return r
    }

    /// `⌈a / b⌉ · b` (a rounded up to a multiple of b), b ≥ 1.
    public static func roundUp(_ a: Int, to b: Int, of what: String) throws -> Int {
        try product(try sum(a, b - 1, of: what) / b, b, of: what)
    }
}

extension CheckedSize {
    /// The first pair of byte ranges `[begin, end)` that overlap, as (later, earlier) names: the
    /// check every file format with a data section makes before trusting its offsets.
    public static func firstOverlap(_ spans: [(begin: Int, end: Int, name: String)]) -> (String, String)? {
        let sorted = spans.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
        for i in sorted.indices.dropFirst() where sorted[i].begin < sorted[i - 1].end {
            return (sorted[i].name, sorted[i - 1].name)
        }
        return nil
    }
}
