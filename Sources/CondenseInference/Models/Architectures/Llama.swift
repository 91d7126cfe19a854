import Condense

extension DecoderArchitecture {
    /// Llama 1–3.x and Mistral (`llama`, `mistral`): the plain block, normal RoPE (the GGUF
    /// conversion permutes Q and K for it). Llama 3.1+'s long-context scaling comes as the
    /// `rope_freqs.weight` tensor, which the loader applies when present.
    public static let llama = DecoderArchitecture(
        names: ["llama", "mistral"], ropeNeoX: false,
        block: [.attnNorm, .q, .k, .v, .output, .ffnNorm, .gate, .up, .down])
}
