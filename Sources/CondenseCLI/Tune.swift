import ArgumentParser
import Condense
import CondenseCompression
import Foundation

struct Tune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure where each layer should run (policy fastest), fill the tuning cache, print the placement table.")

    @Option(help: "Layer shapes NxK, comma-separated.")
    var shapes = "768x768,3072x768,4096x4096"
    @Option(help: "Formats: dense, 2:4, csrNN (NN % sparsity), int8, int4, comma-separated.")
    var formats = "dense,2:4,csr90,int8,int4"
    @Option(name: .customLong("m"), help: "Batch sizes, comma-separated.")
    var batches = "1,32"
    @Option(help: "Tuning cache file (default: $XDG_CACHE_HOME or ~/.cache, condense/tuning.json).")
    var cache: String?
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        try runtime.apply()
        let registry = cliRegistry()
        let home = ProcessInfo.processInfo.environment["XDG_CACHE_HOME"]
            ?? (ProcessInfo.processInfo.environment["HOME"].map { $0 + "/.cache" } ?? "/tmp")
        let path = cache ?? home + "/condense/tuning.json"
        registry.tuningCache = try TuningCache(path: path)
        print("tuning cache: \(path) (\(registry.tuningCache.count) entries before)")
        var rng = XorShift(seed: 5)
        for (n, k) in try parseShapes(shapes, option: "--shapes") {
            let w = try rng.matrix(n, k)
            for f in formats.split(separator: ",").map(String.init) {
                let layer = try benchLayer(format: f, weights: w)
                for m in try parseInts(batches, option: "--m") {
                    let start = ContinuousClock.now
                    let placed = try registry.prepare(layer, policy: .fastest(batch: m))
                    let ms = seconds(ContinuousClock.now - start) * 1e3
                    print("\(pad("\(n)x\(k)", 10)) \(pad(f, 6)) M=\(pad("\(m)", 4)) \(fmt(ms, 1)) ms  \(placed.placement)")
                }
            }
        }
        print("tuning cache: \(registry.tuningCache.count) entries after")
    }
}
