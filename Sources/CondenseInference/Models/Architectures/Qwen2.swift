import Condense

extension DecoderArchitecture {
    /// Qwen 2 and 2.5 (`qwen2`): the Llama block with Q, K and V biases, NeoX RoPE.
    public static let qwen2 = DecoderArchitecture(
        names: ["qwen2"], ropeNeoX: true,
        block: [.attnNorm, .q, .k, .v, .output, .ffnNorm, .gate, .up, .down]) { _, c in
        c.qkvBias = true
    }
}
