import CondenseCompression
import Foundation

/// `report.html` of `compress --llm` with a budget: what the choice cost and bought, the
/// speed/perplexity trade-off of the models measured on the way, and every projection's
/// sensitivity.
struct BudgetReport {
    let result: LLMBudget.Result
    let source: String

    private func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
    private func f(_ v: Double, _ d: Int) -> String { String(format: "%.\(d)f", v) }
    private func mb(_ b: Int) -> String { f(Double(b) / 1e6, 1) + " MB" }

    func html() -> String {
        let r = result
        let goal: String
        switch r.goal {
        case let .maxPerplexityIncrease(p): goal = "validation perplexity at most \(f(100 * p, 1)) % above the source's"
        case let .targetSpeedup(s): goal = "generation at least \(f(s, 2))× the source's speed"
        }
        var h = """
        <!doctype html><html><head><meta charset="utf-8"><title>Condense: \(esc(source)) to a budget</title>
        <style>body{font:14px system-ui,sans-serif;margin:2em;max-width:980px}table{border-collapse:collapse;margin:1em 0}
        td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}.note{color:#555}</style></head><body>
        <h1>\(esc(source)), compressed to a budget</h1>
        <p>Goal: \(goal). Measured on \(r.validationTokens) validation tokens the calibration did not use; speeds are one token at a
        time, the source and the result interleaved in the same run.</p>
        <table><tr><th></th><th>source</th><th>compressed</th><th>ratio</th></tr>
        <tr><td>validation perplexity</td><td>\(f(r.sourcePerplexity, 3))</td><td>\(f(r.perplexity, 3))</td><td>\(f(r.perplexity / r.sourcePerplexity, 3))×</td></tr>
        <tr><td>generation tok/s</td><td>\(f(r.sourceSpeed, 1))</td><td>\(f(r.speed, 1))</td><td>\(f(r.speedup, 2))×</td></tr>
        <tr><td>weights read per token</td><td>\(mb(r.sourceBytes))</td><td>\(mb(r.bytes))</td><td>\(f(Double(r.bytes) / Double(r.sourceBytes), 3))×</td></tr>
        <tr><td>of which the head</td><td>\(mb(r.sourceHeadBytes))</td><td>\(mb(r.headBytes))</td><td></td></tr>
        <tr><td>of which the projections</td><td>\(mb(r.sourceBytes - r.sourceHeadBytes))</td><td>\(mb(r.bytes - r.headBytes))</td><td></td></tr>
        </table>
        <p>Attribution: the head's change alone gives \(f(r.headOnlyPerplexity / r.sourcePerplexity, 3))× the source's perplexity, the
        projections' changes alone \(f(r.projectionsOnlyPerplexity / r.sourcePerplexity, 3))×.</p>
        <h2>Trade-off</h2><p class="note">Models along the choice order (cheapest KL per byte saved first), each timed against the
        source (one repetition); the chosen one in red. Up and left costs perplexity for little speed.</p>
        """
        h += chart()
        h += "<table><tr><th>model</th><th>MB per token</th><th>perplexity</th><th>× source</th><th>speed-up</th></tr>"
        for p in r.frontier {
            h += "<tr><td>\(esc(p.label))</td><td>\(f(Double(p.bytesPerToken) / 1e6, 1))</td><td>\(f(p.perplexity, 3))</td>"
                + "<td>\(f(p.perplexity / r.sourcePerplexity, 3))</td><td>\(p.speedup.map { f($0, 2) + "×" } ?? "")</td></tr>"
        }
        h += "</table>"
        let chosen = Dictionary(r.choice.map { ($0.name, $0.format) }, uniquingKeysWith: { a, _ in a })
        h += "<h2>Sensitivity</h2><p class=\"note\">Each candidate alone in the source model: KL from the source's next-token distribution "
            + "(nats per token) and bytes read per token. Bold: chosen.</p>"
        h += "<table><tr><th>tensor</th><th>stored bytes</th><th>format</th><th>bytes</th><th>KL</th><th>relative output error</th></tr>"
        for s in r.sensitivities {
            let bold = chosen[s.name] == LLMBudget.label(s.candidate)
            let cell = { (t: String) in bold ? "<b>\(t)</b>" : t }
            h += "<tr><td>\(cell(esc(s.name)))</td><td>\(s.sourceBytes)</td><td>\(cell(s.candidate.rawValue))</td><td>\(s.bytes)</td>"
                + "<td>\(String(format: "%.3e", s.kl))</td><td>\(String(format: "%.3e", s.relativeError))</td></tr>"
        }
        h += "</table>"
        h += "<p>Steps taken: \(r.steps.taken) of the \(r.steps.of) the candidates offer, chosen by measuring models along the order.</p>"
        return h + "</body></html>\n"
    }

    /// Speed-up (x) against the perplexity ratio (y).
    private func chart() -> String {
        let pts = result.frontier.compactMap { p in p.speedup.map { (x: $0, y: p.perplexity / result.sourcePerplexity, p: p) } }
        guard !pts.isEmpty else { return "" }
        let (w, hgt, m) = (640.0, 360.0, 50.0)
        let (x0, x1) = (min(pts.map(\.x).min()!, 1) * 0.97, max(pts.map(\.x).max()!, 1) * 1.03)
        let (y0, y1) = (min(pts.map(\.y).min()!, 1) * 0.98, pts.map(\.y).max()! * 1.05)
        func x(_ v: Double) -> Double { m + (v - x0) / max(x1 - x0, 1e-9) * (w - 2 * m) }
        func y(_ v: Double) -> Double { hgt - m - (v - y0) / max(y1 - y0, 1e-9) * (hgt - 2 * m) }
        var s = "<svg width=\"\(Int(w))\" height=\"\(Int(hgt))\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"11\">"
        s += "<line x1=\"\(m)\" y1=\"\(hgt - m)\" x2=\"\(w - m)\" y2=\"\(hgt - m)\" stroke=\"#333\"/><line x1=\"\(m)\" y1=\"\(m)\" x2=\"\(m)\" y2=\"\(hgt - m)\" stroke=\"#333\"/>"
        s += "<text x=\"\(w / 2)\" y=\"\(hgt - 12)\" text-anchor=\"middle\">generation speed-up over the source (×)</text>"
        s += "<text x=\"14\" y=\"\(hgt / 2)\" transform=\"rotate(-90 14 \(hgt / 2))\" text-anchor=\"middle\">validation perplexity (× the source's)</text>"
        for i in 0...4 {
            let vx = x0 + (x1 - x0) * Double(i) / 4, vy = y0 + (y1 - y0) * Double(i) / 4
            s += "<text x=\"\(x(vx))\" y=\"\(hgt - m + 14)\" text-anchor=\"middle\">\(f(vx, 2))</text>"
            s += "<text x=\"\(m - 4)\" y=\"\(y(vy) + 4)\" text-anchor=\"end\">\(f(vy, 2))</text>"
        }
        let line = pts.filter { !$0.p.chosen }.map { "\(x($0.x)),\(y($0.y))" }.joined(separator: " ")
        s += "<polyline points=\"\(line)\" fill=\"none\" stroke=\"#99b\"/>"
        for p in pts {
            s += "<circle cx=\"\(x(p.x))\" cy=\"\(y(p.y))\" r=\"\(p.p.chosen ? 6 : 4)\" fill=\"\(p.p.chosen ? "#c22" : "#337")\"><title>\(esc(p.p.label))</title></circle>"
        }
        return s + "</svg>"
    }
}
