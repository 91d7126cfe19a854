import Condense
import CondenseTraining
import Foundation

/// A 4-bit grid for ``Reconstruction/compress(_:gram:prune24:mask:grid:damping:blockSize:)``:
/// how a group of weights along K becomes codes 0…15.
public enum WeightGrid: String, Sendable, CaseIterable {
    /// 2:4 with signed codes and one f16 scale per 64 columns (`Sparse24Int4Weights`).
    case s24q4
    /// ggml's Q4_0: one f16 scale per 32, `d = v/−8` (v the value of largest magnitude), w = d·(c − 8).
    case q4_0
    /// ggml's Q4_1: f16 scale and minimum per 32, `d = (max − min)/15`, w = m + d·c.
    case q4_1

    /// Columns per scale.
    public var group: Int { self == .s24q4 ? 64 : 32 }
}

/// Weights after ``Reconstruction/compress(_:gram:prune24:mask:grid:damping:blockSize:)``.
public struct ReconstructedWeights: Sendable {
    /// The weights as they will run: pruned ones 0, the others on the grid.
    public let weights: Matrix<Float>
    /// Kept positions (all true without pruning).
    public let mask: [Bool]
    /// Per row and column: the 4-bit code (0…15) on the grid; empty without a grid.
    public let codes: [UInt8]
    /// Per row and group of `grid.group` columns (f16-exact); empty without a grid.
    public let scales: [Float]
    /// Q4_1's minimum per row and group; empty otherwise.
    public let mins: [Float]
}

extension Reconstruction {
    /// One pass over the columns of `w` (`[N, K]`) that prunes to 2:4 (SparseGPT's OBS
    /// saliency), or keeps a given mask, and rounds the kept weights to a 4-bit grid (GPTQ),
    /// compensating every removed or rounded weight's error on the columns not yet visited
    /// through the inverse Hessian of ‖X·Wᵀ − X·Ŵᵀ‖² (H = XᵀX, `gram`). A grid's group chooses its
    /// scale when the pass reaches it, from the compensated weights (2:4: the group's masks are
    /// chosen then too, so that the scale sees only kept weights).
    ///
    /// The columns are held transposed, so each step is a contiguous update over the rows, and
    /// the lazy update of the columns after a block of 128 is one f32 GEMM.
    ///
    /// ```swift
    /// let c = try Reconstruction.compress(w, gram: xtx, prune24: true, grid: .s24q4)
    /// let layer = try GGUFBlockLinear(Sparse24Int4Weights(quantizing: c.weights, scales: c.scales))
    /// ```
    /// - Throws: `CondenseError/shapeMismatch(_:)` for a Gram matrix or mask of the wrong size,
    ///   `CondenseError/invalidArgument(_:)` for K not a multiple of the group (or of 4 with
    ///   pruning), a mask that is not 2:4 with `prune24`, or a Hessian that is not positive definite.
    public static func compress(_ w: Matrix<Float>, gram: [Double], prune24: Bool, mask fixed: [Bool]? = nil,
                                grid: WeightGrid?, damping: Double = 0.01, blockSize: Int = 128) throws -> ReconstructedWeights {
        guard gram.count == w.columns * w.columns else {
            throw CondenseError.shapeMismatch("Gram matrix has \(gram.count) entries, needs \(w.columns)×\(w.columns)")
        }
        return try compress(w, hessian: HessianFactor(gram: gram, k: w.columns, damping: damping), prune24: prune24, mask: fixed,
                            grid: grid, blockSize: blockSize)
    }

