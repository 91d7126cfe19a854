import Condense
import CondenseInference
import CondenseTraining
import Foundation

/// End-to-end recovery of a compressed decoder: the whole model (every block in f32, 2:4 masks
/// fixed, the head frozen) trains so that its next-token distribution matches the source
/// model's, KL at temperature T over text streamed sequence by sequence. A projection on a 4- or
/// 8-bit grid trains through its rounding (straight-through, the compressed part's scales
/// fixed), so writing it back loses nothing.
///
/// The teacher is the source as it runs (`LanguageModel`); the student's passes are
/// ``DecoderBlockTuning``'s (Llama blocks: RMSNorm, rotary attention with grouped KV heads,
/// SwiGLU).
///
/// ```swift
/// var s = try LLMDistillation.student(gguf, parts: compressed.parts)
/// var text = corpus.makeIterator()
/// let r = try LLMDistillation.distill(&s, file: gguf, teacher: lm, sequences: { text.next() }, validation: held,
///                                     options: .init(tokens: 100_000))
/// let parts = try LLMDistillation.encode(s, like: compressed.parts)
/// ```
public enum LLMDistillation {
    /// How recovery trains: tokens, temperature, learning rate, batch and checkpoints.
    public struct Options: Sendable {
        /// Training tokens (whole sequences; the last batch may end past it).
        public var tokens: Int
        public var batchSequences = 4
        /// Adam's peak learning rate; it decays along a cosine to a tenth at `tokens`.
        public var learningRate: Float = 1e-4
        /// Softmax temperature of both distributions; the loss is T²·KL so gradients keep their scale.
        public var temperature: Float = 1
        /// Tokens between validation measurements (and the last one at the end).
        public var validateEvery = 16_384
        /// Tokens between checkpoints, when `checkpoint` names a file.
        public var checkpointEvery = 32_768
        public var checkpoint: String?
        /// Continue from `checkpoint` when it exists.
        public var resume = false
        /// End this run after this many tokens (checkpointed), the schedule still spanning
        /// `tokens`: a run stopped and resumed ends as one run straight through.
        public var stopAfter: Int?

        /// Recovery over `tokens` tokens, the other settings at their defaults.
        public init(tokens: Int) { self.tokens = tokens }
    }

    /// A report during recovery: tokens done, speed, loss and (at checkpoints) validation perplexity.
    public struct Progress: Sendable {
        public let tokens: Int, total: Int
        /// Where this run started (a resumed run's checkpoint).
        public let resumedAt: Int
        public let seconds: Double
        /// Mean KL of the last steps (nats per token, at T).
        public let kl: Double
        /// The latest validation perplexity, when measured.
        public let validationPerplexity: Double?
    }

    /// What a recovery run did: the trained parts, tokens seen, losses and validation perplexity.
    public struct Result: Sendable {
        public let tokens: Int
        /// Where a resumed run started.
        public let resumedAt: Int
        public let seconds: Double
        /// Validation perplexity by tokens trained (the first at `resumedAt`).
        public let curve: [(tokens: Int, perplexity: Double)]
        public var tokensPerSecond: Double { Double(tokens - resumedAt) / max(seconds, 1e-9) }
    }

    /// The model being trained.
    public struct Student: Sendable {
        public var blocks: [DecoderBlockTuning.Block]
        /// Per block, per projection (q, k, v, o, gate, up, down): whether it trains (it was
        /// compressed; projections kept as stored stay).
        public let trains: [[Bool]]
        /// Per block, per projection: the grid a trained projection's weights are rounded to
        /// (its compressed format's scales, kept fixed); nil for 2:4 with f32 or int8 values.
        let grids: [[Grid?]]
        public let outputNorm: [Float]
        public let head: BlockTuning.Linear
        public let config: DecoderConfig

        /// The blocks as they run: every trained projection's weights rounded to its grid.
        public func rounded() -> [DecoderBlockTuning.Block] {
            blocks.enumerated().map { l, b0 in
                var b = b0
                for (i, path) in LLMDistillation.paths.enumerated() {
                    guard let g = grids[l][i] else { continue }
                    let lin = b[keyPath: path]
                    b[keyPath: path] = try! BlockTuning.Linear(weight: g.round(lin.weight, mask: lin.mask).values, bias: lin.bias, n: lin.n, k: lin.k,
                                                               mask: lin.mask)   // same sizes
                }
                return b
            }
        }
    }

