/// A 2:4 semi-structured sparse matrix: in every group of 4 consecutive columns at most 2
/// elements are non-zero, stored as 2 values plus a 4-bit position mask per group.
///
/// Layout (see docs/formats.md): K is padded with zeros to `paddedColumns`, a multiple of 4.
/// Row r keeps `paddedColumns / 2` values, two per group in ascending column order, and
/// `metadataStride` bytes of masks: group g's mask is the low nibble of byte `g / 2` for even g
/// and the high nibble for odd g; bit i set means column `4g + i` is stored. Every mask has
/// exactly two bits set (a group with fewer non-zeros stores explicit zeros), so value slots
/// never shift and the mask of 4 groups is a 16-bit lane mask for AVX-512 expand.
///
/// ```swift
/// let w = try Matrix<Float>(rows: 1, columns: 4, elements: [0, 3, 0, -1])
/// let s = try Sparse24Matrix(dense: w)
/// print(s.values, s.metadata)   // [3.0, -1.0] [10]  (0b1010: columns 1 and 3)
/// ```
public struct Sparse24Matrix: Sendable, Equatable {
    public let rows: Int
    /// Logical column count K.
    public let columns: Int
    /// K rounded up to a multiple of 4.
    public let paddedColumns: Int
    /// `rows × paddedColumns / 2` values.
    public let values: [Float]
    /// `rows × metadataStride` bytes of 4-bit masks.
    public let metadata: [UInt8]

    /// Values per row.
    public var valuesPerRow: Int { paddedColumns / 2 }
    /// Metadata bytes per row: one per two groups.
    public var metadataStride: Int { (paddedColumns / 4 + 1) / 2 }

    /// Compresses a matrix that is already 2:4 sparse.
    /// - Throws: ``CondenseError/invalidArgument(_:)`` naming the first row and group with more than
    ///   two non-zeros (prune it first with `Pruning.semiStructured`).
    public init(dense w: Matrix<Float>) throws {
        let (rows, k, paddedColumns) = (w.rows, w.columns, (w.columns + 3) / 4 * 4)
        self.rows = rows
        self.columns = k
        self.paddedColumns = paddedColumns
        let groups = paddedColumns / 4, stride = (groups + 1) / 2
        var vals = [Float](repeating: 0, count: rows * paddedColumns / 2)
        var meta = [UInt8](repeating: 0, count: rows * stride)
        try w.withUnsafeBufferPointer { p in
            for r in 0..<rows {
                for g in 0..<groups {
                    var mask: UInt8 = 0
                    var n = 0
                    for i in 0..<4 where 4 * g + i < k && p[r * k + 4 * g + i] != 0 {
                        n += 1
                        mask |= 1 << i
                    }
                    guard n <= 2 else {
                        throw CondenseError.invalidArgument(
                            "matrix is not 2:4 sparse: row \(r), group \(g) (columns \(4 * g)…\(4 * g + 3)) has \(n) non-zeros")
                    }
                    // Fill up to exactly two positions with the lowest free ones (stored as zeros).
                    var i = 0
                    while mask.nonzeroBitCount < 2 {
                        if mask & (1 << i) == 0 { mask |= 1 << i }
                        i += 1
                    }
                    var slot = 0
                    for i in 0..<4 where mask & (1 << i) != 0 {
                        vals[r * paddedColumns / 2 + 2 * g + slot] = 4 * g + i < k ? p[r * k + 4 * g + i] : 0
                        slot += 1
                    }
                    meta[r * stride + g / 2] |= g % 2 == 0 ? mask : mask << 4
                }
            }
        }
        values = vals
        metadata = meta
    }

    /// Whether every group of 4 (K zero-padded) has at most two non-zeros.
    public static func isValid(_ w: Matrix<Float>) -> Bool { (try? Sparse24Matrix(dense: w)) != nil }

    /// Bytes of values and metadata.
    public var byteCount: Int { values.count * 4 + metadata.count }

    /// Stored values that are not zero.
    public var nonZeroCount: Int { values.reduce(0) { $0 + ($1 != 0 ? 1 : 0) } }

    /// The dense matrix.
    public func densified() -> Matrix<Float> {
        var m = Matrix<Float>(validatedRows: rows, columns: columns)
        let (k, half, stride) = (columns, paddedColumns / 2, metadataStride)
        m.withUnsafeMutableBufferPointer { p in
            for r in 0..<rows {
                for g in 0..<paddedColumns / 4 {
                    let byte = metadata[r * stride + g / 2]
                    let mask = g % 2 == 0 ? byte & 0xF : byte >> 4
                    var slot = 0
                    for i in 0..<4 where mask & (1 << i) != 0 {
                        if 4 * g + i < k { p[r * k + 4 * g + i] = values[r * half + 2 * g + slot] }
                        slot += 1
                    }
                }
            }
        }
        return m
    }
}
