import ArgumentParser
import Condense
import CondenseCompression
import Foundation

struct BenchSparse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sparse",
        abstract: "Sparse (CSR at several sparsities, and 2:4) against Condense's own dense kernel. Peers (--peers): scipy.sparse, MKL sparse.")

    @Option(help: "Unstructured sparsities in percent, comma-separated (magnitude-pruned, exact).")
    var sparsity = "50,70,80,90,95,99"
    @Flag(name: .customLong("skip-24"), help: "Leave out the 2:4 semi-structured case.")
    var skip24 = false
    @Option(help: "Layer shapes NxK, comma-separated.")
    var shapes = "768x768,3072x768,4096x4096"
    @Option(name: .customLong("m"), help: "Batch sizes M, comma-separated.")
    var batches = "1,8,32,128"
    @Option(help: "Write an SVG chart of speedup against sparsity (one line per M, a panel per shape).")
    var plot: String?
    @OptionGroup var bench: BenchOptions
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        try runtime.apply()
        let threads = CondenseRuntime.threads
        let levels = try parseInts(sparsity, option: "--sparsity").map { Double($0) / 100 }
        if let bad = levels.first(where: { $0 > 1 }) {
            throw ValidationError("--sparsity: \(Int(bad * 100)) % is above 100 %")
        }
        let ms = try parseInts(batches, option: "--m")
        let registry = BackendRegistry.standard()
        var rng = XorShift(seed: 7)
        var records: [[String: Any]] = []
        var exports: [[String: Any]] = []
        let exportDir = bench.peers ? FileManager.default.temporaryDirectory
            .appendingPathComponent("condense-spmm-\(ProcessInfo.processInfo.processIdentifier)") : nil
        if let exportDir { try FileOutput.createFolder(exportDir.path) }
        defer { if let exportDir { try? FileManager.default.removeItem(at: exportDir) } }
        if !bench.json {
            print("condense bench sparse: \(CondenseRuntime.cpuBrand), isa \(CondenseRuntime.activeISA), \(threads) thread(s)")
            print("speedup = our dense f32 GEMM time / sparse time (same shape, same M, same run)")
        }
        for (n, k) in try parseShapes(shapes, option: "--shapes") {
            let w = try rng.matrix(n, k)
            // One sort of the magnitudes serves every sparsity: exact counts, no repeated sorting.
            let sortedMagnitudes = w.elements.map(abs).sorted()
            var variants: [(label: String, sparsity: Double, layer: LinearLayer)] = []
            if !skip24 {
                let w24 = try Pruning.semiStructured(w).apply(to: w)
                variants.append(("2:4", 0.5, try LinearLayer(weights: .sparse24(Sparse24Matrix(dense: w24)))))
            }
            for s in levels {
                let prune = Int((s * Double(w.count)).rounded())
                let tau = prune == 0 ? -Float.infinity : sortedMagnitudes[prune - 1]
                var pruned = w
                pruned.withUnsafeMutableBufferPointer { p in for i in p.indices where abs(p[i]) <= tau { p[i] = 0 } }
                let csr = CSRMatrix(dense: pruned)
                variants.append(("csr", s, try LinearLayer(weights: .csr(csr))))
                if let exportDir { exports.append(try export(csr, sparsity: s, to: exportDir)) }
            }
            let dense = try registry.prepare(LinearLayer(weights: .dense(w)), policy: .forced("native"))
            let prepared = try variants.map { try registry.prepare($0.layer, policy: .forced("native")) }
            for m in ms {
                let x = try rng.matrix(m, k)
                var y = try Matrix<Float>(rows: m, columns: n)
                let td = try Timing.measure(samples: bench.reps, minSampleSeconds: bench.minSample) { try dense.apply(x, into: &y) }
                records.append(record("dense", 0, m, n, k, dense.kernelName(forBatch: m), td, threads, td.median))
                for (v, p) in zip(variants, prepared) {
                    let t = try Timing.measure(samples: bench.reps, minSampleSeconds: bench.minSample) { try p.apply(x, into: &y) }
                    var r = record(v.label, v.sparsity, m, n, k, p.kernelName(forBatch: m), t, threads, td.median)
                    r["weight_bytes"] = v.layer.weights.byteCount
                    records.append(r)
                }
            }
            if !bench.json { printShape(records.filter { ($0["n"] as! Int) == n && ($0["k"] as! Int) == k }, ms: ms, levels: levels) }
        }
        var peerRecords: [[String: Any]] = []
        if let exportDir, !exports.isEmpty {
            let manifest = exportDir.appendingPathComponent("manifest.json")
            try JSONSerialization.data(withJSONObject: ["matrices": exports, "m": ms, "reps": bench.reps])
                .write(to: manifest)
            peerRecords = PeerRunner(dir: bench.peersDir, threads: threads, reps: bench.reps, minSample: bench.minSample)
                .runScript("spmm_peers.py", arguments: ["--manifest", manifest.path], name: "scipy/MKL")
            if !bench.json { printPeers(ours: records, peers: peerRecords) }
        }
        if let plot { try SparsePlot(records: records, batches: ms).write(to: plot); if !bench.json { print("\nchart written to \(plot)") } }
        if bench.json { print(try jsonString(records + peerRecords)) }
    }

    private func record(_ format: String, _ s: Double, _ m: Int, _ n: Int, _ k: Int, _ kernel: String, _ t: Timing,
                        _ threads: Int, _ dense: Double) -> [String: Any] {
        ["op": "spmm", "format": format, "sparsity": s, "m": m, "n": n, "k": k, "backend": "native", "kernel": kernel,
         "threads": threads, "median_s": t.median, "min_s": t.min, "max_s": t.max,
         "gflops": 2.0 * Double(m * n * k) / t.median * 1e-9, "speedup_vs_dense": dense / t.median]
    }

    /// Raw little-endian arrays plus a manifest entry, so the peers run on exactly these matrices.
    private func export(_ csr: CSRMatrix, sparsity: Double, to dir: URL) throws -> [String: Any] {
        let base = "csr_\(csr.rows)x\(csr.columns)_\(Int((sparsity * 100).rounded()))"
        func write<T>(_ a: [T], _ suffix: String) throws -> String {
            let url = dir.appendingPathComponent(base + suffix)
            try a.withUnsafeBytes { Data($0) }.write(to: url)
            return url.path
        }
        let indices: [UInt32] = (0..<csr.nonZeroCount).map { UInt32(csr.columnIndices[$0]) }
        return ["n": csr.rows, "k": csr.columns, "sparsity": sparsity, "nnz": csr.nonZeroCount,
                "row_ptr": try write(csr.rowOffsets, ".ptr.u32"), "indices": try write(indices, ".idx.u32"),
                "values": try write(csr.values, ".val.f32")]
    }

    private func speedup(_ rs: [[String: Any]], _ format: String, _ s: Double, _ m: Int) -> Double? {
        rs.first { ($0["format"] as! String) == format && abs(($0["sparsity"] as! Double) - s) < 1e-9 && ($0["m"] as! Int) == m }?["speedup_vs_dense"] as? Double
    }

    private func printShape(_ rs: [[String: Any]], ms: [Int], levels: [Double]) {
        guard let first = rs.first else { return }
        print("\nN=\(first["n"]!) K=\(first["k"]!)")
        var head = pad("M", 5, right: true) + pad("dense", 11, right: true)
        if !skip24 { head += pad("2:4", 8, right: true) }
        for s in levels { head += pad("csr \(Int((s * 100).rounded()))%", 9, right: true) }
        print(head + "   crossover (CSR starts to win)")
        for m in ms {
            let d = rs.first { ($0["format"] as! String) == "dense" && ($0["m"] as! Int) == m }!["median_s"] as! Double
            var line = pad("\(m)", 5, right: true) + pad(d < 1e-3 ? "\(fmt(d * 1e6)) µs" : "\(fmt(d * 1e3, 2)) ms", 11, right: true)
            if !skip24 { line += pad(fmt(speedup(rs, "2:4", 0.5, m) ?? 0, 2) + "×", 8, right: true) }
            for s in levels { line += pad(fmt(speedup(rs, "csr", s, m) ?? 0, 2) + "×", 9, right: true) }
            print(line + "   " + crossover(levels.map { ($0, speedup(rs, "csr", $0, m) ?? 0) }))
        }
    }

    /// The lowest sparsity from which CSR wins at every measured level above it, with a linear
    /// interpolation of where the speedup crosses 1 between the neighbouring measurements.
    private func crossover(_ points: [(Double, Double)]) -> String {
        let p = points.sorted { $0.0 < $1.0 }
        guard let lastLoss = p.lastIndex(where: { $0.1 <= 1 }) else { return "wins at every level measured (≤ \(Int(p.first!.0 * 100)) %)" }
        guard lastLoss + 1 < p.count else { return "never within the levels measured (> \(Int(p.last!.0 * 100)) %)" }
        let (a, b) = (p[lastLoss], p[lastLoss + 1])
        let at = a.0 + (1 - a.1) / (b.1 - a.1) * (b.0 - a.0)
        return "≈ \(fmt(at * 100, 0)) % (between \(Int(a.0 * 100)) and \(Int(b.0 * 100)) %)"
    }

    private func printPeers(ours: [[String: Any]], peers: [[String: Any]]) {
        guard !peers.isEmpty else { return }
        print("\nCSR against peers on the same matrices (time ratio peer / Condense; > 1 means Condense is faster):")
        let names = Array(Set(peers.map { $0["backend"] as! String })).sorted()
        var head = pad("N", 6, right: true) + pad("K", 6, right: true) + pad("sparsity", 10, right: true) + pad("M", 5, right: true)
        head += pad("Condense", 12, right: true)
        // scipy.sparse has no threads: it runs on 1 thread against Condense's and MKL's `threads`.
        for nm in names { head += pad(nm == "scipy" ? "scipy (1 thr)" : nm, 14, right: true) + pad("ratio", 8, right: true) }
        print(head)
        for r in ours where (r["format"] as! String) == "csr" {
            let t = r["median_s"] as! Double
            var line = pad("\(r["n"]!)", 6, right: true) + pad("\(r["k"]!)", 6, right: true)
            line += pad("\(Int(((r["sparsity"] as! Double) * 100).rounded())) %", 10, right: true) + pad("\(r["m"]!)", 5, right: true)
            line += pad("\(fmt(t * 1e6)) µs", 12, right: true)
            for nm in names {
                if let p = peers.first(where: { ($0["backend"] as! String) == nm && ($0["n"] as! Int) == (r["n"] as! Int)
                    && ($0["k"] as! Int) == (r["k"] as! Int) && ($0["m"] as! Int) == (r["m"] as! Int)
                    && abs(($0["sparsity"] as! Double) - (r["sparsity"] as! Double)) < 1e-9 }) {
                    let pt = PeerRunner.seconds(p).net
                    line += pad("\(fmt(pt * 1e6)) µs", 14, right: true) + pad(fmt(pt / t, 2) + "×", 8, right: true)
                } else {
                    line += pad("-", 14, right: true) + pad("-", 8, right: true)
                }
            }
            print(line)
        }
    }
}