    /// The same with the inverse Hessian's factor computed once (projections that share an
    /// input share it: Q, K, V; gate, up).
    public static func compress(_ w: Matrix<Float>, hessian hf: HessianFactor, prune24: Bool, mask fixed: [Bool]? = nil,
                                grid: WeightGrid?, blockSize: Int = 128) throws -> ReconstructedWeights {
        let (rows, k) = (w.rows, w.columns)
        guard hf.k == k else { throw CondenseError.shapeMismatch("Hessian of \(hf.k) inputs for \(rows)×\(k) weights") }
        if let fixed, fixed.count != rows * k { throw CondenseError.shapeMismatch("mask of \(fixed.count) for \(rows)×\(k) weights") }
        if prune24 || grid == .s24q4 { guard k % 4 == 0 else { throw CondenseError.invalidArgument("2:4 needs K divisible by 4, got \(k)") } }
        if let grid { guard k % grid.group == 0 else { throw CondenseError.invalidArgument("\(grid) needs K divisible by \(grid.group), got \(k)") } }
        let u = hf.u
        // Columns × rows.
        var wt = [Float](repeating: 0, count: k * rows)
        w.withUnsafeBufferPointer { p in wt.withUnsafeMutableBufferPointer { t in TrainGEMM.transpose(p.baseAddress!, rows: rows, columns: k, into: t.baseAddress!) } }
        for i in 0..<k where hf.dead[i] { for r in 0..<rows { wt[i * rows + r] = 0 } }   // never active in calibration
        var keep = [Bool](repeating: true, count: k * rows)
        if let fixed { for r in 0..<rows { for c in 0..<k { keep[c * rows + r] = fixed[r * k + c] } } }
        let groups = grid.map { k / $0.group } ?? 0
        var codes = [UInt8](repeating: 0, count: grid == nil ? 0 : k * rows)
        var scales = [Float](repeating: 0, count: rows * groups), mins = [Float](repeating: 0, count: grid == .q4_1 ? rows * groups : 0)
        let choose = prune24 && fixed == nil
        var gscale = [Float](repeating: 0, count: rows), gmin = [Float](repeating: 0, count: rows)

        /// 2:4 masks of columns c0..<c1 (multiples of 4) by saliency w²/[H⁻¹]ᵢᵢ² on the current weights.
        func chooseMasks(_ c0: Int, _ c1: Int) {
            var c = c0
            while c < c1 {
                let d = (0..<4).map { Float(u[(c + $0) * k + c + $0]) }
                for r in 0..<rows {
                    var s = SIMD4<Float>()
                    for j in 0..<4 { let v = wt[(c + j) * rows + r]; s[j] = v * v / (d[j] * d[j]) }
                    // The two largest (ties to the first): the best, then the best of the rest.
                    var a = 0
                    for j in 1..<4 where s[j] > s[a] { a = j }
                    var b = a == 0 ? 1 : 0
                    for j in 0..<4 where j != a && s[j] > s[b] { b = j }
                    for j in 0..<4 { keep[(c + j) * rows + r] = j == a || j == b }
                }
                c += 4
            }
        }
        /// The grid of the group starting at column c0, from the current (kept) weights.
        func chooseGrid(_ g: WeightGrid, _ c0: Int) {
            for r in 0..<rows {
                var lo = Float.infinity, hi = -Float.infinity, vmax: Float = 0
                for c in c0..<(c0 + g.group) where keep[c * rows + r] {
                    let v = wt[c * rows + r]
                    lo = min(lo, v); hi = max(hi, v)
                    if abs(v) > abs(vmax) { vmax = v }
                }
                if lo > hi { lo = 0; hi = 0 }
                switch g {
                case .s24q4, .q4_0: gscale[r] = Float(Float16(vmax / -8)); gmin[r] = 0
                case .q4_1:
                    gscale[r] = Float(Float16((hi - lo) / 15)); gmin[r] = Float(Float16(lo))
                }
                scales[r * groups + c0 / g.group] = gscale[r]
                if g == .q4_1 { mins[r * groups + c0 / g.group] = gmin[r] }
            }
        }

        var err = [Float](repeating: 0, count: blockSize * rows)
        var i1 = 0
        while i1 < k {
            let i2 = min(i1 + blockSize, k), b = i2 - i1
            for i in 0..<b {
                let col = i1 + i
                if let grid, col % grid.group == 0 {
                    if choose { chooseMasks(col, col + grid.group) }
                    chooseGrid(grid, col)
                } else if grid == nil, choose, col % 4 == 0 {
                    chooseMasks(col, col + 4)
                }
                let d = Float(u[col * k + col])
                wt.withUnsafeMutableBufferPointer { t in
                    for r in 0..<rows {
                        let v = t[col * rows + r]
                        var q: Float = 0
                        if keep[col * rows + r] {
                            q = v
                            if let grid {
                                let (s, m) = (gscale[r], gmin[r])
                                let code: Float
                                switch grid {
                                case .s24q4, .q4_0:
                                    code = s != 0 ? max(-8, min(7, (v / s).rounded(.toNearestOrEven))) + 8 : 8
                                    q = s * (code - 8)
                                case .q4_1:
                                    code = s != 0 ? max(0, min(15, ((v - m) / s).rounded(.toNearestOrEven))) : 0
                                    q = m + s * code
                                }
                                codes[col * rows + r] = UInt8(code.isNaN ? 8 : code)
                            }
                        }
                        t[col * rows + r] = q
                        err[i * rows + r] = (v - q) / d
                    }
                    // Compensate within the block.
                    for j in (col + 1)..<i2 {
                        let f = Float(u[col * k + j])
                        if f == 0 { continue }
                        for r in 0..<rows { t[j * rows + r] -= err[i * rows + r] * f }
                    }
                }
            }
            // The columns after the block: W[i2…, :] −= U[i1..<i2, i2…]ᵀ · Err.
            if i2 < k {
                let rest = k - i2
                var ut = [Float](repeating: 0, count: rest * b), errT = [Float](repeating: 0, count: rows * b)
                for j in 0..<rest { for i in 0..<b { ut[j * b + i] = Float(u[(i1 + i) * k + i2 + j]) } }
                for i in 0..<b { for r in 0..<rows { errT[r * b + i] = err[i * rows + r] } }
                var y = [Float](repeating: 0, count: rest * rows)
                try ut.withUnsafeBufferPointer { a in try errT.withUnsafeBufferPointer { e in try y.withUnsafeMutableBufferPointer { yp in
                    try TrainGEMM.forward(a.baseAddress!, m: rest, k: b, e.baseAddress!, n: rows, bias: nil, into: yp.baseAddress!)
                } } }
                wt.withUnsafeMutableBufferPointer { t in for j in 0..<(rest * rows) { t[i2 * rows + j] -= y[j] } }
            }
            i1 = i2
        }
        var out = [Float](repeating: 0, count: rows * k)
        wt.withUnsafeBufferPointer { t in out.withUnsafeMutableBufferPointer { o in TrainGEMM.transpose(t.baseAddress!, rows: k, columns: rows, into: o.baseAddress!) } }
        var rowMask = [Bool](repeating: true, count: rows * k), rowCodes = [UInt8](repeating: 0, count: codes.count)
        for c in 0..<k {
            for r in 0..<rows {
                rowMask[r * k + c] = keep[c * rows + r]
                if !codes.isEmpty { rowCodes[r * k + c] = codes[c * rows + r] }
            }
        }
        return ReconstructedWeights(weights: try Matrix(rows: rows, columns: k, elements: out), mask: rowMask, codes: rowCodes,
                                 scales: scales, mins: mins)
    }

