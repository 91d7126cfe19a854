#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CCondenseKernels

/// An owned, 64-byte aligned, row-major matrix with value semantics (copy on write).
///
/// Aligned storage lets the C kernels use aligned vector loads and keeps rows from straddling
/// cache lines needlessly; value semantics keep it safe to hand across threads.
///
/// ```swift
/// var x = try Matrix<Float>(rows: 2, columns: 3, elements: [1, 2, 3, 4, 5, 6])
/// x[1, 2] = 7
/// print(x[1, 2], x.shape)   // 7.0 (2, 3)
/// ```
public struct Matrix<Element: BitwiseCopyable & Sendable>: @unchecked Sendable {
    /// Number of rows (the batch dimension for activations, output features for weights).
    public let rows: Int
    /// Number of columns; rows are stored contiguously, `columns` elements apart.
    public let columns: Int
    @usableFromInline var storage: Storage

    /// A zero-filled matrix.
    /// - Parameters:
    ///   - rows: Row count, `>= 0`.
    ///   - columns: Column count, `>= 0`.
    /// - Throws: ``CondenseError/invalidDimension(name:value:)`` for a negative size.
    public init(rows: Int, columns: Int) throws {
        guard rows >= 0 else { throw CondenseError.invalidDimension(name: "rows", value: rows) }
        guard columns >= 0 else { throw CondenseError.invalidDimension(name: "columns", value: columns) }
        let count = try CheckedSize.product(rows, columns, of: "matrix elements")
        let bytes = try CheckedSize.product(count, MemoryLayout<Element>.stride, of: "matrix bytes")
        guard let storage = Storage(count: count) else { throw CondenseError.outOfMemory(bytes: bytes) }
        self.rows = rows
        self.columns = columns
        self.storage = storage
    }

    /// A matrix from row-major elements.
    /// - Throws: ``CondenseError/shapeMismatch(_:)`` when `elements.count != rows * columns`.
    public init(rows: Int, columns: Int, elements: [Element]) throws {
        // Checked before allocating: a huge shape with few elements must not allocate.
        let count = try CheckedSize.product(rows, columns, of: "matrix elements")
        guard elements.count == count else {
            throw CondenseError.shapeMismatch(
                "Matrix(rows: \(rows), columns: \(columns)) needs \(count) elements, got \(elements.count)")
        }
        try self.init(rows: rows, columns: columns)
        elements.withUnsafeBufferPointer { src in
            guard let base = src.baseAddress else { return }
            storage.pointer.update(from: base, count: src.count)
        }
    }

    /// A zero-filled matrix whose size the caller has already validated (a negative or
    /// overflowing size is a programmer error: a precondition, not a thrown error).
    public init(validatedRows rows: Int, columns: Int) {
        precondition(rows >= 0 && columns >= 0 && !rows.multipliedReportingOverflow(by: columns).overflow,
                     "invalid matrix size \(rows)×\(columns)")
        self.rows = rows
        self.columns = columns
        guard let storage = Storage(count: rows * columns) else { fatalError("out of memory for a \(rows)×\(columns) matrix") }
        self.storage = storage
    }

    /// A matrix from row-major elements whose count the caller has already validated
    /// (precondition: `elements.count == rows · columns`).
    public init(validatedRows rows: Int, columns: Int, elements: [Element]) {
        self.init(validatedRows: rows, columns: columns)
        precondition(elements.count == rows * columns, "\(elements.count) elements for \(rows)×\(columns)")
        elements.withUnsafeBufferPointer { src in
            guard let base = src.baseAddress else { return }
            storage.pointer.update(from: base, count: src.count)
        }
    }

    /// A matrix whose element at (r, c) is `body(r, c)`, of a size the caller has validated.
    public init(validatedRows rows: Int, columns: Int, _ body: (Int, Int) -> Element) {
        self.init(validatedRows: rows, columns: columns)
        let p = storage.pointer
        for r in 0..<rows { for c in 0..<columns { p[r * columns + c] = body(r, c) } }
    }

    /// A matrix whose element at (r, c) is `body(r, c)`.
    public init(rows: Int, columns: Int, _ body: (Int, Int) throws -> Element) throws {
        try self.init(rows: rows, columns: columns)
        let p = storage.pointer
        for r in 0..<rows { for c in 0..<columns { p[r * columns + c] = try body(r, c) } }
    }

    /// `(rows, columns)`.
    public var shape: (rows: Int, columns: Int) { (rows, columns) }
    /// `rows * columns`.
    public var count: Int { rows * columns }

    /// Element at row `r`, column `c` (bounds-checked).
    public subscript(r: Int, c: Int) -> Element {
        get {
            precondition(r >= 0 && r < rows && c >= 0 && c < columns, "index (\(r), \(c)) outside \(rows)×\(columns)")
            return storage.pointer[r * columns + c]
        }
        set {
            precondition(r >= 0 && r < rows && c >= 0 && c < columns, "index (\(r), \(c)) outside \(rows)×\(columns)")
            makeUnique()
            storage.pointer[r * columns + c] = newValue
        }
    }

    /// The elements in row-major order.
    public var elements: [Element] { Array(UnsafeBufferPointer(start: storage.pointer, count: count)) }

    /// One row as an array.
    public func row(_ r: Int) -> [Element] {
        precondition(r >= 0 && r < rows, "row \(r) outside 0..<\(rows)")
        return Array(UnsafeBufferPointer(start: storage.pointer + r * columns, count: columns))
    }

    /// Read access to the contiguous row-major elements.
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Element>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage.pointer, count: count))
    }

    /// Write access to the contiguous row-major elements (copies first if the storage is shared).
    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (UnsafeMutableBufferPointer<Element>) throws -> R
    ) rethrows -> R {
        makeUnique()
        return try body(UnsafeMutableBufferPointer(start: storage.pointer, count: count))
    }

    @usableFromInline mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
    }

    /// Reference-counted aligned buffer behind a matrix.
    @usableFromInline final class Storage {
        let pointer: UnsafeMutablePointer<Element>
        let count: Int

        /// nil when the memory cannot be had (an allocation that would trap is a thrown error).
        init?(count: Int) {
            self.count = count
            let (b, o) = MemoryLayout<Element>.stride.multipliedReportingOverflow(by: count)
            guard !o else { return nil }
            let bytes = max(b, 1)
            var raw: UnsafeMutableRawPointer?
            guard posix_memalign(&raw, 64, bytes) == 0, let raw else { return nil }
            raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            pointer = raw.bindMemory(to: Element.self, capacity: count)
        }

        func copy() -> Storage {
            guard let s = Storage(count: count) else { fatalError("out of memory copying a matrix of \(count) elements") }
            s.pointer.update(from: pointer, count: count)
            return s
        }

        deinit { free(UnsafeMutableRawPointer(pointer)) }
    }
}

extension Matrix: Equatable where Element: Equatable {
    public static func == (a: Matrix, b: Matrix) -> Bool {
        a.rows == b.rows && a.columns == b.columns && a.withUnsafeBufferPointer { x in
            b.withUnsafeBufferPointer { y in x.elementsEqual(y) }
        }
    }
}

extension Matrix: CustomStringConvertible {
    public var description: String { "Matrix<\(Element.self)>(\(rows)×\(columns))" }
}
