import Condense

extension DecoderArchitecture {
    /// Gemma 2 (`gemma2`): Gemma 3's block without QK-norm — the embedding scaled by √hidden,
    /// norms before and after attention and FFN, GELU-tanh GLU, NeoX RoPE — with attention scores
    /// soft-capped (`attn_logit_softcapping`, 50) and the logits too (`final_logit_softcapping`,
    /// 30), and every other layer sliding (`attention.sliding_window`, 4096; the same RoPE base).
    public static let gemma2 = DecoderArchitecture(
        names: ["gemma2"], ropeNeoX: true,
        block: [.attnNorm, .q, .k, .v, .output, .postAttnNorm, .ffnNorm, .gate, .up, .down, .postFFNNorm]) { r, c in
        c.gemma(queryScaleLayers: 46)   // Gemma 2 27B
        c.attentionSoftcap = try r.float("attn_logit_softcapping", "> 0", { $0 > 0 }, default: 50)
        c.finalLogitSoftcap = try r.float("final_logit_softcapping", "> 0", { $0 > 0 }, default: 30)
        c.slide(window: try r.int("attention.sliding_window", 1...(1 << 24), default: 4096),
                pattern: try r.int("attention.sliding_window_pattern", 0...1024, default: 2))
        c.ropeBaseSliding = try r.float("rope.freq_base_swa", "> 1", { $0 > 1 }, default: Double(c.ropeBase))
    }
}
