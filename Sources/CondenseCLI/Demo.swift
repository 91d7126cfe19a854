import ArgumentParser
import Condense
import CondenseCompression
import CondenseTraining
import Foundation

/// The bundled MNIST test set (with its attribution in Resources/mnist/README.md).
func bundledMNIST() throws -> (images: String, labels: String) {
    guard let dir = Bundle.module.url(forResource: "mnist", withExtension: nil) else {
        throw ValidationError("the bundled MNIST resource is missing from this build")
    }
    return (dir.appendingPathComponent("t10k-images-idx3-ubyte").path, dir.appendingPathComponent("t10k-labels-idx1-ubyte").path)
}

/// Data options shared by demo, compress and eval.
struct DataOptions: ParsableArguments {
    @Option(help: "IDX image file (default: the bundled MNIST test set).")
    var images: String?
    @Option(help: "IDX label file (default: the bundled MNIST test set).")
    var labels: String?
    @Option(help: "The first N rows train (and calibrate); the rest evaluate.")
    var trainRows = 8000

    func validate() throws {
        guard (images == nil) == (labels == nil) else {
            throw ValidationError(images == nil ? "--labels needs --images" : "--images needs --labels")
        }
    }

    /// The data files given on the command line (for the output-is-input check).
    func files() -> [String] { [images, labels].compactMap { $0 } }

    func load() throws -> (train: Dataset, test: Dataset) {
        let files = try (images != nil && labels != nil) ? (images!, labels!) : bundledMNIST()
        let all = try MNIST.load(images: files.0, labels: files.1)
        guard trainRows >= 1, trainRows < all.count else {
            throw ValidationError("--train-rows must be in 1..<\(all.count), got \(trainRows)")
        }
        return (try all.slice(0..<trainRows), try all.slice(trainRows..<all.count))
    }
}

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train an MLP on MNIST, compress it eleven ways (pruning, quantization, distillation, alone and combined), and report accuracy, calibration, size, latency and kernels.")

    @OptionGroup var data: DataOptions
    @Option(help: "Teacher hidden sizes.")
    var teacher = "1024,1024"
    @Option(help: "Student hidden sizes (distillation pipeline).")
    var student = "512,512"
    @Option(help: "Teacher training epochs.")
    var epochs = 12
    @Option(help: "Accuracy budget δ in points: also name the most compressed variant within δ of the teacher.")
    var budget = 1.0
    @Option(help: "Folder for report.json, report.html and the models.")
    var output = "condense-demo"
    @Flag(help: "A quick run (fewer epochs, for checks).")
    var quick = false
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard epochs >= 1 else { throw ValidationError("--epochs must be >= 1, got \(epochs)") }
        guard budget.isFinite, budget >= 0 else { throw ValidationError("--budget must be >= 0 points, got \(budget)") }
    }

    func run() throws {
        try runtime.apply()
        try FileOutput.checkFolder(output, inputs: data.files(), option: "--output")
        let started = Date()
        let (train, test) = try data.load()
        let hidden = try parseInts(teacher, option: "--teacher"), studentHidden = try parseInts(student, option: "--student")
        let registry = cliRegistry()
        let scale = quick ? 0.25 : 1.0
        func ep(_ e: Int) -> Int { max(1, Int((Double(e) * scale).rounded())) }
        let opts = TrainingOptions(epochs: ep(epochs), batchSize: 128, optimizer: .adam(learningRate: 1e-3),
                                   augmentation: .shift(width: 28, height: 28, pixels: 2), seed: 1)
        print("condense demo: MNIST, \(train.count) images to train, \(test.count) to evaluate; \(CondenseRuntime.cpuBrand), \(CondenseRuntime.threads) thread(s)")

        // 1. The teacher.
        var model = try MLP(sizes: [train.features] + hidden + [train.classes], hidden: .relu, seed: 1)
        let bar = ProgressBar("train teacher \(model.sizes.map(String.init).joined(separator: "-"))")
        let history = try Trainer.train(&model, on: train, options: opts) { p in bar.update(Double(p.step) / Double(p.totalSteps), String(format: "loss %.3f", p.loss)) }
        bar.finish(String(format: "train acc %.2f %%", 100 * (history.last?.trainAccuracy ?? 0)))
        try FileOutput.createFolder(output)
        try model.save(to: output + "/teacher.safetensors")
        let evalBar = ProgressBar("evaluate teacher")
        let base = try Evaluator.evaluate(CompressedMLP(exporting: model, formats: [.dense]), on: test, registry: registry, policy: .fastest(batch: 1))
        evalBar.finish()

        // 2. The pipelines.
        var runner = PipelineRunner(train: train, test: test, teacher: model, registry: registry, options: opts)
        runner.reference = base.predictions
        let pipelines = DemoPipelines.all(student: studentHidden, epochs: ep)
        var results: [PipelineResult] = []
        for p in pipelines {
            let pb = ProgressBar(p.name)
            var current = ""
            results.append(try runner.run(p) { stage, f in
                current = stage
                pb.update(f, current)
            })
            pb.finish(String(format: "acc %.2f %%", 100 * results.last!.final.accuracy))
        }
        let best = results.filter { $0.final.accuracy >= base.accuracy - budget / 100 }.min { $0.final.fileBytes < $1.final.fileBytes }
        if let full = results.last?.model { try full.save(to: output + "/student.safetensors") }
        let report = DemoReport(teacherSizes: model.sizes, train: train.count, test: test.count, cpu: CondenseRuntime.cpuBrand,
                                threads: CondenseRuntime.threads, teacherHistory: history, teacher: base, pipelines: results,
                                budget: budget, withinBudget: best?.name, seconds: Date().timeIntervalSince(started))
        print("")
        print(report.table())
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileOutput.write(try enc.encode(report), to: output + "/report.json")
        try FileOutput.write(report.html(), to: output + "/report.html")
        print("\nreport: \(output)/report.json, \(output)/report.html; models: \(output)/teacher.safetensors, \(output)/student.safetensors")
        print(String(format: "finished in %.0f s", Date().timeIntervalSince(started)))
    }
}

