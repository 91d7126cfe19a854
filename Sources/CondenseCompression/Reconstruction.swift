import Condense

/// Layer-wise reconstruction for pruning without retraining (SparseGPT, Frantar & Alistarh
/// 2023): pruning column by column, each removed weight's error is compensated on the weights not
/// yet visited through the inverse Hessian of the layer's reconstruction loss ‖X·Wᵀ − X·Ŵᵀ‖²,
/// H = XᵀX over calibration inputs. N:M masks are chosen per group with the OBS saliency
/// w²/[H⁻¹]ᵢᵢ². One-shot, no gradient: what a model that cannot be retrained here (a transformer
/// without its training data) needs.
public enum Reconstruction {
    /// Prunes `w` (`[N, K]`) to N:M along K with error compensation.
    /// - Parameters:
    ///   - w: The weights, `[N, K]`.
    ///   - gram: XᵀX, `K × K` row-major, summed over calibration rows.
    ///   - keep: Weights kept in each group of `m` along K (the N of N:M).
    ///   - m: The group size along K.
    ///   - blockSize: Columns compensated together (the lazy-batch width).
    ///   - damping: added to the diagonal as a fraction of its mean (numerical stability when
    ///     there are fewer calibration rows than K).
    /// - Throws: `CondenseError/shapeMismatch(_:)` for a Gram matrix of the wrong size,
    ///   `CondenseError/invalidArgument(_:)` for a bad N:M or a Hessian that is not positive definite.
    public static func pruneNM(_ w: Matrix<Float>, gram: [Double], n keep: Int = 2, m: Int = 4, damping: Double = 0.01,
                               blockSize: Int = 128) throws -> Matrix<Float> {
        let (rows, k) = (w.rows, w.columns)
        guard gram.count == k * k else { throw CondenseError.shapeMismatch("Gram matrix has \(gram.count) entries, needs \(k)×\(k)") }
        guard keep >= 1, keep <= m, k % m == 0 else {
            throw CondenseError.invalidArgument("N:M reconstruction needs 1 <= N <= M and K divisible by M, got \(keep):\(m), K = \(k)")
        }
        var h = gram
        var W = w.elements.map(Double.init)
        // Dead inputs: never active in calibration, their weights cannot matter.
        for i in 0..<k where h[i * k + i] == 0 {
            h[i * k + i] = 1
            for r in 0..<rows { W[r * k + i] = 0 }
        }
        let meanDiag = (0..<k).reduce(0.0) { $0 + h[$1 * k + $1] } / Double(k)
        for i in 0..<k { h[i * k + i] += damping * meanDiag }
        // U: upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ·U).
        guard var l = cholesky(h, k) else { throw CondenseError.invalidArgument("calibration Hessian is not positive definite") }
        let hinv = inverseFromCholesky(&l, k)
        guard let lower = cholesky(hinv, k) else { throw CondenseError.invalidArgument("inverse Hessian is not positive definite") }
        var u = [Double](repeating: 0, count: k * k)  // U = Lᵀ
        for i in 0..<k { for j in 0...i { u[j * k + i] = lower[i * k + j] } }

        var i1 = 0
        while i1 < k {
            let i2 = min(i1 + blockSize, k), b = i2 - i1
            var err = [Double](repeating: 0, count: rows * b)
            for r in 0..<rows {
                var keepMask = [Bool](repeating: true, count: b)
                for i in 0..<b {
                    let col = i1 + i
                    if col % m == 0 {
                        // Choose this group's kept weights by OBS saliency on the updated weights.
                        var saliency = [Double](repeating: 0, count: m)
                        for j in 0..<m {
                            let c = col + j
                            let d = u[c * k + c]
                            let v = W[r * k + c]
                            saliency[j] = v * v / (d * d)
                        }
                        let order = (0..<m).sorted { a, c in saliency[a] > saliency[c] || (saliency[a] == saliency[c] && a < c) }
                        for j in 0..<m where i + j < b { keepMask[i + j] = false }
                        for j in order.prefix(keep) where i + j < b { keepMask[i + j] = true }
                    }
                    let d = u[col * k + col]
                    let wv = W[r * k + col]
                    let q = keepMask[i] ? wv : 0
                    let e = (wv - q) / d
                    W[r * k + col] = q
                    err[r * b + i] = e
                    if e != 0 {
                        for j in (col + 1)..<i2 { W[r * k + j] -= e * u[col * k + j] }
                    }
                }
            }
            // Lazy batch update of the columns after the block.
            if i2 < k {
                for r in 0..<rows {
                    for i in 0..<b {
                        let e = err[r * b + i]
                        if e == 0 { continue }
                        let urow = (i1 + i) * k
                        for j in i2..<k { W[r * k + j] -= e * u[urow + j] }
                    }
                }
            }
            i1 = i2
        }
        return try Matrix(rows: rows, columns: k, elements: W.map(Float.init))
    }

    /// Lower Cholesky factor of a symmetric positive-definite `k × k` matrix, or nil.
    static func cholesky(_ a: [Double], _ k: Int) -> [Double]? {
        var l = [Double](repeating: 0, count: k * k)
        for j in 0..<k {
            var s = a[j * k + j]
            for p in 0..<j { s -= l[j * k + p] * l[j * k + p] }
            guard s > 0 else { return nil }
            let d = s.squareRoot()
            l[j * k + j] = d
            for i in (j + 1)..<max(j + 1, k) {
                var t = a[i * k + j]
                for p in 0..<j { t -= l[i * k + p] * l[j * k + p] }
                l[i * k + j] = t / d
            }
        }
        return l
    }

    /// A⁻¹ from A's lower Cholesky factor L (A⁻¹ = L⁻ᵀ·L⁻¹); L is overwritten by L⁻¹.
    static func inverseFromCholesky(_ l: inout [Double], _ k: Int) -> [Double] {
        // Invert L in place (lower triangular).
        for i in 0..<k {
            l[i * k + i] = 1 / l[i * k + i]
            for j in 0..<i {
                var s = 0.0
                for p in j..<i { s += l[i * k + p] * l[p * k + j] }
                l[i * k + j] = -s * l[i * k + i]
            }
        }
        var inv = [Double](repeating: 0, count: k * k)
        for i in 0..<k {
            for j in 0...i {
                var s = 0.0
                for p in i..<k { s += l[p * k + i] * l[p * k + j] }
                inv[i * k + j] = s
                inv[j * k + i] = s
            }
        }
        return inv
    }
}
