import CCondenseKernels
import Condense
import Foundation

/// How to generate: sampling, limits and stops.
///
/// ```swift
/// var o = GenerationOptions(maxTokens: 32)   // greedy (temperature 0)
/// o.temperature = 0.7; o.topP = 0.9; o.seed = 42; o.stop = ["\n\n"]
/// ```
public struct GenerationOptions: Sendable, Equatable {
    public var maxTokens: Int
    /// 0: greedy (the most likely token).
    public var temperature: Float = 0
    /// 0: off.
    public var topK: Int = 0
    /// 1: off.
    public var topP: Float = 1
    /// 0: off; keeps tokens whose probability is at least `minP` × the top one's.
    public var minP: Float = 0
    /// 1: off; > 1 lowers the logits of tokens already in the prompt or the output.
    public var repeatPenalty: Float = 1
    public var seed: UInt64 = 0
    /// Generation ends before any of these strings (they are not emitted).
    public var stop: [String] = []
    /// Ends at the model's end-of-sequence token.
    public var stopAtEOS = true
    /// Neither end-of-sequence nor a stop string ends the generation before this many tokens
    /// (vLLM's `min_tokens`: the end tokens cannot be sampled until then).
    public var minTokens = 0
    /// Constrained output: only tokens that continue a JSON value of this grammar's schema are
    /// sampled, and the generation ends when the value is complete (OpenAI's `response_format`).
    public var json: JSONGrammar?
    /// Report each generated token's log-probability under the model (its raw logits, before
    /// temperature and penalties) and this many most likely alternatives (0…20; nil: off).
    public var logprobs: Int?

    /// Greedy generation of at most `maxTokens` tokens; set the other fields to sample or stop.
    public init(maxTokens: Int = 128) { self.maxTokens = maxTokens }

    /// - Throws: `CondenseError/invalidArgument(_:)` naming the option and the value.
    public func validate() throws {
        guard maxTokens >= 0 else { throw CondenseError.invalidArgument("max tokens must be >= 0, got \(maxTokens)") }
        guard temperature.isFinite, temperature >= 0 else { throw CondenseError.invalidArgument("temperature must be >= 0, got \(temperature)") }
        guard topK >= 0 else { throw CondenseError.invalidArgument("top-k must be >= 0, got \(topK)") }
        guard topP.isFinite, topP > 0, topP <= 1 else { throw CondenseError.invalidArgument("top-p must be in (0, 1], got \(topP)") }
        guard minP.isFinite, minP >= 0, minP <= 1 else { throw CondenseError.invalidArgument("min-p must be in [0, 1], got \(minP)") }
        guard repeatPenalty.isFinite, repeatPenalty > 0 else { throw CondenseError.invalidArgument("repeat penalty must be > 0, got \(repeatPenalty)") }
        guard stop.allSatisfy({ !$0.isEmpty }) else { throw CondenseError.invalidArgument("a stop string is empty") }
        guard minTokens >= 0, minTokens <= maxTokens else {
            throw CondenseError.invalidArgument("min tokens must be in 0…\(maxTokens) (the max tokens), got \(minTokens)")
        }
        if let logprobs { guard (0...20).contains(logprobs) else { throw CondenseError.invalidArgument("top logprobs must be in 0…20, got \(logprobs)") } }
    }
}

/// The element type of a session's KV cache, llama.cpp's names (`-ctk`, `-ctv`). `f16` (llama.cpp's
/// default) halves the bytes that attention reads per generated token, which is what generation
/// deep into a conversation costs; `f32` keeps the projections' values exactly; `q8_0` (8.5 bits)
/// and `q4_0` (4.5 bits) are ggml's blocks of 32 along each row, rounded as ggml rounds them, for
/// heads whose dimension is a multiple of 32.
///
/// ```swift
/// let s = try lm.session(contextLength: 8192, kvCache: .q8_0)
/// ```
public enum KVCacheType: String, Sendable, CaseIterable {
    case f16, f32, q8_0, q4_0

    /// Bytes of one cache row of `n` elements (`n` a multiple of 32 for the block types).
    public func rowBytes(_ n: Int) -> Int {
        switch self {
        case .f32: return 4 * n
        case .f16: return 2 * n
        case .q8_0: return n / 32 * 34
        case .q4_0: return n / 32 * 18
        }
    }
    /// Whether rows are ggml blocks of 32 (q8_0, q4_0) rather than one value per element.
    public var isBlocks: Bool { self == .q8_0 || self == .q4_0 }
    var ggmlType: UInt32 {
        switch self {
        case .f32: return UInt32(CONDENSE_GGUF_F32)
        case .f16: return UInt32(CONDENSE_GGUF_F16)
        case .q8_0: return UInt32(CONDENSE_GGUF_Q8_0)
        case .q4_0: return UInt32(CONDENSE_GGUF_Q4_0)
        }
    }
    /// Writes `n` floats as one cache row.
    /// (Through the kernels' own row writer, which the layer job uses too; a session checked
    /// its head dimension against the block types, so the row is always valid.)
    func write(_ src: UnsafePointer<Float>, _ dst: UnsafeMutableRawPointer, _ n: Int, isa: condense_isa) {
        _ = condense_kv_write_row(ggmlType, src, dst, n, isa)
    }
}

