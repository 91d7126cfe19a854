import Condense
import CondenseTraining
import Foundation

/// An MLP ready for inference: each layer a ``LinearLayer`` in its own format (dense, 2:4, CSR,
/// int8, int4, 2:4-int8), stored in a safetensors file that keeps every format's real bytes.
///
/// ```swift
/// let compressed = try CompressedMLP(exporting: model, formats: [.sparse24Int8, .sparse24Int8, .int8])
/// try compressed.save(to: "student.safetensors")
/// let session = try compressed.prepare(on: .standard(), policy: .fastest(batch: 1))
/// let logits = try session.logits(x)
/// ```
public struct CompressedMLP: Sendable {
    public let layers: [LinearLayer]

    /// - Throws: ``TrainingError/invalidModel(_:)`` when consecutive layers do not chain.
    public init(layers: [LinearLayer]) throws {
        guard !layers.isEmpty else { throw TrainingError.invalidModel("a model needs at least one layer") }
        for i in 1..<layers.count where layers[i].inFeatures != layers[i - 1].outFeatures {
            throw TrainingError.invalidModel("layer \(i) takes \(layers[i].inFeatures) inputs but layer \(i - 1) gives \(layers[i - 1].outFeatures)")
        }
        self.layers = layers
    }

    /// Converts each layer of a trained f32 model to a format (one format for all, or one per
    /// layer). int8 and int4 quantize per channel / per group with min–max, exactly as QAT
    /// simulated; 2:4 formats need the weights already 2:4-pruned.
    public init(exporting model: MLP, formats: [WeightFormat]) throws {
        guard formats.count == model.layers.count || formats.count == 1 else {
            throw TrainingError.invalidArgument("\(formats.count) formats for \(model.layers.count) layers")
        }
        try self.init(layers: model.layers.enumerated().map { l, layer in
            let f = formats.count == 1 ? formats[0] : formats[l]
            do {
                return try LinearLayer(weights: .dense(layer.weight), bias: layer.bias, activation: layer.activation).converted(to: f)
            } catch {
                throw TrainingError.invalidModel("layer \(l) cannot be stored as \(f): \(error)")
            }
        })
    }

    /// The f32 model with every layer densified (what the compressed weights compute).
    public var densified: MLP {
        get throws {
            try MLP(layers: layers.map { l in
                try DenseLayer(weight: l.weights.densified(), bias: l.bias ?? [Float](repeating: 0, count: l.outFeatures), activation: l.activation)
            })
        }
    }

    public var inFeatures: Int { layers[0].inFeatures }
    public var outFeatures: Int { layers[layers.count - 1].outFeatures }
    /// Bytes of weights in their formats plus biases.
    public var weightBytes: Int { layers.reduce(0) { $0 + $1.weights.byteCount + ($1.bias?.count ?? 0) * 4 } }

    /// Fraction of zero weights per layer (of the dense equivalent).
    public var sparsity: [Double] {
        layers.map { l in
            let w = l.weights.densified().elements
            return w.isEmpty ? 0 : Double(w.lazy.filter { $0 == 0 }.count) / Double(w.count)
        }
    }

    /// Prepares every layer through `registry` under `policy`.
    public func prepare(on registry: BackendRegistry, policy: SelectionPolicy = .priority) throws -> PreparedMLP {
        PreparedMLP(layers: try layers.map { try registry.prepare($0, policy: policy) })
    }
}

/// A compressed MLP whose layers are packed for their kernels; safe to call from many threads.
public struct PreparedMLP: Sendable {
    public let layers: [PlacedLinear]

    /// Where each layer went.
    public var placements: [Placement] { layers.map(\.placement) }

    /// Logits for a batch `[rows, inFeatures]`.
    public func logits(_ x: Matrix<Float>) throws -> Matrix<Float> {
        var h = x
        for l in layers { h = try l.apply(h) }
        return h
    }
}

// MARK: - Model files