    static var paths: [WritableKeyPath<DecoderBlockTuning.Block, BlockTuning.Linear>] { LLMCompression.paths }

    /// A 4- or 8-bit grid with its scales fixed (read from the compressed part): training sees the
    /// weights rounded to it and moves the f32 weights behind them (straight-through), so
    /// rounding back at the end is exactly what training saw.
    struct Grid: Sendable {
        enum Kind: Sendable { case s24q4, q4_0, q4_1, q8_0 }
        let kind: Kind
        let n: Int, k: Int
        /// Per row and group of `group` columns.
        let scales: [Float], mins: [Float]
        var group: Int { kind == .s24q4 ? 64 : 32 }

        /// The weights on the grid (pruned ones 0) and their codes (0…15 for 4 bits; the signed
        /// byte for Q8_0).
        func round(_ w: [Float], mask: [Bool]?) -> (values: [Float], codes: [UInt8]) {
            var v = [Float](repeating: 0, count: w.count), c = [UInt8](repeating: 0, count: w.count)
            let per = k / group
            for r in 0..<n {
                for j in 0..<k {
                    let i = r * k + j
                    if let mask, !mask[i] { c[i] = kind == .q8_0 ? 0 : 8; continue }
                    let d = scales[r * per + j / group]
                    switch kind {
                    case .s24q4, .q4_0:
                        let q = d == 0 ? 0 : max(-8, min(7, (w[i] / d).rounded()))
                        (v[i], c[i]) = (d * q, UInt8(Int(q) + 8))
                    case .q4_1:
                        let m = mins[r * per + j / group]
                        let q = d == 0 ? 0 : max(0, min(15, ((w[i] - m) / d).rounded()))
                        (v[i], c[i]) = (m + d * q, UInt8(q))
                    case .q8_0:
                        let q = d == 0 ? 0 : max(-127, min(127, (w[i] / d).rounded()))
                        (v[i], c[i]) = (d * q, UInt8(bitPattern: Int8(q)))
                    }
                }
            }
            return (v, c)
        }

        /// The grid of a compressed part; nil for formats without one.
        static func of(_ p: DecoderFolder.Part) -> Grid? {
            func half(_ b: [UInt8], _ o: Int) -> Float { Float(Float16(bitPattern: UInt16(b[o]) | UInt16(b[o + 1]) << 8)) }
            switch p {
            case let .sparse24Int4(w):
                let per = w.columns / 64
                let scales = (0..<(w.rows * per)).map { half(w.blocks, $0 * Sparse24Int4Weights.blockBytes) }
                return Grid(kind: .s24q4, n: w.rows, k: w.columns, scales: scales, mins: [])
            case let .ggml(type, rows, columns, data) where [.q4_0, .q4_1, .q8_0].contains(type):
                let bytes = [UInt8](data), blocks = rows * (columns / 32), size = type.blockBytes
                let kind: Kind = type == .q4_0 ? .q4_0 : type == .q4_1 ? .q4_1 : .q8_0
                return Grid(kind: kind, n: rows, k: columns, scales: (0..<blocks).map { half(bytes, $0 * size) },
                            mins: type == .q4_1 ? (0..<blocks).map { half(bytes, $0 * size + 2) } : [])
            default: return nil
            }
        }

        /// The part holding `w` rounded to this grid.
        func part(_ w: [Float], mask: [Bool]?) throws -> DecoderFolder.Part {
            let (v, codes) = round(w, mask: mask)
            switch kind {
            case .s24q4:
                return .sparse24Int4(try Sparse24Int4Weights(quantizing: Matrix(rows: n, columns: k, elements: v), scales: scales))
            case .q4_0, .q4_1:
                let r = ReconstructedWeights(weights: try Matrix(rows: n, columns: k, elements: v), mask: mask ?? [], codes: codes,
                                             scales: scales, mins: mins)
                return .ggml(kind == .q4_0 ? .q4_0 : .q4_1, rows: n, columns: k, GGMLBlocks.encode(kind == .q4_0 ? .q4_0 : .q4_1, r))
            case .q8_0:
                var out = Data(capacity: n * (k / 32) * 34)
                for b in 0..<(n * k / 32) {
                    let bits = Float16(scales[b]).bitPattern
                    out.append(UInt8(bits & 0xFF)); out.append(UInt8(bits >> 8))
                    out.append(contentsOf: codes[(b * 32)..<(b * 32 + 32)])
                }
                return .ggml(.q8_0, rows: n, columns: k, out)
            }
        }
    }

