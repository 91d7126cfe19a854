import CCondenseKernels
import Condense
import CondenseInference
import Foundation

/// Compression of a GGUF decoder to a quality budget: each projection (and the head) gets the
/// format that saves the most bytes read per token for what it costs in accuracy, measured, not
/// assumed.
///
/// 1. **Candidates**: every projection is compressed on the Gram matrix of its inputs in the
///    source model (calibration text) into each candidate format that reads fewer bytes than it
///    is stored in: int8 (ggml's Q8_0), int4 (GPTQ on Q4_0's grid), 2:4-int8 (SparseGPT), 2:4-int4.
/// 2. **Sensitivity**: the model with that one projection replaced runs the validation text; its
///    cost is the KL divergence of its next-token distribution from the source's (top 64 tokens
///    and the rest, nats per token). On text the source wrote itself (the default calibration)
///    this KL is the expected rise of the log-perplexity.
/// 3. **Order**: the steps of every projection's lower convex hull (bytes saved against KL),
///    cheapest KL per byte first.
/// 4. **Measured choice**: how many of those steps are taken is decided on the validation text,
///    by halving: the most steps whose model's perplexity is within the budget (or the fewest
///    whose measured generation speed reaches the target).
///
/// ```swift
/// let gguf = try GGUFFile(contentsOf: "SmolLM2-135M-Instruct.Q4_1.gguf")
/// let lm = try LanguageModel(file: gguf)
/// let text = try LLMCompression.selfGenerated(lm, sequences: 38, length: 128)
/// let r = try LLMBudget.compress(gguf, calibration: Array(text.prefix(32)), validation: Array(text.suffix(6)),
///                                options: .init(goal: .maxPerplexityIncrease(0.10)))
/// try DecoderFolder.write(to: "smol-10pct", metadata: gguf, tensors: r.parts, report: r.report)
/// ```
public enum LLMBudget {
    /// What the search aims for: a perplexity budget or a speed-up.
    public enum Goal: Sendable, Equatable {
        /// Validation perplexity at most (1 + this) times the source's.
        case maxPerplexityIncrease(Double)
        /// Generation (one token at a time) at least this many times the source's speed,
        /// measured in the same run, at the least cost in perplexity.
        case targetSpeedup(Double)
    }

    /// A format a projection may take.
    public enum Candidate: String, Sendable, CaseIterable, Codable {
        /// ggml's Q8_0 (8.5 bits per weight), rounded to nearest.
        case int8
        /// ggml's Q4_0 (4.5 bits per weight), GPTQ.
        case int4
        /// 2:4 with int8 values and per-row scales, SparseGPT.
        case sparse24Int8 = "2:4-int8"
        /// 2:4 with 4-bit values, one scale per 64 (3.25 bits per weight), SparseGPT + GPTQ.
        case sparse24Int4 = "2:4-int4"

        /// Bytes of an `n`×`k` matrix in this format; nil when K does not fit it.
        func bytes(n: Int, k: Int) -> Int? {
            switch self {
            case .int8: return k % 32 == 0 ? n * (k / 32) * 34 : nil
            case .int4: return k % 32 == 0 ? n * (k / 32) * 18 : nil
            case .sparse24Int8: return k % 4 == 0 ? n * (k / 2) + n * (k / 8) + n * 4 : nil
            case .sparse24Int4: return k % 64 == 0 ? n * (k / 64) * 26 : nil
            }
        }
    }

    /// The goal and how the search measures: candidates, tensors kept, KL's top-k, speed samples.
    public struct Options: Sendable {
        public var goal: Goal
        /// The formats projections may take (each only where it reads fewer bytes than stored).
        public var candidates: [Candidate] = Candidate.allCases
        /// The head's; empty keeps it as stored.
        public var headCandidates: [Candidate] = [.int8, .int4, .sparse24Int4]
        /// Projections left as stored (parts of tensor names, as ``LLMCompression/Options/keep``).
        public var keep: [String] = []
        public var damping = 0.01
        /// Tokens of the source's distribution kept per position for the KL (the rest is one bucket).
        public var topK = 64
        /// Generated tokens per speed measurement, and interleaved repetitions (median).
        public var speedTokens = 64
        public var speedRepetitions = 3
        /// Models measured along the choice order for the report's trade-off chart.
        public var frontierPoints = 6

