import Foundation

/// Linear layers in safetensors files: tensors `<prefix><part>` and metadata `<prefix>format`,
/// `<prefix>activation`, `<prefix>shape` ("N,K"). Parts by format: dense `weight` (F32); int8 `q`
/// (I8 [N,K]) and `scales` (F32 [N]); int4 `q4` (U8 [N,⌈K/2⌉]), `scales` (F32) and metadata
/// `group`, `int4_path`; 2:4 `values` (F32) and `meta` (U8); 2:4-int8 `q` (I8), `meta` (U8),
/// `scales` (F32); CSR `row_ptr` (U32), `col` (U16 or U32), `values` (F32); bf16 and f16 `weight`
/// (BF16 or F16 [N,K]); `bias` (F32 [N]) when
/// present. Every format keeps its real bytes, and reading back is bit-exact.
extension SafeTensors {
    /// Stores `l` under `prefix` (e.g. "layers.0.").
    public mutating func add(_ l: LinearLayer, prefix p: String) throws {
        let (n, k) = (l.outFeatures, l.inFeatures)
        metadata[p + "format"] = l.format.description
        metadata[p + "activation"] = l.activation.rawValue
        metadata[p + "shape"] = "\(n),\(k)"
        switch l.weights {
        case let .dense(w): try add(p + "weight", shape: [n, k], floats: w.elements)
        case let .half(h):
            try add(p + "weight", dtype: h.kind.dtype, shape: [n, k],
                    bytes: h.bits.withUnsafeBytes { Data($0) })
        case let .int8(q):
            try add(p + "q", shape: [n, k], int8: q.values)
            try add(p + "scales", shape: [n], floats: q.scales)
        case let .int4(q):
            try add(p + "q4", shape: [n, (k + 1) / 2], uint8: q.packed)
            try add(p + "scales", shape: [q.scales.count], floats: q.scales)
            metadata[p + "group"] = "\(q.groupSize)"
            metadata[p + "int4_path"] = q.path == .dequantize ? "dequantize" : "integer"
        case let .sparse24(s):
            try add(p + "values", shape: [s.values.count], floats: s.values)
            try add(p + "meta", shape: [s.metadata.count], uint8: s.metadata)
        case let .sparse24Int8(s):
            try add(p + "q", shape: [s.values.count], int8: s.values)
            try add(p + "meta", shape: [s.pattern.metadata.count], uint8: s.pattern.metadata)
            try add(p + "scales", shape: [n], floats: s.scales)
        case let .csr(c):
            try add(p + "row_ptr", shape: [c.rowOffsets.count], uint32: c.rowOffsets)
            switch c.columnIndices {
            case let .u16(a): try add(p + "col", shape: [a.count], uint16: a)
            case let .u32(a): try add(p + "col", shape: [a.count], uint32: a)
            }
            try add(p + "values", shape: [c.values.count], floats: c.values)
        }
        if let b = l.bias { try add(p + "bias", shape: [n], floats: b) }
    }

    /// The linear layer stored under `prefix`.
    /// - Throws: ``CondenseError`` naming the tensor or metadata key: missing, of the wrong
    ///   dtype or shape, an unknown format or activation, or parts that do not form a valid layer.
    public func linearLayer(prefix p: String) throws -> LinearLayer {
        func meta(_ key: String) throws -> String {
            guard let v = metadata[p + key] else { throw CondenseError.invalidTensor(name: p + key, reason: "metadata missing") }
            return v
        }
        let shapeText = try meta("shape")
        let dims = shapeText.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard dims.count == 2, let n = dims[0], let k = dims[1], n >= 1, k >= 1 else {
            throw CondenseError.invalidTensor(name: p + "shape", reason: "'\(shapeText)' is not N,K with N, K >= 1")
        }
        // Every size derived from N and K is checked; the tensors' own sizes were checked against
        // the bytes present when the file was read, and each part's shape is compared below.
        _ = try CheckedSize.product(n, try CheckedSize.roundUp(k, to: 64, of: p + "shape"), of: p + "shape")
        guard let act = Activation(rawValue: try meta("activation")) else {
            throw CondenseError.invalidTensor(name: p + "activation", reason: "unknown activation '\(try meta("activation"))'")
        }
        let format = try meta("format")
        let weights: CompressedWeights
        do {
            switch format {
            case "dense":
                weights = .dense(try Matrix(rows: n, columns: k, elements: floats(p + "weight", shape: [n, k])))
            case "bf16", "f16":
                let kind: HalfPrecisionMatrix.Kind = format == "bf16" ? .bf16 : .f16
                weights = .half(try HalfPrecisionMatrix(
                    kind: kind, rows: n, columns: k,
                    bits: elements(p + "weight", as: UInt16.self, dtype: kind.dtype, shape: [n, k])))
            case "int8":
                weights = .int8(try Int8Weights(rows: n, columns: k, values: elements(p + "q", as: Int8.self, dtype: .i8, shape: [n, k]),
                                                scales: floats(p + "scales", shape: [n])))
            case let s where s.hasPrefix("int4-g"):
                guard let g = Int(try meta("group")), "int4-g\(g)" == s else {
                    throw CondenseError.invalidTensor(name: p + "group", reason: "int4 group does not match format '\(s)'")
                }
                let path: Int4Weights.Path = metadata[p + "int4_path"] == "dequantize" ? .dequantize : .integer
                weights = .int4(try Int4Weights(rows: n, columns: k, groupSize: g,
                                                packed: elements(p + "q4", as: UInt8.self, dtype: .u8, shape: [n, (k + 1) / 2]),
                                                scales: floats(p + "scales"), path: path))
            case "2:4":
                weights = .sparse24(try Sparse24Matrix(rows: n, columns: k, values: floats(p + "values"),
                                                       metadata: elements(p + "meta", as: UInt8.self, dtype: .u8)))
            case "2:4-int8":
                let q = try elements(p + "q", as: Int8.self, dtype: .i8)
                let pattern = try Sparse24Matrix(rows: n, columns: k, values: [Float](repeating: 0, count: q.count),
                                                 metadata: elements(p + "meta", as: UInt8.self, dtype: .u8))
                weights = .sparse24Int8(try Sparse24Int8Weights(pattern: pattern, values: q, scales: floats(p + "scales", shape: [n])))
            case "csr":
                let col = try tensor(p + "col")
                let idx: CSRMatrix.ColumnIndices = col.dtype == .u16
                    ? .u16(try elements(p + "col", as: UInt16.self, dtype: .u16))
                    : .u32(try elements(p + "col", as: UInt32.self, dtype: .u32))
                weights = .csr(try CSRMatrix(rows: n, columns: k, rowOffsets: elements(p + "row_ptr", as: UInt32.self, dtype: .u32),
                                             columnIndices: idx, values: floats(p + "values")))
            default: throw CondenseError.invalidTensor(name: p + "format", reason: "unknown format '\(format)'")
            }
        } catch let e as CondenseError {
            throw e
        } catch {
            throw CondenseError.invalidTensor(name: p + "format", reason: "\(format) parts do not form a valid layer: \(error)")
        }
        guard weights.outFeatures == n, weights.inFeatures == k else {
            throw CondenseError.invalidTensor(name: p + "shape", reason: "\(format) weights are \(weights.outFeatures)×\(weights.inFeatures), metadata says \(n)×\(k)")
        }
        let bias = tensors[p + "bias"] == nil ? nil : try floats(p + "bias", shape: [n])
        return try LinearLayer(weights: weights, bias: bias, activation: act)
    }
}
