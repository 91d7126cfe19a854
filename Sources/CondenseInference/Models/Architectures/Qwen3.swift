import Condense

extension DecoderArchitecture {
    /// Qwen 3 (`qwen3`): no biases, Q and K RMS-normalised per head before NeoX RoPE, the head
    /// dimension given explicitly (`attention.key_length`: Qwen3-0.6B has 16 × 128 over 1024).
    public static let qwen3 = DecoderArchitecture(
        names: ["qwen3"], ropeNeoX: true,
        block: [.attnNorm, .q, .k, .v, .qNorm, .kNorm, .output, .ffnNorm, .gate, .up, .down]) { _, c in
        c.qkNorm = true
    }
}
