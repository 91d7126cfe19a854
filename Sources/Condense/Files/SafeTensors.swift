import Foundation

/// A safetensors file (the Hugging Face format): an 8-byte little-endian header length, a JSON
/// header mapping each tensor name to `{dtype, shape, data_offsets}` (plus `__metadata__`
/// strings), then the raw little-endian data.
///
/// Reading validates everything before any tensor is used: the header length against the file,
/// well-formed JSON, known dtypes, offsets inside the data and not overlapping, and sizes equal to
/// dtype × shape. Each failure is a ``CondenseError`` naming the tensor.
///
/// ```swift
/// var file = SafeTensors()
/// file.metadata["format"] = "pt"
/// try file.add("w", dtype: .f32, shape: [2, 2], floats: [1, 2, 3, 4])
/// try file.write(to: "/tmp/m.safetensors")
/// let back = try SafeTensors(contentsOf: "/tmp/m.safetensors")
/// let w: [Float] = try back.floats("w")
/// ```
public struct SafeTensors: Sendable {
    /// An element type as the header names it (`F32`, `F16`, `BF16`, `I8`, `U8`, …).
    public enum DType: String, Sendable, CaseIterable {
        case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64"
        case i8 = "I8", u8 = "U8", i16 = "I16", u16 = "U16", i32 = "I32", u32 = "U32", i64 = "I64", u64 = "U64"
        case bool = "BOOL"

        public var size: Int {
            switch self {
            case .i8, .u8, .bool: return 1
            case .f16, .bf16, .i16, .u16: return 2
            case .f32, .i32, .u32: return 4
            case .f64, .i64, .u64: return 8
            }
        }
    }

    /// One tensor's entry in the header: its element type, shape and byte range in the data.
    public struct Tensor: Sendable {
        public let dtype: DType
        public let shape: [Int]
        /// The raw little-endian bytes.
        public let data: Data
        public var elementCount: Int { shape.reduce(1, *) }
    }

    /// Largest header accepted (the reference implementation's limit).
    public static let maxHeaderBytes = 100_000_000

    public var metadata: [String: String] = [:]
    public private(set) var tensors: [String: Tensor] = [:]
    /// Names in file order (data offset), or insertion order for a new file.
    public private(set) var names: [String] = []

    /// An empty file to add tensors to.
    public init() {}

    /// Reads and validates a file; the data is memory-mapped when the system allows.
    /// - Throws: ``CondenseError`` naming the file: ``CondenseError/unreadableFile(path:reason:)``,
    ///   or ``CondenseError/inFile(path:error:)`` around the validation error.
    public init(contentsOf path: String) throws {
        let data = try FileInput.mapped(path)
        do { try self.init(data: data) } catch let e as CondenseError { throw e.inFile(path) }
    }

