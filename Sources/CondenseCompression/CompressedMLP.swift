import Condense
import CondenseTraining
import Foundation

/// An MLP ready for inference: each layer a `LinearLayer` in its own format (dense, 2:4, CSR,
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

    /// - Throws: `CondenseError/invalidModel(_:)` when consecutive layers do not chain.
    public init(layers: [LinearLayer]) throws {
        guard !layers.isEmpty else { throw CondenseError.invalidModel("a model needs at least one layer") }
        for i in 1..<layers.count where layers[i].inFeatures != layers[i - 1].outFeatures {
            throw CondenseError.invalidModel("layer \(i) takes \(layers[i].inFeatures) inputs but layer \(i - 1) gives \(layers[i - 1].outFeatures)")
        }
        self.layers = layers
    }

    /// Converts each layer of a trained f32 model to a format (one format for all, or one per
    /// layer). int8 and int4 quantize per channel / per group with min–max, exactly as QAT
    /// simulated; 2:4 formats need the weights already 2:4-pruned.
    public init(exporting model: MLP, formats: [WeightFormat]) throws {
        guard formats.count == model.layers.count || formats.count == 1 else {
            throw CondenseError.invalidArgument("\(formats.count) formats for \(model.layers.count) layers")
        }
        try self.init(layers: model.layers.enumerated().map { l, layer in
            let f = formats.count == 1 ? formats[0] : formats[l]
            do {
                return try LinearLayer(weights: .dense(layer.weight), bias: layer.bias, activation: layer.activation).converted(to: f)
            } catch {
                throw CondenseError.invalidModel("layer \(l) cannot be stored as \(f): \(error)")
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
    /// The model as a safetensors file: each layer in its real format (docs/compression.md).
    public func safetensors() throws -> SafeTensors {
        var f = SafeTensors()
        f.metadata["condense.model"] = "mlp"
        f.metadata["condense.layers"] = "\(layers.count)"
        for (i, l) in layers.enumerated() {
            try f.add(l, prefix: "layers.\(i).")
        }
        return f
    }

    /// Writes the model; returns the file's size in bytes.
    @discardableResult
    public func save(to path: String) throws -> Int { try safetensors().write(to: path) }

    /// Bytes of the serialized model file.
    public var serializedBytes: Int { get throws { try safetensors().serialized().count } }

    /// Loads a model file written by ``save(to:)`` (or an f32 MLP saved by Condense).
    /// - Throws: `CondenseError` for a malformed file, `CondenseError/invalidModel(_:)`
    ///   naming the layer for missing or inconsistent parts. Nothing is half-loaded.
    /// - Throws: `CondenseError` naming the file (`CondenseError/inFile(path:error:)`).
    public init(contentsOf path: String) throws {
        let f = try SafeTensors(contentsOf: path)
        do { try self.init(safetensors: f) } catch let e as CondenseError { throw e.inFile(path) }
    }

    /// Reads a model written by ``safetensors()``.
    /// - Throws: `CondenseError` naming the tensor or metadata that is missing or malformed.
    public init(safetensors f: SafeTensors) throws {
        guard f.metadata["condense.model"] == "mlp" else {
            throw CondenseError.invalidModel("not a Condense MLP file (metadata condense.model is \(f.metadata["condense.model"].map { "'\($0)'" } ?? "missing"))")
        }
        guard let count = f.metadata["condense.layers"].flatMap(Int.init), count >= 1, count <= 10_000 else {
            throw CondenseError.invalidModel("condense.layers is \(f.metadata["condense.layers"] ?? "missing"), expected a layer count")
        }
        var layers: [LinearLayer] = []
        for i in 0..<count {
            let p = "layers.\(i)."
            do {
                layers.append(try f.linearLayer(prefix: p))
            } catch {
                throw CondenseError.invalidModel("layer \(i): \(error)")
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