/// One conversation with a ``LanguageModel``: its own KV cache (preallocated for the context
/// length), the tokens seen so far. Not shared between threads; sessions of one model may run
/// on many threads at once.
public final class DecoderSession: @unchecked Sendable {
    // @unchecked: mutable state (cache, position) is only touched by the session's owner; the
    // model it reads is immutable.
    public let model: LanguageModel
    public let contextLength: Int
    /// The ISA of the attention kernel: the model's (its registry's pinned native level, else the active one).
    public var isa: ISA { model.isa }
    /// Tokens in the cache, in order.
    public private(set) var tokens: [Int32] = []
    /// Whether a pass of this session alone runs every layer as one job of the thread team when
    /// the model allows it (``FusedDecoder``); false runs kernel by kernel, the same numbers.
    /// `CONDENSE_LAYER_JOB=0` in the environment sets false for every session (A/B timing).
    package var usesLayerJob = DecoderSession.layerJobDefault
    static let layerJobDefault = ProcessInfo.processInfo.environment["CONDENSE_LAYER_JOB"] != "0"
    /// Threads of the layer job (0: the kernels' default), for tests that vary it per session.
    package var layerJobThreads: Int32 = 0
    /// The element type of the key cache.
    public let kvCache: KVCacheType
    /// The element type of the value cache (llama.cpp's `-ctv`; by default the key cache's).
    public let valueCache: KVCacheType
    // The KV cache, allocated once: per layer `layerRows[l]` rows of kvDim elements from row
    // `layerOffset[l]`. A sliding-window layer keeps only the rows its window can still read
    // (position p in row p % model.ring), a global layer one row per position.
    let keys: UnsafeMutableRawPointer
    let values: UnsafeMutableRawPointer
    let layerOffset: [Int]   // rows
    let layerRows: [Int]

    /// Most tokens of one session in one pass: longer inputs run in passes of this many, which
    /// bounds the scratch and lets a sliding layer's ring hold window + this many rows.
    public static let maxStep = 512

    init(_ model: LanguageModel, contextLength: Int, kvCache: KVCacheType, valueCache: KVCacheType? = nil) throws {
        guard contextLength >= 1, contextLength <= model.config.contextLength else {
            throw CondenseError.invalidArgument("context length must be in 1…\(model.config.contextLength), got \(contextLength)")
        }
        let valueCache = valueCache ?? kvCache
        for t in [kvCache, valueCache] where t.isBlocks && model.config.headDim % 32 != 0 {
            throw CondenseError.invalidArgument("a \(t.rawValue) KV cache stores blocks of 32 per head; \(model.name)'s head dimension is \(model.config.headDim)")
        }
        self.model = model
        self.contextLength = contextLength
        self.kvCache = kvCache
        self.valueCache = valueCache
        let kvd = model.config.kvDim
        var offsets: [Int] = [], rows: [Int] = [], count = 0
        for l in 0..<model.config.layers {
            let ring = model.ring(layer: l)
            let r = ring > 0 ? min(contextLength, ring) : contextLength
            offsets.append(count)
            rows.append(r)
            count = try CheckedSize.sum(count, r, of: "KV cache")
        }
        (layerOffset, layerRows) = (offsets, rows)
        func allocate(_ type: KVCacheType) throws -> UnsafeMutableRawPointer {
            let bytes = try CheckedSize.product(count, type.rowBytes(kvd), of: "KV cache")
            var raw: UnsafeMutableRawPointer?
            guard posix_memalign(&raw, 64, max(bytes, 64)) == 0, let raw else { throw CondenseError.outOfMemory(bytes: bytes) }
            return raw
        }
        keys = try allocate(kvCache)
        do { values = try allocate(valueCache) } catch { free(keys); throw error }
    }

    /// Bytes of this session's KV cache (keys and values).
    public var cacheBytes: Int { layerRows.reduce(0, +) * (kvCache.rowBytes(model.config.kvDim) + valueCache.rowBytes(model.config.kvDim)) }

    deinit {
        free(keys)
        free(values)
    }

    /// The key and value caches' types as the attention kernel takes them.
    var kvTypes: UInt32 {
        kvCache == valueCache ? kvCache.ggmlType : kvCache.ggmlType | (valueCache.ggmlType + 1) << 16
    }

    /// Forgets the conversation (the cache is kept allocated).
    public func reset() { tokens.removeAll() }

    /// The tokens whose rows a restored prefix put in the cache.
    func setTokens(_ t: [Int32]) { tokens = t }

