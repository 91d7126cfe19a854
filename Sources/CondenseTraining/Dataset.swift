import Condense
import Foundation

@available(*, deprecated, renamed: "CondenseError", message: "one error type: CondenseError")
/// The errors of the training module (an alias kept for source compatibility).
public typealias TrainingError = CondenseError

/// Labelled examples: `count` rows of `features` floats and one class per row.
public struct Dataset: Sendable {
    public let features: Int
    public let classes: Int
    public let x: [Float]
    public let y: [Int32]
    public var count: Int { y.count }

    /// - Throws: `CondenseError/invalidData(_:)` when sizes disagree or a label is outside 0..<classes.
    public init(features: Int, classes: Int, x: [Float], y: [Int32]) throws {
        guard features >= 1, classes >= 2 else {
            throw CondenseError.invalidData("need features >= 1 and classes >= 2, got \(features) and \(classes)")
        }
        guard x.count == y.count * features else {
            throw CondenseError.invalidData("\(y.count) labels need \(y.count * features) values, got \(x.count)")
        }
        if let bad = y.firstIndex(where: { $0 < 0 || Int($0) >= classes }) {
            throw CondenseError.invalidData("label \(y[bad]) at row \(bad) is outside 0..<\(classes)")
        }
        self.features = features
        self.classes = classes
        self.x = x
        self.y = y
    }

    /// Rows `range` (e.g. a fixed train/test split).
    public func slice(_ range: Range<Int>) throws -> Dataset {
        guard range.lowerBound >= 0, range.upperBound <= count else {
            throw CondenseError.invalidArgument("rows \(range) outside 0..<\(count)")
        }
        return try Dataset(features: features, classes: classes,
                           x: Array(x[(range.lowerBound * features)..<(range.upperBound * features)]),
                           y: Array(y[range]))
    }

    /// The rows at `indices` as a matrix, with their labels.
    public func batch(_ indices: some Collection<Int>) -> (x: [Float], y: [Int32]) {
        var bx = [Float](); bx.reserveCapacity(indices.count * features)
        var by = [Int32](); by.reserveCapacity(indices.count)
        for i in indices {
            bx.append(contentsOf: x[(i * features)..<((i + 1) * features)])
            by.append(y[i])
        }
        return (bx, by)
    }

    /// All rows as a matrix.
    public var matrix: Matrix<Float> { Matrix(validatedRows: count, columns: features, elements: x) }
}

/// The MNIST files (IDX format, LeCun et al.): images scaled to [0, 1].
public enum MNIST {
    /// Loads an IDX image file (magic 2051) and label file (magic 2049), uncompressed.
    /// - Throws: `CondenseError/invalidData(_:)` naming the file: a wrong magic (gzip data is
    ///   recognised and named), a truncated file, or counts that disagree.
    public static func load(images: String, labels: String) throws -> Dataset {
        let img = try read(images)
        let lab = try read(labels)
        let (n, rows, cols) = try imageHeader(img, path: images)
        let m = try labelHeader(lab, path: labels)
        guard n == m else { throw CondenseError.invalidData("\(images) has \(n) images but \(labels) has \(m) labels") }
        let pixels = rows * cols
        var x = [Float](repeating: 0, count: n * pixels)
        img.withUnsafeBytes { raw in
            let p = raw.bindMemory(to: UInt8.self)
            for i in 0..<(n * pixels) { x[i] = Float(p[16 + i]) / 255 }
        }
        let y: [Int32] = lab.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> [Int32] in (0..<n).map { i in Int32(raw[8 + i]) } }
        if let bad = y.firstIndex(where: { $0 > 9 }) {
            throw CondenseError.invalidData("\(labels): label \(y[bad]) at index \(bad) is not a digit 0–9")
        }
        return try Dataset(features: pixels, classes: 10, x: x, y: y)
    }

    private static func read(_ path: String) throws -> Data {
        try FileInput.mapped(path)
    }

    private static func be32(_ d: Data, _ at: Int) -> Int {
        d.withUnsafeBytes { (r: UnsafeRawBufferPointer) -> Int in
            let b0 = Int(r[at]) << 24, b1 = Int(r[at + 1]) << 16
            let b2 = Int(r[at + 2]) << 8, b3 = Int(r[at + 3])
            return b0 | b1 | b2 | b3
        }
    }

    private static func checkMagic(_ d: Data, path: String, want: Int) throws {
        guard d.count >= 8 else { throw CondenseError.invalidData("\(path) is \(d.count) bytes, too short for an IDX header") }
        if d[d.startIndex] == 0x1f && d[d.startIndex + 1] == 0x8b {
            throw CondenseError.invalidData("\(path) is gzip-compressed; decompress it first (gunzip)")
        }
        let magic = be32(d, 0)
        guard magic == want else {
            throw CondenseError.invalidData("\(path): magic number \(magic), expected \(want)")
        }
    }

    private static func imageHeader(_ d: Data, path: String) throws -> (Int, Int, Int) {
        try checkMagic(d, path: path, want: 2051)
        guard d.count >= 16 else { throw CondenseError.invalidData("\(path) is \(d.count) bytes, too short for an image header") }
        let (n, r, c) = (be32(d, 4), be32(d, 8), be32(d, 12))
        guard r >= 1, c >= 1, r <= 4096, c <= 4096 else { throw CondenseError.invalidData("\(path): image size \(r)×\(c)") }
        guard d.count >= 16 + n * r * c else {
            throw CondenseError.invalidData("\(path) is truncated: \(n) images of \(r)×\(c) need \(16 + n * r * c) bytes, file has \(d.count)")
        }
        return (n, r, c)
    }

    private static func labelHeader(_ d: Data, path: String) throws -> Int {
        try checkMagic(d, path: path, want: 2049)
        let n = be32(d, 4)
        guard d.count >= 8 + n else {
            throw CondenseError.invalidData("\(path) is truncated: \(n) labels need \(8 + n) bytes, file has \(d.count)")
        }
        return n
    }
}
