import ArgumentParser
import CCondenseKernels
import Condense
import CondenseCompression
import Foundation

/// Every candidate the registry considers for a layer, timed side by side by the benchmark (not
/// by the selection), next to what `fastest` picked and how long picking took.
struct BenchDispatch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dispatch",
        abstract: "Time every dispatch candidate (built-in backends, plugins from CONDENSE_PLUGIN_PATH, densified) side by side, and check what policy fastest picks against the best.")

    @Option(name: .customLong("m"), help: "Batch sizes M, comma-separated.")
    var batches = "1,8,32,128,512"
    @Option(help: "Layer shapes NxK, comma-separated.")
    var shapes = "768x768,3072x768,768x3072,4096x4096"
    @Option(help: "Formats: dense, 2:4, csrNN (NN % sparsity), int8, int4, 2:4-int8, comma-separated.")
    var formats = "dense,int8,int4,2:4-int8"
    @Option(help: "Leave out candidates whose label contains one of these, comma-separated (e.g. simd).")
    var exclude = ""
    @OptionGroup var bench: BenchOptions
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        try runtime.apply()
        let registry = cliRegistry()
        let skip = exclude.split(separator: ",").map(String.init)
        var rng = XorShift(seed: 21)
        var records: [[String: Any]] = []
        if !bench.json {
            print("condense bench dispatch: \(CondenseRuntime.cpuBrand), isa \(CondenseRuntime.activeISA), \(CondenseRuntime.threads) thread(s)")
            print("backends: \(registry.backends.map(\.tuningIdentity).joined(separator: ", "))")
            print("each candidate: median of \(bench.reps) samples; picked = policy fastest with an empty cache; select = its first prepare, cached = a second one (tuning-cache hit)\n")
        }
        var within = 0, total = 0
        for (n, k) in try parseShapes(shapes, option: "--shapes") {
            let w = try rng.matrix(n, k)
            for f in formats.split(separator: ",").map(String.init) {
                let layer = try benchLayer(format: f, weights: w)
                let candidates = try registry.candidates(for: layer).filter { c in !skip.contains { c.label.contains($0) } }
                let prepared = try candidates.map { try $0.prepare() }
                for m in try parseInts(batches, option: "--m") where m > 0 {
                    let x = try rng.matrix(m, k)
                    var y = try Matrix<Float>(rows: m, columns: n)
                    var times: [(String, Double, String)] = []
                    for (c, p) in zip(candidates, prepared) {
                        condense_threads_quiesce()  // as the selection does: no spinning workers of ours
                        let t = try Timing.measure(samples: bench.reps, minSampleSeconds: bench.minSample) { try p.apply(x, into: &y) }
                        times.append((c.label, t.median, p.kernelName(forBatch: m)))
                    }
                    // The selection, from scratch: an empty cache, so it measures (and packs) every candidate.
                    registry.tuningCache = try TuningCache()
                    let start = ContinuousClock.now
                    let placed = try registry.prepare(layer, policy: .fastest(batch: m))
                    let selectS = seconds(ContinuousClock.now - start)
                    // The same signature again: a tuning-cache hit, i.e. the winner's own prepare.
                    let again = ContinuousClock.now
                    _ = try registry.prepare(layer, policy: .fastest(batch: m))
                    let cachedS = seconds(ContinuousClock.now - again)
                    let picked = placed.placement.backend + (placed.placement.format == layer.format ? "" : " (dense)")
                    guard let best = times.min(by: { $0.1 < $1.1 }) else { continue }
                    let pickedTime = times.first { $0.0 == picked }?.1
                    let ratio = pickedTime.map { $0 / best.1 }
                    if let ratio { total += 1; if ratio <= 1.05 { within += 1 } }
                    records.append([
                        "op": "dispatch", "format": f, "m": m, "n": n, "k": k, "threads": CondenseRuntime.threads,
                        "candidates": times.map { ["label": $0.0, "median_s": $0.1, "kernel": $0.2] },
                        "best": best.0, "best_s": best.1, "picked": picked, "picked_s": pickedTime ?? -1,
                        "picked_over_best": ratio ?? -1, "select_s": selectS, "cached_s": cachedS,
                        "slice_rows": placed.placement.sliceRows ?? n, "triaged": placed.placement.triaged,
                        "slice_timings": placed.placement.sliceTimings.map { ["label": $0.candidate, "seconds": $0.seconds] },
                        "select_timings": placed.placement.timings.map { ["label": $0.candidate, "seconds": $0.seconds] },
                    ])
                    if !bench.json {
                        let cells = times.map { "\($0.0) \(micro($0.1))" }.joined(separator: " | ")
                        let verdict = ratio.map { $0 <= 1.05 ? "ok" : "MISS \(fmt(100 * ($0 - 1), 1)) % slower" } ?? "picked an excluded candidate"
                        print("\(pad("\(m)", 4, right: true)) \(pad("\(n)x\(k)", 10)) \(pad(f, 6)) \(cells)")
                        print("     → picked \(picked) (\(ratio.map { fmt($0, 3) + "× best" } ?? "-")) \(verdict); select \(fmt(selectS * 1e3, 1)) ms, cached \(fmt(cachedS * 1e3, 1)) ms"
                              + (placed.placement.sliceRows.map { " (slice of \($0) rows, \(placed.placement.timings.count) finalist(s))" } ?? ""))
                    }
                }
            }
        }
        if bench.json {
            print(try jsonString(records))
        } else {
            print("\nfastest within 5 % of the best candidate in \(within) of \(total) cases")
        }
    }

    private func micro(_ s: Double) -> String { s < 1e-3 ? "\(fmt(s * 1e6)) µs" : "\(fmt(s * 1e3, 2)) ms" }
}

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }

/// A layer in one of the benchmark formats, from dense weights `w`.
func benchLayer(format f: String, weights w: Matrix<Float>) throws -> LinearLayer {
    switch f {
    case "dense": return try LinearLayer(weights: .dense(w))
    case "2:4": return try LinearLayer(weights: .sparse24(Sparse24Matrix(dense: Pruning.semiStructured(w).apply(to: w))))
    case "int8": return try LinearLayer(weights: .dense(w)).converted(to: .int8)
    case "int4": return try LinearLayer(weights: .dense(w)).converted(to: .int4(group: 32))
    case "2:4-int8":
        return try LinearLayer(weights: .sparse24Int8(Sparse24Int8Weights(
            quantizing: Sparse24Matrix(dense: Pruning.semiStructured(w).apply(to: w)))))
    case let s where s.hasPrefix("csr"):
        guard let pct = Double(s.dropFirst(3)), pct >= 0, pct <= 100 else {
            throw ValidationError("--formats: '\(s)' is not csrNN with NN in 0…100")
        }
        let pruned = try Pruning.unstructured(w, sparsity: pct / 100).apply(to: w)
        return try LinearLayer(weights: .csr(CSRMatrix(dense: pruned)))
    default: throw ValidationError("--formats: unknown format '\(f)' (dense, 2:4, csrNN, int8, int4, 2:4-int8)")
    }
}
