import Condense

extension DecoderArchitecture {
    /// Phi-3 and Phi-3.5 (`phi3`): Q, K and V in one matrix (`attn_qkv`), gate and up in one
    /// (`ffn_up`, gate first), NeoX RoPE. Like llama.cpp, the sliding window its metadata may
    /// name is not applied (llama.cpp disables Phi SWA); the 128k models' LongRoPE factors are
    /// refused by the loader.
    public static let phi3 = DecoderArchitecture(
        names: ["phi3"], ropeNeoX: true,
        block: [.attnNorm, .qkv, .output, .ffnNorm, .up, .down]) { _, c in
        c.defaultChat = "phi3"
    }
}
