import Condense
import Foundation

/// The KV cache rows of a token prefix, copied out of a session: what a later session whose
/// prompt starts with the same tokens restores instead of recomputing them.
///
/// A global layer keeps one row per position, so any shorter prefix of the rows is valid for a
/// prompt that shares only that much. A sliding-window layer keeps a ring of its last rows; once
/// the ring has wrapped, only the whole prefix can be restored (the earlier rows are gone).
///
/// ```swift
/// let s = try lm.session()
/// _ = try s.forward(systemPromptIDs)
/// let prefix = s.prefixSnapshot()
/// let other = try lm.session()
/// try other.restore(prefix, tokens: prefix.tokens.count)   // no prefill for those tokens
/// ```
public struct KVPrefix: @unchecked Sendable {
    /// The tokens whose keys and values these are, from position 0.
    public let tokens: [Int32]
    let model: ObjectIdentifier
    let kvCache: KVCacheType, valueCache: KVCacheType
    /// Per layer: the first position held and the rows (position order) of keys and of values.
    let layers: [(first: Int, keys: [UInt8], values: [UInt8])]
    let wrapped: Bool   // a sliding layer's ring no longer holds position 0

    /// Bytes held (keys and values of every layer).
    public var bytes: Int { layers.reduce(0) { $0 + $1.keys.count + $1.values.count } }

    /// Whether both hold rows of the same model in the same cache types.
    func sameCache(as other: KVPrefix) -> Bool {
        model == other.model && kvCache == other.kvCache && valueCache == other.valueCache
    }

    /// The longest prefix of `ids` these rows can serve: their common tokens, all or nothing
    /// once a sliding layer's ring has wrapped.
    public func usable(for ids: [Int32]) -> Int {
        var c = 0
        let n = min(ids.count, tokens.count)
        while c < n && ids[c] == tokens[c] { c += 1 }
        return wrapped && c < tokens.count ? 0 : c
    }
}

extension DecoderSession {
    /// Copies the KV rows of every token in the cache (see ``KVPrefix``).
    public func prefixSnapshot() -> KVPrefix {
        let kvd = model.config.kvDim, (kb, vb) = (kvCache.rowBytes(kvd), valueCache.rowBytes(kvd))
        let p = tokens.count
        var layers: [(first: Int, keys: [UInt8], values: [UInt8])] = []
        var wrapped = false
        for l in 0..<model.config.layers {
            let ring = model.ring(layer: l)
            let first = ring > 0 && p > ring ? p - ring : 0
            if first > 0 { wrapped = true }
            var k = [UInt8](repeating: 0, count: (p - first) * kb), v = [UInt8](repeating: 0, count: (p - first) * vb)
            k.withUnsafeMutableBytes { kd in v.withUnsafeMutableBytes { vd in
                for pos in first..<p {
                    let row = layerOffset[l] + (ring > 0 ? pos % ring : pos)
                    memcpy(kd.baseAddress! + (pos - first) * kb, keys + row * kb, kb)
                    memcpy(vd.baseAddress! + (pos - first) * vb, values + row * vb, vb)
                }
            } }
            layers.append((first, k, v))
        }
        return KVPrefix(tokens: tokens, model: ObjectIdentifier(model), kvCache: kvCache, valueCache: valueCache,
                        layers: layers, wrapped: wrapped)
    }

    /// Makes the first `count` tokens of `prefix` this session's cache (whatever it held is
    /// forgotten), so that `forward` continues after them.
    /// - Throws: `CondenseError/invalidArgument(_:)` for another model's or cache type's rows, a
    ///   count the rows cannot serve (beyond them, or short of them once a ring wrapped), or one
    ///   beyond this session's context.
    public func restore(_ prefix: KVPrefix, tokens count: Int) throws {
        guard prefix.model == ObjectIdentifier(model), prefix.kvCache == kvCache, prefix.valueCache == valueCache else {
            throw CondenseError.invalidArgument("a KV prefix of another model or cache type (\(prefix.kvCache.rawValue)/\(prefix.valueCache.rawValue)) cannot be restored into this session (\(kvCache.rawValue)/\(valueCache.rawValue))")
        }
        guard count >= 0, count <= prefix.tokens.count, count <= contextLength, !prefix.wrapped || count == prefix.tokens.count else {
            throw CondenseError.invalidArgument("a KV prefix of \(prefix.tokens.count) tokens cannot serve \(count) in a context of \(contextLength)")
        }
        let kvd = model.config.kvDim, (kb, vb) = (kvCache.rowBytes(kvd), valueCache.rowBytes(kvd))
        for l in 0..<model.config.layers {
            let ring = model.ring(layer: l), layer = prefix.layers[l]
            let first = ring > 0 && count > ring ? count - ring : 0
            layer.keys.withUnsafeBytes { ks in layer.values.withUnsafeBytes { vs in
                for pos in first..<count {
                    let row = layerOffset[l] + (ring > 0 ? pos % ring : pos)
                    memcpy(keys + row * kb, ks.baseAddress! + (pos - layer.first) * kb, kb)
                    memcpy(values + row * vb, vs.baseAddress! + (pos - layer.first) * vb, vb)
                }
            } }
        }
        setTokens(Array(prefix.tokens[0..<count]))
    }
}

