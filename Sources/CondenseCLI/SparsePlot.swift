import Foundation

/// An SVG chart of sparse speedup over dense against sparsity: one panel per layer shape, one
/// line per batch size M (CSR), 2:4 as a diamond at 50 %, a dashed line at 1× (where sparse
/// starts to pay). Written by hand to keep the CLI free of plotting dependencies.
struct SparsePlot {
    let records: [[String: Any]]
    let batches: [Int]

    static let colors = ["#1b6ca8", "#d1495b", "#2e8b57", "#edae49", "#6a4c93", "#00798c"]

    func write(to path: String) throws {
        let shapes = records.reduce(into: [(Int, Int)]()) { acc, r in
            let s = (r["n"] as! Int, r["k"] as! Int)
            if !acc.contains(where: { $0 == s }) { acc.append(s) }
        }
        let sparse = records.filter { ($0["format"] as! String) != "dense" }
        let speedups = sparse.map { $0["speedup_vs_dense"] as! Double }.filter { $0 > 0 }
        let yMin = pow(10, floor(log10(min(speedups.min() ?? 0.1, 0.5))))
        let yMax = pow(10, ceil(log10(max(speedups.max() ?? 10, 2))))
        let (pw, ph, left, top) = (360.0, 300.0, 70.0, 72.0)
        let width = left + Double(shapes.count) * (pw + 40) + 130, height = top + ph + 70
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(left)" y="24" font-size="16" font-weight="bold">Sparse speedup over Condense's dense f32 GEMM (same run)</text>
        <text x="\(left)" y="42" fill="#555">CSR lines by batch size M; ◆ = 2:4 at 50 %; above the dashed line sparse is faster</text>

        """
        func y(_ v: Double) -> Double { top + ph * (1 - (log10(v) - log10(yMin)) / (log10(yMax) - log10(yMin))) }
        for (si, shape) in shapes.enumerated() {
            let x0 = left + Double(si) * (pw + 40)
            func x(_ sp: Double) -> Double { x0 + pw * (sp - 0.45) / 0.55 }
            s += "<text x=\"\(x0 + pw / 2)\" y=\"\(top - 6)\" text-anchor=\"middle\" font-weight=\"bold\">N=\(shape.0) K=\(shape.1)</text>\n"
            s += "<rect x=\"\(x0)\" y=\"\(top)\" width=\"\(pw)\" height=\"\(ph)\" fill=\"none\" stroke=\"#999\"/>\n"
            var tick = yMin
            while tick <= yMax * 1.0001 {
                for mult in [1.0, 2.0, 5.0] where tick * mult <= yMax * 1.0001 {
                    let yy = y(tick * mult)
                    s += "<line x1=\"\(x0)\" x2=\"\(x0 + pw)\" y1=\"\(yy)\" y2=\"\(yy)\" stroke=\"#eee\"/>\n"
                    if si == 0 { s += "<text x=\"\(x0 - 6)\" y=\"\(yy + 4)\" text-anchor=\"end\">\(label(tick * mult))×</text>\n" }
                }
                tick *= 10
            }
            for sp in [0.5, 0.6, 0.7, 0.8, 0.9, 1.0] {
                s += "<text x=\"\(x(sp))\" y=\"\(top + ph + 16)\" text-anchor=\"middle\">\(Int(sp * 100)) %</text>\n"
            }
            s += "<text x=\"\(x0 + pw / 2)\" y=\"\(top + ph + 34)\" text-anchor=\"middle\" fill=\"#555\">sparsity</text>\n"
            s += "<line x1=\"\(x0)\" x2=\"\(x0 + pw)\" y1=\"\(y(1))\" y2=\"\(y(1))\" stroke=\"#333\" stroke-dasharray=\"6,4\"/>\n"
            for (mi, m) in batches.enumerated() {
                let color = Self.colors[mi % Self.colors.count]
                let pts = sparse.filter { ($0["format"] as! String) == "csr" && ($0["m"] as! Int) == m
                    && ($0["n"] as! Int) == shape.0 && ($0["k"] as! Int) == shape.1 }
                    .map { ($0["sparsity"] as! Double, $0["speedup_vs_dense"] as! Double) }.sorted { $0.0 < $1.0 }
                let path = pts.map { "\(x($0.0)),\(y(max($0.1, yMin)))" }.joined(separator: " ")
                s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
                for p in pts { s += "<circle cx=\"\(x(p.0))\" cy=\"\(y(max(p.1, yMin)))\" r=\"3\" fill=\"\(color)\"/>\n" }
                if let d = sparse.first(where: { ($0["format"] as! String) == "2:4" && ($0["m"] as! Int) == m
                    && ($0["n"] as! Int) == shape.0 && ($0["k"] as! Int) == shape.1 }) {
                    let (cx, cy) = (x(0.5), y(max(d["speedup_vs_dense"] as! Double, yMin)))
                    s += "<polygon points=\"\(cx),\(cy - 6) \(cx + 6),\(cy) \(cx),\(cy + 6) \(cx - 6),\(cy)\" fill=\"\(color)\" stroke=\"black\" stroke-width=\"0.5\"/>\n"
                }
            }
        }
        s += "<text x=\"20\" y=\"\(top + ph / 2)\" transform=\"rotate(-90 20 \(top + ph / 2))\" text-anchor=\"middle\" fill=\"#555\">speedup over dense (log scale)</text>\n"
        let lx = left + Double(shapes.count) * (pw + 40)
        for (mi, m) in batches.enumerated() {
            let yy = top + 20 + Double(mi) * 20
            s += "<line x1=\"\(lx)\" x2=\"\(lx + 24)\" y1=\"\(yy)\" y2=\"\(yy)\" stroke=\"\(Self.colors[mi % Self.colors.count])\" stroke-width=\"3\"/>\n"
            s += "<text x=\"\(lx + 30)\" y=\"\(yy + 4)\">M = \(m)</text>\n"
        }
        s += "</svg>\n"
        try s.write(toFile: path, atomically: true, encoding: .utf8)
    }

    private func label(_ v: Double) -> String { v >= 1 ? String(Int(v.rounded())) : String(format: "%g", v) }
}