        /// The other settings at their defaults.
        public init(goal: Goal) { self.goal = goal }
    }

    /// One candidate of one projection, measured alone.
    public struct Sensitivity: Sendable {
        public let name: String
        public let candidate: Candidate
        public let sourceBytes: Int
        public let bytes: Int
        /// Nats per token (KL from the source's next-token distribution) on the validation text.
        public let kl: Double
        /// ‖X·(W − Ŵ)ᵀ‖² / ‖X·Wᵀ‖² on the calibration inputs.
        public let relativeError: Double
    }

    /// A model measured on the way: for the trade-off chart.
    public struct Point: Sendable {
        public let label: String
        public let bytesPerToken: Int
        public let perplexity: Double
        /// Generation speed over the source's, same run; nil when not timed.
        public let speedup: Double?
        public let chosen: Bool
    }

    /// The chosen compression: the parts to write, what was measured along the way, and whether
    /// the goal was met.
    public struct Result: Sendable {
        /// Every tensor of the folder, in order.
        public let parts: [(name: String, part: DecoderFolder.Part)]
        /// The format of every projection and the head that changed (`ggml:q4_0`, `2:4-int4`, …).
        public let choice: [(name: String, format: String)]
        public let sensitivities: [Sensitivity]
        /// Validation perplexity of the source and of the chosen model; of the source with only
        /// the head changed, and with only the projections changed.
        public let sourcePerplexity: Double, perplexity: Double, headOnlyPerplexity: Double, projectionsOnlyPerplexity: Double
        /// Weight bytes read per generated token: all, and the head's.
        public let sourceBytes: Int, bytes: Int, sourceHeadBytes: Int, headBytes: Int
        /// Generation tokens per second, same run, interleaved.
        public let sourceSpeed: Double, speed: Double
        public let frontier: [Point]
        /// Whether the goal was met; `message` says what was achieved when not.
        public let met: Bool
        public let message: String?
        public let goal: Goal
        /// Steps taken, of all the candidates' steps in the choice order.
        public let steps: (taken: Int, of: Int)
        public let validationTokens: Int
        public let seconds: Double

        public var speedup: Double { speed / sourceSpeed }

        /// For the folder's report (`compression-report.json`).
        public var report: [String: Any] {
            var goalDict: [String: Any] = [:]
            switch goal {
            case let .maxPerplexityIncrease(p): goalDict = ["max_ppl_increase": p]
            case let .targetSpeedup(s): goalDict = ["target_speedup": s]
            }
            return [
                "goal": goalDict, "met": met, "message": message ?? "",
                "validation_tokens": validationTokens,
                "perplexity": ["source": sourcePerplexity, "compressed": perplexity, "ratio": perplexity / sourcePerplexity,
                               "head_only": headOnlyPerplexity, "projections_only": projectionsOnlyPerplexity],
                "bytes_per_token": ["source": sourceBytes, "compressed": bytes, "source_head": sourceHeadBytes, "head": headBytes,
                                    "source_projections": sourceBytes - sourceHeadBytes, "projections": bytes - headBytes],
                "generation_tok_s": ["source": sourceSpeed, "compressed": speed, "speedup": speedup],
                "choice": Dictionary(choice.map { ($0.name, $0.format) }, uniquingKeysWith: { a, _ in a }),
                "steps": ["taken": steps.taken, "of": steps.of],
                "sensitivity": sensitivities.map { ["name": $0.name, "format": $0.candidate.rawValue, "kl": $0.kl, "bytes": $0.bytes,
                                                    "source_bytes": $0.sourceBytes, "relative_error": $0.relativeError] as [String: Any] },
                "frontier": frontier.map { ["label": $0.label, "bytes_per_token": $0.bytesPerToken, "perplexity": $0.perplexity,
                                            "speedup": $0.speedup ?? NSNull(), "chosen": $0.chosen] as [String: Any] },
                "seconds": seconds,
            ]
        }
    }

    /// The source's next-token distributions on the validation text, reduced to the top `k`
    /// tokens per position plus the rest.
    struct Reference {
        var top: [[Int32]] = [], logp: [[Float]] = [], rest: [Double] = []
    }

