@testable import CondenseInference
import CondenseTestSupport
import Foundation
import Testing

@Suite struct SamplerTests {
    /// The plain definition: sort the whole vocabulary, top-k, softmax, top-p, min-p, draw.
    static func reference(_ l: [Float], _ o: GenerationOptions, _ u: Double) -> Int32 {
        var cand = l.indices.map { ($0, l[$0] / o.temperature) }.sorted { $0.1 > $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
        if o.topK > 0 { cand = Array(cand.prefix(o.topK)) }
        let mx = cand[0].1
        var probs = cand.map { Double(expf($0.1 - mx)) }
        let total = probs.reduce(0, +)
        probs = probs.map { $0 / total }
        if o.topP < 1 {
            var acc = 0.0, n = 0
            while n < probs.count { acc += probs[n]; n += 1; if acc >= Double(o.topP) { break } }
            cand = Array(cand.prefix(n)); probs = Array(probs.prefix(n))
        }
        if o.minP > 0 {
            let floor = probs[0] * Double(o.minP)
            let n = max(1, probs.firstIndex { $0 < floor } ?? probs.count)
            cand = Array(cand.prefix(n)); probs = Array(probs.prefix(n))
        }
        var r = u * probs.reduce(0, +)
        for (i, p) in probs.enumerated() {
            r -= p
            if r <= 0 { return Int32(cand[i].0) }
        }
        return Int32(cand[cand.count - 1].0)
    }

    /// The one-pass top-k and the min-p prefilter pick exactly what sorting the whole vocabulary
    /// picks, for every setting and many draws (including tied logits).
    @Test func fastPathsEqualTheFullSort() {
        var rng = TestRNG(s: 3)
        for trial in 0..<30 {
            var logits = (0..<5000).map { _ in rng.next() * 8 }
            if trial % 5 == 0 { for i in stride(from: 0, to: 5000, by: 7) { logits[i] = 3.5 } }   // ties
            for (k, p, m) in [(0, 1.0, 0.05), (40, 0.95, 0.05), (1, 1.0, 0.0), (0, 0.9, 0.0), (0, 1.0, 0.5), (3, 0.5, 0.2), (0, 1.0, 0.0)] {
                var o = GenerationOptions()
                o.temperature = trial % 2 == 0 ? 0.8 : 1.7
                o.topK = k; o.topP = Float(p); o.minP = Float(m); o.seed = UInt64(trial)
                var fast = Sampler(o), slow = Sampler(o)
                let got = fast.sample(logits, seen: [])
                let want = Self.reference(logits, o, slow.uniform())
                #expect(got == want, "trial \(trial) k \(k) p \(p) m \(m)")
            }
        }
    }
}