/// Prompt prefixes kept for reuse, least recently used evicted first within a byte budget: a long
/// system prompt, a growing conversation or few-shot examples are computed once, then copied
/// into each new session that starts with them (llama-server's `cache_prompt`, vLLM's automatic
/// prefix caching). Matching is by longest common prefix of token ids, so a conversation that
/// shares only its system prompt with an earlier one reuses that much.
///
/// Not thread-safe: one owner (a ``GenerationScheduler``'s thread).
///
/// ```swift
/// let cache = PrefixCache(budgetBytes: 256 << 20)
/// if let (prefix, n) = cache.lookup(ids) { try session.restore(prefix, tokens: n) }
/// ```
public final class PrefixCache: @unchecked Sendable {
    /// The most bytes the entries may hold together.
    public let budgetBytes: Int
    /// Prefixes shorter than this are not kept (their recomputation is cheap).
    public let minTokens: Int
    private var entries: [(prefix: KVPrefix, used: UInt64)] = []
    private var clock: UInt64 = 0
    /// Bytes held now.
    public private(set) var bytes = 0

    /// An empty cache of at most `budgetBytes`, keeping prefixes of at least `minTokens` tokens.
    public init(budgetBytes: Int, minTokens: Int = 32) {
        self.budgetBytes = max(0, budgetBytes)
        self.minTokens = max(1, minTokens)
    }

    /// Entries held now.
    public var count: Int { entries.count }

    /// The entry that serves the longest prefix of `ids`, and how many tokens of it to restore:
    /// at most `ids.count − 1`, so the last prompt token still runs and gives the logits.
    public func lookup(_ ids: [Int32]) -> (prefix: KVPrefix, tokens: Int)? {
        var best: (Int, Int)?   // (index, tokens)
        for (i, e) in entries.enumerated() {
            var n = e.prefix.usable(for: ids)
            if n >= ids.count { n = e.prefix.wrapped ? 0 : ids.count - 1 }
            if n >= minTokens, n > (best?.1 ?? 0) { best = (i, n) }
        }
        guard let (i, n) = best else { return nil }
        clock += 1
        entries[i].used = clock
        return (entries[i].prefix, n)
    }

    /// Keeps `prefix` unless an entry already covers it or it cannot fit the budget; evicts the
    /// least recently used entries to make room. Returns whether it was kept.
    @discardableResult
    public func insert(_ prefix: KVPrefix) -> Bool {
        guard prefix.tokens.count >= minTokens, prefix.bytes <= budgetBytes else { return false }
        if entries.contains(where: { $0.prefix.sameCache(as: prefix) && $0.prefix.usable(for: prefix.tokens) == prefix.tokens.count }) {
            return false
        }
        // An entry this one extends is superseded: the longer rows serve every shorter prompt too
        // (unless a ring wrapped, when the shorter one stays).
        if !prefix.wrapped {
            entries.removeAll { e in
                let drop = e.prefix.sameCache(as: prefix) && prefix.usable(for: e.prefix.tokens) == e.prefix.tokens.count
                if drop { bytes -= e.prefix.bytes }
                return drop
            }
        }
        while bytes + prefix.bytes > budgetBytes, let lru = entries.indices.min(by: { entries[$0].used < entries[$1].used }) {
            bytes -= entries[lru].prefix.bytes
            entries.remove(at: lru)
        }
        clock += 1
        entries.append((prefix, clock))
        bytes += prefix.bytes
        return true
    }
}