    /// Runs `ids` through the model after the tokens already seen and returns the logits of the
    /// last one (or of every one when `allLogits`): rows of `vocab` floats.
    /// - Throws: `CondenseError/invalidInput(_:)` for an id outside the vocabulary or a context
    ///   that would overflow.
    public func forward(_ ids: [Int32], allLogits: Bool = false) throws -> [[Float]] {
        guard !ids.isEmpty else { return [] }
        return try Self.forward([(self, ids)], allLogits: allLogits)[0]
    }

    /// Runs several sessions of one model in one pass: every projection is one kernel call over
    /// all their new tokens (M = the total), attention runs per session over its own cache. This
    /// is continuous batching's step: the weights are read once for every sequence.
    /// Returns, per session, the logits of its last new token (or of each with `allLogits`).
    ///
    /// ```swift
    /// let logits = try DecoderSession.forward([(a, [next1]), (b, [next2])])   // one step of two streams
    /// ```
    /// - Throws: `CondenseError/invalidInput(_:)` for sessions of different models, a session
    ///   named twice, no tokens, an id outside the vocabulary or a context that would overflow;
    ///   nothing is changed then.
    public static func forward(_ batch: [(session: DecoderSession, ids: [Int32])], allLogits: Bool = false) throws -> [[[Float]]] {
        guard let first = batch.first else { return [] }
        let model = first.session.model
        for (s, ids) in batch {
            guard s.model === model else { throw CondenseError.invalidInput("sessions of different models cannot share a step") }
            guard !ids.isEmpty else { throw CondenseError.invalidInput("a session in the step has no tokens") }
            guard s.tokens.count + ids.count <= s.contextLength else {
                throw CondenseError.invalidInput("\(s.tokens.count + ids.count) tokens exceed the context of \(s.contextLength)")
            }
            if let bad = ids.first(where: { $0 < 0 || Int($0) >= model.vocabSize }) {
                throw CondenseError.invalidInput("token id \(bad) is outside the vocabulary of \(model.vocabSize)")
            }
        }
        guard Set(batch.map { ObjectIdentifier($0.session) }).count == batch.count else {
            throw CondenseError.invalidInput("a session is named twice in one step")
        }
        if batch.allSatisfy({ $0.ids.count <= maxStep }) { return try step(batch, allLogits: allLogits) }
        // Long inputs in passes of at most maxStep tokens per session.
        var out = [[[Float]]](repeating: [], count: batch.count)
        var offset = [Int](repeating: 0, count: batch.count)
        while true {
            let live = batch.indices.filter { offset[$0] < batch[$0].ids.count }
            if live.isEmpty { break }
            let pass = live.map { i in (batch[i].session, Array(batch[i].ids[offset[i]..<min(offset[i] + maxStep, batch[i].ids.count)])) }
            let logits = try step(pass, allLogits: allLogits)
            for (k, i) in live.enumerated() {
                offset[i] += pass[k].1.count
                if allLogits { out[i] += logits[k] } else if offset[i] == batch[i].ids.count { out[i] = logits[k] }
            }
        }
        return out
    }

