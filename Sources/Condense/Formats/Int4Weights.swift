/// int4 weights with one scale per group of columns: symmetric signed nibbles (−8…7),
/// `W[n, k] ≈ scales[n·groups + k/groupSize] · q[n, k]`.
///
/// Packing: each row is `⌈K/2⌉` bytes, column 2j in the low nibble of byte j and 2j+1 in the high
/// nibble (two's complement); an odd K leaves the last high nibble 0. The last group of a row
/// covers the remaining `K mod groupSize` columns when K is not a multiple of the group size.
///
/// ```swift
/// let q4 = try Int4Weights(quantizing: w, groupSize: 32)
/// let layer = try LinearLayer(weights: .int4(q4))
/// ```
public struct Int4Weights: Sendable, Equatable {
    public let rows: Int
    public let columns: Int
    public let groupSize: Int
    public let packed: [UInt8]
    public let scales: [Float]
    /// Which native kernel runs it.
    public private(set) var path: Path

    /// The two native int4 paths.
    public enum Path: String, Sendable, Equatable {
        /// Integer dots (u8 activations per row, VNNI) dequantized per group: the fast path where
        /// the CPU has AVX-512 VNNI; elsewhere the dequantize path runs.
        case integer
        /// Weights dequantized exactly to f32, activations stay f32: no activation rounding.
        case dequantize
    }

    /// Groups per row.
    public var groupsPerRow: Int { columns == 0 ? 0 : (columns + groupSize - 1) / groupSize }

    /// - Throws: ``CondenseError`` for a group size < 1, byte or scale counts that do not match
    ///   the shape, or a scale that is not finite and > 0.
    public init(rows: Int, columns: Int, groupSize: Int, packed: [UInt8], scales: [Float], path: Path = .integer) throws {
        guard rows >= 0 else { throw CondenseError.invalidDimension(name: "rows", value: rows) }
        guard columns >= 0 else { throw CondenseError.invalidDimension(name: "columns", value: columns) }
        guard groupSize >= 1 else { throw CondenseError.invalidArgument("int4 group size must be >= 1, got \(groupSize)") }
        let bytes = try CheckedSize.product(rows, try CheckedSize.roundUp(columns, to: 2, of: "int4 columns") / 2, of: "int4 packed bytes")
        guard packed.count == bytes else {
            throw CondenseError.shapeMismatch("int4 \(rows)×\(columns) needs \(bytes) packed bytes, got \(packed.count)")
        }
        let gpr = try CheckedSize.roundUp(columns, to: groupSize, of: "int4 groups") / groupSize
        let scaleCount = try CheckedSize.product(rows, gpr, of: "int4 scales")
        guard scales.count == scaleCount else {
            throw CondenseError.shapeMismatch("int4 \(rows)×\(columns) in groups of \(groupSize) needs \(scaleCount) scales, got \(scales.count)")
        }
        if let bad = scales.firstIndex(where: { !($0.isFinite && $0 > 0) }) {
            throw CondenseError.invalidArgument("int4 scale \(bad) must be finite and > 0, got \(scales[bad])")
        }
        self.rows = rows
        self.columns = columns
        self.groupSize = groupSize
        self.packed = packed
        self.scales = scales
        self.path = path
    }

    /// Symmetric group-wise min–max quantization: `s = max|w| / 7` per group, `q = round(w/s)`
    /// clamped to −8…7. Zeros stay exactly zero.
    public init(quantizing w: Matrix<Float>, groupSize: Int, path: Path = .integer) throws {
        guard groupSize >= 1 else { throw CondenseError.invalidArgument("int4 group size must be >= 1, got \(groupSize)") }
        let (n, k) = (w.rows, w.columns)
        let gpr = k == 0 ? 0 : (k + groupSize - 1) / groupSize
        var scales = [Float](repeating: 1, count: n * gpr)
        var bytes = [UInt8](repeating: 0, count: n * ((k + 1) / 2))
        for r in 0..<n {
            for g in 0..<gpr {
                let cols = (g * groupSize)..<min(k, (g + 1) * groupSize)
                let a = cols.map { abs(w[r, $0]) }.filter(\.isFinite).max() ?? 0
                let s: Float = a > 0 ? a / 7 : 1
                scales[r * gpr + g] = s
                for c in cols {
                    let v = (w[r, c] / s).rounded(.toNearestOrEven)
                    let q = v.isNaN ? 0 : Int8(max(-8, min(7, v)))
                    let nib = UInt8(bitPattern: q) & 0xF
                    bytes[r * ((k + 1) / 2) + c / 2] |= c % 2 == 0 ? nib : nib << 4
                }
            }
        }
        try self.init(rows: n, columns: k, groupSize: groupSize, packed: bytes, scales: scales, path: path)
    }

    /// The signed value at (r, c).
    public func q(_ r: Int, _ c: Int) -> Int8 {
        let b = packed[r * ((columns + 1) / 2) + c / 2]
        return Int8(bitPattern: (c % 2 == 0 ? b << 4 : b & 0xF0)) >> 4
    }

    /// The same weights on the other native path.
    public func with(path: Path) -> Int4Weights {
        var w = self
        w.path = path
        return w
    }

    /// Bytes of packed values and scales.
    public var byteCount: Int { packed.count + scales.count * 4 }

    /// `s · q` as f32.
    public func densified() -> Matrix<Float> {
        Matrix<Float>(validatedRows: rows, columns: columns) { r, c in scales[r * groupsPerRow + c / groupSize] * Float(q(r, c)) }
    }
}
