import Condense
import CondenseCompression
@testable import CondenseInference
import CondenseTestSupport
import Foundation
import Testing

private let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("CondenseInferenceTests/Scripts/tiny_gguf.py")

@Suite struct ArchitectureCompressionTests {
    /// `compress --llm` on every architecture: with every projection kept as stored, the folder
    /// reproduces the source model's logits (its extra norms, split fused tensors, RoPE divisors
    /// and embedding scale all written and read back); compressed to 4 bits, it loads, runs and
    /// stays close to the source.
    @Test(.enabled(if: pythonHasGGUF, "python3 with the gguf package is missing (pip install gguf)"))
    func everyArchitectureCompresses() throws {
        let dir = try scratchFolder("compress-architectures")
        #expect(runPython([script.path, dir]) != nil)
        var rng = TestRNG(s: 8)
        let calibration = (0..<2).map { _ in (0..<24).map { _ in Int32(3 + rng.next(below: 268)) } }
        let prompt: [Int32] = [1, 262, 263, 264, 270, 271, 40, 41]
        for arch in ["llama", "qwen2", "qwen3", "phi3", "gemma2", "gemma3"] {
            let path = dir + "/\(arch).gguf"
            let f = try GGUFFile(contentsOf: path)
            let source = try LanguageModel(gguf: path, keepBlocks: false)
            let want = try source.session(contextLength: 64, kvCache: .f32).forward(prompt)[0]
            for (label, keep) in [("kept", ["blk."]), ("int4", [])] {
                var o = LLMCompression.Options(format: .int4)
                o.keep = keep
                let r = try LLMCompression.compress(f, calibration: calibration, options: o)
                let out = dir + "/\(arch)-\(label)"
                try DecoderFolder.write(to: out, metadata: f, tensors: r.parts, report: r.report)
                let lm = try LanguageModel(contentsOf: out)
                let got = try lm.session(contextLength: 64, kvCache: .f32).forward(prompt)[0]
                if keep.isEmpty {
                    // Four bits on random weights move the logits, not their direction.
                    let dot = zip(got, want).reduce(0.0) { $0 + Double($1.0 * $1.1) }
                    let n = (got.reduce(0.0) { $0 + Double($1 * $1) } * want.reduce(0.0) { $0 + Double($1 * $1) }).squareRoot()
                    #expect(dot / n > 0.8, "\(arch) int4: cosine \(dot / n)")
                    #expect(r.projections.contains { $0.format == "ggml:q4_1" }, "\(arch): some projection in 4 bits")
                } else {
                    let worst = zip(got, want).map { abs($0 - $1) }.max()!
                    #expect(worst < 1e-3, "\(arch) kept: logits differ by \(worst)")
                }
            }
        }
        // Recovery trains the Llama block only: refused before any work elsewhere.
        var o = LLMCompression.Options(format: .int4)
        o.recoveryEpochs = 1
        #expect(throws: CondenseError.self) {
            try LLMCompression.compress(GGUFFile(contentsOf: dir + "/gemma3.gguf"), calibration: calibration, options: o)
        }
    }
}
