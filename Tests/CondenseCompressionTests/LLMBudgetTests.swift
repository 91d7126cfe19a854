import Condense
@testable import CondenseCompression
@testable import CondenseInference
import CondenseTestSupport
import Foundation
import Testing

private let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("CondenseInferenceTests/Scripts/tiny_gguf.py")

@Suite struct LLMBudgetTests {
    /// The candidates' hull: a candidate that saves more at no more KL removes the ones before
    /// it; steps come cheapest KL per byte first, each projection's in its own order.
    @Test func incrementsFollowEachProjectionsHull() {
        func s(_ n: String, _ c: LLMBudget.Candidate, _ bytes: Int, _ kl: Double) -> LLMBudget.Sensitivity {
            LLMBudget.Sensitivity(name: n, candidate: c, sourceBytes: 100, bytes: bytes, kl: kl, relativeError: 0)
        }
        let incs = LLMBudget.increments([
            s("a", .int8, 90, 0.5),            // dominated by int4: more saved, less KL
            s("a", .int4, 60, 0.2), s("a", .sparse24Int4, 30, 1.0),
            s("b", .int4, 50, 0.1), s("b", .sparse24Int8, 45, 5.0),   // b: 2:4-int8 far steeper
            s("c", .int8, 120, 0.0),           // saves nothing: never a step
        ])
        #expect(incs.map { "\($0.name):\($0.to.rawValue)" } == ["b:int4", "a:int4", "a:2:4-int4", "b:2:4-int8"])
        #expect(incs[2].from == .int4 && incs[2].saved == 30 && abs(incs[2].kl - 0.8) < 1e-12)
        // A perplexity budget of 0.5 nats: a's 0.8-nat step and b's 4.9-nat one leave the order.
        #expect(LLMBudget.withinBudget(incs, 0.5).map { "\($0.name):\($0.to.rawValue)" } == ["b:int4", "a:int4"])
        // A step over budget takes the later steps of its projection with it, not other projections'.
        let chain = LLMBudget.increments([s("x", .int4, 10, 0.9), s("x", .sparse24Int4, 5, 1.0), s("y", .int4, 50, 2.0)])
        #expect(LLMBudget.withinBudget(chain, 0.8).isEmpty)
        #expect(LLMBudget.withinBudget(chain, 0.95).map(\.name) == ["x", "x"])
    }