    /// U with H⁻¹ = Uᵀ·U (upper triangular) for the damped Hessian of a layer's inputs, and the
    /// inputs never active in calibration (their weights cannot matter and are zeroed).
    ///
    /// U comes from one Cholesky factorization and one triangular inverse: with P the reversal
    /// permutation and P·H·P = M·Mᵀ, H = R·Rᵀ for the upper R = P·M·P, so H⁻¹ = R⁻ᵀ·R⁻¹ and
    /// U = R⁻¹ = P·M⁻¹·P — half the work of inverting H and factoring the inverse.
    ///
    /// ```swift
    /// var xtx = [Double](repeating: 0, count: k * k)
    /// try Reconstruction.accumulateGram(x, rows: rows, k: k, into: &xtx)
    /// let h = try Reconstruction.HessianFactor(gram: xtx, k: k)
    /// let q = try Reconstruction.compress(wq, hessian: h, prune24: true, grid: .s24q4)   // Q, K, V share h
    /// ```
    public struct HessianFactor: Sendable {
        public let k: Int
        let u: [Double]
        let dead: [Bool]

        /// The factor of XᵀX for inputs `x` (`rows` × `k`).
        /// - Throws: `CondenseError` when `x` is not `rows` × `k` or the damped Hessian is not positive definite.
        public init(inputs x: [Float], rows: Int, k: Int, damping: Double = 0.01) throws {
            guard x.count == rows * k else { throw CondenseError.shapeMismatch("\(x.count) inputs for \(rows)×\(k)") }
            var gram = [Double](repeating: 0, count: k * k)
            try x.withUnsafeBufferPointer { try Reconstruction.accumulateGram($0.baseAddress!, rows: rows, k: k, into: &gram) }
            try self.init(gram: gram, k: k, damping: damping)
        }

