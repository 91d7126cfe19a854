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
        let m = try! Sparse24Matrix(rebuilding: pattern, values: asFloat)
        return m.densified()
    }
}

extension Sparse24Matrix {
    /// The same positions with other values (one per stored slot).
    init(rebuilding p: Sparse24Matrix, values: [Float]) throws {
        guard values.count == p.values.count else {
            throw CondenseError.shapeMismatch("2:4 matrix needs \(p.values.count) values, got \(values.count)")
        }
        self.rows = p.rows
        self.columns = p.columns
        self.paddedColumns = p.paddedColumns
        self.values = values
        self.metadata = p.metadata
    }
}