    static var roles: [BlockTensor] { LLMCompression.roles }

    /// A projection's weights in f32 and, for 2:4 formats, its mask (exactly two of every four).
    static func floats(_ p: DecoderFolder.Part, _ name: String) throws -> (w: [Float], mask: [Bool]?) {
        func mask24(_ w: [Float]) -> [Bool] {
            var m = w.map { $0 != 0 }
            for g in stride(from: 0, to: m.count, by: 4) {
                var kept = (g..<(g + 4)).filter { m[$0] }.count
                for j in g..<(g + 4) where kept < 2 && !m[j] { m[j] = true; kept += 1 }
            }
            return m
        }
        switch p {
        case let .ggml(type, rows, columns, data):
            return (try GGUFDequantize.floats(data, type: type, count: rows * columns, name: name), nil)
        case let .sparse24Int4(w):
            return (w.dequantized().elements, w.keepMask)
        case let .linear(l):
            switch l.weights {
            case let .dense(m): return (m.elements, nil)
            case let .sparse24(m): let e = m.densified().elements; return (e, mask24(e))
            case let .sparse24Int8(q): let e = q.densified().elements; return (e, mask24(e))
            default: throw CondenseError.invalidTensor(name: name, reason: "format \(l.format) does not train")
            }
        case .vector: throw CondenseError.invalidTensor(name: name, reason: "a vector where a matrix belongs")
        }
    }

    /// The student from a compressed model's parts (the folder's tensors): projections that
    /// differ from the source's stored ones train; the head (as compressed) is frozen.
    /// - Throws: `CondenseError` for a block that does not train (QK-norm, post-norms, GELU,
    ///   sliding windows, scaled RoPE: the trainer's passes are the Llama block's), or a part missing.
    public static func student(_ f: GGUFFile, parts: [(name: String, part: DecoderFolder.Part)]) throws -> Student {
        let c = try DecoderConfig(gguf: f)
        let byName = Dictionary(parts.map { ($0.name, $0.part) }, uniquingKeysWith: { a, _ in a })
        var blocks: [DecoderBlockTuning.Block] = [], trains: [[Bool]] = [], grids: [[Grid?]] = []
        for l in 0..<c.layers {
            var b = try LLMCompression.denseBlock(f, c, layer: l)
            guard b.trainable else {
                throw CondenseError.invalidArgument("recovery trains Llama-shaped blocks (RMSNorm, SwiGLU, plain rotary attention); general.architecture '\(c.architecture)' has QK-norm, post-norms, GELU, a window or scaled RoPE")
            }
            var t: [Bool] = [], gs: [Grid?] = []
            for (r, path) in zip(roles, paths) {
                let name = r.name(l)
                guard let p = byName[name] else { throw CondenseError.invalidTensor(name: name, reason: "missing from the compressed parts") }
                let src = try LLMCompression.sourceTensor(f, c, layer: l, r)
                if case let .ggml(type, _, _, data) = p, type == src.type, data == src.data { t.append(false); gs.append(nil); continue }
                gs.append(Grid.of(p))
                let lin = b[keyPath: path]
                let (w, mask) = try floats(p, name)
                b[keyPath: path] = try BlockTuning.Linear(weight: w, bias: lin.bias, n: lin.n, k: lin.k, mask: mask)
                t.append(true)
            }
            if case let .vector(v)? = byName[BlockTensor.attnNorm.name(l)], v.count == c.hidden { b.attnNorm = v }
            if case let .vector(v)? = byName[BlockTensor.ffnNorm.name(l)], v.count == c.hidden { b.ffnNorm = v }
            blocks.append(b)
            trains.append(t)
            grids.append(gs)
        }
        let headPart = byName[ModelTensor.output] ?? byName[ModelTensor.tokenEmbedding]
        guard let headPart else { throw CondenseError.invalidTensor(name: ModelTensor.output, reason: "no head and no token embedding") }
        let hw = try floats(headPart, ModelTensor.output).w
        let vocab = hw.count / c.hidden
        let head = try BlockTuning.Linear(weight: hw, bias: [Float](repeating: 0, count: vocab), n: vocab, k: c.hidden)
        return Student(blocks: blocks, trains: trains, grids: grids, outputNorm: try LLMCompression.vector(f, ModelTensor.outputNorm, c.hidden),
                       head: head, config: c)
    }

