import Foundation

/// A GGUF file (llama.cpp's model format, versions 2 and 3): a header, typed metadata, tensor
/// descriptions and the tensor data at an aligned offset.
///
/// Reading validates everything before any tensor is used: every count and length against the
/// bytes present (with overflow-checked arithmetic), known metadata and tensor types, UTF-8
/// strings, duplicate keys and tensor names, `general.alignment`, each tensor's shape against its
/// block size and its data inside the file, aligned and not overlapping another. Each failure is a
/// ``CondenseError`` naming the file and the key or tensor. The data is memory-mapped.
///
/// ```swift
/// let gguf = try GGUFFile(contentsOf: "SmolLM2-135M-Instruct.Q4_1.gguf")
/// print(gguf.metadata["general.architecture"]?.string ?? "?")   // llama
/// let norm: [Float] = try gguf.dequantized("output_norm.weight")
/// ```
public struct GGUFFile: Sendable {
    /// The metadata value types of the format.
    public enum ValueType: UInt32, Sendable {
        case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
        case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

        /// Bytes of a scalar value (strings and arrays: their smallest encoding).
        var minimumSize: Int {
            switch self {
            case .uint8, .int8, .bool: return 1
            case .uint16, .int16: return 2
            case .uint32, .int32, .float32: return 4
            case .uint64, .int64, .float64, .string: return 8
            case .array: return 12
            }
        }
    }

    /// A metadata value.
    public indirect enum Value: Sendable, Equatable {
        case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
        case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
        /// An array: its element type and elements (arrays of arrays are allowed).
        case array(ValueType, [Value])

        /// The value as an integer, when it is one (of any width) and fits.
        public var int: Int? {
            switch self {
            case let .uint8(v): return Int(v)
            case let .int8(v): return Int(v)
            case let .uint16(v): return Int(v)
            case let .int16(v): return Int(v)
            case let .uint32(v): return Int(v)
            case let .int32(v): return Int(v)
            case let .uint64(v): return Int(exactly: v)
            case let .int64(v): return Int(v)
            default: return nil
            }
        }

        /// The value as a float, when it is a number.
        public var double: Double? {
            switch self {
            case let .float32(v): return Double(v)
            case let .float64(v): return v
            default: return int.map(Double.init)
            }
        }

        public var string: String? { if case let .string(s) = self { return s }; return nil }
        public var bool: Bool? { if case let .bool(b) = self { return b }; return nil }
        /// The elements of an array value.
        public var array: [Value]? { if case let .array(_, a) = self { return a }; return nil }
    }

    /// ggml tensor types, with the block layout of each.
    public enum TensorType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
        case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
        case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
        case iq4_nl = 20, iq4_xs = 23
        case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, bf16 = 30, mxfp4 = 39

        /// Elements per block.
        public var blockSize: Int {
            switch self {
            case .f32, .f16, .bf16, .i8, .i16, .i32, .i64, .f64: return 1
            case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .iq4_nl, .mxfp4: return 32
            case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K, .iq4_xs: return 256
            }
        }

        /// Bytes per block.
        public var blockBytes: Int {
            switch self {
            case .f32, .i32: return 4
            case .f16, .bf16, .i16: return 2
            case .i8: return 1
            case .i64, .f64: return 8
            case .q4_0: return 18
            case .q4_1: return 20
            case .q5_0: return 22
            case .q5_1: return 24
            case .q8_0: return 34
            case .q8_1: return 36
            case .q2_K: return 84
            case .q3_K: return 110
            case .q4_K: return 144
            case .q5_K: return 176
            case .q6_K: return 210
            case .q8_K: return 292
            case .iq4_nl: return 18
            case .iq4_xs: return 136
            case .mxfp4: return 17
            }
        }