    /// One pass: at most maxStep new tokens per session, already validated.
    static func step(_ batch: [(session: DecoderSession, ids: [Int32])], allLogits: Bool) throws -> [[[Float]]] {
        let model = batch[0].session.model
        let c = model.config
        let (d, hd, qd, kvd, ff) = (c.hidden, c.headDim, c.qDim, c.kvDim, c.feedForward)
        let t = batch.reduce(0) { $0 + $1.ids.count }
        let wide = qd + 2 * kvd   // the stacked Q, K, V outputs
        // Row ranges of each session, and its first position.
        var row = 0
        let starts: [Int] = batch.map { row += $0.ids.count; return row - $0.ids.count }
        // RoPE per session: the global layers' and, when they differ, the sliding layers'.
        let hasSliding = c.slidingLayers.contains(true)
        let rotations = batch.map { b -> (global: Rotation, sliding: Rotation?) in
            let ps = b.session.tokens.count..<(b.session.tokens.count + b.ids.count)
            let g = Rotation(positions: ps, headDim: hd, base: c.ropeBase, scale: c.ropeScale, factors: model.ropeFrequencyFactors, neox: c.ropeNeoX)
            let s = hasSliding ? Rotation(positions: ps, headDim: hd, base: c.ropeBaseSliding, scale: 1, factors: nil, neox: c.ropeNeoX) : nil
            return (g, s)
        }
        let pool = ActivationPool.shared
        var x = try pool.take(t, d)
        try x.withUnsafeMutableBufferPointer { xp in
            for (bi, (_, ids)) in batch.enumerated() {
                for (i, id) in ids.enumerated() { try model.embed(id, into: xp.baseAddress! + (starts[bi] + i) * d) }
            }
        }
        var h = try pool.take(t, d), qkv = try pool.take(t, wide)
        var att = try pool.take(t, qd), o = try pool.take(t, d)
        var gu = try pool.take(t, 2 * ff), g = try pool.take(t, ff)
        // Back to the pool for the next pass: fresh buffers of megabytes cost page clearing.
        defer { for m in [x, h, qkv, att, o, gu, g] { pool.give(m) } }
        let isaCode = condense_isa(UInt32(model.isa.rawValue))
        if let fused = model.fused, batch.allSatisfy(\.session.usesLayerJob) {
            // Projections on GGUF blocks: every layer in one job of the team (FusedDecoder).
            try x.withUnsafeMutableBufferPointer { xp in try h.withUnsafeMutableBufferPointer { hp in
                try qkv.withUnsafeMutableBufferPointer { qp in try att.withUnsafeMutableBufferPointer { ap in
                    try o.withUnsafeMutableBufferPointer { op in try gu.withUnsafeMutableBufferPointer { up in
                        try g.withUnsafeMutableBufferPointer { gp in
                            let bufs = condense_decoder_buffers(x: xp.baseAddress, h: hp.baseAddress, qkv: qp.baseAddress, att: ap.baseAddress,
                                                                o: op.baseAddress, gu: up.baseAddress, g: gp.baseAddress)
                            try fused.forward(batch.map { ($0.session, $0.ids.count) }, rotations: rotations, buffers: bufs, isa: isaCode,
                                              threads: batch[0].session.layerJobThreads)
                        }
                    } }
                } }
            } }
        } else {
            for (l, layer) in model.layers.enumerated() {
                let sliding = c.slidingLayers[l]
                let (window, ring) = sliding ? (c.slidingWindow, model.ring(layer: l)) : (0, 0)
                rmsNorm(x, layer.attnNorm, c.rmsEpsilon, into: &h)
                try layer.qkv.apply(h, into: &qkv)
                // Per session: QK-norm, RoPE, the cache rows, attention over its own cache; several
                // sessions (continuous batching's decode steps: one row each, short contexts) in one
                // call that spreads them over the threads.
                var sequences: [condense_attention_sequence] = []
                let status: Int32 = qkv.withUnsafeMutableBufferPointer { qp in att.withUnsafeMutableBufferPointer { ap in
                    for (bi, (s, ids)) in batch.enumerated() {
                        let (n, r0, p0) = (ids.count, starts[bi], s.tokens.count)
                        let (kb, vb) = (s.kvCache.rowBytes(kvd), s.valueCache.rowBytes(kvd))
                        let (kc, vc) = (s.keys + s.layerOffset[l] * kb, s.values + s.layerOffset[l] * vb)
                        let base = qp.baseAddress! + r0 * wide
                        if let qn = layer.qNorm, let kn = layer.kNorm {
                            headNorm(base, rows: n, stride: wide, heads: c.heads, headDim: hd, qn, c.rmsEpsilon)
                            headNorm(base + qd, rows: n, stride: wide, heads: c.kvHeads, headDim: hd, kn, c.rmsEpsilon)
                        }
                        let rot = sliding ? rotations[bi].sliding ?? rotations[bi].global : rotations[bi].global
                        rot.apply(base, rows: n, stride: wide, heads: c.heads)          // Q
                        rot.apply(base + qd, rows: n, stride: wide, heads: c.kvHeads)   // K
                        for i in 0..<n {
                            let cacheRow = ring > 0 ? (p0 + i) % ring : p0 + i
                            let src = base + i * wide + qd
                            s.kvCache.write(src, kc + cacheRow * kb, kvd, isa: isaCode)
                            s.valueCache.write(src + kvd, vc + cacheRow * vb, kvd, isa: isaCode)
                        }
                        sequences.append(condense_attention_sequence(q: base, kc: kc, vc: vc, out: ap.baseAddress! + r0 * qd, t: n, p0: p0))
                    }
                    if let only = sequences.first, sequences.count == 1 {
                        return condense_causal_attention_window(only.q, wide, only.kc, only.vc, batch[0].session.kvTypes, kvd, only.out, qd,
                                                                only.t, only.p0, Int32(c.heads), Int32(c.kvHeads), Int32(hd), c.attentionScale,
                                                                c.attentionSoftcap, window, ring, isaCode, 0)
                    }
                    // Sessions may differ in cache types: one call per pair of types.
                    var st: Int32 = 0
                    for type in Set(batch.map(\.session.kvTypes)).sorted() {
                        let mine = zip(batch, sequences).filter { $0.0.session.kvTypes == type }.map(\.1)
                        let r = condense_causal_attention_batch_window(mine, mine.count, wide, type, kvd, qd, Int32(c.heads), Int32(c.kvHeads),
                                                                       Int32(hd), c.attentionScale, c.attentionSoftcap, window, ring, isaCode, 0)
                        if r != 0 { st = r }
                    }
                    return st
                } }
                try NativeStatus.check(status, kernel: "causal attention")
                try layer.o.apply(att, into: &o)
                if let pn = layer.postAttnNorm { rmsNormInPlace(&o, pn, c.rmsEpsilon) }
                add(&x, o)
                rmsNorm(x, layer.ffnNorm, c.rmsEpsilon, into: &h)
                try layer.gateUp.apply(h, into: &gu)
                try gatedActivation(gu, c.activation, isa: isaCode, into: &g)
                try layer.down.apply(g, into: &o)
                if let pn = layer.postFFNNorm { rmsNormInPlace(&o, pn, c.rmsEpsilon) }
                add(&x, o)
            }
        }
        for (s, ids) in batch { s.tokens += ids }
        // The rows whose logits are wanted: each session's last, or all of them.
        var rows: [Int] = [], owner: [Int] = []
        for (bi, (_, ids)) in batch.enumerated() {
            let mine = allLogits ? Array(starts[bi]..<(starts[bi] + ids.count)) : [starts[bi] + ids.count - 1]
            rows += mine
            owner += Array(repeating: bi, count: mine.count)
        }
        var last = try Matrix<Float>(rows: rows.count, columns: d)
        x.withUnsafeBufferPointer { xp in last.withUnsafeMutableBufferPointer { lp in
            for (r, i) in rows.enumerated() { for j in 0..<d { lp[r * d + j] = xp[i * d + j] } }
        } }
        var normed = try Matrix<Float>(rows: rows.count, columns: d)
        rmsNorm(last, model.outputNorm, c.rmsEpsilon, into: &normed)
        var logits = try model.head.apply(normed)
        if c.finalLogitSoftcap > 0 {
            let cap = c.finalLogitSoftcap
            logits.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = cap * tanhf(p[i] / cap) } }
        }
        var out = [[[Float]]](repeating: [], count: batch.count)
        for r in 0..<rows.count { out[owner[r]].append(logits.row(r)) }
        return out
    }

    /// Generates a continuation of `prompt` (tokenized as given, control tokens included, no
    /// template), streaming each piece of text as it is complete.
    /// The tokens are computed on a task of their own; each piece arrives as soon as it is
    /// complete, and cancelling the consuming task stops the generation.
    public func generate(_ prompt: String, _ options: GenerationOptions) -> AsyncThrowingStream<String, Error> {
        AsyncThrowingStream { continuation in
            let task = Task.detached {
                do {
                    try self.generate(prompt, options) { piece in
                        try Task.checkCancellation()
                        continuation.yield(piece)
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// What one generation produced.
    public struct Result: Sendable {
        public var promptTokens: [Int32]
        public var tokens: [Int32] = []
        public var text = ""
        public var promptSeconds = 0.0
        public var generationSeconds = 0.0
        /// "eos", "stop" or "length".
        public var finishReason = "length"
        /// Per generated token, with ``GenerationOptions/logprobs`` set.
        public var logprobs: [TokenLogprob] = []
    }

    /// A generated token's log-probability and the most likely alternatives at its place.
    public struct TokenLogprob: Sendable, Equatable {
        public struct Alternative: Sendable, Equatable {
            public let id: Int32
            public let logprob: Float
        }
        public let id: Int32
        public let logprob: Float
        /// Most likely first.
        public let top: [Alternative]

        /// log-softmax of `logits` at `id`, and the `k` most likely tokens'.
        init(_ logits: [Float], id: Int32, k: Int) {
            let mx = logits.max() ?? 0
            var sum: Double = 0
            for v in logits { sum += Double(expf(v - mx)) }
            let lse = mx + Float(log(sum))
            self.id = id
            logprob = logits[Int(id)] - lse
            top = k == 0 ? [] : Generation.top(logits, k).map { Alternative(id: $0, logprob: logits[Int($0)] - lse) }
        }
    }

    /// Generates synchronously, calling `emit` with each complete piece of text.
    @discardableResult
    public func generate(_ prompt: String, _ options: GenerationOptions, emit: (String) throws -> Void) throws -> Result {
        try generate(tokenIDs: model.tokenizer.encode(prompt), options, emit: emit)
    }

    /// Generates after already tokenized prompt ids.
    @discardableResult
    public func generate(tokenIDs ids: [Int32], _ options: GenerationOptions, emit: (String) throws -> Void) throws -> Result {
        guard !ids.isEmpty else { throw CondenseError.invalidInput("the prompt has no tokens") }
        var g = try Generation(model, prompt: ids, options)
        let t0 = ContinuousClock.now
        var logits = try forward(ids)[0]
        g.result.promptSeconds = Self.seconds(ContinuousClock.now - t0)
        let t1 = ContinuousClock.now
        while true {
            let (piece, next) = g.accept(logits, contextFull: tokens.count >= contextLength)
            if !piece.isEmpty { try emit(piece) }
            guard let next else { break }
            logits = try forward([next])[0]
        }
        g.result.generationSeconds = Self.seconds(ContinuousClock.now - t1)
        return g.result
    }

    /// The state of one generation, a token at a time: sampling, stops, EOS, the length limit and
    /// the text streamed so far. ``generate(tokenIDs:_:emit:)`` drives one; a server drives many,
    /// one per stream, from batched steps (`forward(_:allLogits:)`).
    ///
    /// ```swift
    /// var g = try DecoderSession.Generation(lm, prompt: ids, options)
    /// var logits = try session.forward(ids)[0]
    /// while case let (piece, next?) = g.accept(logits, contextFull: session.tokens.count >= session.contextLength) {
    ///     print(piece, terminator: ""); logits = try session.forward([next])[0]
    /// }
    /// ```
    public struct Generation: Sendable {
        public let options: GenerationOptions
        public internal(set) var result: Result
        var sampler: Sampler
        var decoder: TokenStreamDecoder
        /// EOS and the vocabulary's end-of-turn tokens.
        let endOfGeneration: Set<Int32>
        var pending = ""   // text held back while it could be the start of a stop string
        var seen: [Int32]
        public private(set) var finished = false
        /// Constrained output: the JSON read so far, the tokenizer that spells the candidates,
        /// and the control tokens that never appear inside a value.
        var grammar: JSONGrammar?
        let tokenizer: any Tokenizer
        let control: Set<Int32>

        /// - Throws: `CondenseError/invalidArgument(_:)` for invalid options.
        public init(_ model: LanguageModel, prompt ids: [Int32], _ options: GenerationOptions) throws {
            try options.validate()
            self.options = options
            result = Result(promptTokens: ids)
            sampler = Sampler(options)
            decoder = TokenStreamDecoder(model.tokenizer)
            endOfGeneration = model.tokenizer.endOfGeneration
            tokenizer = model.tokenizer
            grammar = options.json
            control = options.json == nil ? [] : Set(model.tokenizer.specialTokens.values).union(model.tokenizer.endOfGeneration)
                .union([model.tokenizer.bos, model.tokenizer.eos].compactMap { $0 })
            seen = ids
            if options.maxTokens == 0 { finished = true }
        }

        /// Takes the logits after the last token: returns the text now complete and the next
        /// token to feed, or nil when the generation has ended (``Result/finishReason``).
        public mutating func accept(_ logits: [Float], contextFull: Bool) -> (piece: String, next: Int32?) {
            guard !finished else { return ("", nil) }
            let early = result.tokens.count < options.minTokens
            var next: Int32
            if let g = grammar {
                if g.isComplete { return finish("stop", "") }
                guard let (id, after) = constrained(logits, g) else { return finish("stop", "") }
                // An end token where the value may end (a root number): the answer is complete.
                guard let after else { return finish("stop", "") }
                grammar = after
                next = id
            } else if early, options.stopAtEOS, !endOfGeneration.isEmpty {
                var masked = logits
                for t in endOfGeneration where Int(t) < masked.count && t >= 0 { masked[Int(t)] = -.infinity }
                next = sampler.sample(masked, seen: seen)
            } else {
                next = sampler.sample(logits, seen: seen)
            }
            if grammar == nil, options.stopAtEOS, endOfGeneration.contains(next) { return finish("eos", "") }
            if let k = options.logprobs { result.logprobs.append(TokenLogprob(logits, id: next, k: k)) }
            result.tokens.append(next)
            seen.append(next)
            pending += decoder.append(next)
            if result.tokens.count < options.minTokens {
                // Stop strings do not apply yet: nothing is held back for them.
                let out = pending
                pending = ""
                result.text += out
                if contextFull {
                    let (rest, _) = finish("length", "")
                    return (out + rest, nil)
                }
                return (out, next)
            }
            if let cut = DecoderSession.stopCut(pending, options.stop) {
                let out = String(pending[..<cut])
                pending = ""
                finished = true
                result.finishReason = "stop"
                result.text += out
                return (out, nil)
            }
            // Emit what can no longer become a stop string.
            let keep = DecoderSession.heldBack(pending, options.stop)
            let out = String(pending.dropLast(keep))
            pending = String(pending.suffix(keep))
            if result.tokens.count >= options.maxTokens || contextFull {
                result.text += out
                let (rest, _) = finish("length", "")
                return (out + rest, nil)
            }
            result.text += out
            return (out, next)
        }

        /// The next token under the JSON grammar and the grammar after it (nil after an end
        /// token, allowed only where the value may end), sampled as the options say among the
        /// tokens that keep the value valid: the 256 most likely are checked first, the whole
        /// vocabulary only when none of them fits. Nil when no token can continue.
        mutating func constrained(_ logits: [Float], _ g: JSONGrammar) -> (Int32, JSONGrammar?)? {
            let greedy = options.temperature == 0 && options.repeatPenalty == 1
            var valid: [Int32: JSONGrammar?] = [:]
            func check(_ id: Int32) -> Bool {
                if control.contains(id) {
                    guard g.canEnd, endOfGeneration.contains(id) else { return false }
                    valid[id] = .some(nil)
                    return true
                }
                guard let after = g.accepting(tokenizer.bytes(of: id)) else { return false }
                valid[id] = after
                return true
            }
            for id in Self.top(logits, 256) where check(id) && greedy { break }
            if valid.isEmpty { for id in 0..<Int32(logits.count) { _ = check(id) } }
            guard !valid.isEmpty else { return nil }
            var masked = [Float](repeating: -.infinity, count: logits.count)
            for id in valid.keys { masked[Int(id)] = logits[Int(id)] }
            let next = sampler.sample(masked, seen: seen)
            guard let after = valid[next] else { return nil }
            return (next, after)
        }

        /// The ids of the `k` largest logits, largest first (ties: lower id first): one pass that
        /// keeps a sorted buffer, cheaper than sorting the whole vocabulary per token.
        static func top(_ l: [Float], _ k: Int) -> [Int32] {
            var top: [Int32] = []
            top.reserveCapacity(k + 1)
            for i in l.indices {
                let v = l[i]
                if top.count == k, let last = top.last, !(v > l[Int(last)]) { continue }
                var at = top.count
                while at > 0 && v > l[Int(top[at - 1])] { at -= 1 }
                top.insert(Int32(i), at: at)
                if top.count > k { top.removeLast() }
            }
            return top
        }

        /// Ends the generation: what was held back is flushed.
        private mutating func finish(_ reason: String, _ prefix: String) -> (piece: String, next: Int32?) {
            finished = true
            result.finishReason = reason
            let rest = pending + decoder.flush()
            pending = ""
            result.text += rest
            return (prefix + rest, nil)
        }
    }

    // MARK: - Pieces

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }

    /// Where the first stop string begins in `text`, if one occurs.
    static func stopCut(_ text: String, _ stops: [String]) -> String.Index? {
        stops.compactMap { text.range(of: $0)?.lowerBound }.min()
    }

    /// Characters at the end of `text` that are a prefix of some stop string.
    static func heldBack(_ text: String, _ stops: [String]) -> Int {
        var keep = 0
        for s in stops {
            for n in stride(from: min(s.count, text.count), through: 1, by: -1) where text.hasSuffix(String(s.prefix(n))) {
                keep = max(keep, n)
                break
            }
        }
        return keep
    }

    /// RMSNorm of every row, in C on the thread team.
    static func rmsNorm(_ x: Matrix<Float>, _ w: [Float], _ eps: Float, into y: inout Matrix<Float>) {
        let (d, rows) = (x.columns, x.rows)
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
            _ = condense_rmsnorm(xp.baseAddress!, d, yp.baseAddress!, d, rows, 1, d, w, eps, 0)
        } }
    }

    static func rmsNormInPlace(_ x: inout Matrix<Float>, _ w: [Float], _ eps: Float) {
        let (d, rows) = (x.columns, x.rows)
        x.withUnsafeMutableBufferPointer { xp in _ = condense_rmsnorm(xp.baseAddress!, d, xp.baseAddress!, d, rows, 1, d, w, eps, 0) }
    }

    /// QK-norm: each head of each row RMS-normalised over the head dimension.
    static func headNorm(_ p: UnsafeMutablePointer<Float>, rows: Int, stride: Int, heads: Int, headDim: Int, _ w: [Float], _ eps: Float) {
        _ = condense_rmsnorm(p, stride, p, stride, rows, heads, headDim, w, eps, 0)
    }

    /// g = act(gate) · up from the stacked [gate | up] rows, in C on the thread team.
    static func gatedActivation(_ gu: Matrix<Float>, _ act: FFNActivation, isa: condense_isa, into g: inout Matrix<Float>) throws {
        let (ff, rows) = (g.columns, g.rows)
        let code = act == .silu ? Int32(CONDENSE_GLU_SILU) : Int32(CONDENSE_GLU_GELU_TANH)
        let status = gu.withUnsafeBufferPointer { up in g.withUnsafeMutableBufferPointer { gp in
            condense_glu(up.baseAddress!, rows, ff, code, gp.baseAddress!, isa, 0)
        } }
        try NativeStatus.check(status, kernel: "gated activation")
    }

    static func add(_ x: inout Matrix<Float>, _ y: Matrix<Float>) {
        x.withUnsafeMutableBufferPointer { xp in y.withUnsafeBufferPointer { yp in for i in 0..<xp.count { xp[i] += yp[i] } } }
    }
}

/// Activation buffers of forward passes, kept for the next pass of the same shape (decode steps
/// repeat one shape; a prompt's passes another): a pass of 512 tokens needs tens of megabytes, and
/// a fresh allocation of that size is zeroed page by page. Bounded; shared by every session.
final class ActivationPool: @unchecked Sendable {
    // @unchecked: every access holds the lock.
    static let shared = ActivationPool()
    private let lock = NSLock()
    private var free: [[Int]: [Matrix<Float>]] = [:]
    private var bytes = 0
    let limit = 256 << 20

    func take(_ rows: Int, _ columns: Int) throws -> Matrix<Float> {
        lock.lock()
        if var list = free[[rows, columns]], let m = list.popLast() {
            free[[rows, columns]] = list.isEmpty ? nil : list
            bytes -= rows * columns * 4
            lock.unlock()
            return m
        }
        lock.unlock()
        return try Matrix<Float>(rows: rows, columns: columns)
    }

    func give(_ m: Matrix<Float>) {
        let size = m.rows * m.columns * 4
        lock.lock()
        defer { lock.unlock() }
        guard bytes + size <= limit, (free[[m.rows, m.columns]]?.count ?? 0) < 4 else { return }
        free[[m.rows, m.columns], default: []].append(m)
        bytes += size
    }
}

/// Rotary position embedding for a run of positions: the angles pos · scale · base^(−2i/headDim)
/// / factor[i] (factors: Llama 3's `rope_freqs`), their cosines and sines computed once per
/// forward pass and shared by Q, K and every layer of one kind.
struct Rotation {
    let half: Int
    let neox: Bool
    let cosines: [Float], sines: [Float]   // rows × half

    init(positions: Range<Int>, headDim hd: Int, base: Float, scale: Float = 1, factors: [Float]? = nil, neox: Bool) {
        half = hd / 2
        self.neox = neox
        let freqs = (0..<half).map { i in powf(base, -2 * Float(i) / Float(hd)) / (factors?[i] ?? 1) }
        var cs = [Float](), sn = [Float]()
        cs.reserveCapacity(positions.count * half)
        sn.reserveCapacity(positions.count * half)
        for p in positions {
            for f in freqs {
                let theta = Float(p) * scale * f
                cs.append(cosf(theta))
                sn.append(sinf(theta))
            }
        }
        cosines = cs
        sines = sn
    }

    /// Rotates `heads` heads of each row in place: adjacent pairs (normal) or pairs
    /// (i, i + headDim/2) (NeoX).
    func apply(_ p: UnsafeMutablePointer<Float>, rows: Int, stride: Int, heads: Int) {
        guard rows > 0, heads > 0 else { return }
        cosines.withUnsafeBufferPointer { cs in sines.withUnsafeBufferPointer { sn in
            _ = condense_rope(p, stride, rows, Int32(heads), Int32(2 * half), cs.baseAddress!, sn.baseAddress!, neox ? 1 : 0, 0)
        } }
    }
}

/// Picks the next token: greedy at temperature 0, else repeat penalty, temperature, top-k, top-p
/// and min-p in llama.cpp's order, then a draw from a seeded generator (same seed, same text).
struct Sampler: Sendable {
    let o: GenerationOptions
    var state: UInt64

    init(_ o: GenerationOptions) {
        self.o = o
        state = o.seed &+ 0x9E37_79B9_7F4A_7C15
    }

    mutating func uniform() -> Double {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Double((z ^ (z >> 31)) >> 11) / Double(1 << 53)
    }

    mutating func sample(_ logits: [Float], seen: [Int32]) -> Int32 {
        var l = logits
        if o.repeatPenalty != 1 {
            for id in Set(seen) where Int(id) < l.count {
                l[Int(id)] = l[Int(id)] > 0 ? l[Int(id)] / o.repeatPenalty : l[Int(id)] * o.repeatPenalty
            }
        }
        if o.temperature == 0 {
            var best = 0
            for i in l.indices where l[i] > l[best] { best = i }
            return Int32(best)
        }
        // Candidates in descending order of scaled logit (ties: lower id first). Sorting the whole
        // vocabulary per token costs milliseconds; top-k needs only one pass, and without top-k,
        // only tokens near min-p's floor can survive (the softmax still counts every token).
        let scaled = l.map { $0 / o.temperature }
        let before: ((Int, Float), (Int, Float)) -> Bool = { $0.1 > $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
        var cand: [(Int, Float)]
        var total: Double?
        if o.topK > 0 && o.topK < scaled.count {
            cand = DecoderSession.Generation.top(scaled, o.topK).map { (Int($0), scaled[Int($0)]) }
        } else if o.minP > 0 {
            let mx = scaled.max()!
            let cut = mx + logf(o.minP) - 1e-3   // a margin: the exact min-p step below decides
            total = scaled.reduce(0.0) { $0 + Double(expf($1 - mx)) }
            cand = scaled.indices.filter { scaled[$0] >= cut }.map { ($0, scaled[$0]) }.sorted(by: before)
        } else {
            cand = scaled.indices.map { ($0, scaled[$0]) }.sorted(by: before)
        }
        let mx = cand[0].1
        var probs = cand.map { Double(expf($0.1 - mx)) }
        let denominator = total ?? probs.reduce(0, +)
        probs = probs.map { $0 / denominator }
        if o.topP < 1 {
            var acc = 0.0, n = 0
            while n < probs.count { acc += probs[n]; n += 1; if acc >= Double(o.topP) { break } }
            cand = Array(cand.prefix(n)); probs = Array(probs.prefix(n))
        }
        if o.minP > 0 {
            let floor = probs[0] * Double(o.minP)
            let n = max(1, probs.firstIndex { $0 < floor } ?? probs.count)
            cand = Array(cand.prefix(n)); probs = Array(probs.prefix(n))
        }
        let sum = probs.reduce(0, +)
        var r = uniform() * sum
        for (i, p) in probs.enumerated() {
            r -= p
            if r <= 0 { return Int32(cand[i].0) }
        }
        return Int32(cand[cand.count - 1].0)
    }
}
