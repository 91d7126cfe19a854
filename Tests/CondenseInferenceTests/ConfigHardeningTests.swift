import Condense
import CondenseInference
import CondenseTestSupport
import Foundation
import Testing

/// A copy of the tiny BERT whose config.json has `field` replaced by the raw JSON `value`.
private func tinyWith(_ field: String, _ value: String) throws -> String {
    let dir = try makeTinyBERT(in: scratchFolder("cfg"))
    var text = try String(contentsOfFile: dir + "/config.json", encoding: .utf8)
    let r = try Regex("\"\(field)\": [^,}]*")
    text = text.replacing(r, with: "\"\(field)\": \(value)")
    try text.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
    return dir
}

@Suite struct ConfigHardeningTests {
    /// Every value out of range is an error naming the file, the field and the value.
    @Test(arguments: [
        ("num_hidden_layers", "-1", "num_hidden_layers must be in 1…1024, got -1"),
        ("num_hidden_layers", "0", "num_hidden_layers must be in 1…1024, got 0"),
        ("num_hidden_layers", "1000000000", "num_hidden_layers must be in 1…1024, got 1000000000"),
        ("num_hidden_layers", "1e9", "num_hidden_layers must be in 1…1024, got 1000000000"),
        ("num_hidden_layers", "\"6\"", "field num_hidden_layers must be an integer"),
        ("layer_norm_eps", "0", "layer_norm_eps must be finite and in (0, 1), got 0.0"),
        ("layer_norm_eps", "-1e-12", "layer_norm_eps must be finite and in (0, 1), got -1e-12"),
        ("hidden_size", "33", "hidden_size 33 is not a multiple of num_attention_heads 2"),
        ("num_attention_heads", "0", "num_attention_heads must be in 1…32, got 0"),
        ("hidden_size", "-32", "hidden_size must be in 1…65536, got -32"),
        ("vocab_size", "9223372036854775807", "vocab_size must be in 1…16777216"),
        ("hidden_act", "\"relu\"", "hidden_act 'relu' is not supported (gelu)"),
        ("max_position_embeddings", "null", "field max_position_embeddings is null"),
    ])
    func badValuesAreErrors(field: String, value: String, message: String) throws {
        let dir = try tinyWith(field, value)
        do {
            _ = try SentenceEncoder(directory: dir)
            Issue.record("\(field) = \(value) loaded")
        } catch let e as CondenseError {
            #expect(e.description.contains(dir + "/config.json"), "\(e)")
            #expect(e.description.contains(message), "\(e)")
        }
    }

    /// The config must describe the file's layers exactly: fewer or more layers than the weights
    /// hold is an error naming the layer, not a smaller model run silently.
    @Test func layerCountMustMatchTheWeights() throws {
        let fewer = try tinyWith("num_hidden_layers", "1")
        #expect(throws: CondenseError.inFile(path: fewer, error: .invalidModel("the weights hold layer 1 (2 layers), but num_hidden_layers is 1"))) {
            try SentenceEncoder(directory: fewer)
        }
        let more = try tinyWith("num_hidden_layers", "3")
        #expect(throws: CondenseError.inFile(path: more, error: .invalidModel("num_hidden_layers is 3, but the weights have no layer 2"))) {
            try SentenceEncoder(directory: more)
        }
    }

    @Test func duplicateConfigKeysAreRefused() throws {
        let dir = try tinyWith("hidden_act", "\"gelu\", \"num_hidden_layers\": 1")
        #expect(throws: CondenseError.inFile(path: dir + "/config.json", error: .malformedFile("duplicate key 'num_hidden_layers'"))) {
            try SentenceEncoder(directory: dir)
        }
    }

    /// vocab.txt: a repeated token shifts every later id; it is an error naming both lines. CRLF
    /// files give the same vocabulary as LF files.
    @Test func vocabularyFiles() throws {
        let dir = try makeTinyBERT(in: scratchFolder("vocab"))
        let lf = try WordPieceTokenizer(vocabulary: dir + "/vocab.txt")
        let text = try String(contentsOfFile: dir + "/vocab.txt", encoding: .utf8)
        try text.replacingOccurrences(of: "\n", with: "\r\n").write(toFile: dir + "/crlf.txt", atomically: true, encoding: .utf8)
        let crlf = try WordPieceTokenizer(vocabulary: dir + "/crlf.txt")
        #expect(crlf.tokens == lf.tokens && crlf.encode("the cats sat") == lf.encode("the cats sat"))
        try (text + "cat\n").write(toFile: dir + "/dup.txt", atomically: true, encoding: .utf8)
        #expect(throws: CondenseError.inFile(path: dir + "/dup.txt", error: .invalidModel("token 'cat' on line 16 repeats line 6"))) {
            try WordPieceTokenizer(vocabulary: dir + "/dup.txt")
        }
    }

    /// NaN in the weights: the session refuses to return the embedding, writeNPY refuses to write it.
    @Test func nonFiniteOutputIsAnError() throws {
        let dir = try makeTinyBERT(in: scratchFolder("nan"))
        var f = try SafeTensors(contentsOf: dir + "/model.safetensors")
        var b = try f.floats("encoder.layer.0.output.dense.bias")
        b[0] = .infinity
        try f.add("encoder.layer.0.output.dense.bias", shape: [b.count], floats: b)
        try f.write(to: dir + "/model.safetensors")
        let session = try InferenceSession(SentenceEncoder(directory: dir), policy: .priority)
        #expect(throws: CondenseError.self) { try session.embed(["the cat"]) }
        #expect(throws: CondenseError.self) { try writeNPY([[1, .nan]], columns: 2, to: dir + "/x.npy") }
        #expect(!FileManager.default.fileExists(atPath: dir + "/x.npy"))
    }
}

@Suite struct SessionISATests {
    /// A registry whose native backend is pinned to an ISA runs the session's attention on that
    /// ISA too, and every level gives the same embeddings within f32 rounding.
    @Test func pinnedISAReachesAttention() throws {
        let model = try SentenceEncoder(directory: makeTinyBERT(in: scratchFolder("isa")))
        var results: [[Float]] = []
        for isa in CondenseRuntime.runnableISAs {
            let registry = BackendRegistry()
            registry.register(NativeBackend(isa: isa))
            let session = try InferenceSession(model, registry: registry, policy: .priority)
            #expect(session.isa == isa)
            // Each layer runs a kernel of the pinned level or, where the family has none there, of a
            // level below on the same ladder (avxvnni: the AVX2 f32 kernels; i8mm: the NEON ones).
            let allowed: [String] = switch isa {
            case .scalar: ["scalar"]
            case .avx2: ["avx2"]
            case .avxvnni: ["avx2", "avxvnni"]
            case .avx512: ["avx512"]
            case .neon: ["neon"]
            case .dotprod: ["neon", "dotprod"]
            case .i8mm: ["neon", "dotprod", "i8mm", "bf16"]
            }
            #expect(session.placements.allSatisfy { p in allowed.contains { p.placement.kernel.hasSuffix($0) } },
                    "\(isa): \(session.placements.map(\.placement.kernel))")
            results.append(try session.embed(["the cat sat on the mat ."])[0])
        }
        for r in results.dropFirst() { #expect(zip(r, results[0]).allSatisfy { abs($0 - $1) < 1e-5 }) }
    }
}