    /// Parameters of a block in optimizer-slot order: each projection's weight and bias, then the norms.
    static func params(_ b: DecoderBlockTuning.Block) -> [[Float]] {
        b.linears.flatMap { [$0.weight, $0.bias] } + [b.attnNorm, b.ffnNorm]
    }

    /// Whether optimizer slot `i` (``params(_:)`` order) of block `l` trains: a compressed
    /// projection's weights, its bias where the block has Q/K/V biases, and the norms.
    static func trainsSlot(_ s: Student, _ l: Int, _ i: Int) -> Bool {
        i >= 14 || (s.trains[l][i / 2] && (i % 2 == 0 || (s.blocks[l].qkvBias && i / 2 < 3)))
    }

    static func setParams(_ b: inout DecoderBlockTuning.Block, _ p: [[Float]]) throws {
        for (i, path) in paths.enumerated() {
            let l = b[keyPath: path]
            b[keyPath: path] = try BlockTuning.Linear(weight: p[2 * i], bias: p[2 * i + 1], n: l.n, k: l.k, mask: l.mask)
        }
        (b.attnNorm, b.ffnNorm) = (p[14], p[15])
    }

    /// The student's logits for whole sequences of length `t` (rows × vocab), and what the
    /// backward pass needs.
    static func forward(_ s: Student, _ blocks: [DecoderBlockTuning.Block], _ f: GGUFFile, _ seqs: [[Int32]], keep: Bool)
        throws -> (logits: [Float], inputs: [[Float]], passes: [DecoderBlockTuning.Pass], last: [Float], inv: [Float]) {
        let t = seqs[0].count
        var x = try LLMCompression.embed(f, s.config, seqs)
        var inputs: [[Float]] = [], passes: [DecoderBlockTuning.Pass] = []
        for b in blocks {
            let p = try DecoderBlockTuning.forward(b, x: x, sequenceLength: t)
            if keep { inputs.append(x); passes.append(p) }
            x = p.y
        }
        let rows = seqs.count * t
        let (h, inv) = DecoderBlockTuning.rmsNorm(x, rows: rows, s.outputNorm, eps: s.config.rmsEpsilon)
        return (try BlockTuning.linear(s.head, h, rows: rows), inputs, passes, x, inv)
    }

    /// Perplexity of the student (its weights rounded to their grids) on `seqs` (every next token).
    public static func perplexity(_ s: Student, file f: GGUFFile, _ seqs: [[Int32]]) throws -> Double {
        var nll = 0.0, n = 0
        let v = s.head.n
        let blocks = s.rounded()
        for seq in seqs {
            let lg = try forward(s, blocks, f, [seq], keep: false).logits
            for j in 0..<(seq.count - 1) {
                let row = lg[(j * v)..<((j + 1) * v)]
                let mx = row.max()!
                var sum = 0.0
                for z in row { sum += Double(expf(z - mx)) }
                nll -= Double(row[row.startIndex + Int(seq[j + 1])] - mx) - log(sum)
                n += 1
            }
        }
        return exp(nll / Double(max(n, 1)))
    }