        public var description: String {
            switch self {
            case .f32: return "F32"
            case .f16: return "F16"
            case .bf16: return "BF16"
            case .q4_0: return "Q4_0"
            case .q4_1: return "Q4_1"
            case .q5_0: return "Q5_0"
            case .q5_1: return "Q5_1"
            case .q8_0: return "Q8_0"
            case .q8_1: return "Q8_1"
            case .q2_K: return "Q2_K"
            case .q3_K: return "Q3_K"
            case .q4_K: return "Q4_K"
            case .q5_K: return "Q5_K"
            case .q6_K: return "Q6_K"
            case .q8_K: return "Q8_K"
            case .iq4_nl: return "IQ4_NL"
            case .iq4_xs: return "IQ4_XS"
            case .mxfp4: return "MXFP4"
            case .i8: return "I8"
            case .i16: return "I16"
            case .i32: return "I32"
            case .i64: return "I64"
            case .f64: return "F64"
            }
        }
    }

    /// One tensor: its name, shape (ggml order: `dims[0]` is the row length), type and bytes.
    public struct Tensor: Sendable {
        public let name: String
        /// ggml order: `dims[0]` elements per row, then rows, …
        public let dims: [Int]
        public let type: TensorType
        /// Offset in the data section.
        public let offset: Int
        /// The tensor's bytes (a slice of the mapped file).
        public let data: Data
        public var elementCount: Int { dims.reduce(1, *) }
        /// Rows: the product of every dimension after the first.
        public var rows: Int { dims.dropFirst().reduce(1, *) }

        /// A tensor held elsewhere (e.g. ggml blocks kept in a safetensors file); the caller
        /// checks that `data` holds the bytes `dims` and `type` need.
        public init(name: String, dims: [Int], type: TensorType, offset: Int = 0, data: Data) {
            (self.name, self.dims, self.type, self.offset, self.data) = (name, dims, type, offset, data)
        }
    }

    /// Largest count of metadata entries, tensors or array elements accepted before the bytes
    /// present bound them further.
    public static let maxCount = 1 << 31
    /// Deepest nesting of arrays accepted.
    public static let maxArrayDepth = 4

    public let version: Int
    /// Metadata by key; `keys` keeps the file order.
    public let metadata: [String: Value]
    public let keys: [String]
    /// Tensors in file order.
    public let tensors: [Tensor]
    public let alignment: Int
    private let index: [String: Int]

    /// Reads and validates a file; the data is memory-mapped.
    /// - Throws: ``CondenseError/unreadableFile(path:reason:)``, or
    ///   ``CondenseError/inFile(path:error:)`` around the validation error.
    public init(contentsOf path: String) throws {
        let data = try FileInput.mapped(path)
        do { try self.init(data: data) } catch let e as CondenseError { throw e.inFile(path) }
    }

    /// Parses and validates bytes in GGUF layout.
    public init(data: Data) throws {
        var r = Reader(data: data)
        guard data.count >= 4, try r.u32() == 0x4655_4747 else {
            throw CondenseError.malformedFile("not a GGUF file (the magic is not 'GGUF')")
        }
        let version = Int(try r.u32())
        guard version == 2 || version == 3 else {
            throw CondenseError.malformedFile("GGUF version \(version) is not supported (2 and 3 are)")
        }
        let tensorCount = try r.count(minimumEach: 8 + 4 + 4 + 8, what: "tensor count")
        let kvCount = try r.count(minimumEach: 8 + 4, what: "metadata count")
        var metadata: [String: Value] = [:]
        var keys: [String] = []
        for _ in 0..<kvCount {
            let key = try r.string(what: "metadata key")
            guard metadata[key] == nil else { throw CondenseError.malformedFile("duplicate metadata key '\(key)'") }
            let raw = try r.u32()
            guard let type = ValueType(rawValue: raw) else {
                throw CondenseError.invalidModel("metadata '\(key)': unknown value type \(raw)")
            }
            do { metadata[key] = try r.value(type, depth: 0) } catch let CondenseError.malformedFile(why) {
                throw CondenseError.malformedFile("metadata '\(key)': \(why)")
            }
            keys.append(key)
        }
        var alignment = 32
        if let a = metadata["general.alignment"] {
            guard case let .uint32(v) = a, v > 0, v & (v - 1) == 0 else {
                throw CondenseError.invalidModel("general.alignment must be a power of two as uint32, got \(a)")
            }
            alignment = Int(v)
        }
        var infos: [(name: String, dims: [Int], type: TensorType, offset: Int, bytes: Int)] = []
        var index: [String: Int] = [:]
        for _ in 0..<tensorCount {
            let name = try r.string(what: "tensor name")
            guard index[name] == nil else { throw CondenseError.malformedFile("duplicate tensor name '\(name)'") }
            let nDims = Int(try r.u32())
            guard (1...4).contains(nDims) else {
                throw CondenseError.invalidTensor(name: name, reason: "\(nDims) dimensions (1 to 4 allowed)")
            }
            var dims: [Int] = []
            for _ in 0..<nDims {
                let d = try r.u64()
                guard d >= 1, d <= UInt64(Int32.max) * 64 else { throw CondenseError.invalidTensor(name: name, reason: "dimension \(d)") }
                dims.append(Int(d))
            }
            let rawType = try r.u32()
            guard let type = TensorType(rawValue: rawType) else {
                throw CondenseError.invalidTensor(name: name, reason: "type \(rawType) is not one this reader knows")
            }
            let offset = try r.u64()
            var count = 1
            for d in dims { count = try CheckedSize.product(count, d, of: "tensor '\(name)' elements") }
            guard count < Int.max / 8 else { throw CondenseError.invalidTensor(name: name, reason: "shape \(dims) is too large") }
            guard dims[0] % type.blockSize == 0 else {
                throw CondenseError.invalidTensor(name: name, reason: "rows of \(dims[0]) are not whole \(type) blocks of \(type.blockSize)")
            }
            let bytes = try CheckedSize.product(count / type.blockSize, type.blockBytes, of: "tensor '\(name)' bytes")
            guard offset <= UInt64(Int.max), Int(offset) % alignment == 0 else {
                throw CondenseError.invalidTensor(name: name, reason: "offset \(offset) is not a multiple of the alignment \(alignment)")
            }
            index[name] = infos.count
            infos.append((name, dims, type, Int(offset), bytes))
        }
        let dataStart = try CheckedSize.roundUp(r.position, to: alignment, of: "data section")
        guard dataStart <= data.count else {
            throw CondenseError.malformedFile("the data section would start at \(dataStart), past the end of the \(data.count)-byte file")
        }
        let dataSize = data.count - dataStart
        var spans: [(begin: Int, end: Int, name: String)] = []
        var tensors: [Tensor] = []
        for t in infos {
            let end = try CheckedSize.sum(t.offset, t.bytes, of: "tensor '\(t.name)' end")
            guard end <= dataSize else {
                throw CondenseError.invalidTensor(name: t.name, reason: "data [\(t.offset), \(end)) outside the \(dataSize) data bytes")
            }
            spans.append((t.offset, end, t.name))
            let base = data.startIndex + dataStart
            tensors.append(Tensor(name: t.name, dims: t.dims, type: t.type, offset: t.offset, data: data[(base + t.offset)..<(base + end)]))
        }
        if let (a, b) = CheckedSize.firstOverlap(spans) {
            throw CondenseError.invalidTensor(name: a, reason: "data overlaps tensor '\(b)'")
        }
        self.version = version
        self.metadata = metadata
        self.keys = keys
        self.tensors = tensors
        self.alignment = alignment
        self.index = index
    }

    /// The tensor called `name`.
    /// - Throws: ``CondenseError/missingTensor(_:)``.
    public func tensor(_ name: String) throws -> Tensor {
        guard let i = index[name] else { throw CondenseError.missingTensor(name) }
        return tensors[i]
    }

    /// A required metadata value.
    /// - Throws: ``CondenseError/invalidModel(_:)`` naming the key when it is missing.
    public func value(_ key: String) throws -> Value {
        guard let v = metadata[key] else { throw CondenseError.invalidModel("metadata '\(key)' is missing") }
        return v
    }
}

