import Foundation

/// Writes GGUF files (version 3): for tests and tools that make small models of any
/// architecture and weight type. Metadata keeps insertion order; tensor data is aligned.
///
/// ```swift
/// var w = GGUFWriter()
/// w.add("general.architecture", .string("llama"))
/// try w.addTensor("output_norm.weight", dims: [8], floats: [Float](repeating: 1, count: 8))
/// try w.write(to: "/tmp/tiny.gguf")
/// ```
public struct GGUFWriter: Sendable {
    public private(set) var metadata: [(key: String, value: GGUFFile.Value)] = []
    public private(set) var tensors: [(name: String, dims: [Int], type: GGUFFile.TensorType, bytes: Data)] = []
    /// Data alignment; written as `general.alignment` when it is not the default 32.
    public var alignment = 32
    /// The version field written (2 or 3; the layout is the same).
    public var version: UInt32 = 3

    /// An empty file: add metadata and tensors, then write it.
    public init() {}

    /// Adds (or replaces) a metadata value.
    public mutating func add(_ key: String, _ value: GGUFFile.Value) {
        if let i = metadata.firstIndex(where: { $0.key == key }) { metadata[i].value = value } else { metadata.append((key, value)) }
    }

    /// Adds a tensor from its raw bytes (whole blocks of `type`).
    /// - Throws: ``CondenseError/invalidTensor(name:reason:)`` when the bytes do not match the shape.
    public mutating func addTensor(_ name: String, dims: [Int], type: GGUFFile.TensorType, bytes: Data) throws {
        guard !dims.isEmpty, dims.count <= 4, dims.allSatisfy({ $0 >= 1 }), dims[0] % type.blockSize == 0 else {
            throw CondenseError.invalidTensor(name: name, reason: "shape \(dims) for \(type)")
        }
        var count = 1
        for d in dims { count = try CheckedSize.product(count, d, of: name) }
        let need = try CheckedSize.product(count / type.blockSize, type.blockBytes, of: name)
        guard bytes.count == need else { throw CondenseError.invalidTensor(name: name, reason: "\(bytes.count) bytes, \(type) \(dims) needs \(need)") }
        tensors.append((name, dims, type, bytes))
    }

    /// Adds an F32 tensor.
    public mutating func addTensor(_ name: String, dims: [Int], floats: [Float]) throws {
        try addTensor(name, dims: dims, type: .f32, bytes: floats.withUnsafeBytes { Data($0) })
    }

    /// The file's bytes.
    public func serialized() -> Data {
        var out = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); out.append(contentsOf: Array(s.utf8)) }
        func payload(_ v: GGUFFile.Value) {
            switch v {
            case let .uint8(x): out.append(x)
            case let .int8(x): out.append(UInt8(bitPattern: x))
            case let .uint16(x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case let .int16(x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case let .uint32(x): u32(x)
            case let .int32(x): u32(UInt32(bitPattern: x))
            case let .uint64(x): u64(x)
            case let .int64(x): u64(UInt64(bitPattern: x))
            case let .float32(x): u32(x.bitPattern)
            case let .float64(x): u64(x.bitPattern)
            case let .bool(x): out.append(x ? 1 : 0)
            case let .string(s): str(s)
            case let .array(t, xs):
                u32(t.rawValue)
                u64(UInt64(xs.count))
                for x in xs { payload(x) }
            }
        }
        var meta = metadata
        if alignment != 32, !meta.contains(where: { $0.key == "general.alignment" }) { meta.append(("general.alignment", .uint32(UInt32(alignment)))) }
        u32(0x4655_4747)
        u32(version)
        u64(UInt64(tensors.count))
        u64(UInt64(meta.count))
        for (k, v) in meta {
            str(k)
            u32(Self.type(of: v).rawValue)
            payload(v)
        }
        var offset = 0
        var offsets: [Int] = []
        for t in tensors {
            offsets.append(offset)
            offset = (offset + t.bytes.count + alignment - 1) / alignment * alignment
        }
        for (t, off) in zip(tensors, offsets) {
            str(t.name)
            u32(UInt32(t.dims.count))
            for d in t.dims { u64(UInt64(d)) }
            u32(t.type.rawValue)
            u64(UInt64(off))
        }
        while out.count % alignment != 0 { out.append(0) }
        let start = out.count
        for (t, off) in zip(tensors, offsets) {
            while out.count < start + off { out.append(0) }
            out.append(t.bytes)
        }
        return out
    }

    /// Writes the file atomically.
    public func write(to path: String) throws { try FileOutput.write(serialized(), to: path) }

    static func type(of v: GGUFFile.Value) -> GGUFFile.ValueType {
        switch v {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .uint64: return .uint64
        case .int64: return .int64
        case .float32: return .float32
        case .float64: return .float64
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        }
    }
}