    /// Trains `s` on sequences from `next` (nil: the text ran out) until `options.tokens`.
    /// - Throws: `CondenseError` for sequences of another length than the first, ids outside
    ///   the vocabulary, a checkpoint of another model or options, or a failed write.
    public static func distill(_ s: inout Student, file f: GGUFFile, teacher: LanguageModel, sequences next: () throws -> [Int32]?,
                               validation: [[Int32]], options o: Options, progress: (Progress) -> Void = { _ in }) throws -> Result {
        guard o.tokens >= 1, o.batchSequences >= 1, o.temperature.isFinite, o.temperature > 0, o.learningRate.isFinite, o.learningRate > 0 else {
            throw CondenseError.invalidArgument("distillation: tokens \(o.tokens), batch \(o.batchSequences), temperature \(o.temperature), learning rate \(o.learningRate)")
        }
        guard teacher.vocabSize == s.head.n else {
            throw CondenseError.invalidArgument("the teacher's vocabulary of \(teacher.vocabSize) is not the student's \(s.head.n)")
        }
        let start = ContinuousClock.now
        let vocab = s.head.n, T = o.temperature
        let opt = Optimizer.adam(learningRate: o.learningRate)
        var states = s.blocks.indices.map { l in
            OptimizerState(shapes: params(s.blocks[l]).enumerated().map { i, p in trainsSlot(s, l, i) ? p.count : 0 })
        }
        var done = 0
        if o.resume, let path = o.checkpoint, FileManager.default.fileExists(atPath: path) {
            done = try load(path, into: &s, states: &states, file: f)
        }
        let resumedAt = done
        // The stream is deterministic: a resumed run skips what the checkpoint already saw.
        var t = 0
        var skipped = 0
        while skipped < done, let q = try next() { t = q.count; skipped += q.count }
        var curve: [(Int, Double)] = [(done, try perplexity(s, file: f, validation))]
        var recent: [Double] = []
        var lastValidation = done, lastCheckpoint = done
        while done < min(o.tokens, o.stopAfter ?? .max) {
            var batch: [[Int32]] = []
            while batch.count < o.batchSequences, let q = try next() {
                if t == 0 { t = q.count }
                guard q.count == t, q.count >= 2 else { throw CondenseError.invalidInput("distillation sequences must all have \(t) ≥ 2 tokens, got \(q.count)") }
                guard q.allSatisfy({ $0 >= 0 && Int($0) < vocab }) else { throw CondenseError.invalidInput("a distillation token id is outside the vocabulary of \(vocab)") }
                batch.append(q)
            }
            if batch.isEmpty { break }
            let rows = batch.count * t
            // The teacher's distribution at T.
            let session = try teacher.session(contextLength: t)
            var p = [Float](repeating: 0, count: rows * vocab)
            for (i, q) in batch.enumerated() {
                session.reset()
                let lg = try session.forward(q, allLogits: true)
                for j in 0..<t { softmax(lg[j], T, into: &p, at: (i * t + j) * vocab) }
            }
            // The student, forward and back.
            // Forward and back through the rounded weights; the f32 ones behind them move.
            let rounded = s.rounded()
            var fw = try forward(s, rounded, f, batch, keep: true)
            var kl = 0.0
            var dl = fw.logits
            let scale = T / Float(rows)
            dl.withUnsafeMutableBufferPointer { g in
                p.withUnsafeBufferPointer { pp in
                    for r in 0..<rows {
                        let base = r * vocab
                        var mx = -Float.infinity
                        for j in 0..<vocab { mx = max(mx, g[base + j] / T) }
                        var sum = 0.0
                        for j in 0..<vocab { g[base + j] = g[base + j] / T - mx; sum += Double(expf(g[base + j])) }
                        let ls = Float(log(sum))
                        for j in 0..<vocab {
                            let lq = g[base + j] - ls, pj = pp[base + j]
                            if pj > 0 { kl += Double(pj) * (Double(logf(pj)) - Double(lq)) }
                            g[base + j] = scale * (expf(lq) - pj)
                        }
                    }
                }
            }
            fw.logits = []
            let dh = try BlockTuning.inputGradient(dl, s.head, rows: rows)
            var dx = DecoderBlockTuning.rmsNormBackward(dh, x: fw.last, inv: fw.inv, s.outputNorm).dx
            // Cosine decay to a tenth of the learning rate over the token budget.
            let lrScale = Float(0.1 + 0.45 * (1 + cos(Double.pi * Double(min(done, o.tokens)) / Double(o.tokens))))
            for l in stride(from: s.blocks.count - 1, through: 0, by: -1) {
                var g = try DecoderBlockTuning.backward(rounded[l], x: fw.inputs[l], sequenceLength: t, pass: fw.passes[l], dy: dx, input: l > 0)
                fw.passes[l] = DecoderBlockTuning.Pass()
                states[l].step += 1
                for (i, lin) in s.blocks[l].linears.enumerated() {
                    if let mask = lin.mask { for j in mask.indices where !mask[j] { g.weights[i][j] = 0 } }
                }
                let grads = g.weights.indices.flatMap { [g.weights[$0], g.biases[$0]] } + [g.attnNorm, g.ffnNorm]
                var ps = params(s.blocks[l])
                for i in ps.indices where trainsSlot(s, l, i) { states[l].apply(opt, params: &ps[i], grads: grads[i], slot: i, scale: lrScale) }
                try setParams(&s.blocks[l], ps)
                if l > 0 { dx = g.input! }
            }
            done += rows
            recent.append(kl / Double(rows))
            if recent.count > 16 { recent.removeFirst() }
            var vp: Double?
            let last = done >= min(o.tokens, o.stopAfter ?? .max)
            if done - lastValidation >= o.validateEvery || last {
                vp = try perplexity(s, file: f, validation)
                curve.append((done, vp!))
                lastValidation = done
            }
            if let path = o.checkpoint, done - lastCheckpoint >= o.checkpointEvery || last {
                try save(path, s, states, tokens: done, file: f)
                lastCheckpoint = done
            }
            let el = ContinuousClock.now - start
            progress(Progress(tokens: done, total: o.tokens, resumedAt: resumedAt, seconds: Double(el.components.seconds) + Double(el.components.attoseconds) * 1e-18,
                              kl: recent.reduce(0, +) / Double(recent.count), validationPerplexity: vp ?? curve.last?.1))
        }
        let el = ContinuousClock.now - start
        return Result(tokens: done, resumedAt: resumedAt, seconds: Double(el.components.seconds) + Double(el.components.attoseconds) * 1e-18, curve: curve)
    }

