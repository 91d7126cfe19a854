/// 2:4 sparse weights with int8 values: the positions of ``Sparse24Matrix`` and its values
/// quantized symmetrically per row (`W[n, k] ≈ scales[n] · q`). Pruned weights stay exactly zero.
/// Activations are quantized to u8 per row at run time, as for ``Int8Weights``.
///
/// ```swift
/// let w24 = try Sparse24Matrix(dense: try Pruning.semiStructured(w).apply(to: w))
/// let layer = try LinearLayer(weights: .sparse24Int8(Sparse24Int8Weights(quantizing: w24)))
/// ```
public struct Sparse24Int8Weights: Sendable, Equatable {
    /// Positions (metadata) and shape; its f32 values are not used by the kernels.
    public let pattern: Sparse24Matrix
    /// `pattern.valuesPerRow` per row, symmetric s8.
    public let values: [Int8]
    /// One per row, finite and > 0.
    public let scales: [Float]

    public var rows: Int { pattern.rows }
    public var columns: Int { pattern.columns }

    /// Quantizes a 2:4 matrix's values per row: `s = max|v| / 127`, `q = round(v / s)`.
    public init(quantizing w: Sparse24Matrix) throws {
        let per = w.valuesPerRow
        var q = [Int8](repeating: 0, count: w.values.count)
        var scales = [Float](repeating: 1, count: w.rows)
        for r in 0..<w.rows {
            let row = w.values[(r * per)..<((r + 1) * per)]
            let a = row.filter(\.isFinite).map(abs).max() ?? 0
            let s: Float = a > 0 ? a / 127 : 1
            scales[r] = s
            for i in 0..<per {
                let v = (w.values[r * per + i] / s).rounded(.toNearestOrEven)
                q[r * per + i] = v.isNaN ? 0 : Int8(max(-127, min(127, v)))
            }
        }
        pattern = w
        values = q
        self.scales = scales
    }

    /// Bytes of values, masks and scales (≈ 0.16 of dense f32: 0.5 + 0.125 bytes per weight).
    public var byteCount: Int { values.count + pattern.metadata.count + scales.count * 4 }

    /// `s · q` at the stored positions.
    public func densified() -> Matrix<Float> {
        let per = pattern.valuesPerRow
        let asFloat = (0..<values.count).map { scales[$0 / max(per, 1)] * Float(values[$0]) }
        let m = Sparse24Matrix(rebuilding: pattern, values: asFloat)
        return m.densified()
    }
}

extension Sparse24Matrix {
    /// The same positions with other values (one per stored slot).
    /// Callers pass exactly one value per slot (a precondition: both callers derive the count).
    init(rebuilding p: Sparse24Matrix, values: [Float]) {
        precondition(values.count == p.values.count, "2:4 matrix needs \(p.values.count) values, got \(values.count)")
        self.rows = p.rows
        self.columns = p.columns
        self.paddedColumns = p.paddedColumns
        self.values = values
        self.metadata = p.metadata
    }
}

extension Sparse24Matrix {
    /// A 2:4 matrix from its stored parts (as a model file holds them), validated: counts match
    /// the shape, every group's mask has exactly two bits set, and padded columns are not stored
    /// with non-zero values.
    /// - Throws: ``CondenseError/shapeMismatch(_:)`` or ``CondenseError/invalidArgument(_:)``
    ///   naming the row and group.
    public init(rows: Int, columns: Int, values: [Float], metadata: [UInt8]) throws {
        guard rows >= 0 else { throw CondenseError.invalidDimension(name: "rows", value: rows) }
        guard columns >= 0 else { throw CondenseError.invalidDimension(name: "columns", value: columns) }
        let padded = try CheckedSize.roundUp(columns, to: 4, of: "2:4 columns")
        let groups = padded / 4, stride = (groups + 1) / 2
        let valueCount = try CheckedSize.product(rows, padded / 2, of: "2:4 values")
        guard values.count == valueCount else {
            throw CondenseError.shapeMismatch("2:4 \(rows)×\(columns) needs \(valueCount) values, got \(values.count)")
        }
        let metaCount = try CheckedSize.product(rows, stride, of: "2:4 metadata bytes")
        guard metadata.count == metaCount else {
            throw CondenseError.shapeMismatch("2:4 \(rows)×\(columns) needs \(metaCount) metadata bytes, got \(metadata.count)")
        }
        for r in 0..<rows {
            for g in 0..<groups {
                let byte = metadata[r * stride + g / 2]
                let mask = g % 2 == 0 ? byte & 0xF : byte >> 4
                guard mask.nonzeroBitCount == 2 else {
                    throw CondenseError.invalidArgument("2:4 row \(r) group \(g): mask \(mask) must have exactly two bits set")
                }
                for slot in 0..<2 {
                    var seen = 0, column = -1
                    for bit in 0..<4 where mask & (1 << bit) != 0 {
                        if seen == slot { column = 4 * g + bit }
                        seen += 1
                    }
                    if column >= columns && values[r * padded / 2 + 2 * g + slot] != 0 {
                        throw CondenseError.invalidArgument("2:4 row \(r) group \(g): a value is stored in padding column \(column)")
                    }
                }
            }
            if groups % 2 == 1 && metadata[r * stride + stride - 1] >> 4 != 0 {
                throw CondenseError.invalidArgument("2:4 row \(r): unused high nibble of the last metadata byte is not zero")
            }
        }
        self.rows = rows
        self.columns = columns
        self.paddedColumns = padded
        self.values = values
        self.metadata = metadata
    }
}

extension Sparse24Int8Weights {
    /// 2:4-int8 weights from stored parts: the positions of `pattern`, `q` per stored slot and
    /// one scale per row.
    /// - Throws: ``CondenseError/shapeMismatch(_:)`` for wrong counts, ``CondenseError/invalidArgument(_:)``
    ///   for a scale that is not finite and > 0.
    public init(pattern: Sparse24Matrix, values: [Int8], scales: [Float]) throws {
        guard values.count == pattern.values.count else {
            throw CondenseError.shapeMismatch("2:4-int8 \(pattern.rows)×\(pattern.columns) needs \(pattern.values.count) values, got \(values.count)")
        }
        guard scales.count == pattern.rows else {
            throw CondenseError.shapeMismatch("2:4-int8 needs \(pattern.rows) scales, got \(scales.count)")
        }
        if let bad = scales.firstIndex(where: { !($0.isFinite && $0 > 0) }) {
            throw CondenseError.invalidArgument("2:4-int8 scale \(scales[bad]) of row \(bad) must be finite and > 0")
        }
        let per = pattern.valuesPerRow
        self.pattern = Sparse24Matrix(rebuilding: pattern, values: (0..<values.count).map { scales[$0 / max(per, 1)] * Float(values[$0]) })
        self.values = values
        self.scales = scales
    }
}