    /// Mean NLL of the next token and mean KL from `ref` over every position but the last of
    /// each sequence; fills `ref` when it is empty.
    static func evaluate(_ lm: LanguageModel, _ seqs: [[Int32]], reference ref: inout Reference, topK: Int) throws -> (nll: Double, kl: Double) {
        let fill = ref.top.isEmpty
        var nll = 0.0, kl = 0.0, n = 0
        let session = try lm.session(contextLength: seqs[0].count)
        for s in seqs {
            session.reset()
            let logits = try session.forward(s, allLogits: true)
            for j in 0..<(s.count - 1) {
                let row = logits[j]
                var mx = -Float.infinity
                for v in row { mx = max(mx, v) }
                var sum = 0.0
                row.withUnsafeBufferPointer { p in for v in p { sum += Double(expf(v - mx)) } }
                let lse = Double(mx) + log(sum)
                nll -= Double(row[Int(s[j + 1])]) - lse
                if fill {
                    // The top k by partial selection: a heap would be faster; k is small.
                    var idx = [Int32](), vals = [Float]()
                    for (i, v) in row.enumerated() where idx.count < topK || v > vals[vals.count - 1] {
                        let at = vals.firstIndex { $0 < v } ?? vals.count
                        vals.insert(v, at: at); idx.insert(Int32(i), at: at)
                        if vals.count > topK { vals.removeLast(); idx.removeLast() }
                    }
                    let lp = vals.map { Float(Double($0) - lse) }
                    ref.top.append(idx); ref.logp.append(lp)
                    ref.rest.append(max(0, 1 - lp.reduce(0.0) { $0 + exp(Double($1)) }))
                } else {
                    let r = n
                    var qTop = 0.0, k = 0.0
                    for (i, lp) in zip(ref.top[r], ref.logp[r]) {
                        let lq = Double(row[Int(i)]) - lse
                        qTop += exp(lq)
                        k += exp(Double(lp)) * (Double(lp) - lq)
                    }
                    let pr = ref.rest[r], qr = max(1 - qTop, 1e-12)
                    if pr > 1e-12 { k += pr * (log(pr) - log(qr)) }
                    kl += k
                }
                n += 1
            }
        }
        return (nll / Double(n), kl / Double(n))
    }

    /// Perplexity of `lm` on `seqs` (every next token), as the budget measures it.
    public static func perplexity(_ lm: LanguageModel, _ seqs: [[Int32]]) throws -> Double {
        var ref = Reference()
        return exp(try evaluate(lm, seqs, reference: &ref, topK: 1).nll)
    }

    /// Generation tokens per second of each model (one token at a time after a one-token
    /// prompt), repetitions interleaved, median.
    public static func generationSpeed(_ models: [LanguageModel], tokens: Int, repetitions: Int) throws -> [Double] {
        var runs = [[Double]](repeating: [], count: models.count)
        for _ in 0..<max(repetitions, 1) {
            for (i, lm) in models.enumerated() {
                let tokens = max(1, min(tokens, lm.config.contextLength - 2))
                let s = try lm.session(contextLength: tokens + 2)
                var next: Int32 = lm.tokenizer.bos ?? 0
                _ = try s.forward([next])
                let t0 = ContinuousClock.now
                for _ in 0..<tokens {
                    let logits = try s.forward([next])[0]
                    next = Int32(logits.indices.max { logits[$0] < logits[$1] }!)
                }
                let d = ContinuousClock.now - t0
                runs[i].append(Double(tokens) / (Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18))
            }
        }
        return runs.map { $0.sorted()[$0.count / 2] }
    }

    /// A step of one projection from one format to a cheaper one.
    struct Increment {
        let name: String
        let from: Candidate?, to: Candidate
        let saved: Int
        let kl: Double
    }