    /// Parses and validates bytes in safetensors layout.
    public init(data: Data) throws {
        let d = data.startIndex
        guard data.count >= 8 else { throw CondenseError.malformedFile("file is \(data.count) bytes, shorter than the 8-byte header length") }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(data[d + i]) << (8 * UInt64(i)) }
        guard n <= UInt64(Self.maxHeaderBytes) else { throw CondenseError.malformedFile("header length \(n) exceeds the limit \(Self.maxHeaderBytes)") }
        guard Int(n) <= data.count - 8 else {
            throw CondenseError.malformedFile("header length \(n) runs past the end of the \(data.count)-byte file")
        }
        let headerBytes = data[(d + 8)..<(d + 8 + Int(n))]
        try JSONDuplicateKeys.check(headerBytes)
        guard let obj = try? JSONSerialization.jsonObject(with: headerBytes, options: []), let header = obj as? [String: Any] else {
            throw CondenseError.malformedFile("the header is not a JSON object")
        }
        let base = d + 8 + Int(n)
        let dataSize = data.count - 8 - Int(n)
        var spans: [(begin: Int, end: Int, name: String)] = []
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw CondenseError.malformedFile("__metadata__ is not an object of strings") }
                for (k, v) in m {
                    guard let s = v as? String else { throw CondenseError.malformedFile("__metadata__ value of '\(k)' is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let t = value as? [String: Any] else { throw CondenseError.invalidTensor(name: name, reason: "entry is not an object") }
            guard let ds = t["dtype"] as? String else { throw CondenseError.invalidTensor(name: name, reason: "dtype missing or not a string") }
            guard let dtype = DType(rawValue: ds) else { throw CondenseError.invalidTensor(name: name, reason: "unknown dtype '\(ds)'") }
            guard let shapeAny = t["shape"] as? [Any] else { throw CondenseError.invalidTensor(name: name, reason: "shape missing or not an array") }
            var shape: [Int] = []
            var count = 1
            for s in shapeAny {
                guard let v = Self.integer(s), v >= 0 else { throw CondenseError.invalidTensor(name: name, reason: "shape \(shapeAny) has a non-integer or negative entry") }
                let (c, o) = count.multipliedReportingOverflow(by: v)
                guard !o, c <= Int(Int32.max) * 64 else { throw CondenseError.invalidTensor(name: name, reason: "shape \(shapeAny) is too large") }
                count = c
                shape.append(v)
            }
            guard let off = t["data_offsets"] as? [Any], off.count == 2, let b = Self.integer(off[0]), let e = Self.integer(off[1]) else {
                throw CondenseError.invalidTensor(name: name, reason: "data_offsets missing or not two integers")
            }
            guard b >= 0, b <= e, e <= dataSize else {
                throw CondenseError.invalidTensor(name: name, reason: "data_offsets [\(b), \(e)] outside the \(dataSize) data bytes")
            }
            guard e - b == count * dtype.size else {
                throw CondenseError.invalidTensor(name: name, reason: "\(e - b) bytes for \(ds) \(shape), which needs \(count * dtype.size)")
            }
            spans.append((b, e, name))
            tensors[name] = Tensor(dtype: dtype, shape: shape, data: data[(base + b)..<(base + e)])
        }
        if let (a, b) = CheckedSize.firstOverlap(spans) {
            throw CondenseError.invalidTensor(name: a, reason: "data overlaps tensor '\(b)'")
        }
        names = spans.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }.map(\.name)
    }

    private static func integer(_ v: Any) -> Int? {
        guard let n = v as? NSNumber else { return nil }
        let d = n.doubleValue
        guard d.isFinite, d == d.rounded(), abs(d) < 9e15 else { return nil }
        return Int(d)
    }

    /// Adds (or replaces) a tensor from raw little-endian bytes.
    public mutating func add(_ name: String, dtype: DType, shape: [Int], bytes: Data) throws {
        guard name != "__metadata__", !name.isEmpty else { throw CondenseError.invalidTensor(name: name, reason: "reserved or empty name") }
        guard shape.allSatisfy({ $0 >= 0 }), bytes.count == shape.reduce(1, *) * dtype.size else {
            throw CondenseError.invalidTensor(name: name, reason: "\(bytes.count) bytes for \(dtype.rawValue) \(shape)")
        }
        if tensors[name] == nil { names.append(name) }
        tensors[name] = Tensor(dtype: dtype, shape: shape, data: bytes)
    }

    /// Adds (or replaces) an F32 tensor.
    /// - Throws: ``CondenseError`` for a reserved or empty name, or a shape that does not match the count.
    public mutating func add(_ name: String, shape: [Int], floats: [Float]) throws {
        try add(name, dtype: .f32, shape: shape, bytes: floats.withUnsafeBytes { Data($0) })
    }
    /// Adds (or replaces) an I8 tensor (same checks).
    public mutating func add(_ name: String, shape: [Int], int8: [Int8]) throws {
        try add(name, dtype: .i8, shape: shape, bytes: int8.withUnsafeBytes { Data($0) })
    }
    /// Adds (or replaces) a U8 tensor (same checks).
    public mutating func add(_ name: String, shape: [Int], uint8: [UInt8]) throws {
        try add(name, dtype: .u8, shape: shape, bytes: Data(uint8))
    }
    /// Adds (or replaces) a U32 tensor (same checks).
    public mutating func add(_ name: String, shape: [Int], uint32: [UInt32]) throws {
        try add(name, dtype: .u32, shape: shape, bytes: uint32.withUnsafeBytes { Data($0) })
    }
    /// Adds (or replaces) a U16 tensor (same checks; bf16 and f16 payloads are stored this way).
    public mutating func add(_ name: String, shape: [Int], uint16: [UInt16]) throws {
        try add(name, dtype: .u16, shape: shape, bytes: uint16.withUnsafeBytes { Data($0) })
    }

    /// The tensor called `name`.
    public func tensor(_ name: String) throws -> Tensor {
        guard let t = tensors[name] else { throw CondenseError.missingTensor(name) }
        return t
    }

    /// A tensor's elements, checked against the expected dtype (and shape when given).
    public func elements<T: BitwiseCopyable>(_ name: String, as: T.Type, dtype: DType, shape: [Int]? = nil) throws -> [T] {
        let t = try tensor(name)
        guard t.dtype == dtype else { throw CondenseError.invalidTensor(name: name, reason: "dtype \(t.dtype.rawValue), expected \(dtype.rawValue)") }
        if let shape, shape != t.shape { throw CondenseError.invalidTensor(name: name, reason: "shape \(t.shape), expected \(shape)") }
        return [T](unsafeUninitializedCapacity: t.elementCount) { buf, n in
            t.data.withUnsafeBytes { raw in _ = memcpy(buf.baseAddress!, raw.baseAddress!, raw.count) }
            n = t.elementCount
        }
    }

    /// An F32 tensor's elements, checked against `shape` when given.
    /// - Throws: ``CondenseError`` naming the tensor for a missing name, another dtype or shape.
    public func floats(_ name: String, shape: [Int]? = nil) throws -> [Float] { try elements(name, as: Float.self, dtype: .f32, shape: shape) }

    /// A floating-point tensor as f32: F32 as stored, F16 and BF16 widened exactly. Checkpoints
    /// saved in half precision store every tensor that way; Condense's own files use ``floats(_:shape:)``.
    ///
    /// ```swift
    /// let bias = try checkpoint.widenedFloats("encoder.layer.0.output.dense.bias", shape: [384])
    /// ```
    public func widenedFloats(_ name: String, shape: [Int]? = nil) throws -> [Float] {
        let t = try tensor(name)
        guard let kind = HalfPrecisionMatrix.Kind(dtype: t.dtype) else {
            return try floats(name, shape: shape)
        }
        return HalfPrecisionMatrix.widened(try elements(name, as: UInt16.self, dtype: t.dtype, shape: shape), kind: kind)
    }

    /// The file's bytes: tensors in `names` order, 8-byte aligned, keys sorted in the header.
    public func serialized() throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for name in names {
            let t = tensors[name]!
            header[name] = ["dtype": t.dtype.rawValue, "shape": t.shape, "data_offsets": [offset, offset + t.data.count]]
            offset += t.data.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (8 + json.count) % 8 != 0 { json.append(0x20) }  // pad with spaces: data starts 8-aligned
        var out = Data()
        var n = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(json)
        for name in names { out.append(tensors[name]!.data) }
        return out
    }

    /// Writes the file atomically; returns its size in bytes.
    @discardableResult
    public func write(to path: String) throws -> Int {
        let d = try serialized()
        try FileOutput.write(d, to: path)
        return d.count
    }
}