        /// - Throws: `CondenseError/invalidArgument(_:)` when the damped Hessian is not positive definite.
        public init(gram: [Double], k: Int, damping: Double = 0.01) throws {
            guard gram.count == k * k else { throw CondenseError.shapeMismatch("Gram matrix has \(gram.count) entries, needs \(k)×\(k)") }
            var dead = [Bool](repeating: false, count: k)
            var diag = (0..<k).map { gram[$0 * k + $0] }
            for i in 0..<k where diag[i] == 0 { dead[i] = true; diag[i] = 1 }
            let damp = damping * diag.reduce(0, +) / Double(k)
            // a = P·H·P, damped.
            var a = [Double](repeating: 0, count: k * k)
            for i in 0..<k { for j in 0..<k { a[i * k + j] = i == j ? diag[k - 1 - i] + damp : gram[(k - 1 - i) * k + (k - 1 - j)] } }
            var xt = [Double](repeating: 0, count: k * k)   // M⁻¹, transposed
            let ok = a.withUnsafeMutableBufferPointer { m -> Bool in
                let m = m.baseAddress!
                for j in 0..<k {   // M, in place (lower)
                    let s = m[j * k + j] - Self.dot(m + j * k, m + j * k, j)
                    guard s > 0, s.isFinite else { return false }
                    let dj = s.squareRoot()
                    m[j * k + j] = dj
                    for i in (j + 1)..<max(j + 1, k) { m[i * k + j] = (m[i * k + j] - Self.dot(m + i * k, m + j * k, j)) / dj }
                }
                xt.withUnsafeMutableBufferPointer { x in
                    let x = x.baseAddress!
                    for j in 0..<k {
                        x[j * k + j] = 1 / m[j * k + j]
                        for i in (j + 1)..<max(j + 1, k) { x[j * k + i] = -Self.dot(m + i * k + j, x + j * k + j, i - j) / m[i * k + i] }
                    }
                }
                return true
            }
            guard ok else { throw CondenseError.invalidArgument("calibration Hessian is not positive definite") }
            var u = [Double](repeating: 0, count: k * k)
            for i in 0..<k { for j in i..<k { u[i * k + j] = xt[(k - 1 - j) * k + (k - 1 - i)] } }
            (self.k, self.u, self.dead) = (k, u, dead)
        }

        @inline(__always) static func dot(_ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>, _ n: Int) -> Double {
            var s0 = SIMD4<Double>(), s1 = SIMD4<Double>()
            var i = 0
            let (ra, rb) = (UnsafeRawPointer(a), UnsafeRawPointer(b))
            while i + 8 <= n {
                s0 += ra.loadUnaligned(fromByteOffset: i * 8, as: SIMD4<Double>.self) * rb.loadUnaligned(fromByteOffset: i * 8, as: SIMD4<Double>.self)
                s1 += ra.loadUnaligned(fromByteOffset: i * 8 + 32, as: SIMD4<Double>.self) * rb.loadUnaligned(fromByteOffset: i * 8 + 32, as: SIMD4<Double>.self)
                i += 8
            }
            var s = (s0 + s1).sum()
            while i < n { s += a[i] * b[i]; i += 1 }
            return s
        }
    }

    /// XᵀX over the rows of `x` (`[rows, k]`), accumulated into `gram` (`k × k`, Double).
    public static func accumulateGram(_ x: UnsafePointer<Float>, rows: Int, k: Int, into gram: inout [Double]) throws {
        guard gram.count == k * k else { throw CondenseError.shapeMismatch("Gram matrix has \(gram.count) entries, needs \(k)×\(k)") }
        var xt = [Float](repeating: 0, count: k * rows)
        xt.withUnsafeMutableBufferPointer { t in TrainGEMM.transpose(x, rows: rows, columns: k, into: t.baseAddress!) }
        var g = [Float](repeating: 0, count: k * k)
        // (Xᵀ)·(Xᵀ)ᵀ: rows of Xᵀ against themselves. f32 products of one chunk, summed in Double.
        try xt.withUnsafeBufferPointer { t in try g.withUnsafeMutableBufferPointer { gp in
            try TrainGEMM.forward(t.baseAddress!, m: k, k: rows, t.baseAddress!, n: k, bias: nil, into: gp.baseAddress!)
        } }
        for i in 0..<(k * k) { gram[i] += Double(g[i]) }
    }
}
