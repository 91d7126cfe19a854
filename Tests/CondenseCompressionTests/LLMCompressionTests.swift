import Condense
@testable import CondenseCompression
import CondenseInference
import CondenseTestSupport
import CondenseTraining
import Foundation
import Testing

/// The LLM pipeline end to end on tiny GGUF decoders: every format into a folder that the
/// runtime loads, runs and agrees with; what stays in its source format and why; hostile folders.
@Suite struct LLMCompressionTests {
    static func calibration(_ lm: LanguageModel, _ n: Int, _ t: Int, seed: UInt64 = 3) -> [[Int32]] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in (0..<t).map { _ in Int32(rng.below(256)) } }
    }

    /// Logits of the folder's model against the f32 decoder on the compressed weights it stored
    /// (the runtime quantizes activations per block of 32, so they agree closely, not exactly),
    /// and against the dense model (they differ: the weights were compressed).
    static func check(_ path: String, format: LLMCompression.Format, head: LLMCompression.HeadFormat? = nil, kQuants: Bool,
                      expectReasons: Bool) throws {
        let f = try GGUFFile(contentsOf: path)
        let dense = try LanguageModel(file: f)
        let calib = calibration(dense, 6, 16)
        var o = LLMCompression.Options(format: format, head: head)
        o.recoveryEpochs = format == .sparse24 ? 1 : 0
        let r = try LLMCompression.compress(f, calibration: calib, options: o)
        let dir = try scratchFolder("llmc") + "/out"
        try DecoderFolder.write(to: dir, metadata: f, tensors: r.parts, report: r.report.merging(["format": format.rawValue]) { $1 })
        let lm = try LanguageModel(contentsOf: dir)
        #expect(lm.name == dense.name && lm.config == dense.config && lm.tokenizer.tokens == dense.tokenizer.tokens)
        let projections = r.projections.filter { $0.name.hasPrefix("blk.") }
        #expect(projections.count == 7 * dense.config.layers)
        if expectReasons {
            // K = 32 stays as stored; the down projection (K = 64) is compressed.
            for p in projections {
                let down = p.name.hasSuffix("ffn_down.weight")
                #expect(down ? p.reason == nil && p.format == format.rawValue : p.reason != nil && p.format.hasPrefix("ggml:"), "\(p)")
            }
        } else {
            #expect(projections.allSatisfy { $0.reason == nil }, "\(projections.compactMap(\.reason))")
            let want = format == .int4 ? "ggml:q4_1" : format.rawValue
            #expect(projections.allSatisfy { $0.format == want })
            // Which kernels run them.
            let kernel = format == .sparse24Int4 ? "s24q4_x16" : format == .int4 ? "gguf_q4_1" : format == .sparse24 ? "2:4" : "2:4-int8"
            #expect(lm.placements.contains { $0.placement.contains(kernel) }, "\(lm.placements)")
        }
        if format != .int4, !expectReasons {
            #expect(lm.weightBytesPerToken < dense.weightBytesPerToken || format == .sparse24, "\(lm.weightBytesPerToken) vs \(dense.weightBytesPerToken)")
        }
        // The runtime on the folder against the f32 blocks rebuilt from the stored parts.
        let c = lm.config
        let stored = Dictionary(r.parts.map { ($0.name, $0.part) }, uniquingKeysWith: { a, _ in a })
        func weights(_ name: String) throws -> [Float] {
            switch stored[name]! {
            case let .ggml(type, rows, columns, data):
                return try GGUFDequantize.floats(data, type: type, count: rows * columns, name: name)
            case let .sparse24Int4(w): return w.dequantized().elements
            case let .linear(l): return l.weights.densified().elements
            case let .vector(v): return v
            }
        }
        let ids: [Int32] = [71, 72, 257, 3, 100, 200, 17]
        let embd = try weights("token_embd.weight")
        var x = ids.flatMap { embd[(Int($0) * c.hidden)..<((Int($0) + 1) * c.hidden)] }
        for l in 0..<c.layers {
            var b = try LLMCompression.denseBlock(f, c, layer: l)
            let p = "blk.\(l)."
            b.attnNorm = try weights(p + "attn_norm.weight"); b.ffnNorm = try weights(p + "ffn_norm.weight")
            for (key, name) in [(\DecoderBlockTuning.Block.q, "attn_q"), (\.k, "attn_k"), (\.v, "attn_v"), (\.o, "attn_output"),
                                (\.gate, "ffn_gate"), (\.up, "ffn_up"), (\.down, "ffn_down")] {
                b[keyPath: key].weight = try weights(p + name + ".weight")
            }
            x = try DecoderBlockTuning.forward(b, x: x, sequenceLength: ids.count).y
        }
        let (h, _) = DecoderBlockTuning.rmsNorm(x, rows: ids.count, try weights("output_norm.weight"), eps: c.rmsEpsilon)
        let headW = try stored["output.weight"] == nil ? embd : weights("output.weight")
        let vocab = headW.count / c.hidden
        let want = try BlockTuning.linear(BlockTuning.Linear(weight: headW, bias: [Float](repeating: 0, count: vocab), n: vocab, k: c.hidden), h, rows: ids.count)
        let got = try lm.session(kvCache: .f32).forward(ids, allLogits: true)
        let ref = try dense.session(kvCache: .f32).forward(ids, allLogits: true)
        var (num, den, moved) = (0.0, 0.0, 0.0)
        for p in ids.indices {
            for j in 0..<vocab {
                let e = Double(got[p][j] - want[p * vocab + j])
                num += e * e; den += Double(want[p * vocab + j] * want[p * vocab + j])
                moved += Double((got[p][j] - ref[p][j]) * (got[p][j] - ref[p][j]))
            }
        }
        #expect(num / den < 1e-3, "\(format): runtime vs stored weights, relative error \(num / den)")
        if !expectReasons { #expect(moved / den > 1e-6, "\(format): the compressed model equals the dense one") }
        // Generation runs on it.
        let out = try lm.session().generate("the th", GenerationOptions(maxTokens: 4)) { _ in }
        #expect(out.tokens.count == 4)
    }

    @Test(arguments: [LLMCompression.Format.sparse24, .sparse24Int8, .int4])
    func smallFormatsOnATinyLlama(format: LLMCompression.Format) throws {
        try Self.check(makeTinyLlama(in: scratchFolder("llm")), format: format, kQuants: false, expectReasons: false)
    }

    /// 2:4-int4 needs K in blocks of 64: the tiny model's 32 stays as stored, and says why.
    @Test func sparse24Int4KeepsWhatItCannotHold() throws {
        let path = try makeTinyLlama(in: scratchFolder("llm"))
        try Self.check(path, format: .sparse24Int4, head: .keep, kQuants: false, expectReasons: true)
        let r = try LLMCompression.compress(GGUFFile(contentsOf: path), calibration: Self.calibration(LanguageModel(gguf: path), 2, 8),
                                            options: .init(format: .sparse24Int4, head: .keep))
        #expect(r.projections.first { $0.name == "blk.0.attn_q.weight" }?.reason == "K = 32 is not a multiple of 64")
    }

    @Test(arguments: [LLMCompression.HeadFormat.int4, .sparse24Int4])
    func sparse24Int4OnKQuants(head: LLMCompression.HeadFormat) throws {
        try Self.check(makeTinyLlama(in: scratchFolder("llm"), kQuants: true), format: .sparse24Int4, head: head, kQuants: true, expectReasons: false)
    }

    @Test func qwen2KeepsItsBiases() throws {
        try Self.check(makeTinyLlama(in: scratchFolder("llm"), arch: "qwen2"), format: .sparse24, kQuants: false, expectReasons: false)
    }

    /// `keep` leaves the matching projections as stored and says so.
    @Test func keptProjectionsStayAsStored() throws {
        let path = try makeTinyLlama(in: scratchFolder("llm"))
        var o = LLMCompression.Options(format: .sparse24)
        o.keep = ["attn_v", "blk.1."]
        let r = try LLMCompression.compress(GGUFFile(contentsOf: path), calibration: Self.calibration(LanguageModel(gguf: path), 2, 8), options: o)
        for p in r.projections where p.name.hasPrefix("blk.") {
            let kept = p.name.contains("attn_v") || p.name.hasPrefix("blk.1.")
            #expect(kept ? p.format.hasPrefix("ggml:") && p.reason?.hasPrefix("kept as stored (--keep ") == true : p.format == "2:4", "\(p)")
        }
    }

    @Test func badCalibrationIsAnError() throws {
        let f = try GGUFFile(contentsOf: makeTinyLlama(in: scratchFolder("llm")))
        #expect(throws: CondenseError.self) { try LLMCompression.compress(f, calibration: [[1, 2, 3], [1, 2]], options: .init(format: .int4)) }
        #expect(throws: CondenseError.invalidInput("calibration token id 9999 is outside the vocabulary of 259")) {
            try LLMCompression.compress(f, calibration: [[1, 9999]], options: .init(format: .int4))
        }
    }

    /// A folder edited by hand or cut short: a thrown error naming the file and the tensor, never a crash.
    @Test func hostileFoldersAreErrors() throws {
        let path = try makeTinyLlama(in: scratchFolder("llm"), kQuants: true)
        let f = try GGUFFile(contentsOf: path)
        let r = try LLMCompression.compress(f, calibration: Self.calibration(LanguageModel(file: f), 2, 8), options: .init(format: .sparse24Int4))
        func folder(_ edit: (inout [(name: String, part: DecoderFolder.Part)]) throws -> Void) throws -> String {
            var parts = r.parts
            try edit(&parts)
            let dir = try scratchFolder("llmbad") + "/m"
            try DecoderFolder.write(to: dir, metadata: f, tensors: parts, report: [:])
            return dir
        }
        let good = try folder { _ in }
        _ = try LanguageModel(contentsOf: good)
        // Missing pieces.
        let noMeta = try folder { _ in }
        try FileManager.default.removeItem(atPath: noMeta + "/metadata.gguf")
        #expect(throws: CondenseError.self) { try LanguageModel(contentsOf: noMeta) }
        let dropped = try folder { $0.removeAll { $0.name == "blk.1.ffn_down.weight" } }
        expectError(try LanguageModel(contentsOf: dropped), mentioning: ["blk.1.ffn_down.weight", "model.safetensors"])
        // A matrix of the wrong shape.
        let wrong = try folder { parts in
            let i = parts.firstIndex { $0.name == "blk.0.attn_k.weight" }!
            parts[i].part = parts.first { $0.name == "blk.0.attn_q.weight" }!.part
        }
        expectError(try LanguageModel(contentsOf: wrong), mentioning: ["blk.0.attn_k.weight", "shape"])
        // Mask bytes that do not keep 2 of 4.
        let st = try SafeTensors(contentsOf: good + "/model.safetensors")
        var edited = SafeTensors()
        edited.metadata = st.metadata
        for n in st.names {
            let t = try st.tensor(n)
            var bytes = t.data
            if n == "blk.0.ffn_up.weight" { bytes[bytes.startIndex + 2] = 0xFF }
            try edited.add(n, dtype: t.dtype, shape: t.shape, bytes: bytes)
        }
        _ = try edited.write(to: good + "/model.safetensors")
        expectError(try LanguageModel(contentsOf: good), mentioning: ["blk.0.ffn_up.weight", "not 2 of 4"])
        // The truncated weights file.
        let data = try Data(contentsOf: URL(fileURLWithPath: dropped + "/model.safetensors"))
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: dropped + "/model.safetensors"))
        expectError(try LanguageModel(contentsOf: dropped), mentioning: ["model.safetensors"])
    }

    func expectError(_ body: @autoclosure () throws -> LanguageModel, mentioning parts: [String]) {
        do {
            _ = try body()
            Issue.record("no error; expected one mentioning \(parts)")
        } catch {
            let text = "\(error)"
            for p in parts { #expect(text.contains(p), "\(text)") }
        }
    }
}