    /// A variant with a block's projections replaced by their stored forms is the source, to
    /// the bit, on every architecture (fused phi3 included); the KL measure reads 0 for it and
    /// more than 0 for a real change.
    @Test(.enabled(if: pythonHasGGUF, "python3 with the gguf package is missing (pip install gguf)"))
    func variantsOfTheStoredFormsAreTheSource() throws {
        let dir = try scratchFolder("budget-variants")
        #expect(runPython([script.path, dir]) != nil)
        let roles: [BlockTensor] = [.q, .k, .v, .output, .gate, .up, .down]
        var rng = TestRNG(s: 3)
        let seqs = (0..<2).map { _ in (0..<16).map { _ in Int32(3 + rng.next(below: 268)) } }
        for arch in ["llama", "qwen2", "qwen3", "phi3", "gemma2", "gemma3"] {
            let f = try GGUFFile(contentsOf: dir + "/\(arch).gguf")
            let c = try DecoderConfig(gguf: f)
            let base = try LanguageModel(file: f)
            var parts: [String: DecoderFolder.Part] = [:]
            for r in roles {
                let t = try LLMCompression.sourceTensor(f, c, layer: 1, r)
                parts[r.name(1)] = .ggml(t.type, rows: t.dims[1], columns: t.dims[0], t.data)
            }
            let same = try base.replacing(parts, file: f, registry: .standard())
            #expect(same.weightBytesPerToken == base.weightBytesPerToken, "\(arch)")
            var ref = LLMBudget.Reference()
            _ = try LLMBudget.evaluate(base, seqs, reference: &ref, topK: 8)
            let e = try LLMBudget.evaluate(same, seqs, reference: &ref, topK: 8)
            #expect(abs(e.kl) < 1e-12, "\(arch): KL \(e.kl) for the source itself")
            // Q4_0 of the down projection is a change: positive KL, fewer bytes.
            let down = try LLMCompression.sourceTensor(f, c, layer: 1, .down)
            let w = try Matrix(rows: down.dims[1], columns: down.dims[0],
                               elements: GGUFDequantize.floats(down.data, type: down.type, count: down.elementCount, name: down.name))
            let q = GGMLBlocks.q8_0(w)
            parts[BlockTensor.down.name(1)] = .ggml(.q8_0, rows: w.rows, columns: w.columns, q.0)
            let changed = try base.replacing(parts, file: f, registry: .standard())
            let e2 = try LLMBudget.evaluate(changed, seqs, reference: &ref, topK: 8)
            #expect(e2.kl > 0 && e2.kl < 0.05, "\(arch): KL \(e2.kl) for Q8_0")
            if down.type == .f32 { #expect(changed.weightBytesPerToken < base.weightBytesPerToken, "\(arch)") }
        }
    }

    /// The budget on every architecture: the chosen model is within it on the validation text,
    /// the folder it writes loads and measures the same, the head's bytes are reported apart,
    /// and a goal out of reach says so with the best figure.
    @Test(.enabled(if: pythonHasGGUF, "python3 with the gguf package is missing (pip install gguf)"))
    func budgetHoldsOnEveryArchitecture() throws {
        let dir = try scratchFolder("budget-archs")
        #expect(runPython([script.path, dir]) != nil)
        var rng = TestRNG(s: 5)
        let seqs = (0..<6).map { _ in (0..<24).map { _ in Int32(3 + rng.next(below: 268)) } }
        for arch in ["llama", "qwen2", "phi3", "gemma3"] {
            let f = try GGUFFile(contentsOf: dir + "/\(arch).gguf")
            var o = LLMBudget.Options(goal: .maxPerplexityIncrease(0.02))
            (o.speedTokens, o.speedRepetitions, o.frontierPoints) = (4, 1, 2)
            let r = try LLMBudget.compress(f, calibration: Array(seqs.prefix(4)), validation: Array(seqs.suffix(2)), options: o)
            #expect(r.met, "\(arch): \(r.message ?? "")")
            #expect(r.perplexity <= r.sourcePerplexity * 1.02 + 1e-9, "\(arch): \(r.perplexity) against \(r.sourcePerplexity)")
            #expect(!r.choice.isEmpty && r.bytes < r.sourceBytes, "\(arch): nothing chosen")
            #expect(r.choice.allSatisfy { ["ggml:q8_0", "ggml:q4_0", "2:4-int8", "2:4-int4"].contains($0.format) }, "\(arch): \(r.choice)")
            #expect(r.steps.taken >= 1 && r.steps.taken <= r.steps.of)
            let out = dir + "/\(arch)-budget"
            try DecoderFolder.write(to: out, metadata: f, tensors: r.parts, report: r.report)
            let lm = try LanguageModel(contentsOf: out)
            #expect(lm.weightBytesPerToken == r.bytes && lm.headBytesPerToken == r.headBytes, "\(arch)")
            var ref = LLMBudget.Reference()
            let nll = try LLMBudget.evaluate(lm, Array(seqs.suffix(2)), reference: &ref, topK: 4).nll
            #expect(abs(exp(nll) - r.perplexity) <= 1e-4 * r.perplexity, "\(arch): folder \(exp(nll)) against \(r.perplexity)")
            #expect(r.frontier.first?.label == "source" && r.frontier.last?.chosen == true)
        }
        // Out of reach: every projection kept, no speed-up is possible.
        let f = try GGUFFile(contentsOf: dir + "/llama.gguf")
        var o = LLMBudget.Options(goal: .targetSpeedup(1.5))
        (o.speedTokens, o.speedRepetitions, o.frontierPoints) = (4, 1, 2)
        (o.candidates, o.headCandidates) = ([.sparse24Int4], [])
        o.keep = ["blk."]
        let r = try LLMBudget.compress(f, calibration: Array(seqs.prefix(4)), validation: Array(seqs.suffix(2)), options: o)
        #expect(!r.met && (r.message ?? "").contains("out of reach"), "\(r.message ?? "") \(r.speed) \(r.sourceSpeed)")
        // Nonsense goals and sequences are errors before any work.
        for bad in [LLMBudget.Goal.maxPerplexityIncrease(0), .maxPerplexityIncrease(.nan), .targetSpeedup(1), .targetSpeedup(.infinity)] {
            #expect(throws: CondenseError.self) {
                try LLMBudget.compress(f, calibration: Array(seqs.prefix(4)), validation: Array(seqs.suffix(2)), options: .init(goal: bad))
            }
        }
        #expect(throws: CondenseError.self) {
            try LLMBudget.compress(f, calibration: Array(seqs.prefix(4)), validation: [[5]], options: .init(goal: .maxPerplexityIncrease(0.1)))
        }
        #expect(throws: CondenseError.self) {
            try LLMBudget.compress(f, calibration: Array(seqs.prefix(4)), validation: [[5, 1_000_000]], options: .init(goal: .maxPerplexityIncrease(0.1)))
        }
    }
}


