import CCondenseKernels
import Condense

/// A model's layers as `condense_decoder_forward` reads them, built once at load: every layer's
/// pass of one sequence then runs as one job of the thread team (the threads meet at barriers
/// instead of a fork and join per kernel, and the norms, RoPE, cache writes and residuals run in
/// C on every thread instead of Swift loops on one). Only for models whose projections all run on
/// GGUF blocks (``GGUFBlockLinear``, alone or side by side); the others keep the kernel-by-kernel
/// pass, which computes the same numbers.
final class FusedDecoder: @unchecked Sendable {
    // @unchecked: immutable after init; the pointers are owned here or by the model's layers.
    private let shapeTemplate: condense_decoder_shape
    private let layerTemplates: [condense_decoder_layer]
    private let norms: UnsafeMutablePointer<Float>
    private let sliding: [Bool]

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
        layerTemplates = zip(projs, offsets).map { p, o in
            condense_decoder_layer(qkv: p[0], o: p[1], gate_up: p[2], down: p[3], attn_norm: at(o[0]), ffn_norm: at(o[1]),
                                   q_norm: at(o[2]), k_norm: at(o[3]), post_attn_norm: at(o[4]), post_ffn_norm: at(o[5]),
                                   keys: nil, values: nil, window: 0, ring: 0, cos_t: nil, sin_t: nil)
        }
        shapeTemplate = condense_decoder_shape(hidden: c.hidden, heads: c.heads, kv_heads: c.kvHeads, head_dim: c.headDim,
                                               ff: c.feedForward, eps: c.rmsEpsilon, scale: c.attentionScale,
                                               softcap: c.attentionSoftcap,
                                               act: c.activation == .silu ? Int32(CONDENSE_GLU_SILU) : Int32(CONDENSE_GLU_GELU_TANH),
                                               neox: c.ropeNeoX ? 1 : 0, kv_type: 0)
        sliding = c.slidingLayers
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

    /// Runs every layer over the `rows` tokens in `buffers.x` (embedded; left holding the last
    /// layer's residual stream) at positions `p0…` of `session`, writing its cache.
    func forward(_ session: DecoderSession, rows: Int, p0: Int, global: Rotation, slidingRotation: Rotation?,
                 buffers: condense_decoder_buffers, ring: (Int) -> Int, isa: condense_isa) throws {
        let c = session.model.config
        let (kb, vb) = (session.kvCache.rowBytes(c.kvDim), session.valueCache.rowBytes(c.kvDim))
        var shape = shapeTemplate
        shape.kv_type = session.kvTypes
        let status: Int32 = global.cosines.withUnsafeBufferPointer { gc in global.sines.withUnsafeBufferPointer { gs in
            let sr = slidingRotation ?? global
            return sr.cosines.withUnsafeBufferPointer { sc in sr.sines.withUnsafeBufferPointer { ss in
                var ls = layerTemplates
                for l in ls.indices {
                    ls[l].keys = session.keys + session.layerOffset[l] * kb
                    ls[l].values = session.values + session.layerOffset[l] * vb
                    if sliding[l] {
                        (ls[l].window, ls[l].ring) = (c.slidingWindow, ring(l))
                        (ls[l].cos_t, ls[l].sin_t) = (sc.baseAddress, ss.baseAddress)
                    } else {
                        (ls[l].cos_t, ls[l].sin_t) = (gc.baseAddress, gs.baseAddress)
                    }
                }
                var b = buffers
                return condense_decoder_forward(&shape, ls, ls.count, &b, rows, p0, isa, session.layerJobThreads)
            } }
        } }
        try NativeStatus.check(status, kernel: "decoder layers")
    }
}
