import CCondenseKernels
import Condense
import CondenseTraining
import CondenseTestSupport
import Foundation
import Testing

@Suite struct TrainingTests {
    /// Backprop against central finite differences (in Double-ish precision via small steps) for
    /// every activation, on odd sizes.
    @Test(arguments: [Activation.relu, .gelu, .none])
    func gradientsMatchFiniteDifferences(_ act: Activation) throws {
        var model = try MLP(sizes: [7, 13, 5, 3], hidden: act, seed: 3)
        // Biases away from zero so ReLU kinks are not sampled.
        for l in model.layers.indices { model.layers[l].bias = model.layers[l].bias.indices.map { Float($0 % 3) * 0.1 + 0.05 } }
        var rng = SplitMix64(seed: 9)
        let x = try Matrix<Float>(rows: 6, columns: 7) { _, _ in rng.uniform(-1, 1) }
        let y: [Int32] = [0, 1, 2, 2, 1, 0]
        let (_, g) = try model.gradients(x, labels: y)
        func loss(_ m: MLP) throws -> Double {
            let z = try m.logits(x).elements
            return Double(Loss.crossEntropy(logits: z, labels: y, classes: 3).loss)
        }
        let h: Float = 1e-3
        var checked = 0
        for l in model.layers.indices {
            for i in stride(from: 0, to: model.layers[l].weight.count, by: 7) {
                var plus = model, minus = model
                var wp = plus.layers[l].weight.elements, wm = minus.layers[l].weight.elements
                wp[i] += h; wm[i] -= h
                plus.layers[l].weight = try Matrix(rows: wp.count / model.layers[l].inFeatures, columns: model.layers[l].inFeatures, elements: wp)
                minus.layers[l].weight = try Matrix(rows: wm.count / model.layers[l].inFeatures, columns: model.layers[l].inFeatures, elements: wm)
                let fd = (try loss(plus) - loss(minus)) / Double(2 * h)
                #expect(abs(fd - Double(g.weights[l][i])) <= 3e-3 + 3e-2 * abs(fd), "layer \(l) weight \(i): fd \(fd) vs \(g.weights[l][i])")
                checked += 1
            }
            for j in model.layers[l].bias.indices {
                var plus = model, minus = model
                plus.layers[l].bias[j] += h
                minus.layers[l].bias[j] -= h
                let fd = (try loss(plus) - loss(minus)) / Double(2 * h)
                #expect(abs(fd - Double(g.biases[l][j])) <= 3e-3 + 3e-2 * abs(fd), "layer \(l) bias \(j)")
            }
        }
        #expect(checked > 20)
    }

    /// Cross-entropy and distillation against hand-computed values, including the T² factor.
    @Test func lossesMatchHandComputedCases() {
        // logits [0, ln 3]: softmax [1/4, 3/4]; CE(label 1) = ln(4/3).
        let z: [Float] = [0, logf(3)]
        let (ce, g) = Loss.crossEntropy(logits: z, labels: [1], classes: 2)
        #expect(abs(ce - logf(4.0 / 3)) < 1e-6)
        #expect(abs(g[0] - 0.25) < 1e-6 && abs(g[1] + 0.25) < 1e-6)
        // Teacher [0, 2 ln 3] at T = 2 → p_t = [1/4, 3/4]; student [0, 0] → p_s = [1/2, 1/2].
        // KL = 1/4·ln(1/2) + 3/4·ln(3/2); L = α·CE + β·T²·KL; ∂/∂z_s = α(σ(z_s) − y) + β·T·(p_s − p_t).
        let (t, a, b): (Float, Float, Float) = (2, 0.3, 0.7)
        let (loss, grad) = Loss.distillation(student: [0, 0], teacher: [0, 2 * logf(3)], labels: [1], classes: 2,
                                             temperature: t, alpha: a, beta: b)
        let kl = 0.25 * logf(0.5) + 0.75 * logf(1.5)
        #expect(abs(loss - (a * logf(2) + b * t * t * kl)) < 1e-5, "\(loss)")
        #expect(abs(grad[0] - (a * 0.5 + b * t * (0.5 - 0.25))) < 1e-6)
        #expect(abs(grad[1] - (a * -0.5 + b * t * (0.5 - 0.75))) < 1e-6)
        // The distillation gradient against finite differences of its own loss.
        let zs: [Float] = [0.3, -1.2, 0.8], zt: [Float] = [1.0, 0.1, -0.5]
        let (_, gd) = Loss.distillation(student: zs, teacher: zt, labels: [2], classes: 3, temperature: 3, alpha: 0.5, beta: 0.5)
        for i in 0..<3 {
            var p = zs, m = zs
            p[i] += 1e-2; m[i] -= 1e-2
            let fd = (Loss.distillation(student: p, teacher: zt, labels: [2], classes: 3, temperature: 3, alpha: 0.5, beta: 0.5).loss
                - Loss.distillation(student: m, teacher: zt, labels: [2], classes: 3, temperature: 3, alpha: 0.5, beta: 0.5).loss) / 2e-2
            #expect(abs(fd - gd[i]) < 2e-3, "logit \(i)")
        }
    }