@Suite struct LLMDistillationTests {
    /// End-to-end distillation lowers the student's perplexity on the text it trains on; a run
    /// stopped at a checkpoint and resumed ends with the same weights as one run straight
    /// through; rounding back keeps every 2:4 mask and loads as a model close to the student;
    /// a block the trainer does not have is refused.
    @Test func distillationTrainsResumesAndRoundsBack() throws {
        let dir = try scratchFolder("distill")
        let path = try makeTinyLlama(in: dir, kQuants: true)
        let f = try GGUFFile(contentsOf: path)
        let lm = try LanguageModel(file: f)
        var rng = TestRNG(s: 11)
        let seqs = (0..<4).map { _ in (0..<16).map { _ in Int32(3 + rng.next(below: 250)) } }
        let one = try LLMCompression.compress(f, calibration: seqs, options: .init(format: .sparse24Int4, head: .keep))
        func run(_ tokens: Int, checkpoint: String?, resume: Bool, stopAfter: Int? = nil) throws -> (LLMDistillation.Student, LLMDistillation.Result) {
            var s = try LLMDistillation.student(f, parts: one.parts)
            var i = 0
            var o = LLMDistillation.Options(tokens: tokens)
            (o.learningRate, o.batchSequences, o.checkpoint, o.resume, o.checkpointEvery, o.stopAfter) = (1e-2, 2, checkpoint, resume, 32, stopAfter)
            let r = try LLMDistillation.distill(&s, file: f, teacher: lm, sequences: { i += 1; return seqs[(i - 1) % seqs.count] },
                                                validation: seqs, options: o)
            return (s, r)
        }
        let (s1, r1) = try run(256, checkpoint: nil, resume: false)
        #expect(r1.curve.last!.perplexity < 0.9 * r1.curve.first!.perplexity, "\(r1.curve)")
        #expect(s1.trains.allSatisfy { $0.allSatisfy { $0 } })
        // Stopped at 128 tokens, resumed to 256: the same weights as straight through.
        let ck = dir + "/ck.safetensors"
        _ = try run(256, checkpoint: ck, resume: false, stopAfter: 128)
        let (s2, r2) = try run(256, checkpoint: ck, resume: true)
        #expect(r2.resumedAt == 128)
        for (a, b) in zip(s1.blocks, s2.blocks) {
            for (x, y) in zip(a.linears, b.linears) { #expect(x.weight == y.weight) }
            #expect(a.attnNorm == b.attnNorm && a.ffnNorm == b.ffnNorm)
        }
        // Another model's checkpoint is refused, naming the file.
        let other = try makeTinyLlama(in: dir + "/o", kQuants: true, seed: 9)
        var so = try LLMDistillation.student(GGUFFile(contentsOf: other), parts: one.parts)
        var oo = LLMDistillation.Options(tokens: 64)
        (oo.checkpoint, oo.resume) = (ck, true)
        #expect(throws: CondenseError.self) {
            try LLMDistillation.distill(&so, file: GGUFFile(contentsOf: other), teacher: lm, sequences: { seqs[0] }, validation: seqs, options: oo)
        }
        // Rounded back: 2:4-int4 again, every mask kept, the model near the student.
        let parts = try LLMDistillation.encode(s1, like: one.parts)
        for ((n, p), (_, q)) in zip(parts, one.parts) {
            if case let .sparse24Int4(w) = q {
                guard case let .sparse24Int4(v) = p else { Issue.record("\(n) is not 2:4-int4 after rounding back"); continue }
                let (keep, b) = (w.keepMask, v.dequantized().elements)
                #expect(zip(keep, b).allSatisfy { $0 || $1 == 0 }, "\(n): a pruned weight came back")
            }
        }
        let back = try LanguageModel(file: f).replacing(Dictionary(parts.map { ($0.name, $0.part) }, uniquingKeysWith: { a, _ in a })
            .filter { $0.key.hasPrefix("blk.") }, file: f, registry: .standard())
        let (ps, pb) = (try LLMDistillation.perplexity(s1, file: f, seqs), try LLMBudget.perplexity(back, seqs))
        #expect(abs(log(pb / ps)) < 0.1, "student \(ps), rounded back \(pb)")   // the runtime quantizes activations; the trainer does not
        #expect(pb < r1.curve.first!.perplexity, "rounded back \(pb) against one-shot \(r1.curve.first!.perplexity)")
    }

    @Test(.enabled(if: pythonHasGGUF, "python3 with the gguf package is missing (pip install gguf)"))
    func blocksTheTrainerLacksAreRefused() throws {
        let dir = try scratchFolder("distill-arch")
        #expect(runPython([script.path, dir]) != nil)
        let f = try GGUFFile(contentsOf: dir + "/gemma3.gguf")
        var rng = TestRNG(s: 2)
        let seqs = (0..<2).map { _ in (0..<16).map { _ in Int32(3 + rng.next(below: 260)) } }
        let one = try LLMCompression.compress(f, calibration: seqs, options: .init(format: .int4))
        #expect(throws: CondenseError.self) { try LLMDistillation.student(f, parts: one.parts) }
    }
}