/// Model files are safetensors: tensors `layers.<i>.<part>` plus metadata
/// `condense.model = "mlp"`, `condense.layers = <count>`, and per layer
/// `layers.<i>.format` / `.activation` / `.shape` ("N,K"). Parts by format: dense `weight` (F32);
/// int8 `q` (I8 [N,K]), `scales` (F32 [N]); int4 `q4` (U8 [N,⌈K/2⌉]), `scales` (F32), and
/// `.group`; 2:4 `values` (F32), `meta` (U8); 2:4-int8 `q` (I8), `meta` (U8), `scales` (F32);
/// CSR `row_ptr` (U32), `col` (U16 or U32), `values` (F32); and `bias` (F32 [N]) when present.
/// An uncompressed ``MLP`` is the same file with every layer dense.
extension CompressedMLP {
    public func safetensors() throws -> SafeTensors {
        var f = SafeTensors()
        f.metadata["condense.model"] = "mlp"
        f.metadata["condense.layers"] = "\(layers.count)"
        for (i, l) in layers.enumerated() {
            let p = "layers.\(i)."
            let (n, k) = (l.outFeatures, l.inFeatures)
            f.metadata[p + "format"] = l.format.description
            f.metadata[p + "activation"] = l.activation.rawValue
            f.metadata[p + "shape"] = "\(n),\(k)"
            switch l.weights {
            case let .dense(w): try f.add(p + "weight", shape: [n, k], floats: w.elements)
            case let .int8(q):
                try f.add(p + "q", shape: [n, k], int8: q.values)
                try f.add(p + "scales", shape: [n], floats: q.scales)
            case let .int4(q):
                try f.add(p + "q4", shape: [n, (k + 1) / 2], uint8: q.packed)
                try f.add(p + "scales", shape: [q.scales.count], floats: q.scales)
                f.metadata[p + "group"] = "\(q.groupSize)"
                f.metadata[p + "int4_path"] = q.path == .dequantize ? "dequantize" : "integer"
            case let .sparse24(s):
                try f.add(p + "values", shape: [s.values.count], floats: s.values)
                try f.add(p + "meta", shape: [s.metadata.count], uint8: s.metadata)
            case let .sparse24Int8(s):
                try f.add(p + "q", shape: [s.values.count], int8: s.values)
                try f.add(p + "meta", shape: [s.pattern.metadata.count], uint8: s.pattern.metadata)
                try f.add(p + "scales", shape: [n], floats: s.scales)
            case let .csr(c):
                try f.add(p + "row_ptr", shape: [c.rowOffsets.count], uint32: c.rowOffsets)
                switch c.columnIndices {
                case let .u16(a): try f.add(p + "col", shape: [a.count], uint16: a)
                case let .u32(a): try f.add(p + "col", shape: [a.count], uint32: a)
                }
                try f.add(p + "values", shape: [c.values.count], floats: c.values)
            }
            if let b = l.bias { try f.add(p + "bias", shape: [n], floats: b) }
        }
        return f
    }

    /// Writes the model; returns the file's size in bytes.
    @discardableResult
    public func save(to path: String) throws -> Int { try safetensors().write(to: path) }

    /// Bytes of the serialized model file.
    public var serializedBytes: Int { get throws { try safetensors().serialized().count } }

    /// Loads a model file written by ``save(to:)`` (or an f32 MLP saved by Condense).
    /// - Throws: ``SafeTensorsError`` for a malformed file, ``TrainingError/invalidModel(_:)``
    ///   naming the layer for missing or inconsistent parts. Nothing is half-loaded.
    public init(contentsOf path: String) throws {
        try self.init(safetensors: SafeTensors(contentsOf: path))
    }