    /// softmax(z / T) written at `out[at...]`.
    static func softmax(_ z: [Float], _ T: Float, into out: inout [Float], at: Int) {
        var mx = -Float.infinity
        for v in z { mx = max(mx, v / T) }
        var sum = 0.0
        for (j, v) in z.enumerated() { let e = expf(v / T - mx); out[at + j] = e; sum += Double(e) }
        let inv = Float(1 / sum)
        for j in z.indices { out[at + j] *= inv }
    }

    /// A checkpoint: every block's parameters and optimizer moments, the tokens trained, and
    /// what they belong to (the source's name and tensor count), in one safetensors file
    /// written through a temporary file and a rename.
    static func save(_ path: String, _ s: Student, _ states: [OptimizerState], tokens: Int, file f: GGUFFile) throws {
        var st = SafeTensors()
        for (l, b) in s.blocks.enumerated() {
            let (m, v) = states[l].moments
            for (i, p) in params(b).enumerated() {
                try st.add("blk.\(l).p\(i)", shape: [p.count], floats: p)
                if !m[i].isEmpty {
                    try st.add("blk.\(l).m\(i)", shape: [m[i].count], floats: m[i])
                    try st.add("blk.\(l).v\(i)", shape: [v[i].count], floats: v[i])
                }
            }
            st.metadata["blk.\(l).step"] = "\(states[l].step)"
        }
        st.metadata["tokens"] = "\(tokens)"
        st.metadata["model"] = identity(f)
        _ = try st.write(to: path)
    }