    /// Each projection's lower convex hull of (bytes saved, KL), as steps; steps of all
    /// projections, cheapest KL per byte first.
    static func increments(_ sens: [Sensitivity]) -> [Increment] {
        var out: [Increment] = []
        for (name, group) in Dictionary(grouping: sens, by: \.name) {
            // Points (saved, kl), the stored form at (0, 0); more saved at no more KL dominates.
            var pts = group.map { (c: Optional($0.candidate), saved: $0.sourceBytes - $0.bytes, kl: max($0.kl, 0)) }.filter { $0.saved > 0 }
            pts.sort { $0.saved != $1.saved ? $0.saved < $1.saved : $0.kl < $1.kl }
            var hull: [(c: Candidate?, saved: Int, kl: Double)] = [(nil, 0, 0)]
            for p in pts {
                while let last = hull.last, last.c != nil, last.kl >= p.kl { hull.removeLast() }
                // Keep the slopes (KL per byte) increasing.
                while hull.count >= 2 {
                    let (a, b) = (hull[hull.count - 2], hull[hull.count - 1])
                    let s1 = (b.kl - a.kl) / Double(b.saved - a.saved), s2 = (p.kl - b.kl) / Double(p.saved - b.saved)
                    if s2 <= s1 { hull.removeLast() } else { break }
                }
                hull.append(p)
            }
            for i in 1..<hull.count {
                out.append(Increment(name: name, from: hull[i - 1].c, to: hull[i].c!, saved: hull[i].saved - hull[i - 1].saved,
                                     kl: hull[i].kl - hull[i - 1].kl))
            }
        }
        return out.sorted { a, b in
            let (ea, eb) = (a.kl / Double(a.saved), b.kl / Double(b.saved))
            return ea != eb ? ea < eb : a.name < b.name
        }
    }

    /// `incs` without the steps whose KL alone exceeds `budget`, and the later steps of their projections.
    static func withinBudget(_ incs: [Increment], _ budget: Double) -> [Increment] {
        var dropped = Set<String>()
        return incs.filter { i in
            if dropped.contains(i.name) { return false }
            if i.kl > budget { dropped.insert(i.name); return false }
            return true
        }
    }

    /// Compresses `f` to the goal: candidates on `calibration`, sensitivities and the check on
    /// `validation` (sequences of one length, at least 2 tokens).
    /// - Throws: `CondenseError` for a model the decoder does not read or calibration or
    ///   validation sequences that are empty, of different lengths or outside the vocabulary.
    public static func compress(_ f: GGUFFile, calibration: [[Int32]], validation: [[Int32]], options o: Options,
                                registry: BackendRegistry = .standard(), log: (String) -> Void = { _ in }) throws -> Result {
        let start = ContinuousClock.now
        let c = try DecoderConfig(gguf: f)
        let d = c.hidden
        guard let t = calibration.first?.count, t >= 1, calibration.allSatisfy({ $0.count == t }) else {
            throw CondenseError.invalidArgument("calibration needs sequences of one length, got lengths \(Set(calibration.map(\.count)).sorted())")
        }
        guard let tv = validation.first?.count, tv >= 2, validation.allSatisfy({ $0.count == tv }) else {
            throw CondenseError.invalidArgument("validation needs sequences of one length of at least 2, got lengths \(Set(validation.map(\.count)).sorted())")
        }
        switch o.goal {
        case let .maxPerplexityIncrease(p): guard p.isFinite, p > 0 else { throw CondenseError.invalidArgument("a perplexity increase must be > 0, got \(p)") }
        case let .targetSpeedup(s): guard s.isFinite, s > 1 else { throw CondenseError.invalidArgument("a target speed-up must be > 1, got \(s)") }
        }
        let base = try LanguageModel(file: f, registry: registry)
        let vocab = base.tokenizer.tokens.count
        if let bad = (calibration + validation).joined().first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw CondenseError.invalidInput("calibration token id \(bad) is outside the vocabulary of \(vocab)")
        }
        let rows = try CheckedSize.product(calibration.count, t, of: "calibration rows")
        var xs = try LLMCompression.embed(f, c, calibration)

