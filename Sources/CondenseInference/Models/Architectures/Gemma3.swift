import Condense

extension DecoderArchitecture {
    /// Gemma 3 (`gemma3`): the embedding scaled by √hidden, Q and K RMS-normalised per head, the
    /// attention and FFN outputs normalised again before their residual adds, GELU-tanh GLU, NeoX
    /// RoPE, and sliding-window layers (their own RoPE base, 10 000 unless `rope.freq_base_swa`
    /// says otherwise) with every `attention.sliding_window_pattern`-th layer (6) global. The
    /// GGUF conversion already stores Gemma's RMSNorm weights as 1 + w, so the norm is the plain one.
    public static let gemma3 = DecoderArchitecture(
        names: ["gemma3"], ropeNeoX: true,
        block: [.attnNorm, .q, .k, .v, .qNorm, .kNorm, .output, .postAttnNorm, .ffnNorm, .gate, .up, .down, .postFFNNorm]) { r, c in
        c.qkNorm = true
        c.gemma(queryScaleLayers: 62)   // Gemma 3 27B
        c.finalLogitSoftcap = try r.float("final_logit_softcapping", "> 0", { $0 > 0 }, default: 0)
        let window = try r.int("attention.sliding_window", 0...(1 << 24), default: 0)
        if window > 0 {
            c.slide(window: window, pattern: try r.int("attention.sliding_window_pattern", 0...1024, default: 6))
            c.ropeBaseSliding = try r.float("rope.freq_base_swa", "> 1", { $0 > 1 }, default: 10_000)
        }
    }
}
