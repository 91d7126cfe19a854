import CondenseCompression
import CondenseTraining
import Foundation

/// Everything `condense demo` measured, as written to report.json.
struct DemoReport: Codable {
    let teacherSizes: [Int]
    let train: Int, test: Int
    let cpu: String
    let threads: Int
    let teacherHistory: [EpochRecord]
    let teacher: Evaluation
    let pipelines: [PipelineResult]
    let budget: Double
    let withinBudget: String?
    let seconds: Double

    private func p50(_ e: Evaluation, _ b: Int) -> Double { e.latency.first { $0.batch == b }?.p50 ?? .nan }

    /// Rows: the teacher, then every pipeline's final model.
    private var rows: [(String, String, Evaluation)] {
        [("teacher (f32)", "train \(teacherHistory.count) ep", teacher)]
            + pipelines.map { ($0.name, $0.stages.map(\.stage).joined(separator: " → "), $0.final) }
    }

    func table() -> String {
        var out: [String] = []
        func f(_ v: Double, _ d: Int) -> String { String(format: "%.\(d)f", v) }
        out.append(pad("variant", 34) + pad("acc %", 7, right: true) + pad("Δ pt", 7, right: true) + pad("NLL", 7, right: true)
                   + pad("ECE %", 7, right: true) + pad("agree%", 7, right: true) + pad("file KB", 9, right: true) + pad("×small", 7, right: true)
                   + pad("b1 µs", 8, right: true) + pad("×fast", 6, right: true) + pad("b64 ms", 8, right: true) + "  formats")
        for (name, _, e) in rows {
            out.append(pad(name, 34) + pad(f(100 * e.accuracy, 2), 7, right: true) + pad(f(100 * (e.accuracy - teacher.accuracy), 2), 7, right: true)
                       + pad(f(e.nll, 3), 7, right: true) + pad(f(100 * e.ece, 2), 7, right: true)
                       + pad(e.agreement.map { f(100 * $0, 1) } ?? "-", 7, right: true)
                       + pad(f(Double(e.fileBytes) / 1024, 0), 9, right: true) + pad(f(Double(teacher.fileBytes) / Double(e.fileBytes), 1), 7, right: true)
                       + pad(f(p50(e, 1) * 1e6, 1), 8, right: true) + pad(f(p50(teacher, 1) / p50(e, 1), 1), 6, right: true)
                       + pad(f(p50(e, 64) * 1e3, 3), 8, right: true) + "  " + Array(Set(e.formats)).sorted().joined(separator: ","))
        }
        out.append("")
        out.append("per stage (accuracy after the stage, its change, and what the stage took):")
        for p in pipelines where p.stages.count > 1 {
            var prev = teacher.accuracy
            out.append("  \(p.name)")
            for s in p.stages {
                let e = s.evaluation
                out.append("    " + pad(s.stage, 58) + " acc " + f(100 * e.accuracy, 2) + " (" + (e.accuracy >= prev ? "+" : "") + f(100 * (e.accuracy - prev), 2)
                           + ")  " + f(Double(e.fileBytes) / 1024, 0) + " KB  b1 " + f(p50(e, 1) * 1e6, 1) + " µs  " + f(s.seconds, 1) + " s"
                           + (s.qatExportAgreement.map { "  QAT/export agreement " + f(100 * $0, 2) + " %" } ?? ""))
                prev = e.accuracy
            }
        }
        out.append("")
        out.append(contentsOf: findings())
        out.append("")
        out.append("placement of the full pipeline's layers (batch 1): " + (pipelines.last?.final.placement.joined(separator: "; ") ?? "-"))
        return out.joined(separator: "\n")
    }

    private func acc(_ name: String) -> Double? { pipelines.first { $0.name == name }?.final.accuracy }

