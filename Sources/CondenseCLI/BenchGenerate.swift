import ArgumentParser
import CCondenseKernels
import Condense
import CondenseInference
import Foundation

/// llama-bench's two figures for a GGUF model: prompt processing (pp: a prompt of N tokens in
/// one batch) and token generation (tg: N tokens one at a time), tokens per second, at context
/// depths (tokens already in the cache, as `llama-bench -d`), with llama.cpp beside when built.
struct BenchGenerate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Prompt processing (pp) and generation (tg) tokens/s of a GGUF model, as llama-bench reports them. Peer (--peers): llama-bench, same threads, same run.")

    @Option(help: "The model: a GGUF file, or a folder written by `compress --llm`.")
    var model: String
    @Option(help: "Prompt length for pp.")
    var prompt = 512
    @Option(help: "Tokens for tg.")
    var gen = 128
    @Option(help: "Context depths, comma-separated (tokens in the cache before the test).")
    var depth = "0"
    @Option(help: "A second model (e.g. the GGUF a compressed folder came from) measured in the same run, repetitions interleaved, for the ratio.")
    var baseline: String?
    @OptionGroup var decoder: DecoderOptions
    @OptionGroup var bench: BenchOptions
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard prompt >= 1, gen >= 1 else { throw ValidationError("--prompt and --gen must be >= 1") }
    }

    func run() throws {
        try runtime.apply()
        let depths = try parseInts(depth, option: "--depth")
        let lm = try LanguageModel(contentsOf: model, registry: cliRegistry())
        let base = try baseline.map { try LanguageModel(contentsOf: $0, registry: cliRegistry()) }
        let threads = CondenseRuntime.threads
        let c = lm.config
        // Weights read per generated token: every projection and the head, in the format each runs in.
        let weightBytes = Double(lm.weightBytesPerToken)
        // The read probe runs right after every timed generation, on a buffer as large as the
        // weights read per token: the host's bandwidth swings from one minute to the next
        // (43–85 GB/s within three interleaved rounds on 2026-12-05), so a share of it means
        // something only against the probe of the same moment.
        let probeBytes = Int(min(max(weightBytes, Double(base?.weightBytesPerToken ?? 0)), 512e6))
        var rng = SystemRandomNumberGenerator()
        let specials = Set(lm.tokenizer.specialTokens.values)
        func randomTokens(_ n: Int) -> [Int32] {
            (0..<n).map { _ in
                var t: Int32
                repeat { t = Int32.random(in: 0..<Int32(lm.tokenizer.tokens.count), using: &rng) } while specials.contains(t)
                return t
            }
        }
        if let base {
            guard base.tokenizer.tokens == lm.tokenizer.tokens else {
                throw ValidationError("--baseline \(baseline!) has another vocabulary than \(model)")
            }
        }
        let models: [(label: String, lm: LanguageModel)] = [("condense", lm)] + (base.map { [("baseline", $0)] } ?? [])
        var records: [[String: Any]] = []
        for d in depths {
            guard d + max(prompt, gen) <= models.map(\.lm.config.contextLength).min()! else {
                throw ValidationError("depth \(d) + \(max(prompt, gen)) tokens exceed the model's context of \(lm.config.contextLength)")
            }
            let ctx = d + max(prompt, gen)
            var pp = [[Double]](repeating: [], count: models.count), tg = pp, probe = pp
            for _ in 0..<bench.reps {
                for (i, m) in models.enumerated() {
                    let s = try m.lm.session(contextLength: ctx, kvCache: decoder.keys, valueCache: decoder.values)
                    if d > 0 { _ = try s.forward(randomTokens(d)) }
                    let p = randomTokens(prompt)
                    let t0 = ContinuousClock.now
                    _ = try s.forward(p)
                    pp[i].append(Double(prompt) / seconds(ContinuousClock.now - t0))
                    let g = try m.lm.session(contextLength: ctx, kvCache: decoder.keys, valueCache: decoder.values)
                    if d > 0 { _ = try g.forward(randomTokens(d)) }
                    var next = randomTokens(1)[0]
                    let t1 = ContinuousClock.now
                    for _ in 0..<gen {
                        let logits = try g.forward([next])[0]
                        next = Int32(logits.indices.max { logits[$0] < logits[$1] }!)
                    }
                    tg[i].append(Double(gen) / seconds(ContinuousClock.now - t1))
                    probe[i].append(condense_probe_read_gbps(probeBytes, Int32(threads), 2))
                }
            }
            for (i, m) in models.enumerated() {
                // Each repetition's speed against the probe taken right after it; the median of those shares.
                let shares = zip(tg[i], probe[i]).map { $0 / $1 }.sorted()
                let probes = probe[i].sorted()
                pp[i].sort(); tg[i].sort()
                let tgMed = tg[i][tg[i].count / 2]
                let wb = Double(m.lm.weightBytesPerToken)
                records.append(["backend": m.label, "model": m.lm.name, "test": "pp\(prompt)", "depth": d, "tok_s": pp[i][pp[i].count / 2], "threads": threads])
                // Bytes read per generated token: the weights, and the KV cache up to the token's
                // position (on average the depth plus half the generated tokens).
                // K and V rows read per generated token, averaged over the tg run: every position
                // for a global layer, at most the window for a sliding one.
                let rowBytes = Double(decoder.keys.rowBytes(c.kvDim) + decoder.values.rowBytes(c.kvDim))
                let kvBytes = (0..<c.layers).reduce(0.0) { acc, l in
                    let mean = Double(d) + Double(gen) / 2
                    return acc + rowBytes * (c.slidingLayers[l] ? min(mean, Double(c.slidingWindow)) : mean)
                }
                records.append(["backend": m.label, "model": m.lm.name, "test": "tg\(gen)", "depth": d, "tok_s": tgMed, "threads": threads,
                                "weight_gb_per_token": wb / 1e9, "head_gb_per_token": Double(m.lm.headBytesPerToken) / 1e9, "weight_gbps": wb * tgMed / 1e9,
                                "kv_gb_per_token": kvBytes / 1e9, "bytes_gbps": (wb + kvBytes) * tgMed / 1e9, "read_gbps": probes[probes.count / 2],
                                "read_gbps_min": probes.first!, "read_gbps_max": probes.last!,
                                "pct_read_probe": 100 * (wb + kvBytes) / 1e9 * shares[shares.count / 2],
                                "kv_cache": decoder.keys.rawValue, "kv_cache_v": decoder.values.rawValue])
            }
        }
        if bench.peers {
            if DecoderFolder.isFolder(model) {
                FileHandle.standardError.write(Data("note: llama-bench cannot read a compressed folder; peer skipped (use --baseline for the source GGUF)\n".utf8))
            } else {
                records += llamaBench(depths: depths, threads: threads)
            }
        }
        if bench.json {
            print(try jsonString(records))
            return
        }
        print("\(lm.name): \(c.architecture), \(c.layers) layers, hidden \(c.hidden); \(threads) thread(s); weights read per generated token \(fmt(weightBytes / 1e6, 0)) MB (the head \(fmt(Double(lm.headBytesPerToken) / 1e6, 0)) MB)\(base.map { "; the baseline's \(fmt(Double($0.weightBytesPerToken) / 1e6, 0)) MB (the head \(fmt(Double($0.headBytesPerToken) / 1e6, 0)) MB)" } ?? ""); \(decoder.label) KV cache")
        for r in records {
            var line = "\(pad(r["backend"] as! String, 12)) \(pad(r["test"] as! String, 7)) depth \(pad("\(r["depth"]!)", 5, right: true)): \(pad(fmt(r["tok_s"] as! Double, 1), 8, right: true)) tok/s"
            if let g = r["bytes_gbps"] as? Double, let pct = r["pct_read_probe"] as? Double, let lo = r["read_gbps_min"] as? Double,
               let hi = r["read_gbps_max"] as? Double {
                line += "   \(fmt(g, 1)) GB/s of weights and KV cache, \(fmt(pct, 0)) % of the read probe taken after each run (\(fmt(lo, 0))–\(fmt(hi, 0)) GB/s)"
            }
            if r["backend"] as? String == "baseline", let other = r["tok_s"] as? Double,
               let ours = records.first(where: { $0["backend"] as? String == "condense" && $0["test"] as? String == r["test"] as? String
                                                 && $0["depth"] as? Int == r["depth"] as? Int })?["tok_s"] as? Double {
                line += "   \(URL(fileURLWithPath: model).lastPathComponent) / \(URL(fileURLWithPath: baseline ?? "").lastPathComponent) = \(fmt(ours / other, 2))×"
            } else if r["backend"] as? String != "condense", let peer = r["tok_s"] as? Double,
               let ours = records.first(where: { $0["backend"] as? String == "condense" && $0["test"] as? String == r["test"] as? String
                                                 && $0["depth"] as? Int == r["depth"] as? Int })?["tok_s"] as? Double {
                line += "   Condense / llama.cpp = \(fmt(ours / peer, 2))×"
            }
            print(line)
        }
    }

    private func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }

    /// llama-bench from the cached build (Benchmarks/peers/build_llama_cpp.sh), same model and threads.
    private func llamaBench(depths: [Int], threads: Int) -> [[String: Any]] {
        let dir = ProcessInfo.processInfo.environment["CONDENSE_LLAMA_CPP_DIR"] ?? (NSHomeDirectory() + "/.cache/condense/llama.cpp")
        let exe = dir + "/bin/llama-bench"
        guard FileManager.default.isExecutableFile(atPath: exe) else {
            FileHandle.standardError.write(Data("note: llama-bench not built (bash Benchmarks/peers/build_llama_cpp.sh); peer skipped\n".utf8))
            return []
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        // Its best settings: flash attention off and on (the faster kept per test; a quantized V
        // cache needs it on), and the same cache types as ours.
        p.arguments = ["-m", model, "-p", "\(prompt)", "-n", "\(gen)", "-t", "\(threads)", "-r", "\(bench.reps)",
                       "-d", depths.map(String.init).joined(separator: ","), "-fa", decoder.values.isBlocks ? "1" : "0,1",
                       "-ctk", decoder.keys.rawValue, "-ctv", decoder.values.rawValue, "-o", "json"]
        var env = ProcessInfo.processInfo.environment
        env["LD_LIBRARY_PATH"] = dir + "/bin" + (env["LD_LIBRARY_PATH"].map { ":" + $0 } ?? "")
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return [] }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard let rows = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            FileHandle.standardError.write(Data("note: llama-bench printed no JSON\n".utf8))
            return []
        }
        var best: [String: [String: Any]] = [:], order: [String] = []
        for r in rows {
            let np = r["n_prompt"] as? Int ?? 0, ng = r["n_gen"] as? Int ?? 0
            guard let ts = r["avg_ts"] as? Double else { continue }
            let test = np > 0 ? "pp\(np)" : "tg\(ng)", depth = r["n_depth"] as? Int ?? 0, key = "\(test)@\(depth)"
            let fa = (r["flash_attn"] as? Bool).map { $0 ? 1 : 0 } ?? (r["flash_attn"] as? Int) ?? -1
            if let known = best[key], let t = known["tok_s"] as? Double, t >= ts { continue }
            if best[key] == nil { order.append(key) }
            best[key] = ["backend": "llama.cpp", "test": test, "depth": depth, "tok_s": ts, "flash_attn": fa,
                         "threads": r["n_threads"] as? Int ?? threads, "build": r["build_commit"] as? String ?? ""]
        }
        return order.compactMap { best[$0] }
    }
}