/// A bounds-checked little-endian cursor over untrusted bytes.
private struct Reader {
    let data: Data
    var position = 0

    init(data: Data) { self.data = data }

    var remaining: Int { data.count - position }

    mutating func bytes(_ n: Int, what: String) throws -> Data {
        guard n >= 0, n <= remaining else {
            throw CondenseError.malformedFile("\(what): \(n) bytes needed at offset \(position), the file has \(remaining) left")
        }
        let s = data.startIndex + position
        position += n
        return data[s..<(s + n)]
    }

    mutating func scalar<T: FixedWidthInteger>(_: T.Type, what: String = "value") throws -> T {
        let b = try bytes(MemoryLayout<T>.size, what: what)
        var v: T = 0
        for (i, byte) in b.enumerated() { v |= T(truncatingIfNeeded: byte) << (8 * i) }
        return v
    }

    mutating func u32() throws -> UInt32 { try scalar(UInt32.self) }
    mutating func u64() throws -> UInt64 { try scalar(UInt64.self) }

    /// A 64-bit count, bounded by the bytes left at `minimumEach` bytes an item.
    mutating func count(minimumEach: Int, what: String) throws -> Int {
        let n = try u64()
        guard n <= UInt64(GGUFFile.maxCount), Int(n) <= remaining / max(1, minimumEach) else {
            throw CondenseError.malformedFile("\(what) \(n) cannot fit in the \(remaining) bytes left")
        }
        return Int(n)
    }