    public init(safetensors f: SafeTensors) throws {
        guard f.metadata["condense.model"] == "mlp" else {
            throw TrainingError.invalidModel("not a Condense MLP file (metadata condense.model is \(f.metadata["condense.model"].map { "'\($0)'" } ?? "missing"))")
        }
        guard let count = f.metadata["condense.layers"].flatMap(Int.init), count >= 1, count <= 10_000 else {
            throw TrainingError.invalidModel("condense.layers is \(f.metadata["condense.layers"] ?? "missing"), expected a layer count")
        }
        var layers: [LinearLayer] = []
        for i in 0..<count {
            let p = "layers.\(i)."
            func meta(_ key: String) throws -> String {
                guard let v = f.metadata[p + key] else { throw TrainingError.invalidModel("layer \(i): metadata \(p + key) missing") }
                return v
            }
            let dims = try meta("shape").split(separator: ",").compactMap { Int($0) }
            guard dims.count == 2, dims[0] >= 1, dims[1] >= 1 else { throw TrainingError.invalidModel("layer \(i): shape '\(try meta("shape"))' is not N,K") }
            let (n, k) = (dims[0], dims[1])
            guard let act = Activation(rawValue: try meta("activation")) else {
                throw TrainingError.invalidModel("layer \(i): unknown activation '\(try meta("activation"))'")
            }
            let format = try meta("format")
            do {
                let weights: CompressedWeights
                switch format {
                case "dense":
                    weights = .dense(try Matrix(rows: n, columns: k, elements: f.floats(p + "weight", shape: [n, k])))
                case "int8":
                    weights = .int8(try Int8Weights(rows: n, columns: k, values: f.elements(p + "q", as: Int8.self, dtype: .i8, shape: [n, k]),
                                                    scales: f.floats(p + "scales", shape: [n])))
                case let s where s.hasPrefix("int4-g"):
                    guard let g = Int(try meta("group")), "int4-g\(g)" == s else { throw TrainingError.invalidModel("layer \(i): int4 group does not match format '\(s)'") }
                    let path: Int4Weights.Path = f.metadata[p + "int4_path"] == "dequantize" ? .dequantize : .integer
                    weights = .int4(try Int4Weights(rows: n, columns: k, groupSize: g,
                                                    packed: f.elements(p + "q4", as: UInt8.self, dtype: .u8, shape: [n, (k + 1) / 2]),
                                                    scales: f.floats(p + "scales"), path: path))
                case "2:4":
                    weights = .sparse24(try Sparse24Matrix(rows: n, columns: k, values: f.floats(p + "values"),
                                                           metadata: f.elements(p + "meta", as: UInt8.self, dtype: .u8)))
                case "2:4-int8":
                    let q = try f.elements(p + "q", as: Int8.self, dtype: .i8)
                    let pattern = try Sparse24Matrix(rows: n, columns: k, values: [Float](repeating: 0, count: q.count),
                                                     metadata: f.elements(p + "meta", as: UInt8.self, dtype: .u8))
                    weights = .sparse24Int8(try Sparse24Int8Weights(pattern: pattern, values: q, scales: f.floats(p + "scales", shape: [n])))
                case "csr":
                    let col = try f.tensor(p + "col")
                    let idx: CSRMatrix.ColumnIndices = col.dtype == .u16
                        ? .u16(try f.elements(p + "col", as: UInt16.self, dtype: .u16))
                        : .u32(try f.elements(p + "col", as: UInt32.self, dtype: .u32))
                    weights = .csr(try CSRMatrix(rows: n, columns: k, rowOffsets: f.elements(p + "row_ptr", as: UInt32.self, dtype: .u32),
                                                 columnIndices: idx, values: f.floats(p + "values")))
                default: throw TrainingError.invalidModel("layer \(i): unknown format '\(format)'")
                }
                let bias = f.tensors[p + "bias"] == nil ? nil : try f.floats(p + "bias", shape: [n])
                layers.append(try LinearLayer(weights: weights, bias: bias, activation: act))
            } catch let e as TrainingError {
                throw e
            } catch {
                throw TrainingError.invalidModel("layer \(i) (\(format)): \(error)")
            }
        }
        try self.init(layers: layers)
    }
}

extension MLP {
    /// Saves the f32 model (every layer dense); returns the file size.
    @discardableResult
    public func save(to path: String) throws -> Int {
        try CompressedMLP(exporting: self, formats: [.dense]).save(to: path)
    }

    /// Loads an f32 model, densifying compressed layers.
    public init(contentsOf path: String) throws {
        self = try CompressedMLP(contentsOf: path).densified
    }
}