        // 1. Candidates on the source's inputs.
        let (roles, paths, stages) = (LLMCompression.roles, LLMCompression.paths, LLMCompression.stages)
        var stored: [String: DecoderFolder.Part] = [:]          // every projection as the source stores it (split)
        var sourceBytes: [String: Int] = [:]
        var candidates: [String: [Candidate: (part: DecoderFolder.Part, bytes: Int, error: Double)]] = [:]
        var layerOf: [String: Int] = [:]
        func compressCandidates(_ name: String, _ dense: BlockTuning.Linear, _ hf: Reconstruction.HessianFactor, input: [Float],
                                source: Int, allowed: [Candidate]) throws {
            let w = try Matrix(rows: dense.n, columns: dense.k, elements: dense.weight)
            for cand in allowed {
                guard let est = cand.bytes(n: dense.n, k: dense.k), est < source else { continue }
                let part: DecoderFolder.Part, approx: [Float], bytes: Int
                switch cand {
                case .int8:
                    let (data, values) = GGMLBlocks.q8_0(w)
                    (part, approx, bytes) = (.ggml(.q8_0, rows: dense.n, columns: dense.k, data), values, data.count)
                case .int4:
                    let r = try Reconstruction.compress(w, hessian: hf, prune24: false, grid: .q4_0)
                    let data = GGMLBlocks.encode(.q4_0, r)
                    (part, approx, bytes) = (.ggml(.q4_0, rows: dense.n, columns: dense.k, data), r.weights.elements, data.count)
                case .sparse24Int8:
                    let r = try Reconstruction.compress(w, hessian: hf, prune24: true, grid: nil)
                    let q = try Sparse24Int8Weights(quantizing: Sparse24Matrix(dense: r.weights))
                    let l = try LinearLayer(weights: .sparse24Int8(q))
                    (part, approx, bytes) = (.linear(l), r.weights.elements, l.weights.byteCount)
                case .sparse24Int4:
                    let r = try Reconstruction.compress(w, hessian: hf, prune24: true, grid: .s24q4)
                    let q = try Sparse24Int4Weights(quantizing: r.weights, scales: r.scales)
                    (part, approx, bytes) = (.sparse24Int4(q), r.weights.elements, q.blocks.count)
                }
                guard bytes < source else { continue }
                let err = try LLMCompression.relativeError(x: input, rows: rows, dense: dense,
                                                           compressed: BlockTuning.Linear(weight: approx, bias: dense.bias, n: dense.n, k: dense.k))
                candidates[name, default: [:]][cand] = (part, bytes, err)
            }
        }
        for l in 0..<c.layers {
            let dense = try LLMCompression.denseBlock(f, c, layer: l)
            let pass = try DecoderBlockTuning.forward(dense, x: xs, sequenceLength: t)
            for (members, input) in stages {
                let xin = input(pass)
                let hf = try Reconstruction.HessianFactor(inputs: xin, rows: rows, k: dense[keyPath: paths[members[0]]].k, damping: o.damping)
                for m in members {
                    let name = roles[m].name(l)
                    let src = try LLMCompression.sourceTensor(f, c, layer: l, roles[m])
                    let lin = dense[keyPath: paths[m]]
                    stored[name] = .ggml(src.type, rows: lin.n, columns: lin.k, src.data)
                    sourceBytes[name] = Self.runBytes(src)
                    layerOf[name] = l
                    let allowed = o.keep.contains(where: { name.contains($0) }) ? [] : o.candidates
                    try compressCandidates(name, lin, hf, input: xin, source: sourceBytes[name]!, allowed: allowed)
                }
            }
            xs = pass.y
            log("block \(l): candidates " + roles.map { r in
                let n = r.name(l)
                return candidates[n].map { $0.keys.map(\.rawValue).sorted().joined(separator: "/") } ?? "-"
            }.joined(separator: " "))
        }
        // The head, on the source's final hidden states.
        let headName = f.tensors.contains { $0.name == ModelTensor.output } ? ModelTensor.output : ModelTensor.tokenEmbedding
        let headSrc = try f.tensor(headName)
        sourceBytes[ModelTensor.output] = base.headBytesPerToken
        if !o.headCandidates.isEmpty, !o.keep.contains(where: { ModelTensor.output.contains($0) }) {
            let (hs, _) = DecoderBlockTuning.rmsNorm(xs, rows: rows, try LLMCompression.vector(f, ModelTensor.outputNorm, d), eps: c.rmsEpsilon)
            let hf = try Reconstruction.HessianFactor(inputs: hs, rows: rows, k: d, damping: o.damping)
            let nv = headSrc.dims[1]
            let w = try f.dequantized(headName)
            let lin = try BlockTuning.Linear(weight: w, bias: [Float](repeating: 0, count: nv), n: nv, k: d)
            try compressCandidates(ModelTensor.output, lin, hf, input: hs, source: base.headBytesPerToken, allowed: o.headCandidates)
            log("head: candidates " + (candidates[ModelTensor.output].map { $0.keys.map(\.rawValue).sorted().joined(separator: "/") } ?? "-"))
        }

