import ArgumentParser
import CCondenseKernels
import Condense
import CondenseCompression
import Foundation

struct BenchQuant: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quant",
        abstract: "int8, int4, 2:4-int8, 2:4-int4, bf16 and f16 layers against f32 dense: int8 per-channel (u8 activations per row), int4 in groups on both native paths, 2:4-pruned int8 and 2:4 with 4-bit values (3.25 bits per weight). Peers (--peers): onnxruntime dynamic int8 and MatMulNBits, oneDNN u8×s8.")

    @Option(name: .customLong("m"), help: "Batch sizes M, comma-separated.")
    var batches = "1,8,32,128,512"
    @Option(help: "Layer shapes NxK, comma-separated.")
    var shapes = "768x768,3072x768,768x3072,4096x4096"
    @Option(help: "int4 group size (a multiple of 16).")
    var group = 32
    @Option(help: "Cycle through this many copies of each layer, so that at M = 1 the weights stream from DRAM instead of staying in L3 (1: one copy).")
    var rotate = 1
    @OptionGroup var bench: BenchOptions
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard (1...4096).contains(rotate) else { throw ValidationError("--rotate must be in 1…4096, got \(rotate)") }
    }

    func run() throws {
        try runtime.apply()
        let threads = CondenseRuntime.threads
        let registry = BackendRegistry.standard()
        var rng = XorShift(seed: 11)
        var records: [[String: Any]] = []
        if !bench.json {
            print("condense bench quant: \(CondenseRuntime.cpuBrand), isa \(CondenseRuntime.activeISA), \(threads) thread(s)")
            print("GOPS = 2·M·N·K / time; speedup over our f32 dense GEMM in the same run; error = output vs f32 layer")
            print("")
            print([pad("M", 5, right: true), pad("N", 6, right: true), pad("K", 6, right: true), "  ", pad("format", 10), pad("kernel", 31),
                   pad("median", 11, right: true), pad("GOPS", 8, right: true), pad("×f32", 7, right: true),
                   pad("weight bytes", 14, right: true), pad("rel. error", 12, right: true)].joined())
        }
        let ms = try parseInts(batches, option: "--m")
        for (n, k) in try parseShapes(shapes, option: "--shapes") {
            let w = try rng.matrix(n, k)
            let layer = try LinearLayer(weights: .dense(w))
            // f32 cycles through its own copies too, so GEMV ratios compare DRAM against DRAM.
            let denseCopies = try (0..<rotate).map { _ in try registry.prepare(layer, policy: .forced("native")) }
            let q8layer = try layer.converted(to: .int8)
            let q4 = try Int4Weights(quantizing: w, groupSize: group)
            let variants: [(String, LinearLayer)] = [
                ("int8", q8layer),
                ("int4-g\(group)", try LinearLayer(weights: .int4(q4.with(path: .integer)))),
                ("int4-g\(group)", try LinearLayer(weights: .int4(q4.with(path: .dequantize)))),
                // 2:4-pruned (magnitude) then int8: its error vs f32 includes the pruning.
                ("2:4-int8", try LinearLayer(weights: .sparse24Int8(Sparse24Int8Weights(
                    quantizing: Sparse24Matrix(dense: Pruning.semiStructured(w).apply(to: w)))))),
                // 16-bit floats: half the bytes of f32, rounded to nearest even.
                ("bf16", try layer.converted(to: .bf16)),
                ("f16", try layer.converted(to: .f16)),
            ]
            // 2:4-int4 (magnitude 2:4, rounded per 64): its own kernel, outside the registry's formats.
            let s24q4 = try Sparse24Int4Weights(quantizing: w)
            // `rotate` copies of each prepared layer, used in turn, defeat the L3 for GEMV timings.
            let copies: [[any PreparedLinear]] = try (0..<rotate).map { _ in
                try variants.map { try registry.prepare($0.1, policy: .forced("native")) as any PreparedLinear } + [GGUFBlockLinear(s24q4)]
            }
            let byteCounts = variants.map { $0.1.weights.byteCount } + [s24q4.blocks.count]
            let formats = variants.map(\.0) + ["2:4-int4"]
            let prepared = copies[0]
            for m in ms {
                let x = try rng.matrix(m, k)
                var y = try Matrix<Float>(rows: m, columns: n), yf = try Matrix<Float>(rows: m, columns: n)
                var dturn = 0
                let tf = try Timing.measure(samples: bench.reps, minSampleSeconds: bench.minSample) {
                    try denseCopies[dturn % denseCopies.count].apply(x, into: &yf)
                    dturn += 1
                }
                var seen = Set<String>()
                for (vi, (format, p)) in zip(formats, prepared).enumerated() where seen.insert(format + " " + p.kernelName).inserted {
                    var turn = 0
                    let tq = try Timing.measure(samples: bench.reps, minSampleSeconds: bench.minSample) {
                        try copies[turn % copies.count][vi].apply(x, into: &y)
                        turn += 1
                    }
                    // Relative error of the quantized output: ‖y − y_f32‖ / ‖y_f32‖.
                    var num = 0.0, den = 0.0
                    for (a, b) in zip(y.elements, yf.elements) { num += Double((a - b) * (a - b)); den += Double(b * b) }
                    let rel = den > 0 ? (num / den).squareRoot() : 0
                    let ops = 2.0 * Double(m * n * k)
                    var r: [String: Any] = [
                        "op": "gemm", "format": format, "m": m, "n": n, "k": k, "backend": "native", "kernel": p.kernelName,
                        "threads": threads, "median_s": tq.median, "min_s": tq.min, "max_s": tq.max, "gops": ops / tq.median * 1e-9,
                        "f32_median_s": tf.median, "speedup_vs_f32": tf.median / tq.median,
                        "weight_bytes": byteCounts[vi], "f32_weight_bytes": n * k * 4, "rel_error": rel,
                        "rotate": copies.count,
                    ]
                    if m == 1 {
                        // Roofline: weight bytes per second against the read bandwidth of a buffer
                        // as large as all the copies cycled through, measured now.
                        let bytes = byteCounts[vi]
                        let bw = condense_probe_read_gbps(bytes * copies.count, Int32(threads), 5)
                        r["weight_gbps"] = Double(bytes) / tq.median * 1e-9
                        r["read_gbps"] = bw
                        r["pct_roofline"] = 100 * Double(bytes) / tq.median * 1e-9 / bw
                    }
                    records.append(r)
                    if !bench.json {
                        print([pad("\(m)", 5, right: true), pad("\(n)", 6, right: true), pad("\(k)", 6, right: true), "  ",
                               pad(format, 10), pad(p.kernelName, 31),
                               pad(tq.median < 1e-3 ? "\(fmt(tq.median * 1e6)) µs" : "\(fmt(tq.median * 1e3, 2)) ms", 11, right: true),
                               pad(fmt(ops / tq.median * 1e-9, 0), 8, right: true), pad(fmt(tf.median / tq.median, 2), 7, right: true),
                               pad("\(byteCounts[vi])", 14, right: true), pad(String(format: "%.2e", rel), 12, right: true),
                               (r["pct_roofline"] as? Double).map { "  \(fmt(r["weight_gbps"] as! Double)) of \(fmt(r["read_gbps"] as! Double)) GB/s = \(fmt($0, 0)) %" } ?? ""].joined())
                    }
                }
            }
        }
        var peerRecords: [[String: Any]] = []
        if bench.peers {
            var cases: [String] = []
            for r in records where !cases.contains("\(r["m"]!),\(r["n"]!),\(r["k"]!)") { cases.append("\(r["m"]!),\(r["n"]!),\(r["k"]!)") }
            let runner = PeerRunner(dir: bench.peersDir, threads: threads, reps: bench.reps, minSample: bench.minSample, rotate: rotate)
            peerRecords = runner.runScript("quant_onnxruntime.py", arguments: ["--group", "\(group)"] + cases, name: "onnxruntime")
                + runner.oneDNN(["--int8"], spec: cases)
            if !bench.json && !peerRecords.isEmpty {
                print("\nagainst peers of the same format in the same run (time ratio peer / Condense; > 1 means Condense is faster;")
                print("the peer's time less its measured per-call Python binding overhead, raw ratio beside; \(rotate) weight cop\(rotate == 1 ? "y" : "ies") each):")
                for r in records {
                    let key = "\(r["m"]!),\(r["n"]!),\(r["k"]!)"
                    let t = r["median_s"] as! Double
                    let fmtName = r["format"] as! String
                    let line = peerRecords.filter { "\($0["m"]!),\($0["n"]!),\($0["k"]!)" == key && ($0["format"] as! String) == fmtName }.map {
                        "\($0["backend"]!) \(fmt(PeerRunner.seconds($0).net * 1e6)) µs → \(PeerRunner.ratio($0, ours: t))"
                    }.joined(separator: "   ")
                    print("\(pad(key, 16)) \(pad(fmtName, 9)) \(pad(r["kernel"] as! String, 31)) \(fmt(t * 1e6)) µs   \(line)")
                }
            }
        }
        if bench.json { print(try jsonString(records + peerRecords)) }
    }
}
