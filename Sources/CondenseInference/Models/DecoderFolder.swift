import CCondenseKernels
import Condense
import Foundation

/// A compressed decoder as a folder, what `condense compress --llm` writes and every command
/// that takes `--model` reads:
///
/// - `metadata.gguf`: the source model's metadata (architecture, sizes, tokenizer, chat
///   template), no tensors; read by the same code as a GGUF model.
/// - `model.safetensors`: the norms (F32, ggml's names), the token embedding and every
///   projection under its ggml name (`blk.0.attn_q.weight`, …, `output.weight` unless the head
///   is tied), each with metadata `<name>.format` and `<name>.shape` ("N,K"):
///   `ggml:<type>` (ggml blocks, U8 `[N, bytes per row]`), `2:4-int4` (`Sparse24Int4Weights`
///   blocks, U8 `[N, K/64·26]`), or a `LinearLayer` format (`2:4`, `2:4-int8`, `dense`: the
///   parts of `SafeTensors/add(_:prefix:)` under `<name>.`).
/// - `config.json`: what was done, for people (format, calibration, each projection's format
///   and why it has it); not read back.
///
/// ```swift
/// try DecoderFolder.write(to: "smol-24", metadata: gguf, tensors: parts, report: ["format": "2:4-int4"])
/// let lm = try LanguageModel(contentsOf: "smol-24")
/// ```
public enum DecoderFolder {
    public static let metadataFile = "metadata.gguf"
    public static let weightsFile = "model.safetensors"
    /// The compression report: what each projection became and the measured figures. Not
    /// `config.json`, which Hugging Face-style loaders take for a model configuration.
    public static let reportFile = "compression-report.json"
    /// The report's name in folders written before 2026-12-05: still loadable (the loader reads
    /// neither), replaced when a folder is written again.
    public static let legacyReportFile = "config.json"

    /// One stored tensor.
    public enum Part: Sendable {
        /// ggml blocks (or F32/F16) as in a GGUF file: `rows` rows of `columns`.
        case ggml(GGUFFile.TensorType, rows: Int, columns: Int, Data)
        case sparse24Int4(Sparse24Int4Weights)
        case linear(LinearLayer)
        /// A norm or bias.
        case vector([Float])
    }

    /// The file with the model's metadata (tokenizer, chat template): `metadata.gguf` in a
    /// folder, else the GGUF file itself.
    public static func metadataPath(_ path: String) -> String {
        isFolder(path) ? URL(fileURLWithPath: path).appendingPathComponent(metadataFile).path : path
    }

