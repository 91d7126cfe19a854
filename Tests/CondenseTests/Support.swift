import Condense
import Foundation

/// Seeded generator for test data: failures must reproduce.
struct TestRNG {
    var state: UInt64
    init(_ seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return state
    }
    mutating func float() -> Float { Float(next() >> 40) / Float(1 << 23) - 1 }
    mutating func matrix(_ r: Int, _ c: Int) -> Matrix<Float> {
        var m = try! Matrix<Float>(rows: r, columns: c)
        m.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] = float() } }
        return m
    }
    mutating func vector(_ n: Int) -> [Float] { (0..<n).map { _ in float() } }
}

/// Double-precision reference with a per-element error bound from Σ|x·w|, so the tolerance
/// scales with the real rounding error of a length-K float dot product and no more.
struct Expected {
    let values: [Double]
    let bounds: [Double]
    let rows: Int, columns: Int

    init(x: Matrix<Float>, w: Matrix<Float>, bias: [Float]?, activation: Activation) {
        let (m, n, k) = (x.rows, w.rows, w.columns)
        var v = [Double](repeating: 0, count: m * n), b = v
        let xs = x.elements, ws = w.elements
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0, a = 0.0
                for l in 0..<k {
                    let p = Double(xs[i * k + l]) * Double(ws[j * k + l])
                    s += p
                    a += abs(p)
                }
                if let bias { s += Double(bias[j]); a += abs(Double(bias[j])) }
                v[i * n + j] = Double(activation.apply(Float(s)))
                // float accumulation, reordered by blocking: a few ulps of Σ|x·w| per element
                b[i * n + j] = 4e-6 * a + 1e-6 + (activation == .gelu ? 2e-6 * abs(s) : 0)
            }
        }
        values = v
        bounds = b
        rows = m
        columns = n
    }

    /// The first element outside its bound, described, or nil.
    func firstMismatch(_ y: Matrix<Float>) -> String? {
        guard y.rows == rows, y.columns == columns else { return "shape \(y.rows)×\(y.columns) != \(rows)×\(columns)" }
        let ys = y.elements
        for i in 0..<ys.count {
            let (got, want) = (Double(ys[i]), values[i])
            if want.isNaN && got.isNaN { continue }
            if abs(got - want) > bounds[i] || got.isNaN != want.isNaN {
                return "at (\(i / max(columns, 1)), \(i % max(columns, 1))): got \(got), want \(want) ± \(bounds[i])"
            }
        }
        return nil
    }
}

/// Every native ISA path this machine can run.
var runnableISAs: [ISA] { CondenseRuntime.runnableISAs }

/// A seeded random matrix in one call.
func randomMatrix(_ rows: Int, _ columns: Int, seed: UInt64) -> Matrix<Float> {
    var rng = TestRNG(seed)
    return rng.matrix(rows, columns)
}

/// The native kernels' per-row u8 activation quantization, modelled in Swift: the range with 0,
/// `s = span/255`, `z = rint(−lo/s)`, `q = clamp(rint(x·(1/s)) + z, 0, 255)`.
func quantizedRowModel(_ row: [Float]) -> (scale: Float, zeroPoint: Float, q: [Float]) {
    let lo = min(0, row.min() ?? 0), hi = max(0, row.max() ?? 0)
    let s: Float = hi > lo ? (hi - lo) / 255 : 1
    let z = max(0, min(255, (-lo / s).rounded(.toNearestOrEven)))
    let inv = 1 / s
    return (s, z, row.map { max(0, min(255, ($0 * inv).rounded(.toNearestOrEven) + z)) })
}
