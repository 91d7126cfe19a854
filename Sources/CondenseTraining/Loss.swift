#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Losses with their gradients w.r.t. the logits, averaged over the batch.
public enum Loss {
    /// Row-wise softmax of `z / temperature`, computed stably (max subtracted).
    public static func softmax(_ z: [Float], rows: Int, classes: Int, temperature: Float = 1) -> [Float] {
        var p = [Float](repeating: 0, count: z.count)
        for i in 0..<rows {
            let row = i * classes
            var mx = -Float.infinity
            for c in 0..<classes { mx = max(mx, z[row + c] / temperature) }
            var sum: Float = 0
            for c in 0..<classes {
                let e = expf(z[row + c] / temperature - mx)
                p[row + c] = e
                sum += e
            }
            for c in 0..<classes { p[row + c] /= sum }
        }
        return p
    }

    /// Mean cross-entropy −log softmax(z)[y] and its gradient (softmax − one-hot)/rows.
    public static func crossEntropy(logits z: [Float], labels: [Int32], classes: Int) -> (loss: Float, grad: [Float]) {
        let rows = labels.count
        var g = softmax(z, rows: rows, classes: classes)
        var loss: Double = 0
        for i in 0..<rows {
            let y = Int(labels[i])
            loss -= Double(logf(max(g[i * classes + y], .leastNormalMagnitude)))
            g[i * classes + y] -= 1
        }
        let inv = 1 / Float(max(rows, 1))
        for i in g.indices { g[i] *= inv }
        return (Float(loss) * inv, g)
    }

    /// Knowledge distillation (Hinton et al.):
    /// `L = α·CE(y, softmax(z_s)) + β·T²·KL(p_t ‖ p_s)` with `p = softmax(z/T)`. The T² keeps the
    /// soft term's gradient, `β·T·(p_s − p_t)`, on the scale of the hard one as T grows.
    /// Returns the mean loss and its gradient w.r.t. the student's logits.
    public static func distillation(student zs: [Float], teacher zt: [Float], labels: [Int32], classes: Int,
                                    temperature t: Float, alpha: Float, beta: Float) -> (loss: Float, grad: [Float]) {
        let rows = labels.count
        let (ce, gce) = crossEntropy(logits: zs, labels: labels, classes: classes)
        let ps = softmax(zs, rows: rows, classes: classes, temperature: t)
        let pt = softmax(zt, rows: rows, classes: classes, temperature: t)
        var kl: Double = 0
        var g = [Float](repeating: 0, count: zs.count)
        let inv = 1 / Float(max(rows, 1))
        for i in 0..<zs.count {
            if pt[i] > 0 { kl += Double(pt[i]) * Double(logf(pt[i]) - logf(max(ps[i], .leastNormalMagnitude))) }
            g[i] = alpha * gce[i] + beta * t * (ps[i] - pt[i]) * inv
        }
        return (alpha * ce + beta * t * t * Float(kl) * Float(inv), g)
    }

    /// Mean squared error `γ·Σ(a − b)²/rows` and its gradient w.r.t. `a`.
    public static func meanSquared(_ a: [Float], _ b: [Float], rows: Int, weight gamma: Float) -> (loss: Float, grad: [Float]) {
        var loss: Double = 0
        var g = [Float](repeating: 0, count: a.count)
        let inv = 1 / Float(max(rows, 1))
        for i in a.indices {
            let d = a[i] - b[i]
            loss += Double(d * d)
            g[i] = 2 * gamma * d * inv
        }
        return (gamma * Float(loss) * inv, g)
    }
}