    /// Whether `path` is a folder (a compressed model) rather than a GGUF file.
    public static func isFolder(_ path: String) -> Bool {
        var dir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &dir) && dir.boolValue
    }

    /// Writes the folder (created if needed): the metadata of `source` (tensors left out) plus
    /// `condense.compression`, the parts, and `report` as JSON.
    /// - Throws: `CondenseError` naming the file that could not be written.
    public static func write(to dir: String, metadata source: GGUFFile, tensors parts: [(name: String, part: Part)],
                             report: [String: Any]) throws {
        try FileOutput.createFolder(dir)
        var meta = GGUFWriter()
        for key in source.keys where key != "general.alignment" { meta.add(key, source.metadata[key]!) }
        meta.add("condense.compression", .string((report["format"] as? String) ?? "compressed"))
        var st = SafeTensors()
        for (name, part) in parts {
            switch part {
            case let .ggml(type, rows, columns, data):
                try st.add(name, dtype: .u8, shape: [rows, data.count / max(rows, 1)], bytes: data)
                st.metadata[name + ".format"] = "ggml:\(type)"
                st.metadata[name + ".shape"] = "\(rows),\(columns)"
            case let .sparse24Int4(w):
                try st.add(name, shape: [w.rows, w.blocks.count / w.rows], uint8: w.blocks)
                st.metadata[name + ".format"] = "2:4-int4"
                st.metadata[name + ".shape"] = "\(w.rows),\(w.columns)"
            case let .linear(l):
                try st.add(l, prefix: name + ".")
            case let .vector(v):
                try st.add(name, shape: [v.count], floats: v)
            }
        }
        let path = { (f: String) in URL(fileURLWithPath: dir).appendingPathComponent(f).path }
        try meta.write(to: path(metadataFile))
        _ = try st.write(to: path(weightsFile))
        let json = try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys])
        try FileOutput.write(json + Data("\n".utf8), to: path(reportFile))
        // An older run's report under its old name would contradict this one.
        if FileManager.default.fileExists(atPath: path(legacyReportFile)) { try? FileManager.default.removeItem(atPath: path(legacyReportFile)) }
    }

    /// Reads a stored projection, checked against the shape the model expects.
    static func part(_ st: SafeTensors, _ name: String, rows: Int, columns: Int) throws -> Part {
        guard let format = st.metadata[name + ".format"] else {
            throw CondenseError.invalidTensor(name: name, reason: "metadata '\(name).format' is missing")
        }
        let shape = st.metadata[name + ".shape"] ?? ""
        guard shape == "\(rows),\(columns)" else {
            throw CondenseError.invalidTensor(name: name, reason: "shape '\(shape)', expected \(rows),\(columns)")
        }
        if format.hasPrefix("ggml:") {
            let typeName = format.dropFirst(5)
            guard let type = GGUFFile.TensorType.allCases.first(where: { "\($0)" == typeName }), GGUFDequantize.supported.contains(type) else {
                throw CondenseError.invalidTensor(name: name, reason: "format '\(format)' is not a ggml type this runtime reads")
            }
            guard columns % type.blockSize == 0 else {
                throw CondenseError.invalidTensor(name: name, reason: "rows of \(columns) are not whole \(type) blocks")
            }
            let t = try st.tensor(name)
            let need = try CheckedSize.product(rows, columns / type.blockSize, type.blockBytes, of: name)
            guard t.dtype == .u8, t.data.count == need else {
                throw CondenseError.invalidTensor(name: name, reason: "\(t.dtype) with \(t.data.count) bytes, \(type) needs \(need) U8")
            }
            return .ggml(type, rows: rows, columns: columns, t.data)
        }
        if format == "2:4-int4" {
            let t = try st.tensor(name)
            guard t.dtype == .u8 else { throw CondenseError.invalidTensor(name: name, reason: "dtype \(t.dtype), expected U8") }
            do {
                return .sparse24Int4(try Sparse24Int4Weights(rows: rows, columns: columns, blocks: [UInt8](t.data)))
            } catch let CondenseError.invalidArgument(why) {
                throw CondenseError.invalidTensor(name: name, reason: why)
            }
        }
        let l = try st.linearLayer(prefix: name + ".")
        guard l.outFeatures == rows, l.inFeatures == columns else {
            throw CondenseError.invalidTensor(name: name, reason: "\(l.outFeatures)×\(l.inFeatures), expected \(rows)×\(columns)")
        }
        return .linear(l)
    }
}

extension LanguageModel {
    /// A model from a GGUF file or a folder written by `condense compress --llm`
    /// (``DecoderFolder``).
    ///
    /// ```swift
    /// let lm = try LanguageModel(contentsOf: "smol-24")     // or "SmolLM2-135M-Instruct.Q4_1.gguf"
    /// ```
    /// - Throws: `CondenseError` naming the file and the tensor or key.
    public convenience init(contentsOf path: String, registry: BackendRegistry = .standard()) throws {
        if DecoderFolder.isFolder(path) { try self.init(folder: path, registry: registry) } else { try self.init(gguf: path, registry: registry) }
    }

    /// A model from a ``DecoderFolder``. `rowSplit`: a 2:4-int4 projection also holds its
    /// weights as dense Q4_0 where that was measured at least 10 % faster from some row count
    /// (prompts, batched decoding); false keeps one copy (the least memory).
    public convenience init(folder dir: String, registry: BackendRegistry = .standard(), rowSplit: Bool = true) throws {
        let path = { (f: String) in URL(fileURLWithPath: dir).appendingPathComponent(f).path }
        let meta = try GGUFFile(contentsOf: path(DecoderFolder.metadataFile))
        let weightsPath = path(DecoderFolder.weightsFile)
        let st = try SafeTensors(contentsOf: weightsPath)
        do {
            try self.init(metadata: meta, weights: st, registry: registry, fallbackName: URL(fileURLWithPath: dir).lastPathComponent,
                          rowSplit: rowSplit)
        } catch let e as CondenseError {
            throw e.inFile(weightsPath)
        }
    }

    convenience init(metadata f: GGUFFile, weights st: SafeTensors, registry: BackendRegistry, fallbackName: String, rowSplit: Bool = true) throws {
        var placer = ProjectionPlacer(registry: registry, isa: registry.helperISA)
        placer.splitRows = rowSplit
        var source = FolderTensorSource(weights: st, placer: placer)
        try self.init(metadata: f, source: &source, registry: registry, fallbackName: fallbackName)
    }
}

