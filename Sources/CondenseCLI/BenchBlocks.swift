import ArgumentParser
import Condense
import Foundation

/// 2:4-int4 against the blocks a GGUF model is stored in, at the model's own projection shapes
/// and at the row counts decoding produces: 1 (one sequence), 8–32 (continuous batching), 512
/// (a prompt). The same layers also as exact Q4_0 (the 2:4-int4 weights with zeros written
/// out), the dense kernel a placement per batch size would switch to.
struct BenchBlocks: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blocks",
        abstract: "A GGUF model's projections as stored against 2:4-int4 and the same 2:4-int4 weights as Q4_0, per batch size (rows), cycling through the model's layers.")

    @Option(help: "The GGUF model whose projections are measured.")
    var gguf: String
    @Option(name: .customLong("m"), help: "Rows (tokens in one call), comma-separated.")
    var batches = "1,4,8,16,32,64,512"
    @Option(help: "Layers cycled through, so weights stream from memory as in a decode step (0: all).")
    var layers = 8
    @OptionGroup var bench: BenchOptions
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard layers >= 0 else { throw ValidationError("--layers must be >= 0, got \(layers)") }
    }

    /// The projections the decoder stacks into one call, by role.
    static let groups: [(String, [String])] = [
        ("qkv", ["attn_q", "attn_k", "attn_v"]), ("attn_output", ["attn_output"]),
        ("gate+up", ["ffn_gate", "ffn_up"]), ("ffn_down", ["ffn_down"]),
    ]

    func run() throws {
        try runtime.apply()
        let file = try GGUFFile(contentsOf: gguf)
        let ms = try parseInts(batches, option: "--m", minimum: 1)
        let names = Set(file.tensors.map(\.name))
        var count = 0
        while names.contains("blk.\(count).attn_output.weight") { count += 1 }
        guard count > 0 else { throw ValidationError("--gguf \(gguf): no blk.N.attn_output.weight tensors (not a decoder)") }
        let used = layers == 0 ? count : min(layers, count)
        let threads = CondenseRuntime.threads
        if !bench.json {
            print("condense bench blocks: \(CondenseRuntime.cpuBrand), isa \(CondenseRuntime.activeISA), \(threads) thread(s)")
            print("\(URL(fileURLWithPath: gguf).lastPathComponent): \(used) of \(count) layers cycled; median per call; × = source time / this time")
            print([pad("M", 5, right: true), "  ", pad("projection", 12), pad("N×K", 12), pad("source", 22, right: true),
                   pad("2:4-int4", 22, right: true), pad("as Q4_0", 22, right: true)].joined())
        }
        var records: [[String: Any]] = []
        for (role, parts) in Self.groups {
            // Per layer: the source's tensors (same-type runs stacked, as the decoder places them),
            // 2:4-int4 of their weights stacked, and those 2:4-int4 weights as Q4_0.
            var source: [[GGUFBlockLinear]] = [], s24: [GGUFBlockLinear] = [], q40: [GGUFBlockLinear] = []
            var shape = (0, 0), sourceType = ""
            for l in 0..<used {
                let ts = try parts.map { try file.tensor("blk.\(l).\($0).weight") }
                guard ts.allSatisfy({ $0.dims[0] % 64 == 0 }) else { throw ValidationError("\(role): K = \(ts[0].dims[0]) is not a multiple of 64") }
                var runs: [[GGUFFile.Tensor]] = []
                for t in ts { if runs.last?.last?.type == t.type { runs[runs.count - 1].append(t) } else { runs.append([t]) } }
                source.append(try runs.map { try GGUFBlockLinear(stacking: $0) })
                sourceType = runs.map { "\($0[0].type)" }.joined(separator: "+")
                let ws = try ts.map { t in
                    try Sparse24Int4Weights(quantizing: Matrix(rows: t.dims[1], columns: t.dims[0],
                                                               elements: GGUFDequantize.floats(t.data, type: t.type, count: t.elementCount, name: t.name)))
                }
                s24.append(try GGUFBlockLinear(stacking: ws))
                q40.append(try GGUFBlockLinear(stacking: ws.enumerated().map { i, w in
                    GGUFFile.Tensor(name: "\(parts[i]) as Q4_0", dims: [w.columns, w.rows], type: .q4_0, data: w.q4_0Blocks())
                }))
                shape = (ts.reduce(0) { $0 + $1.dims[1] }, ts[0].dims[0])
            }
            var rng = XorShift(seed: 5)
            for m in ms {
                let x = try rng.matrix(m, shape.1)
                var y = try Matrix<Float>(rows: m, columns: shape.0)
                func time(_ run: @escaping (Int) throws -> Void) throws -> Double {
                    var turn = 0
                    return try Timing.measure(samples: bench.reps, minSampleSeconds: bench.minSample) {
                        try run(turn % used)
                        turn += 1
                    }.median
                }
                let ts = try time { l in for p in source[l] { _ = try p.apply(x) } }
                let t24 = try time { l in try s24[l].apply(x, into: &y) }
                let tq = try time { l in try q40[l].apply(x, into: &y) }
                records.append(["op": "blocks", "model": URL(fileURLWithPath: gguf).lastPathComponent, "projection": role,
                                "m": m, "n": shape.0, "k": shape.1, "threads": threads,
                                "source_type": sourceType, "source_median_s": ts, "s24q4_median_s": t24, "q4_0_median_s": tq,
                                "s24q4_speedup": ts / t24, "q4_0_speedup": ts / tq, "layers": used])
                if !bench.json {
                    func cell(_ t: Double) -> String { "\(fmt(t * 1e6)) µs (\(fmt(ts / t, 2))×)" }
                    print([pad("\(m)", 5, right: true), "  ", pad(role, 12), pad("\(shape.0)×\(shape.1)", 12),
                           pad("\(fmt(ts * 1e6)) µs \(sourceType)", 22, right: true), pad(cell(t24), 22, right: true), pad(cell(tq), 22, right: true)].joined())
                }
            }
        }
        if bench.json { print(try jsonString(records)) }
    }
}
