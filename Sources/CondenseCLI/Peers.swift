import Foundation

/// Runs the peer runners in Benchmarks/peers on the same cases and collects their JSON records.
/// A peer that is missing or fails is reported and skipped: the benchmark still prints ours.
struct PeerRunner {
    let dir: String
    let threads: Int
    let reps: Int

    func run(cases: [[Int]]) -> [[String: Any]] {
        let spec = cases.map { $0.map(String.init).joined(separator: ",") }
        var out: [[String: Any]] = []
        // numpy/OpenBLAS: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE would pin an older kernel.
        out += invoke(["python3", "\(dir)/gemm_numpy.py", "--threads", "\(threads)", "--reps", "\(reps)"] + spec,
                      name: "numpy", unset: ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"])
        out += oneDNN([], spec: spec)
        return out
    }

    /// The oneDNN runner (built on first use) with extra flags, e.g. `--int8`.
    func oneDNN(_ flags: [String], spec: [String]) -> [[String: Any]] {
        let onednn = "\(dir)/bin/gemm_onednn"
        if !FileManager.default.isExecutableFile(atPath: onednn) {
            _ = invoke(["bash", "\(dir)/build.sh"], name: "oneDNN build", unset: [])
        }
        return invoke([onednn, "--threads", "\(threads)", "--reps", "\(reps)"] + flags + spec, name: "oneDNN", unset: [])
    }

    /// Runs one Python peer script of the folder with extra arguments.
    func runScript(_ script: String, arguments: [String], name: String) -> [[String: Any]] {
        invoke(["python3", "\(dir)/\(script)", "--threads", "\(threads)", "--reps", "\(reps)"] + arguments,
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