enum DemoPipelines {
    /// The pipelines of the demo: each technique alone, the naive combination, and the
    /// combinations with recovery.
    static func all(student: [Int], epochs ep: (Int) -> Int) -> [Pipeline] {
        [
            Pipeline("2:4 one-shot", [.prune(.nm(n: 2, m: 4), score: .magnitude)]),
            Pipeline("90 % one-shot", [.prune(.unstructured(0.9), score: .magnitude)]),
            Pipeline("int8 PTQ", [.quantize(.int8)]),
            Pipeline("int4 PTQ", [.quantize(.int4(group: 32))]),
            Pipeline("2:4 → int8, no recovery", [.prune(.nm(n: 2, m: 4), score: .magnitude), .quantize(.int8)]),
            Pipeline("2:4 → int4, no recovery", [.prune(.nm(n: 2, m: 4), score: .magnitude), .quantize(.int4(group: 32))]),
            Pipeline("90 % → int8, no recovery", [.prune(.unstructured(0.9), score: .magnitude), .quantize(.int8)]),
            Pipeline("2:4 → fine-tune → QAT int8", [.prune(.nm(n: 2, m: 4), score: .activationAware), .fineTune(epochs: ep(3), distill: false),
                                                     .qat(.int8, epochs: ep(1), distill: false)]),
            Pipeline("neurons −50 % → fine-tune", [.shrink(fraction: 0.5), .fineTune(epochs: ep(3), distill: false)]),
            Pipeline("90 % gradual → QAT int8", [.pruneGradually(sparsity: 0.9, epochs: ep(4), score: .magnitude),
                                                  .qat(.int8, epochs: ep(1), distill: false)]),
            Pipeline("distill → 2:4 → fine-tune → int8", [
                .distill(hidden: student, epochs: ep(10), temperature: 4, alpha: 0.5, beta: 0.5, featureMatching: true),
                .prune(.nm(n: 2, m: 4), score: .activationAware), .fineTune(epochs: ep(3), distill: true),
                .qat(.int8, epochs: ep(1), distill: true),
            ]),
        ]
    }
}
