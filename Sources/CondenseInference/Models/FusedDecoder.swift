import CCondenseKernels
import Condense

/// A model's layers as `condense_decoder_forward` reads them, built once at load: a pass then
/// runs every layer as one job of the thread team (the threads meet at barriers instead of a
/// fork and join per kernel, and the norms, RoPE, cache writes and residuals run in C on every
/// thread instead of Swift loops on one), for one sequence or a continuous batch of several.
/// Only for models whose projections all run on GGUF blocks (``GGUFBlockLinear``, alone or side
/// by side); the others keep the kernel-by-kernel pass, which computes the same numbers.
final class FusedDecoder: @unchecked Sendable {
    // @unchecked: immutable after init; the pointers are owned here or by the model's layers.
    private let shape: condense_decoder_shape
    private let layers: [condense_decoder_layer]
    private let norms: UnsafeMutablePointer<Float>

    /// nil when a projection is not on GGUF blocks (f32, 16-bit, registry formats, plugins, the
    /// 2:4 row split), or the shapes are not what the kernel takes.
    init?(config c: DecoderConfig, layers: [LanguageModel.Layer]) {
        guard !layers.isEmpty, c.headDim % 2 == 0 else { return nil }
        var projs: [[condense_decoder_proj]] = []
        for l in layers {
            guard let qkv = Self.proj(l.qkv), let o = Self.proj(l.o), let gu = Self.proj(l.gateUp), let dn = Self.proj(l.down) else { return nil }
            projs.append([qkv, o, gu, dn])
        }
        // The norms copied into one buffer the C side can hold pointers to.
        var all: [Float] = []
        var offsets: [[Int?]] = []
        for l in layers {
            var mine: [Int?] = []
            for v in [l.attnNorm, l.ffnNorm, l.qNorm, l.kNorm, l.postAttnNorm, l.postFFNNorm] {
                if let v { mine.append(all.count); all += v } else { mine.append(nil) }
            }
            offsets.append(mine)
        }
        norms = .allocate(capacity: max(all.count, 1))
        norms.initialize(from: all, count: all.count)
        let base = norms
        func at(_ i: Int?) -> UnsafePointer<Float>? { i.map { UnsafePointer(base + $0) } }
        self.layers = zip(projs, offsets).enumerated().map { l, po in
            let (p, o) = po
            return condense_decoder_layer(qkv: p[0], o: p[1], gate_up: p[2], down: p[3], attn_norm: at(o[0]), ffn_norm: at(o[1]),
                                          q_norm: at(o[2]), k_norm: at(o[3]), post_attn_norm: at(o[4]), post_ffn_norm: at(o[5]),
                                          window: c.slidingLayers[l] ? c.slidingWindow : 0, ring: c.ring(layer: l))
        }
        shape = condense_decoder_shape(hidden: c.hidden, heads: c.heads, kv_heads: c.kvHeads, head_dim: c.headDim,
                                       ff: c.feedForward, eps: c.rmsEpsilon, scale: c.attentionScale, softcap: c.attentionSoftcap,
                                       act: c.activation == .silu ? Int32(CONDENSE_GLU_SILU) : Int32(CONDENSE_GLU_GELU_TANH),
                                       neox: c.ropeNeoX ? 1 : 0)
    }

    deinit { norms.deallocate() }

    /// One projection's GGUF parts, or nil.
    static func proj(_ p: any PreparedLinear) -> condense_decoder_proj? {
        let parts: [GGUFBlockLinear]
        if let g = p as? GGUFBlockLinear {
            parts = [g]
        } else if let s = p as? SideBySide {
            let gs = s.parts.compactMap { $0 as? GGUFBlockLinear }
            guard gs.count == s.parts.count else { return nil }
            parts = gs
        } else {
            return nil
        }
        guard (1...Int(CONDENSE_DECODER_MAX_PARTS)).contains(parts.count), parts.allSatisfy({ $0.inFeatures == parts[0].inFeatures }) else {
            return nil
        }
        var r = condense_decoder_proj()
        r.parts = Int32(parts.count)
        r.k = parts[0].inFeatures
        withUnsafeMutableBytes(of: &r.part) { raw in
            let ps = raw.bindMemory(to: condense_decoder_part.self)
            for (i, g) in parts.enumerated() { ps[i] = g.decoderPart }
        }
        return r
    }

    /// Runs every layer over the rows in `buffers.x` (embedded, the sessions' rows in order; left
    /// holding the last layer's residual stream): `rows` of each session at its next positions,
    /// with the RoPE angles of those positions, writing each session's cache.
    func forward(_ batch: [(session: DecoderSession, rows: Int)], rotations: [(global: Rotation, sliding: Rotation?)],
                 buffers: condense_decoder_buffers, isa: condense_isa, threads: Int32) throws {
        let nl = layers.count
        // Each session's cache of every layer, keys then values, in one table.
        let caches = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: batch.count * nl * 2)
        defer { caches.deallocate() }
        // Every session's angles in one array: global cosines, sines, then sliding ones if any.
        var angles: [Float] = []
        var offsets: [(gc: Int, gs: Int, sc: Int, ss: Int)] = []
        for (i, (s, _)) in batch.enumerated() {
            let (kb, vb) = (s.kvCache.rowBytes(s.model.config.kvDim), s.valueCache.rowBytes(s.model.config.kvDim))
            for l in 0..<nl {
                caches[(i * 2) * nl + l] = s.keys + s.layerOffset[l] * kb
                caches[(i * 2 + 1) * nl + l] = s.values + s.layerOffset[l] * vb
            }
            let (g, sl) = rotations[i]
            let gc = angles.count
            angles += g.cosines
            let gs = angles.count
            angles += g.sines
            var (sc, ss) = (gc, gs)
            if let sl {
                sc = angles.count
                angles += sl.cosines
                ss = angles.count
                angles += sl.sines
            }
            offsets.append((gc, gs, sc, ss))
        }
        var shape = shape
        let status: Int32 = angles.withUnsafeBufferPointer { ap in
            let a = ap.baseAddress!
            let seqs = batch.enumerated().map { i, b in
                condense_decoder_sequence(rows: b.rows, p0: b.session.tokens.count, kv_type: b.session.kvTypes,
                                          keys: caches + (i * 2) * nl, values: caches + (i * 2 + 1) * nl,
                                          cos_t: a + offsets[i].gc, sin_t: a + offsets[i].gs,
                                          cos_sliding: a + offsets[i].sc, sin_sliding: a + offsets[i].ss)
            }
            var b = buffers
            return condense_decoder_forward(&shape, layers, nl, seqs, seqs.count, &b, isa, threads)
        }
        try NativeStatus.check(status, kernel: "decoder layers")
    }
}