    mutating func string(what: String) throws -> String {
        let n = try u64()
        guard n <= UInt64(remaining) else {
            throw CondenseError.malformedFile("\(what): a string of \(n) bytes at offset \(position - 8), the file has \(remaining) left")
        }
        let b = try bytes(Int(n), what: what)
        guard let s = String(validating: b, as: UTF8.self) else {
            throw CondenseError.malformedFile("\(what) at offset \(position - Int(n)) is not valid UTF-8")
        }
        return s
    }

    mutating func value(_ type: GGUFFile.ValueType, depth: Int) throws -> GGUFFile.Value {
        switch type {
        case .uint8: return .uint8(try scalar(UInt8.self))
        case .int8: return .int8(try scalar(Int8.self))
        case .uint16: return .uint16(try scalar(UInt16.self))
        case .int16: return .int16(try scalar(Int16.self))
        case .uint32: return .uint32(try scalar(UInt32.self))
        case .int32: return .int32(try scalar(Int32.self))
        case .uint64: return .uint64(try scalar(UInt64.self))
        case .int64: return .int64(try scalar(Int64.self))
        case .float32: return .float32(Float(bitPattern: try scalar(UInt32.self)))
        case .float64: return .float64(Double(bitPattern: try scalar(UInt64.self)))
        case .bool:
            let b = try scalar(UInt8.self)
            guard b <= 1 else { throw CondenseError.malformedFile("a bool of value \(b)") }
            return .bool(b == 1)
        case .string: return .string(try string(what: "string value"))
        case .array:
            guard depth < GGUFFile.maxArrayDepth else { throw CondenseError.malformedFile("arrays nested deeper than \(GGUFFile.maxArrayDepth)") }
            let raw = try u32()
            guard let element = GGUFFile.ValueType(rawValue: raw) else { throw CondenseError.malformedFile("array of unknown type \(raw)") }
            let n = try count(minimumEach: element.minimumSize, what: "array length")
            var out: [GGUFFile.Value] = []
            out.reserveCapacity(n)
            for _ in 0..<n { out.append(try value(element, depth: depth + 1)) }
            return .array(element, out)
        }
    }
}