    /// The measured conclusions, each computed from this run's figures.
    func findings() -> [String] {
        var out: [String] = []
        func pt(_ v: Double) -> String { String(format: "%.2f", 100 * v) }
        let t = teacher.accuracy
        if let p = acc("2:4 one-shot"), let q = acc("int8 PTQ"), let pq = acc("2:4 → int8, no recovery") {
            out.append("2:4 alone loses \(pt(t - p)) pt, int8 alone \(pt(t - q)) pt, both without recovery \(pt(t - pq)) pt"
                       + ((t - pq) > max(t - p, t - q) ? " — more than either alone." : "."))
        }
        if let p = acc("2:4 one-shot"), let q = acc("int4 PTQ"), let pq = acc("2:4 → int4, no recovery") {
            out.append("2:4 alone loses \(pt(t - p)) pt, int4 alone \(pt(t - q)) pt, both without recovery \(pt(t - pq)) pt"
                       + ((t - pq) > max(t - p, t - q) ? " — more than either alone." : "."))
        }
        if let p = acc("90 % one-shot"), let pq = acc("90 % → int8, no recovery") {
            out.append("90 % one-shot loses \(pt(t - p)) pt; followed by int8 \(pt(t - pq)) pt.")
        }
        if let pq = acc("2:4 → int8, no recovery"), let r = acc("2:4 → fine-tune → QAT int8") {
            out.append("Recovery (fine-tuning with masks, then QAT) wins back \(pt(r - pq)) pt over 2:4 → int8 without it (\(pt(t - r)) pt below the teacher).")
        }
        if let pq = acc("90 % → int8, no recovery"), let r = acc("90 % gradual → QAT int8") {
            out.append("Gradual pruning (cubic schedule) with QAT wins back \(pt(r - pq)) pt over one-shot 90 % → int8.")
        }
        if let full = pipelines.last {
            let e = full.final
            let small = Double(teacher.fileBytes) / Double(e.fileBytes)
            let fast = p50(teacher, 1) / p50(e, 1)
            out.append("Full pipeline (\(full.name)): \(pt(e.accuracy)) % vs teacher \(pt(t)) % (\(pt(e.accuracy - t)) pt), "
                       + String(format: "%.1f× smaller, %.1f× faster at batch 1; ECE %.2f %% vs teacher %.2f %%.", small, fast, 100 * e.ece, 100 * teacher.ece))
            out.append("Goals: teacher ≥ 97 %: \(t >= 0.97 ? "met" : "NOT met"); within 1.0 pt: \(t - e.accuracy <= 0.01 ? "met" : "NOT met"); "
                       + "≥ 8× smaller: \(small >= 8 ? "met" : "NOT met"); ≥ 4× faster: \(fast >= 4 ? "met" : "NOT met").")
        }
        out.append("Most compressed variant within δ = \(String(format: "%.1f", budget)) pt of the teacher: \(withinBudget ?? "none").")
        return out
    }

    // MARK: HTML