/// The tensors of a compressed folder's `model.safetensors`: norms as F32 vectors, projections
/// in the formats ``DecoderFolder/Part`` names.
struct FolderTensorSource: TensorSource {
    let st: SafeTensors
    var placer: ProjectionPlacer
    var tensorNames: [String] { st.names }

    init(weights: SafeTensors, placer: ProjectionPlacer) { (st, self.placer) = (weights, placer) }

    func has(_ name: String) -> Bool { st.tensors[name] != nil || st.metadata[name + ".format"] != nil }

    func vector(_ name: String, _ count: Int) throws -> [Float] { try st.floats(name, shape: [count]) }

    func embedding(hidden d: Int) throws -> GGUFFile.Tensor {
        let name = ModelTensor.tokenEmbedding
        guard let ew = st.metadata[name + ".shape"]?.split(separator: ",").first.flatMap({ Int($0) }), ew >= 1 else {
            throw CondenseError.invalidTensor(name: name, reason: "metadata '\(name).shape' is missing or not N,K")
        }
        guard case let .ggml(etype, _, _, edata) = try DecoderFolder.part(st, name, rows: ew, columns: d) else {
            throw CondenseError.invalidTensor(name: name, reason: "the token embedding must be stored as ggml blocks")
        }
        return GGUFFile.Tensor(name: name, dims: [d, ew], type: etype, data: edata)
    }

    /// Parts with one input, their rows stacked (``ProjectionPlacer/place(_:parts:outs:bias:)``).
    mutating func projection(_ names: [String], outs: [Int], inp: Int, bias hasBias: Bool) throws -> any PreparedLinear {
        let parts = try zip(names, outs).map { try DecoderFolder.part(st, $0 + ".weight", rows: $1, columns: inp) }
        let bias = hasBias ? try zip(names, outs).flatMap { try vector($0 + ".bias", $1) } : nil
        return try placer.place(names, parts: parts, outs: outs, bias: bias)
    }

    mutating func head(vocab: Int, hidden d: Int, embedding e: GGUFFile.Tensor) throws -> any PreparedLinear {
        if has(ModelTensor.output) { return try projection(["output"], outs: [vocab], inp: d, bias: false) }
        return try placer.place(["output (tied to token_embd)"], parts: [.ggml(e.type, rows: vocab, columns: d, e.data)], outs: [vocab], bias: nil)
    }
}

extension ProjectionPlacer {
    /// Stored parts with one input (`names` without `.weight`), their rows stacked: one kernel
    /// call when they are all 2:4-int4, or ggml blocks stacked as in a GGUF file; else each on
    /// its own, side by side.
    mutating func place(_ names: [String], parts: [DecoderFolder.Part], outs: [Int], bias: [Float]?) throws -> any PreparedLinear {
        let label = names.joined(separator: "+")
        func tensor(_ label: String, _ type: GGUFFile.TensorType, rows: Int, columns: Int, _ data: Data) -> GGUFFile.Tensor {
            GGUFFile.Tensor(name: label, dims: [columns, rows], type: type, data: data)
        }
        let s24 = parts.compactMap { if case let .sparse24Int4(w) = $0 { return w } else { return nil } }
        if s24.count == parts.count { return try place(label, s24, bias: bias) }
        let blocks = zip(names, parts).compactMap { n, p -> GGUFFile.Tensor? in
            if case let .ggml(type, rows, columns, data) = p { return tensor(n + ".weight", type, rows: rows, columns: columns, data) }
            return nil
        }
        if blocks.count == parts.count { return try place(label, blocks, bias: bias) }
        var start = 0
        var placed: [any PreparedLinear] = []
        for ((n, out), p) in zip(zip(names, outs), parts) {
            let b = bias.map { Array($0[start..<(start + out)]) }
            switch p {
            case let .ggml(type, rows, columns, data): placed.append(try place(n, [tensor(n, type, rows: rows, columns: columns, data)], bias: b))
            case let .sparse24Int4(w): placed.append(try place(n, [w], bias: b))
            case let .linear(l): placed.append(try place(n, l, bias: b))
            case .vector: throw CondenseError.invalidTensor(name: n, reason: "a vector where a matrix belongs")
            }
            start += out
        }
        return SideBySide(parts: placed)
    }
}