    @Test func trainingLearnsAndIsDeterministic() throws {
        let data = try gaussianBlobs(count: 600, features: 10, classes: 4, seed: 1)
        func run(_ opt: Optimizer) throws -> (MLP, [EpochRecord]) {
            var m = try MLP(sizes: [10, 32, 4], seed: 5)
            let h = try Trainer.train(&m, on: data, options: TrainingOptions(epochs: 4, batchSize: 32, optimizer: opt, seed: 2))
            return (m, h)
        }
        for opt in [Optimizer.adam(learningRate: 3e-3), .sgd(learningRate: 0.05)] {
            let (a, h) = try run(opt)
            let (b, _) = try run(opt)
            #expect(a == b, "same seed, same model")
            #expect(h.last!.loss < h.first!.loss * 0.7, "\(opt): \(h.map(\.loss))")
            #expect(h.last!.trainAccuracy > 0.8, "\(opt): \(h.map(\.trainAccuracy))")
        }
    }

    /// Masked weights are zero after every optimizer step (and training still learns).
    @Test func masksStayZeroThroughTraining() throws {
        let data = try gaussianBlobs(count: 256, features: 12, classes: 3, seed: 4)
        var model = try MLP(sizes: [12, 16, 3], seed: 6)
        var rng = SplitMix64(seed: 8)
        var masks: WeightMasks = model.layers.map { l in (0..<l.weight.count).map { _ in rng.below(3) == 0 ? 0 : 1 } }
        var none: Distillation?
        var steps = 0
        let fixed = masks  // the closure must not read `masks` while train holds it inout
        try Trainer.train(&model, on: data, options: TrainingOptions(epochs: 2, batchSize: 32, optimizer: .adam(learningRate: 1e-2)),
                          masks: &masks, distillation: &none, onStep: { _, _, m, _ in
                              // Before each step, the previous step's update must have left masked weights at zero.
                              for (l, mask) in fixed.enumerated() {
                                  let w = m.layers[l].weight.elements
                                  #expect(!w.indices.contains { mask![$0] == 0 && w[$0] != 0 })
                              }
                              steps += 1
                              return nil
                          })
        #expect(steps == 16)
        for (l, mask) in masks.enumerated() {
            let w = model.layers[l].weight.elements
            #expect(!w.indices.contains { mask![$0] == 0 && w[$0] != 0 })
            #expect(w.indices.contains { mask![$0] == 1 && w[$0] != 0 })
        }
    }

