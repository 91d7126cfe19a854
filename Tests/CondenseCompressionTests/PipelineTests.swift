import Condense
import CondenseCompression
import CondenseTraining
import CondenseTestSupport
import Foundation
import Testing

@Suite struct PipelineTests {
    @Test func cubicScheduleFollowsZhuGupta() throws {
        let s = try CubicSparsitySchedule(initial: 0.1, final: 0.9, startStep: 100, endStep: 500, frequency: 50)
        #expect(s.sparsity(at: 0) == 0.1 && s.sparsity(at: 100) == 0.1)
        #expect(abs(s.sparsity(at: 300) - (0.9 + (0.1 - 0.9) * 0.125)) < 1e-12)  // (1 − 1/2)³
        #expect(abs(s.sparsity(at: 200) - (0.9 - 0.8 * 0.421875)) < 1e-12)     // (3/4)³
        #expect(s.sparsity(at: 500) == 0.9 && s.sparsity(at: 10_000) == 0.9)
        let steps = Array(100...500)
        #expect(zip(steps, steps.dropFirst()).allSatisfy { s.sparsity(at: $0) <= s.sparsity(at: $1) })
        #expect(s.updates(at: 150) && !s.updates(at: 160) && !s.updates(at: 550))
        #expect(throws: CondenseError.invalidArgument("sparsities must satisfy 0 <= initial <= final < 1, got 0.0 and 1.5")) {
            try CubicSparsitySchedule(final: 1.5, startStep: 0, endStep: 10)
        }
        #expect(throws: CondenseError.invalidArgument("sparsity must be in [0, 1], got 1.5")) {
            try Pruning.masks(for: MLP(sizes: [4, 2], seed: 1), pattern: .unstructured(1.5), score: .magnitude)
        }
    }

    /// Gradual pruning during training reaches the target sparsity with masked weights at zero.
    @Test func gradualPruningReachesTheScheduleTarget() throws {
        let data = try gaussianBlobs(count: 512, features: 16, classes: 4, seed: 3)
        var model = try MLP(sizes: [16, 32, 4], seed: 2)
        let schedule = try CubicSparsitySchedule(final: 0.8, startStep: 0, endStep: 40, frequency: 8)
        var masks = WeightMasks(repeating: nil, count: 2)
        var none: Distillation?
        var seen: [Double] = []
        let hook = gradualPruning(schedule)
        try Trainer.train(&model, on: data, options: TrainingOptions(epochs: 4, batchSize: 32, optimizer: .adam(learningRate: 5e-3)),
                          masks: &masks, distillation: &none, onStep: { step, total, m, g in
                              let new = try hook(step, total, m, g)
                              if let new { seen.append(Double(new[0]!.filter { $0 == 0 }.count) / Double(new[0]!.count)) }
                              return new
                          })
        #expect(seen.count == 6)
        #expect(abs(seen.last! - 0.8) < 0.01, "\(seen)")
        for (l, layer) in model.layers.enumerated() {
            let zeros = layer.weight.elements.filter { $0 == 0 }.count
            #expect(abs(Double(zeros) / Double(layer.weight.count) - 0.8) < 0.01, "layer \(l)")
        }
    }

    /// QAT then export: the integer model predicts what the fake-quantized model predicted.
    @Test(arguments: [QuantTarget.int8, .int4(group: 16)])
    func qatExportAgreesWithTheFakeQuantizedModel(_ q: QuantTarget) throws {
        let data = try gaussianBlobs(count: 800, features: 32, classes: 5, seed: 7)
        let (train, test) = (try data.slice(0..<600), try data.slice(600..<800))
        var model = try MLP(sizes: [32, 48, 5], seed: 4)
        try Trainer.train(&model, on: train, options: TrainingOptions(epochs: 3, batchSize: 32, optimizer: .adam(learningRate: 3e-3)))
        try Trainer.train(&model, on: train, options: TrainingOptions(epochs: 1, batchSize: 32, optimizer: .adam(learningRate: 3e-4)), fakeQuant: q.fakeQuant)
        var state = PipelineState(model: model)
        state.quant = q
        let exported = try state.export()
        #expect(exported.layers.allSatisfy { $0.format == (q == .int8 ? .int8 : .int4(group: 16)) })
        let fq = try model.logits(test.matrix, fakeQuant: q.fakeQuant).elements
        let ex = try exported.prepare(on: .standard()).logits(test.matrix).elements
        var agree = 0
        for i in 0..<test.count {
            let a = fq[(i * 5)..<(i * 5 + 5)], b = ex[(i * 5)..<(i * 5 + 5)]
            if a.indices.max(by: { a[$0] < a[$1] }) == b.indices.max(by: { b[$0] < b[$1] }) { agree += 1 }
            for j in 0..<5 { #expect(abs(fq[i * 5 + j] - ex[i * 5 + j]) <= 1e-3 + 1e-3 * abs(fq[i * 5 + j])) }
        }
        #expect(agree == test.count)
    }

    /// A whole pipeline on a tiny set: every stage evaluated, formats as the stages say, and
    /// the model file round-trips exactly.
    @Test func pipelineRunsEndToEndAndModelFilesRoundTrip() throws {
        let data = try gaussianBlobs(count: 700, features: 24, classes: 4, seed: 11)
        let (train, test) = (try data.slice(0..<500), try data.slice(500..<700))
        var teacher = try MLP(sizes: [24, 64, 64, 4], seed: 1)
        let opts = TrainingOptions(epochs: 3, batchSize: 32, optimizer: .adam(learningRate: 3e-3))
        try Trainer.train(&teacher, on: train, options: opts)
        var runner = PipelineRunner(train: train, test: test, teacher: teacher, registry: .standard(), options: opts)
        runner.latencyRuns = 10
        runner.policy = .priority
        let result = try runner.run(Pipeline("full", [
            .distill(hidden: [32, 32], epochs: 2, temperature: 3, alpha: 0.5, beta: 0.5, featureMatching: true),
            .prune(.nm(n: 2, m: 4), score: .activationAware),
            .fineTune(epochs: 1, distill: true),
            .qat(.int8, epochs: 1, distill: true),
        ]))
        #expect(result.stages.count == 4)
        #expect(result.stages[1].evaluation.formats == ["2:4", "2:4", "2:4"])
        #expect(result.final.formats == ["2:4-int8", "2:4-int8", "2:4-int8"])
        #expect(result.stages[1].evaluation.sparsity.allSatisfy { $0 >= 0.5 })
        #expect(result.final.accuracy > 0.8, "\(result.stages.map(\.evaluation.accuracy))")
        #expect(result.stages.last!.qatExportAgreement ?? 0 >= 0.99)
        #expect(result.final.fileBytes < result.stages[0].evaluation.fileBytes / 2)
        #expect(result.final.reliability.count == 15 && result.final.reliability.reduce(0) { $0 + $1.count } == test.count)

        // Model files: every format written and read back bit-exact.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("condense-models-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var pruned = PipelineState(model: teacher)
        pruned.masks = try Pruning.masks(for: teacher, pattern: .nm(n: 2, m: 4), score: .magnitude)
        Trainer.applyMasks(pruned.masks, to: &pruned.model)
        for formats: [WeightFormat] in [[.dense], [.int8], [.int4(group: 8)], [.sparse24], [.sparse24Int8], [.csr]] {
            let c = try CompressedMLP(exporting: pruned.model, formats: formats)
            let path = dir.appendingPathComponent("m.safetensors").path
            let bytes = try c.save(to: path)
            let back = try CompressedMLP(contentsOf: path)
            #expect(bytes == (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int))
            #expect(try back.safetensors().serialized() == c.safetensors().serialized(), "\(formats)")
            #expect(try back.densified == c.densified, "\(formats)")
        }
    }

    @Test func malformedModelFilesAreClearErrors() throws {
        let model = try MLP(sizes: [8, 4, 2], seed: 1)
        var f = try CompressedMLP(exporting: model, formats: [.int8]).safetensors()
        f.metadata["layers.1.format"] = "int9"
        #expect(throws: CondenseError.invalidModel("layer 1: tensor 'layers.1.format': unknown format 'int9'")) { try CompressedMLP(safetensors: f) }
        var g = try CompressedMLP(exporting: model, formats: [.int8]).safetensors()
        g.metadata["layers.0.shape"] = "4,9"
        #expect(throws: CondenseError.self) { try CompressedMLP(safetensors: g) }
        var h = try CompressedMLP(exporting: model, formats: [.dense]).safetensors()
        h.metadata["condense.model"] = "bert"
        #expect(throws: CondenseError.invalidModel("not a Condense MLP file (metadata condense.model is 'bert')")) { try CompressedMLP(safetensors: h) }
        // Truncated bytes and a header that lies are refused before any tensor is used.
        let bytes = try CompressedMLP(exporting: model, formats: [.dense]).safetensors().serialized()
        #expect(throws: CondenseError.self) { try SafeTensors(data: bytes.prefix(bytes.count - 4)) }
        var lying = bytes
        lying[0] = 0xFF; lying[1] = 0xFF; lying[2] = 0xFF
        #expect(throws: CondenseError.malformedFile("header length 16777215 runs past the end of the \(bytes.count)-byte file")) { try SafeTensors(data: lying) }
    }
}
