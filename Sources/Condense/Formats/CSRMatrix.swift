/// A sparse matrix in compressed sparse row form: for row r, the non-zeros are
/// `values[rowOffsets[r] ..< rowOffsets[r+1]]` at columns `columnIndices` (strictly increasing).
///
/// Column indices are `UInt16` when the matrix has at most 65 536 columns (half the index bytes
/// of a GEMV's memory traffic), `UInt32` otherwise.
///
/// ```swift
/// let w = try Matrix<Float>(rows: 2, columns: 3, elements: [0, 5, 0, 7, 0, 9])
/// let csr = CSRMatrix(dense: w)
/// print(csr.nonZeroCount, csr.rowOffsets)   // 3 [0, 1, 3]
/// ```
public struct CSRMatrix: Sendable, Equatable {
    /// Column indices, in the narrowest type that fits the column count.
    public enum ColumnIndices: Sendable, Equatable {
        case u16([UInt16])
        case u32([UInt32])

        public var count: Int {
            switch self {
            case let .u16(a): return a.count
            case let .u32(a): return a.count
            }
        }

        /// Index `i` as an Int.
        public subscript(i: Int) -> Int {
            switch self {
            case let .u16(a): return Int(a[i])
            case let .u32(a): return Int(a[i])
            }
        }

        /// Bytes per index: 2 or 4.
        public var width: Int {
            if case .u16 = self { return 2 }
            return 4
        }
    }

    public let rows: Int
    public let columns: Int
    /// `rows + 1` offsets into `values`, starting at 0.
    public let rowOffsets: [UInt32]
    public let columnIndices: ColumnIndices
    public let values: [Float]

    /// Whether `columns` calls for 16-bit indices.
    public static func usesUInt16(columns: Int) -> Bool { columns <= 65_536 }

    /// The non-zeros of a dense matrix (every element `!= 0`, so NaN is kept).
    public init(dense w: Matrix<Float>) {
        let (rows, columns) = (w.rows, w.columns)
        self.rows = rows
        self.columns = columns
        var offsets: [UInt32] = [0]
        offsets.reserveCapacity(rows + 1)
        var cols: [UInt32] = []
        var vals: [Float] = []
        w.withUnsafeBufferPointer { p in
            for r in 0..<rows {
                for c in 0..<columns where p[r * columns + c] != 0 {
                    cols.append(UInt32(c))
                    vals.append(p[r * columns + c])
                }
                offsets.append(UInt32(vals.count))
            }
        }
        rowOffsets = offsets
        values = vals
        columnIndices = CSRMatrix.usesUInt16(columns: columns) ? .u16(cols.map { UInt16($0) }) : .u32(cols)
    }

    /// A CSR matrix from its arrays, validated.
    /// - Throws: ``CondenseError`` naming the first problem: offsets not starting at 0, not
    ///   non-decreasing or not ending at `values.count`; an index out of range or not strictly
    ///   increasing within its row; an index width that does not match the column count.
    public init(rows: Int, columns: Int, rowOffsets: [UInt32], columnIndices: ColumnIndices, values: [Float]) throws {
        guard rows >= 0 else { throw CondenseError.invalidDimension(name: "rows", value: rows) }
        guard columns >= 0 else { throw CondenseError.invalidDimension(name: "columns", value: columns) }
        guard rowOffsets.count == (try CheckedSize.sum(rows, 1, of: "CSR row offsets")) else {
            throw CondenseError.shapeMismatch("CSR needs \(rows + 1) row offsets for \(rows) rows, got \(rowOffsets.count)")
        }
        guard columnIndices.count == values.count else {
            throw CondenseError.shapeMismatch("CSR has \(values.count) values but \(columnIndices.count) column indices")
        }
        guard rowOffsets.first == 0, Int(rowOffsets.last!) == values.count else {
            throw CondenseError.invalidArgument(
                "CSR row offsets must run from 0 to \(values.count), got \(rowOffsets.first!)…\(rowOffsets.last!)")
        }
        if case .u16 = columnIndices, !CSRMatrix.usesUInt16(columns: columns) {
            throw CondenseError.invalidArgument("UInt16 column indices cannot address \(columns) columns")
        }
        // All offsets first: a row's range must be inside the arrays before any index is read.
        for r in 0..<rows where rowOffsets[r] > rowOffsets[r + 1] {
            throw CondenseError.invalidArgument(
                "CSR row offsets decrease at row \(r): \(rowOffsets[r]) then \(rowOffsets[r + 1])")
        }
        for r in 0..<rows {
            let (a, b) = (Int(rowOffsets[r]), Int(rowOffsets[r + 1]))
            var previous = -1
            for i in a..<b {
                let c = columnIndices[i]
                guard c < columns else {
                    throw CondenseError.invalidArgument("CSR row \(r) has column index \(c), but there are \(columns) columns")
                }
                guard c > previous else {
                    throw CondenseError.invalidArgument("CSR row \(r): column indices not strictly increasing (\(previous) then \(c))")
                }
                previous = c
            }
        }
        self.rows = rows
        self.columns = columns
        self.rowOffsets = rowOffsets
        self.columnIndices = columnIndices
        self.values = values
    }

    /// Stored non-zeros.
    public var nonZeroCount: Int { values.count }

    /// `1 − nonZeros / (rows · columns)`.
    public var sparsity: Double {
        rows * columns == 0 ? 0 : 1 - Double(nonZeroCount) / Double(rows * columns)
    }

    /// Bytes of values, indices and offsets.
    public var byteCount: Int { values.count * 4 + columnIndices.count * columnIndices.width + rowOffsets.count * 4 }

    /// The dense matrix with zeros where nothing is stored.
    public func densified() -> Matrix<Float> {
        var m = Matrix<Float>(validatedRows: rows, columns: columns)
        m.withUnsafeMutableBufferPointer { p in
            for r in 0..<rows {
                for i in Int(rowOffsets[r])..<Int(rowOffsets[r + 1]) { p[r * columns + columnIndices[i]] = values[i] }
            }
        }
        return m
    }
}