    @Test func badInputIsAClearError() throws {
        let data = try gaussianBlobs(count: 8, features: 4, classes: 2, seed: 1)
        var model = try MLP(sizes: [5, 3, 2], seed: 1)
        #expect(throws: CondenseError.shapeMismatch("data has 4 features, the model takes 5")) {
            try Trainer.train(&model, on: data, options: TrainingOptions())
        }
        let teacher = try MLP(sizes: [4, 3, 3], seed: 1)
        var student = try MLP(sizes: [4, 3, 2], seed: 1)
        var d: Distillation? = try Distillation(teacher: teacher)
        var masks = WeightMasks(repeating: nil, count: 2)
        #expect(throws: CondenseError.shapeMismatch("teacher maps 4 → 3, student 4 → 2")) {
            try Trainer.train(&student, on: data, options: TrainingOptions(), masks: &masks, distillation: &d)
        }
        #expect(throws: CondenseError.invalidArgument("temperature must be > 0, got 0.0")) { try Distillation(teacher: teacher, temperature: 0) }
        #expect(throws: CondenseError.invalidData("label 7 at row 1 is outside 0..<2")) {
            try Dataset(features: 1, classes: 2, x: [0, 1], y: [0, 7])
        }
        #expect(throws: CondenseError.invalidModel("an MLP needs at least two sizes, all >= 1; got [3]")) { try MLP(sizes: [3], seed: 1) }
    }

    /// MNIST loading: a wrong magic, gzip data, truncation and count mismatches are named.
    @Test func mnistFilesAreValidated() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("condense-mnist-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        func file(_ name: String, _ bytes: [UInt8]) throws -> String {
            let p = dir.appendingPathComponent(name).path
            try Data(bytes).write(to: URL(fileURLWithPath: p))
            return p
        }
        func be(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 255), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
        let images = try file("img", be(2051) + be(2) + be(2) + be(2) + [0, 255, 0, 0, 1, 2, 3, 4])
        let labels = try file("lab", be(2049) + be(2) + [3, 9])
        let ok = try MNIST.load(images: images, labels: labels)
        #expect(ok.count == 2 && ok.features == 4 && ok.y == [3, 9] && ok.x[1] == 1)
        let wrongMagic = try file("bad", be(2050) + be(2) + [3, 9])
        #expect(throws: CondenseError.invalidData("\(wrongMagic): magic number 2050, expected 2049")) { try MNIST.load(images: images, labels: wrongMagic) }
        let gz = try file("gz", [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0])
        #expect(throws: CondenseError.invalidData("\(gz) is gzip-compressed; decompress it first (gunzip)")) { try MNIST.load(images: gz, labels: labels) }
        let short = try file("short", be(2051) + be(3) + be(2) + be(2) + [0, 1, 2, 3])
        #expect(throws: CondenseError.invalidData("\(short) is truncated: 3 images of 2×2 need 28 bytes, file has 20")) { try MNIST.load(images: short, labels: labels) }
        let three = try file("three", be(2049) + be(3) + [1, 2, 3])
        #expect(throws: CondenseError.invalidData("\(images) has 2 images but \(three) has 3 labels")) { try MNIST.load(images: images, labels: three) }
    }
}

@Suite struct TrainGEMMTests {
    /// Each product on every ISA path against plain loops; a pack that cannot be allocated is a
    /// thrown error, never a crash on a NULL pack.
    @Test func productsOnEveryISAAndPackFailure() throws {
        let (m, n, k) = (5, 7, 9)
        let x = (0..<(m * k)).map { Float($0 % 7) - 3 }, w = (0..<(n * k)).map { Float($0 % 5) - 2 }
        var want = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { for l in 0..<k { want[i * n + j] += x[i * k + l] * w[j * k + l] } } }
        for isa in CondenseRuntime.runnableISAs {
            var y = [Float](repeating: .nan, count: m * n)
            try x.withUnsafeBufferPointer { xp in
                try w.withUnsafeBufferPointer { wp in
                    try y.withUnsafeMutableBufferPointer { try TrainGEMM.forward(xp.baseAddress!, m: m, k: k, wp.baseAddress!, n: n, bias: nil, into: $0.baseAddress!, isa: isa) }
                }
            }
            #expect(y == want, "\(isa)")
        }
        var y = [Float](repeating: 0, count: m * n)
        condense_test_fail_allocations(1)
        defer { condense_test_fail_allocations(0) }
        #expect(throws: CondenseError.outOfMemory(bytes: n * k * 4)) {
            try x.withUnsafeBufferPointer { xp in
                try w.withUnsafeBufferPointer { wp in
                    try y.withUnsafeMutableBufferPointer { try TrainGEMM.forward(xp.baseAddress!, m: m, k: k, wp.baseAddress!, n: n, bias: nil, into: $0.baseAddress!) }
                }
            }
        }
    }
}