    func html() -> String {
        func esc(_ s: String) -> String { s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;") }
        var h = """
        <!doctype html><html><head><meta charset="utf-8"><title>Condense demo report</title>
        <style>body{font:14px system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
        table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}
        td:first-child,th:first-child{text-align:left}.note{color:#555}svg text{font:11px system-ui,sans-serif}</style></head><body>
        <h1>Condense demo: compressing an MNIST MLP</h1>
        <p class="note">\(train) images to train, \(test) to evaluate (MNIST test set, fixed split). Teacher \(teacherSizes.map(String.init).joined(separator: "-")),
        \(esc(cpu)), \(threads) thread(s). Every figure was measured in this run (\(String(format: "%.0f", seconds)) s).</p>
        <h2>Variants</h2><table><tr><th>variant</th><th>stages</th><th>accuracy %</th><th>Δ pt</th><th>NLL</th><th>ECE %</th><th>agreement %</th>
        <th>file KB</th><th>× smaller</th><th>batch 1 p50 / p95 µs</th><th>× faster</th><th>batch 64 p50 ms</th><th>formats</th></tr>
        """
        for (name, stages, e) in rows {
            let b1 = e.latency.first { $0.batch == 1 }
            h += "<tr><td>\(esc(name))</td><td style=\"text-align:left\">\(esc(stages))</td><td>\(String(format: "%.2f", 100 * e.accuracy))</td>"
                + "<td>\(String(format: "%+.2f", 100 * (e.accuracy - teacher.accuracy)))</td><td>\(String(format: "%.3f", e.nll))</td>"
                + "<td>\(String(format: "%.2f", 100 * e.ece))</td><td>\(e.agreement.map { String(format: "%.1f", 100 * $0) } ?? "-")</td>"
                + "<td>\(e.fileBytes / 1024)</td><td>\(String(format: "%.1f", Double(teacher.fileBytes) / Double(e.fileBytes)))</td>"
                + "<td>\(String(format: "%.1f / %.1f", (b1?.p50 ?? 0) * 1e6, (b1?.p95 ?? 0) * 1e6))</td>"
                + "<td>\(String(format: "%.1f", p50(teacher, 1) / p50(e, 1)))</td><td>\(String(format: "%.3f", p50(e, 64) * 1e3))</td>"
                + "<td>\(esc(Array(Set(e.formats)).sorted().joined(separator: ", ")))</td></tr>\n"
        }
        h += "</table><h2>Findings</h2><ul>" + findings().map { "<li>\(esc($0))</li>" }.joined() + "</ul>"
        h += "<h2>Accuracy, latency and size</h2><p class=\"note\">Batch-1 latency (log scale) against accuracy; circle area ∝ file size; the red line joins the Pareto front (no other variant is at least as fast and as accurate and better in one).</p>"
        h += paretoSVG()
        h += "<h2>Reliability</h2><p class=\"note\">Accuracy per confidence bin (15 bins) against the diagonal of perfect calibration: teacher and full pipeline.</p>"
        h += reliabilitySVG(teacher, "teacher") + reliabilitySVG(pipelines.last?.final ?? teacher, pipelines.last?.name ?? "")
        h += "<h2>Stages</h2>"
        for p in pipelines {
            h += "<h3>\(esc(p.name))</h3><table><tr><th>stage</th><th>accuracy %</th><th>ECE %</th><th>file KB</th><th>batch 1 µs</th><th>seconds</th><th>QAT/export agreement %</th><th>placement (batch 1)</th></tr>"
            for s in p.stages {
                let e = s.evaluation
                h += "<tr><td>\(esc(s.stage))</td><td>\(String(format: "%.2f", 100 * e.accuracy))</td><td>\(String(format: "%.2f", 100 * e.ece))</td>"
                    + "<td>\(e.fileBytes / 1024)</td><td>\(String(format: "%.1f", p50(e, 1) * 1e6))</td><td>\(String(format: "%.1f", s.seconds))</td>"
                    + "<td>\(s.qatExportAgreement.map { String(format: "%.2f", 100 * $0) } ?? "-")</td><td style=\"text-align:left\">\(e.placement.map(esc).joined(separator: "<br>"))</td></tr>"
            }
            h += "</table>"
        }
        h += "<p class=\"note\">MNIST: Yann LeCun, Corinna Cortes and Christopher J. C. Burges, CC BY-SA 3.0.</p></body></html>\n"
        return h
    }

    private func paretoSVG() -> String {
        let pts = rows.enumerated().map { (i, r) in (n: i + 1, name: r.0, lat: p50(r.2, 1), acc: r.2.accuracy, bytes: Double(r.2.fileBytes)) }
            .filter { $0.lat > 0 && $0.lat.isFinite }
        guard !pts.isEmpty else { return "" }
        let (w, hgt, m, legend) = (1040.0, 420.0, 60.0, 420.0)
        let lo = log10(pts.map(\.lat).min()! * 0.8), hi = log10(pts.map(\.lat).max()! * 1.25)
        // The axis shows the interesting range (teacher − 6 pt and up); variants below it sit on
        // the bottom edge as ▼ with their accuracy in the legend.
        let amax = min(1, pts.map(\.acc).max()! + 0.003)
        let amin = max(pts.map(\.acc).min()! - 0.003, teacher.accuracy - 0.06)
        let plotW = w - legend
        func x(_ l: Double) -> Double { m + (log10(l) - lo) / max(hi - lo, 1e-9) * (plotW - 1.5 * m) }
        func y(_ a: Double) -> Double { hgt - m - (max(a, amin) - amin) / max(amax - amin, 1e-9) * (hgt - 2 * m) }
        func esc(_ t: String) -> String { t.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;") }
        var s = "<svg width=\"\(Int(w))\" height=\"\(Int(hgt))\" xmlns=\"http://www.w3.org/2000/svg\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/>"
        s += "<line x1=\"\(m)\" y1=\"\(hgt - m)\" x2=\"\(plotW - m / 2)\" y2=\"\(hgt - m)\" stroke=\"#333\"/><line x1=\"\(m)\" y1=\"\(m)\" x2=\"\(m)\" y2=\"\(hgt - m)\" stroke=\"#333\"/>"
        s += "<text x=\"\(plotW / 2)\" y=\"\(hgt - 15)\" text-anchor=\"middle\">batch-1 latency p50 (µs, log scale)</text><text x=\"15\" y=\"\(hgt / 2)\" transform=\"rotate(-90 15 \(hgt / 2))\" text-anchor=\"middle\">accuracy %</text>"
        var tick = pow(10, floor(lo))
        while tick <= pow(10, hi) {
            for k in [1.0, 2, 5] where log10(tick * k) >= lo && log10(tick * k) <= hi {
                s += "<text x=\"\(x(tick * k))\" y=\"\(hgt - m + 15)\" text-anchor=\"middle\">\(String(format: "%g", tick * k * 1e6))</text>"
            }
            tick *= 10
        }
        for i in 0...4 {
            let a = amin + Double(i) / 4 * (amax - amin)
            s += "<text x=\"\(m - 6)\" y=\"\(y(a) + 4)\" text-anchor=\"end\">\(String(format: "%.1f", 100 * a))</text>"
        }
        let front = pts.filter { p in !pts.contains { q in q.lat <= p.lat && q.acc >= p.acc && (q.lat < p.lat || q.acc > p.acc) } }.sorted { $0.lat < $1.lat }
        s += "<polyline fill=\"none\" stroke=\"#c33\" stroke-width=\"1.5\" points=\"" + front.map { "\(x($0.lat)),\(y($0.acc))" }.joined(separator: " ") + "\"/>"
        let maxB = pts.map(\.bytes).max()!
        for p in pts {
            let r = 4 + 14 * (p.bytes / maxB).squareRoot()
            let below = p.acc < amin
            s += below
                ? "<text x=\"\(x(p.lat))\" y=\"\(hgt - m - 4)\" text-anchor=\"middle\" fill=\"#c33\">▼\(p.n)</text>"
                : "<circle cx=\"\(x(p.lat))\" cy=\"\(y(p.acc))\" r=\"\(r)\" fill=\"#3a7bd5\" fill-opacity=\"0.3\" stroke=\"#3a7bd5\"/><text x=\"\(x(p.lat))\" y=\"\(y(p.acc) + 4)\" text-anchor=\"middle\">\(p.n)</text>"
        }
        for (i, p) in pts.enumerated() {
            let onFront = front.contains { $0.n == p.n }
            s += "<text x=\"\(plotW + 5)\" y=\"\(m + Double(i) * 17)\"\(onFront ? " fill=\"#c33\"" : "")>\(p.n). \(esc(p.name)) — \(String(format: "%.2f", 100 * p.acc)) %, \(Int(p.bytes / 1024)) KB</text>"
        }
        s += "<text x=\"\(plotW + 5)\" y=\"\(m + Double(pts.count) * 17 + 10)\" fill=\"#c33\">red: on the Pareto front</text>"
        return s + "</svg>"
    }

    private func reliabilitySVG(_ e: Evaluation, _ title: String) -> String {
        let (w, h, m) = (360.0, 320.0, 40.0)
        var s = "<svg width=\"\(Int(w))\" height=\"\(Int(h))\" xmlns=\"http://www.w3.org/2000/svg\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/>"
        s += "<text x=\"\(w / 2)\" y=\"16\" text-anchor=\"middle\">\(title.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")) — ECE \(String(format: "%.2f", 100 * e.ece)) %</text>"
        s += "<line x1=\"\(m)\" y1=\"\(h - m)\" x2=\"\(w - m)\" y2=\"\(m)\" stroke=\"#999\" stroke-dasharray=\"4\"/>"
        let bw = (w - 2 * m) / Double(max(e.reliability.count, 1))
        for (i, b) in e.reliability.enumerated() where b.count > 0 {
            let bh = b.accuracy * (h - 2 * m)
            s += "<rect x=\"\(m + Double(i) * bw + 1)\" y=\"\(h - m - bh)\" width=\"\(bw - 2)\" height=\"\(bh)\" fill=\"#3a7bd5\" fill-opacity=\"0.6\"><title>\(b.count) predictions, confidence \(String(format: "%.3f", b.confidence)), accuracy \(String(format: "%.3f", b.accuracy))</title></rect>"
        }
        s += "<line x1=\"\(m)\" y1=\"\(h - m)\" x2=\"\(w - m)\" y2=\"\(h - m)\" stroke=\"#333\"/><line x1=\"\(m)\" y1=\"\(m)\" x2=\"\(m)\" y2=\"\(h - m)\" stroke=\"#333\"/>"
        for v in [0.0, 0.5, 1.0] {
            s += "<text x=\"\(m + v * (w - 2 * m))\" y=\"\(h - m + 14)\" text-anchor=\"middle\">\(v)</text>"
            s += "<text x=\"\(m - 4)\" y=\"\(h - m - v * (h - 2 * m) + 4)\" text-anchor=\"end\">\(v)</text>"
        }
        s += "<text x=\"\(w / 2)\" y=\"\(h - 10)\" text-anchor=\"middle\">confidence</text><text x=\"12\" y=\"\(h / 2)\" transform=\"rotate(-90 12 \(h / 2))\" text-anchor=\"middle\">accuracy</text>"
        return s + "</svg>"
    }
}
