import ArgumentParser
import CCondenseKernels
import Condense
import Dispatch
import Foundation

/// Options every `condense bench` command shares.
struct BenchOptions: ParsableArguments {
    @Option(help: "Samples per case; the median is reported.")
    var reps = 7
    @Option(help: "Minimum seconds per sample (iterations are repeated to reach it).")
    var minSample = 0.02
    @Flag(help: "Print the records as a JSON array instead of a table.")
    var json = false
    @Flag(help: "Also run the peers named in the command's help on the same cases, in the same run.")
    var peers = false
    @Option(help: "Folder of the peer runners.")
    var peersDir = "Benchmarks/peers"

    func validate() throws {
        guard reps >= 1 else { throw ValidationError("--reps must be >= 1, got \(reps)") }
        guard minSample.isFinite, minSample >= 0, minSample <= 60 else { throw ValidationError("--min-sample must be in 0…60 seconds, got \(minSample)") }
    }
}

/// The largest layer a benchmark builds (N·K elements, 4 GiB of f32): a typo such as
/// 10000000x10000000 is an error, not an allocation the machine cannot hold.
let benchMaxElements = 1 << 30

/// Deterministic uniform [-1, 1) values; benchmarks need repeatable inputs, not statistics.
struct XorShift {
    var state: UInt64
    init(seed: UInt64) { state = seed | 1 }
    mutating func next() -> Float {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return Float(state >> 40) / Float(1 << 23) - 1
    }
    mutating func matrix(_ rows: Int, _ cols: Int) throws -> Matrix<Float> {
        var m = try Matrix<Float>(rows: rows, columns: cols)
        m.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] = next() } }
        return m
    }
}

/// Timing of one operation: median and spread of `samples` samples, each long enough to be
/// well above the clock's resolution.
struct Timing {
    let median: Double, min: Double, max: Double
    /// (max − min) / median: the run-to-run spread, reported so noisy figures are visible.
    var spread: Double { (max - min) / median }

    static func measure(samples: Int, minSampleSeconds: Double, _ body: () throws -> Void) rethrows -> Timing {
        try body() // warm-up: page faults, caches, OpenMP thread start
        var iters = 1
        while true { // calibrate iterations per sample
            let t = try time(iters, body)
            if t >= minSampleSeconds || iters >= 1 << 20 { break }
            iters *= t > 0 ? Swift.max(2, Swift.min(16, Int(minSampleSeconds / t) + 1)) : 16
        }
        var ts: [Double] = []
        for _ in 0..<Swift.max(1, samples) { ts.append(try time(iters, body) / Double(iters)) }
        ts.sort()
        return Timing(median: ts[ts.count / 2], min: ts.first!, max: ts.last!)
    }

    private static func time(_ iters: Int, _ body: () throws -> Void) rethrows -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<iters { try body() }
        return Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
    }
}

/// Parses "1,8,32".
func parseInts(_ text: String, option: String, minimum: Int = 0) throws -> [Int] {
    try text.split(separator: ",").map { part in
        guard let v = Int(part.trimmingCharacters(in: .whitespaces)), v >= minimum, v <= benchMaxElements else {
            throw CondenseError.invalidArgument("\(option): '\(part)' is not an integer in \(minimum)…\(benchMaxElements)")
        }
        return v
    }
}

/// Parses "768x768,3072x768" into (N, K) pairs.
func parseShapes(_ text: String, option: String) throws -> [(n: Int, k: Int)] {
    try text.split(separator: ",").map { part in
        let dims = part.split(separator: "x")
        guard dims.count == 2, let n = Int(dims[0]), let k = Int(dims[1]), n > 0, k > 0 else {
            throw CondenseError.invalidArgument("\(option): '\(part)' is not NxK with positive N and K")
        }
        guard n <= benchMaxElements / k else {
            throw CondenseError.invalidArgument("\(option): '\(part)' has more than \(benchMaxElements) elements")
        }
        return (n, k)
    }
}

func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
    if s.count >= width { return s }
    let fill = String(repeating: " ", count: width - s.count)
    return right ? fill + s : s + fill
}

func fmt(_ v: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", v) }

/// The machine a figure came from, measured in this process: CPU model, the ISA level that ran,
/// threads used of the processors present, cache sizes, and the read bandwidth of a buffer
/// four times the L3 (at least 256 MiB) with those threads. Figures from two machines, or two
/// runs on one shared host, compare only with this beside them.
enum MachineRecord {
    // Immutable once computed; [String: Any] is not Sendable only because of Any.
    nonisolated(unsafe) static let value: [String: Any] = {
        let caches = CondenseRuntime.cacheSizes
        let probeBytes = max(256 << 20, 4 * (caches[3] ?? 0))
        var r: [String: Any] = [
            "cpu": CondenseRuntime.cpuBrand.isEmpty ? "unknown" : CondenseRuntime.cpuBrand,
            "isa": "\(CondenseRuntime.activeISA)", "threads": CondenseRuntime.threads, "processors": CondenseRuntime.processorCount,
            "read_probe_gbps": condense_probe_read_gbps(probeBytes, Int32(CondenseRuntime.threads), 3), "read_probe_bytes": probeBytes,
        ]
        for (level, bytes) in caches { r["l\(level)_bytes"] = bytes }
        return r
    }()
}

/// A JSON value for the benchmark records, written with sorted keys so diffs stay readable;
/// every record gets the ``MachineRecord`` it was measured on under "machine".
func jsonString(_ records: [[String: Any]]) throws -> String {
    let records = records.map { r in r.merging(["machine": MachineRecord.value]) { old, _ in old } }
    let data = try JSONSerialization.data(withJSONObject: records, options: [.prettyPrinted, .sortedKeys])
    return String(decoding: data, as: UTF8.self)
}
