import ArgumentParser
import CondenseExampleBackend
import CondenseSIMDKit
import CCondenseKernels
import Condense
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark the kernels (medians of several samples; peers measured in the same run).",
        subcommands: [BenchGemm.self, BenchSparse.self, BenchQuant.self, BenchDispatch.self, BenchEmbed.self, BenchGenerate.self, BenchBlocks.self])
}

struct BenchGemm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "Dense f32 Y = X·Wᵀ over batch sizes and layer shapes. Peers (--peers): numpy/OpenBLAS, oneDNN.")

    @Option(name: .customLong("m"), help: "Batch sizes M, comma-separated.")
    var batches = "1,8,32,128,512"
    @Option(help: "Layer shapes NxK (N outputs, K inputs), comma-separated.")
    var shapes = "768x768,3072x768,768x3072,4096x4096"
    @Option(help: "Square sizes S run as M = N = K = S, comma-separated ('' for none).")
    var square = "1024,2048"
    @Option(help: "Backends to time, comma-separated (native, simd, reference; example: the README's custom Swift backend).")
    var backends = "native"
    @OptionGroup var bench: BenchOptions
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        try runtime.apply()
        let threads = CondenseRuntime.threads
        var cases: [(m: Int, n: Int, k: Int)] = []
        for (n, k) in try parseShapes(shapes, option: "--shapes") {
            for m in try parseInts(batches, option: "--m") { cases.append((m, n, k)) }
        }
        if !square.isEmpty { for s in try parseInts(square, option: "--square") { cases.append((s, s, s)) } }
        let registry = BackendRegistry.standard()
        var names = backends.split(separator: ",").map(String.init)
        if let i = names.firstIndex(of: "example") {  // the README's custom backend, registered as "mine"
            registry.register(SwiftKernelBackend(name: "mine", kernel: TileKernel(name: "f32_gemm_4x32__mine", mr: 4, nr: 32, myTile),
                                                 isa: .avx512))
            names[i] = "mine"
        }

        let peak = condense_probe_fma_gflops(Int32(threads), condense_isa_active())
        if !bench.json {
            print("condense bench gemm: \(CondenseRuntime.cpuBrand), isa \(CondenseRuntime.activeISA), \(threads) thread(s)")
            print("measured fp32 FMA peak: \(fmt(peak)) GFLOPS; M=1 rows also show the read bandwidth of a buffer the weight's size")
            print("")
            print(header)
        }
        var records: [[String: Any]] = []
        var rng = XorShift(seed: 42)
        var bandwidth: [Int: Double] = [:]
        for c in cases {
            let w = try rng.matrix(c.n, c.k)
            let x = try rng.matrix(c.m, c.k)
            let layer = try LinearLayer(weights: .dense(w))
            for name in names {
                let prepared = try registry.prepare(layer, policy: .forced(name))
                var y = try Matrix<Float>(rows: c.m, columns: c.n)
                let t = try Timing.measure(samples: bench.reps, minSampleSeconds: bench.minSample) { try prepared.apply(x, into: &y) }
                let gflops = 2.0 * Double(c.m * c.n * c.k) / t.median * 1e-9
                var r: [String: Any] = [
                    "op": "gemm", "format": "dense", "m": c.m, "n": c.n, "k": c.k, "backend": name,
                    "kernel": prepared.kernelName, "threads": threads, "median_s": t.median, "min_s": t.min,
                    "max_s": t.max, "gflops": gflops, "pct_peak": 100 * gflops / peak, "peak_gflops": peak,
                ]
                if c.m == 1 {
                    let bytes = c.n * c.k * 4
                    let bw = bandwidth[bytes] ?? condense_probe_read_gbps(bytes, Int32(threads), 5)
                    bandwidth[bytes] = bw
                    r["weight_gbps"] = Double(bytes) / t.median * 1e-9
                    r["read_gbps"] = bw
                    r["pct_roofline"] = 100 * Double(bytes) / t.median * 1e-9 / bw
                }
                records.append(r)
                if !bench.json { print(row(r, spread: t.spread)) }
            }
        }
        var peerRecords: [[String: Any]] = []
        if bench.peers {
            peerRecords = PeerRunner(dir: bench.peersDir, threads: threads, reps: bench.reps, minSample: bench.minSample)
                .run(cases: cases.map { [$0.m, $0.n, $0.k] })
            if !bench.json { printRatios(ours: records, peers: peerRecords, names: names) }
        }
        if bench.json { print(try jsonString(records + peerRecords)) }
    }

    private var header: String {
        [pad("M", 5, right: true), pad("N", 6, right: true), pad("K", 6, right: true), " ", pad("backend", 10),
         pad("kernel", 26), pad("median", 11, right: true), pad("GFLOPS", 8, right: true),
         pad("%peak", 6, right: true), pad("spread", 7, right: true), "  M=1: GB/s of weight / read GB/s"].joined()
    }

    private func row(_ r: [String: Any], spread: Double) -> String {
        let t = r["median_s"] as! Double
        var s = [pad("\(r["m"]!)", 5, right: true), pad("\(r["n"]!)", 6, right: true),
                 pad("\(r["k"]!)", 6, right: true), " ", pad(r["backend"] as! String, 10),
                 pad(r["kernel"] as! String, 26),
                 pad(t < 1e-3 ? "\(fmt(t * 1e6)) µs" : "\(fmt(t * 1e3, 2)) ms", 11, right: true),
                 pad(fmt(r["gflops"] as! Double), 8, right: true), pad(fmt(r["pct_peak"] as! Double, 0), 6, right: true),
                 pad("\(fmt(100 * spread, 0))%", 7, right: true)].joined()
        if let g = r["weight_gbps"] as? Double, let bw = r["read_gbps"] as? Double {
            s += "  \(fmt(g)) / \(fmt(bw)) = \(fmt(100 * g / bw, 0))%"
        }
        return s
    }

    private func printRatios(ours: [[String: Any]], peers: [[String: Any]], names: [String]) {
        let peerNames = Array(Set(peers.compactMap { $0["backend"] as? String })).sorted()
        guard !peerNames.isEmpty else { return }
        print("")
        print("ratios from this run (GFLOPS; ratio > 1 means Condense is faster; Python peers at their time less the measured per-call binding overhead):")
        var head = pad("M", 5, right: true) + pad("N", 6, right: true) + pad("K", 6, right: true) + "  "
        for n in names { head += pad(n, 9, right: true) }
        for p in peerNames { head += pad(p, 16, right: true) + pad("ours/" + p.prefix(6), 13, right: true) }
        print(head)
        func key(_ r: [String: Any]) -> String { "\(r["m"]!)x\(r["n"]!)x\(r["k"]!)" }
        var peerBy: [String: [String: Double]] = [:]
        // Peers at their net time (less the measured per-call binding overhead): generous to them.
        for r in peers {
            let ops = 2 * Double(r["m"] as? Int ?? 0) * Double(r["n"] as? Int ?? 0) * Double(r["k"] as? Int ?? 0)
            peerBy[key(r), default: [:]][r["backend"] as! String] = ops / PeerRunner.seconds(r).net * 1e-9
        }
        var seen = Set<String>()
        for r in ours where !seen.contains(key(r)) {
            seen.insert(key(r))
            var line = pad("\(r["m"]!)", 5, right: true) + pad("\(r["n"]!)", 6, right: true) + pad("\(r["k"]!)", 6, right: true) + "  "
            var best = 0.0
            for n in names {
                let g = ours.first { key($0) == key(r) && ($0["backend"] as! String) == n }?["gflops"] as? Double ?? 0
                best = max(best, g)
                line += pad(fmt(g), 9, right: true)
            }
            for p in peerNames {
                if let g = peerBy[key(r)]?[p] {
                    line += pad(fmt(g), 16, right: true) + pad(fmt(best / g, 2) + "×", 13, right: true)
                } else {
                    line += pad("-", 16, right: true) + pad("-", 13, right: true)
                }
            }
            print(line)
        }
    }
}
