import Condense
import Foundation

/// Perplexity as llama.cpp's `llama-perplexity` computes it: the text's tokens in non-overlapping
/// windows of `context` tokens (BOS first in each window when the model adds one), each window run
/// from an empty cache, and only the second half of each window scored (so every scored token has
/// at least `context/2` tokens before it).
///
/// ```swift
/// let r = try Perplexity.measure(lm, text: wiki, context: 512)
/// print(r.perplexity, r.scored)
/// ```
public enum Perplexity {
    /// A perplexity and how it was measured (tokens scored, windows).
    public struct Result: Sendable, Equatable {
        public let perplexity: Double
        /// Tokens in the text.
        public let tokens: Int
        /// Tokens whose probability was scored.
        public let scored: Int
        public let windows: Int
        /// The most likely next token at each scored position, in order (for teacher-forced
        /// agreement with another implementation).
        public let top1: [Int32]
    }

    /// - Throws: `CondenseError/invalidInput(_:)` when the text has fewer than `2 × context`
    ///   tokens (llama-perplexity's minimum) or `context` is outside 4…the model's context.
    public static func measure(_ lm: LanguageModel, text: String, context: Int, kvCache: KVCacheType = .f16, valueCache: KVCacheType? = nil,
                               progress: ((Int, Int, Double) -> Void)? = nil) throws -> Result {
        guard context >= 4, context <= lm.config.contextLength else {
            throw CondenseError.invalidInput("context must be in 4…\(lm.config.contextLength), got \(context)")
        }
        // As llama-perplexity tokenizes: BOS (and EOS) as the model says, the text as text.
        let tokens = lm.tokenizer.encode(text, addSpecial: true, parseSpecial: false)
        let windows = tokens.count / context
        guard windows >= 1, tokens.count >= 2 * context else {
            throw CondenseError.invalidInput("the text has \(tokens.count) tokens; at least \(2 * context) are needed for a context of \(context)")
        }
        let session = try lm.session(contextLength: context, kvCache: kvCache, valueCache: valueCache)
        var nll = 0.0, scored = 0
        var top1: [Int32] = []
        for w in 0..<windows {
            var ids = Array(tokens[(w * context)..<((w + 1) * context)])
            if lm.tokenizer.addBOS, let bos = lm.tokenizer.bos { ids[0] = bos }
            session.reset()
            let logits = try session.forward(ids, allLogits: true)
            for j in (context / 2)..<(context - 1) {
                let row = logits[j]
                var best = 0
                for i in row.indices where row[i] > row[best] { best = i }
                top1.append(Int32(best))
                let mx = row[best]
                var sum = 0.0
                for v in row { sum += Double(expf(v - mx)) }
                let target = Int(tokens[w * context + j + 1])
                nll -= Double(row[target] - mx) - log(sum)
                scored += 1
            }
            progress?(w + 1, windows, exp(nll / Double(scored)))
        }
        return Result(perplexity: exp(nll / Double(scored)), tokens: tokens.count, scored: scored, windows: windows, top1: top1)
    }
}