    /// What a checkpoint must match: the source model's name, sizes, tensor count, and a hash
    /// of the first 4 KiB of every tensor (two models of one shape differ there).
    static func identity(_ f: GGUFFile) -> String {
        let c = try? DecoderConfig(gguf: f)
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for t in f.tensors {
            for b in t.name.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            for b in t.data.prefix(4096) { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        }
        return "\(f.metadata["general.name"]?.string ?? "?") \(c?.architecture ?? "?") \(c?.layers ?? 0)x\(c?.hidden ?? 0) \(f.tensors.count) tensors \(String(h, radix: 16))"
    }

    /// Restores `s` and `states` from `path`; returns the tokens trained.
    static func load(_ path: String, into s: inout Student, states: inout [OptimizerState], file f: GGUFFile) throws -> Int {
        let st = try SafeTensors(contentsOf: path)
        do {
            guard st.metadata["model"] == identity(f) else {
                throw CondenseError.invalidModel("the checkpoint belongs to '\(st.metadata["model"] ?? "?")', not '\(identity(f))'")
            }
            guard let tokens = st.metadata["tokens"].flatMap({ Int($0) }), tokens >= 0 else {
                throw CondenseError.invalidModel("metadata 'tokens' is '\(st.metadata["tokens"] ?? "")'")
            }
            for l in s.blocks.indices {
                let shapes = params(s.blocks[l]).map(\.count)
                let ps = try shapes.indices.map { try st.floats("blk.\(l).p\($0)", shape: [shapes[$0]]) }
                let (m0, _) = states[l].moments
                let slots = m0.map(\.count)
                let m = try slots.indices.map { slots[$0] == 0 ? [] : try st.floats("blk.\(l).m\($0)", shape: [slots[$0]]) }
                let v = try slots.indices.map { slots[$0] == 0 ? [] : try st.floats("blk.\(l).v\($0)", shape: [slots[$0]]) }
                guard let step = st.metadata["blk.\(l).step"].flatMap({ Int($0) }) else {
                    throw CondenseError.invalidModel("metadata 'blk.\(l).step' is missing")
                }
                // The masks stay the compression's: a pruned weight that is not 0 is another run's.
                for (i, lin) in s.blocks[l].linears.enumerated() {
                    if let mask = lin.mask, let j = mask.indices.first(where: { !mask[$0] && ps[2 * i][$0] != 0 }) {
                        throw CondenseError.invalidModel("blk.\(l) projection \(i): weight \(j) is pruned here but not in the checkpoint (another calibration?)")
                    }
                }
                try setParams(&s.blocks[l], ps)
                states[l] = try OptimizerState(shapes: slots, first: m, second: v, step: step)
            }
            return tokens
        } catch let e as CondenseError {
            throw e.inFile(path)
        }
    }

    /// The parts of `like` with every trained projection in its format again: rounded to its grid
    /// (exactly what training saw), or as 2:4 with f32 or int8 values; the norms the student
    /// learned.
    public static func encode(_ s: Student, like parts: [(name: String, part: DecoderFolder.Part)]) throws -> [(name: String, part: DecoderFolder.Part)] {
        var out = Dictionary(parts.map { ($0.name, $0.part) }, uniquingKeysWith: { a, _ in a })
        for (l, block) in s.blocks.enumerated() {
            for (m, path) in paths.enumerated() where s.trains[l][m] {
                let name = roles[m].name(l)
                let lin = block[keyPath: path]
                if let g = s.grids[l][m] {
                    out[name] = try g.part(lin.weight, mask: lin.mask)
                    continue
                }
                let w = try Matrix(rows: lin.n, columns: lin.k, elements: lin.weight)
                switch out[name]! {
                case let .linear(ll) where ll.format == .sparse24:
                    out[name] = .linear(try LinearLayer(weights: .sparse24(Sparse24Matrix(dense: w))))
                case let .linear(ll) where ll.format == .sparse24Int8:
                    out[name] = .linear(try LinearLayer(weights: .sparse24Int8(Sparse24Int8Weights(quantizing: Sparse24Matrix(dense: w)))))
                default:
                    throw CondenseError.invalidTensor(name: name, reason: "its compressed format cannot be written back after training")
                }
            }
            out[BlockTensor.attnNorm.name(l)] = .vector(block.attnNorm)
            out[BlockTensor.ffnNorm.name(l)] = .vector(block.ffnNorm)
            if block.qkvBias {
                out[BlockTensor.q.name(l, "bias")] = .vector(block.q.bias)
                out[BlockTensor.k.name(l, "bias")] = .vector(block.k.bias)
                out[BlockTensor.v.name(l, "bias")] = .vector(block.v.bias)
            }
        }
        return parts.map { ($0.name, out[$0.name]!) }
    }
}
