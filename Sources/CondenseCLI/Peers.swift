import Foundation

/// Runs the peer runners in Benchmarks/peers on the same cases and collects their JSON records.
/// A peer that is missing or fails is reported and skipped: the benchmark still prints ours.
struct PeerRunner {
    let dir: String
    let threads: Int
    let reps: Int
    /// The same sample length and weight rotation as Condense's own timings (equal terms).
    var minSample = 0.02
    var rotate = 1

    init(dir: String, threads: Int, reps: Int, minSample: Double = 0.02, rotate: Int = 1) {
        (self.dir, self.threads, self.reps, self.minSample, self.rotate) = (dir, threads, reps, minSample, rotate)
    }

    /// The arguments every runner takes for equal terms.
    private var common: [String] {
        ["--threads", "\(threads)", "--reps", "\(reps)", "--min-sample", "\(minSample)", "--rotate", "\(rotate)"]
    }

    /// A peer's time for ratios: its median less the measured per-call overhead of its Python
    /// binding (the figure most generous to the peer), and the raw median.
    static func seconds(_ r: [String: Any]) -> (net: Double, raw: Double) {
        let raw = r["median_s"] as? Double ?? .nan
        return ((r["net_median_s"] as? Double) ?? raw, raw)
    }

    /// "1.23× (raw 1.40×)": the ratio peer / Condense on the peer's net time, and on its raw time
    /// when a binding overhead was subtracted.
    static func ratio(_ r: [String: Any], ours t: Double) -> String {
        let (net, raw) = seconds(r)
        let a = String(format: "%.2f×", net / t)
        return net == raw ? a : a + String(format: " (raw %.2f×)", raw / t)
    }

    func run(cases: [[Int]]) -> [[String: Any]] {
        let spec = cases.map { $0.map(String.init).joined(separator: ",") }
        var out: [[String: Any]] = []
        // numpy/OpenBLAS: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE would pin an older kernel.
        out += invoke(["python3", "\(dir)/gemm_numpy.py"] + common + spec,
                      name: "numpy", unset: ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"])
        out += oneDNN([], spec: spec)
        return out
    }

    /// The oneDNN runner (built on first use) with extra flags, e.g. `--int8`.
    func oneDNN(_ flags: [String], spec: [String]) -> [[String: Any]] {
        let onednn = "\(dir)/bin/gemm_onednn"
        // Built on first use, and again when its source is newer than the binary.
        let mtime = { (p: String) in (try? FileManager.default.attributesOfItem(atPath: p)[.modificationDate] as? Date) ?? nil }
        if !FileManager.default.isExecutableFile(atPath: onednn)
            || (mtime("\(dir)/gemm_onednn.c") ?? .distantPast) > (mtime(onednn) ?? .distantPast) {
            _ = invoke(["bash", "\(dir)/build.sh"], name: "oneDNN build", unset: [])
        }
        return invoke([onednn] + common + flags + spec, name: "oneDNN", unset: [])
    }

    /// Runs one Python peer script of the folder with extra arguments.
    func runScript(_ script: String, arguments: [String], name: String) -> [[String: Any]] {
        invoke(["python3", "\(dir)/\(script)"] + common + arguments,
               name: name, unset: ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"])
    }

    private func invoke(_ argv: [String], name: String, unset: [String]) -> [[String: Any]] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = argv
        var env = ProcessInfo.processInfo.environment
        for k in unset { env.removeValue(forKey: k) }
        // Set before the child starts: libgomp reads it in a load-time constructor.
        env["OMP_NUM_THREADS"] = "\(threads)"
        env["OPENBLAS_NUM_THREADS"] = "\(threads)"
        p.environment = env
        let pipe = Pipe(), err = Pipe()
        p.standardOutput = pipe
        p.standardError = err
        do { try p.run() } catch {
            note("peer \(name) could not start: \(error)")
            return []
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            note("peer \(name) failed (exit \(p.terminationStatus)): \(errText.split(separator: "\n").last ?? "")")
            return []
        }
        if data.isEmpty { return [] }
        guard let records = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            note("peer \(name) printed no JSON array")
            return []
        }
        return records
    }

    private func note(_ s: String) {
        FileHandle.standardError.write(Data("note: \(s)\n".utf8))
    }
}