        /// The parts that replace `names`' stored forms: each changed projection with its
        /// layer's other projections as stored (a fused file's siblings come split).
        func overlay(_ choice: [String: Candidate]) -> [String: DecoderFolder.Part] {
            var out: [String: DecoderFolder.Part] = [:]
            for (name, cand) in choice {
                out[name] = candidates[name]![cand]!.part
                if let l = layerOf[name] { for r in roles where out[r.name(l)] == nil { out[r.name(l)] = stored[r.name(l)] } }
            }
            return out
        }

        // 2. Sensitivities.
        var ref = Reference()
        let src = try evaluate(base, validation, reference: &ref, topK: o.topK)
        log(String(format: "source: validation perplexity %.3f on %d tokens", exp(src.nll), validation.count * (tv - 1)))
        var sens: [Sensitivity] = []
        let names = candidates.keys.sorted { (layerOf[$0] ?? .max, $0) < (layerOf[$1] ?? .max, $1) }
        for name in names {
            for (cand, v) in candidates[name]!.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                let variant = try base.replacing(overlay([name: cand]), file: f, registry: registry)
                let e = try evaluate(variant, validation, reference: &ref, topK: o.topK)
                sens.append(Sensitivity(name: name, candidate: cand, sourceBytes: sourceBytes[name]!, bytes: v.bytes, kl: e.kl, relativeError: v.error))
            }
            log("\(name): " + sens.filter { $0.name == name }.map { "\($0.candidate.rawValue) KL \(String(format: "%.2e", $0.kl))" }.joined(separator: ", "))
        }

        // 3. Order. A step whose KL alone exceeds a perplexity budget never fits: it leaves the
        // order with the steps after it on the same projection, so the search goes past it.
        var incs = increments(sens)
        if case let .maxPerplexityIncrease(p) = o.goal { incs = withinBudget(incs, log1p(p)) }
        func state(_ prefix: [Increment]) -> [String: Candidate] {
            var s: [String: Candidate] = [:]
            for i in prefix { s[i.name] = i.to }
            return s
        }
        // The KL sums rank the steps; measurements decide how many are taken: the order's
        // prefixes, searched by halving (a perturbation of the source's kernels moves the KL by
        // ~10⁻³ per projection whatever its format, so KL sums overstate what many steps cost).
        var measured: [Int: (model: LanguageModel, nll: Double)] = [0: (base, src.nll)]
        /// The source with the formats in `s`, and its mean NLL on the validation text.
        func variant(_ s: [String: Candidate]) throws -> (model: LanguageModel, nll: Double) {
            let m = try base.replacing(overlay(s), file: f, registry: registry)
            return (m, try evaluate(m, validation, reference: &ref, topK: o.topK).nll)
        }
        func prefix(_ k: Int) throws -> (model: LanguageModel, nll: Double) {
            if let m = measured[k] { return m }
            let r = try variant(state(Array(incs.prefix(k))))
            measured[k] = r
            return r
        }
        var sourceSpeed = 0.0, speed = 0.0
        var met = true
        var message: String?
        var chosen = 0
        switch o.goal {
        case let .maxPerplexityIncrease(p):
            let budget = log1p(p)
            var (lo, hi) = (0, incs.count)   // lo is within the budget; beyond hi is not
            while lo < hi {
                let mid = (lo + hi + 1) / 2
                let r = try prefix(mid)
                log(String(format: "%d of %d steps: validation perplexity %.3f (%.3f× the source's), %.1f MB per token",
                           mid, incs.count, exp(r.nll), exp(r.nll - src.nll), Double(r.model.weightBytesPerToken) / 1e6))
                if r.nll - src.nll <= budget { lo = mid } else { hi = mid - 1 }
            }
            chosen = lo
            if lo == 0, let first = incs.first {
                met = false
                message = String(format: "no projection fits a perplexity increase of %.1f %%: the cheapest step (%@ to %@) alone gives %.3f× the source's validation perplexity",
                                 100 * p, first.name, first.to.rawValue, exp(try prefix(1).nll - src.nll))
            } else if incs.isEmpty {
                met = false
                message = "no projection has a candidate format that reads fewer bytes than it is stored in"
            }
            let speeds = try generationSpeed([base, try prefix(chosen).model], tokens: o.speedTokens, repetitions: o.speedRepetitions)
            (sourceSpeed, speed) = (speeds[0], speeds[1])
        case let .targetSpeedup(target):
            // The fewest steps whose measured speed reaches the target: every step first, then halving.
            func speedup(_ k: Int) throws -> Double {
                let sp = try generationSpeed([base, try prefix(k).model], tokens: o.speedTokens, repetitions: o.speedRepetitions)
                (sourceSpeed, speed) = (sp[0], sp[1])
                log(String(format: "%d of %d steps: %.2f× the source's generation speed, validation perplexity %.3f× the source's",
                           k, incs.count, sp[1] / sp[0], exp(try prefix(k).nll - src.nll)))
                return sp[1] / sp[0]
            }
            var (lo, hi) = (0, incs.count)   // hi reaches the target; lo does not
            let all = incs.isEmpty ? 0 : try speedup(hi)
            if incs.isEmpty || all < target {
                met = false
                message = String(format: "a speed-up of %.2f× is out of reach: with every candidate taken the model generates at %.2f× the source's speed (perplexity %.2f×)",
                                 target, speed / max(sourceSpeed, 1e-9), exp(try prefix(hi).nll - src.nll))
                chosen = hi
            } else {
                var best = (speed, sourceSpeed)
                while hi - lo > 1 {
                    let mid = (lo + hi) / 2
                    if try speedup(mid) >= target { hi = mid; best = (speed, sourceSpeed) } else { lo = mid }
                }
                chosen = hi
                (speed, sourceSpeed) = best
            }
        }
        let taken = Array(incs.prefix(chosen))
        var chosenModel: LanguageModel, current: Double
        (chosenModel, current) = try prefix(chosen)
        let choice = state(taken)

        // Attribution: the head's change alone, the projections' alone.
        let headChoice = choice.filter { $0.key == ModelTensor.output }, projChoice = choice.filter { $0.key != ModelTensor.output }
        let headOnly = headChoice.isEmpty ? src.nll : try variant(headChoice).nll
        let projOnly = projChoice.isEmpty ? src.nll : try variant(projChoice).nll

        // The trade-off: models along the whole choice order (those the search measured, and
        // evenly spaced ones), each timed against the source.
        var frontier: [Point] = []
        let n = max(o.frontierPoints, 2)
        let cuts = Set((0...n).map { incs.count * $0 / n }).union(measured.keys).subtracting([0, chosen])
        for cut in cuts.sorted() {
            let (m, nll) = try prefix(cut)
            let sp = try generationSpeed([base, m], tokens: o.speedTokens, repetitions: 1)
            frontier.append(Point(label: "first \(cut) of \(incs.count) steps", bytesPerToken: m.weightBytesPerToken, perplexity: exp(nll),
                                  speedup: sp[1] / sp[0], chosen: false))
        }
        frontier.insert(Point(label: "source", bytesPerToken: base.weightBytesPerToken, perplexity: exp(src.nll), speedup: 1, chosen: false), at: 0)
        frontier.append(Point(label: "chosen", bytesPerToken: chosenModel.weightBytesPerToken, perplexity: exp(current), speedup: speed / sourceSpeed, chosen: true))

        // The folder: every tensor, the chosen ones in their new format.
        var parts: [(name: String, part: DecoderFolder.Part)] = []
        let embd = try f.tensor(ModelTensor.tokenEmbedding)
        parts.append((ModelTensor.tokenEmbedding, .ggml(embd.type, rows: embd.dims[1], columns: d, embd.data)))
        let blockTensors = Set(try DecoderArchitecture.named(c.architecture).block)
        for l in 0..<c.layers {
            for r in roles {
                let name = r.name(l)
                parts.append((name, choice[name].map { candidates[name]![$0]!.part } ?? stored[name]!))
            }
            for tn in [BlockTensor.attnNorm, .ffnNorm, .qNorm, .kNorm, .postAttnNorm, .postFFNNorm] where blockTensors.contains(tn) {
                parts.append((tn.name(l), .vector(try f.dequantized(tn.name(l)))))
            }
            if c.qkvBias {
                for r in [BlockTensor.q, .k, .v] {
                    parts.append((r.name(l, "bias"), .vector(try LLMCompression.vector(f, r.name(l, "bias"), r == .q ? c.qDim : c.kvDim))))
                }
            }
        }
        parts.append((ModelTensor.outputNorm, .vector(try LLMCompression.vector(f, ModelTensor.outputNorm, d))))
        if f.tensors.contains(where: { $0.name == ModelTensor.ropeFrequencies }) {
            parts.append((ModelTensor.ropeFrequencies, .vector(try LLMCompression.vector(f, ModelTensor.ropeFrequencies, c.headDim / 2))))
        }
        if let h = choice[ModelTensor.output] {
            parts.append((ModelTensor.output, candidates[ModelTensor.output]![h]!.part))
        } else if headName == ModelTensor.output {
            parts.append((ModelTensor.output, .ggml(headSrc.type, rows: headSrc.dims[1], columns: d, headSrc.data)))
        }
        let formats = choice.map { (name: $0.key, format: Self.label($0.value)) }.sorted { (layerOf[$0.name] ?? .max, $0.name) < (layerOf[$1.name] ?? .max, $1.name) }
        return Result(parts: parts, choice: formats, sensitivities: sens, sourcePerplexity: exp(src.nll), perplexity: exp(current),
                      headOnlyPerplexity: exp(headOnly), projectionsOnlyPerplexity: exp(projOnly),
                      sourceBytes: base.weightBytesPerToken, bytes: chosenModel.weightBytesPerToken,
                      sourceHeadBytes: base.headBytesPerToken, headBytes: chosenModel.headBytesPerToken,
                      sourceSpeed: sourceSpeed, speed: speed, frontier: frontier, met: met, message: message, goal: o.goal,
                      steps: (chosen, incs.count), validationTokens: validation.count * (tv - 1),
                      seconds: Double((ContinuousClock.now - start).components.seconds))
    }

    /// How the folder's report names a candidate's stored form.
    public static func label(_ c: Candidate) -> String {
        switch c {
        case .int8: return "ggml:q8_0"
        case .int4: return "ggml:q4_0"
        case .sparse24Int8: return "2:4-int8"
        case .sparse24Int4: return "2:4-int4"
        }
    }

    /// Bytes a stored tensor reads per token where it runs: ggml blocks and 16-bit floats as
    /// stored, other types as the f32 they are widened to.
    static func runBytes(_ t: GGUFFile.Tensor) -> Int {
        if GGUFBlockLinear.supported.contains(t.type) || t.type == .f16 || t.type == .bf16 { return t.data.count }
        return t.elementCount * 4
    }
}

extension GGMLBlocks {
    /// ggml's Q8_0 of `w` (rows of whole blocks of 32), rounded to nearest: the blocks and the
    /// weights they hold.
    static func q8_0(_ w: Matrix<Float>) -> (Data, [Float]) {
        let (rows, k) = (w.rows, w.columns)
        var out = Data(capacity: rows * (k / 32) * 34)
        var back = [Float](repeating: 0, count: rows * k)
        w.withUnsafeBufferPointer { p in
            for r in 0..<rows {
                for g in 0..<(k / 32) {
                    let base = r * k + g * 32
                    var amax: Float = 0
                    for j in 0..<32 { amax = max(amax, abs(p[base + j])) }
                    let dh = Float16(amax / 127), dv = Float(dh)
                    let bits = dh.bitPattern
                    out.append(UInt8(bits & 0xFF)); out.append(UInt8(bits >> 8))
                    for j in 0..<32 {
                        let q = dv == 0 ? 0 : Int8(max(-127, min(127, (p[base + j] / dv).rounded())))
                        out.append(UInt8(bitPattern: q))
                        back[base + j] = Float(q) * dv
                    }
                }
            }
        }
        return (out, back)
    }
}
