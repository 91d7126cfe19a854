import Condense

/// What decides which weights survive pruning.
public enum PruningScore: Sendable {
    /// `|w|`.
    case magnitude
    /// `|w_nk| · ‖x_k‖`: the weight's magnitude times the norm of its input feature over a
    /// calibration batch ("Wanda"). Plain magnitude 2:4 destroys accuracy on real models; scaling
    /// by the activations keeps the weights that actually carry signal.
    /// Build the norms with ``Pruning/inputNorms(_:)``.
    case activationAware(inputNorms: [Float])

    func scores(_ w: Matrix<Float>) throws -> [Float] {
        switch self {
        case .magnitude:
            return w.elements.map { abs($0) }
        case let .activationAware(norms):
            guard norms.count == w.columns else {
                throw CondenseError.shapeMismatch(
                    "activation-aware scores need \(w.columns) input norms (one per column), got \(norms.count)")
            }
            let k = w.columns
            return w.elements.enumerated().map { i, v in abs(v) * norms[i % max(k, 1)] }
        }
    }
}

/// Which weights of a matrix are kept.
public struct PruningMask: Sendable, Equatable {
    public let rows: Int
    public let columns: Int
    /// Row-major, `true` = kept.
    public let keep: [Bool]

    /// Fraction pruned.
    public var sparsity: Double { keep.isEmpty ? 0 : Double(keep.lazy.filter { !$0 }.count) / Double(keep.count) }

    /// The weights with every pruned element set to zero.
    /// - Throws: `CondenseError/shapeMismatch(_:)` when the shapes differ.
    public func apply(to w: Matrix<Float>) throws -> Matrix<Float> {
        guard w.rows == rows, w.columns == columns else {
            throw CondenseError.shapeMismatch("mask is \(rows)×\(columns) but the weight is \(w.rows)×\(w.columns)")
        }
        var out = w
        out.withUnsafeMutableBufferPointer { p in for i in p.indices where !keep[i] { p[i] = 0 } }
        return out
    }
}

/// Result of structured (neuron) pruning: a smaller dense layer and which rows it kept.
public struct NeuronPruning: Sendable {
    /// `[kept.count, K]`.
    public let weight: Matrix<Float>
    public let bias: [Float]?
    /// Original indices of the kept output neurons, ascending. Drop the same input columns of
    /// the next layer with ``Pruning/keepInputs(_:of:)``.
    public let kept: [Int]
}

/// Norm for ranking neurons.
public enum NeuronNorm: Sendable { case l1, l2 }

/// Pruning of weight matrices `W[N, K]` (N outputs, K inputs).
///
/// ```swift
/// let mask = try Pruning.unstructured(w, sparsity: 0.9)              // exactly 90 % zeros
/// let csr = CSRMatrix(dense: try mask.apply(to: w))
/// let w24 = try Pruning.semiStructured(w).apply(to: w)               // 2:4 along K
/// let s24 = try Sparse24Matrix(dense: w24)
/// ```
public enum Pruning {
    static func check(sparsity: Double) throws {
        guard sparsity.isFinite, sparsity >= 0, sparsity <= 1 else {
            throw CondenseError.invalidArgument("sparsity must be in [0, 1], got \(sparsity)")
        }
    }

    /// Prunes exactly `round(sparsity · N · K)` weights, those of lowest score (ties broken by
    /// position, so the result is deterministic).
    /// - Throws: `CondenseError/invalidArgument(_:)` for a sparsity outside [0, 1].
    public static func unstructured(_ w: Matrix<Float>, sparsity: Double, score: PruningScore = .magnitude) throws -> PruningMask {
        try check(sparsity: sparsity)
        let s = try score.scores(w)
        let prune = Int((sparsity * Double(s.count)).rounded())
        let order = s.indices.sorted { s[$0] < s[$1] || (s[$0] == s[$1] && $0 < $1) }
        var keep = [Bool](repeating: true, count: s.count)
        for i in order.prefix(prune) { keep[i] = false }
        return PruningMask(rows: w.rows, columns: w.columns, keep: keep)
    }

    /// One magnitude threshold τ across several layers: exactly `round(sparsity · total)` weights
    /// are pruned, those with the smallest |w| over all layers (so layers lose different fractions).
    /// - Returns: τ, the smallest kept magnitude (weights below it are zero), and one mask per layer.
    public static func global(_ layers: [Matrix<Float>], sparsity: Double) throws -> (threshold: Float, masks: [PruningMask]) {
        try check(sparsity: sparsity)
        var all: [(Float, Int, Int)] = []
        for (l, w) in layers.enumerated() { for (i, v) in w.elements.enumerated() { all.append((abs(v), l, i)) } }
        all.sort { $0.0 < $1.0 || ($0.0 == $1.0 && ($0.1, $0.2) < ($1.1, $1.2)) }
        let prune = Int((sparsity * Double(all.count)).rounded())
        var keeps = layers.map { [Bool](repeating: true, count: $0.count) }
        for e in all.prefix(prune) { keeps[e.1][e.2] = false }
        let tau = prune < all.count ? all[prune].0 : .infinity
        return (tau, zip(layers, keeps).map { PruningMask(rows: $0.rows, columns: $0.columns, keep: $1) })
    }

    /// N:M semi-structured pruning along K: in every group of `m` consecutive weights of a row,
    /// keep the `n` of largest score. The last group of a row may be partial (K not a multiple of
    /// m): it keeps at most `n` of its elements, as if K were padded with zeros.
    /// - Throws: `CondenseError/invalidArgument(_:)` unless `1 <= n <= m`.
    public static func semiStructured(_ w: Matrix<Float>, n: Int = 2, m: Int = 4, score: PruningScore = .magnitude) throws -> PruningMask {
        guard m >= 1, n >= 1, n <= m else {
            throw CondenseError.invalidArgument("N:M pruning needs 1 <= N <= M, got \(n):\(m)")
        }
        let s = try score.scores(w)
        let (rows, k) = (w.rows, w.columns)
        var keep = [Bool](repeating: false, count: s.count)
        for r in 0..<rows {
            for g in stride(from: 0, to: k, by: m) {
                let idx = (g..<min(g + m, k)).map { r * k + $0 }
                let best = idx.sorted { s[$0] > s[$1] || (s[$0] == s[$1] && $0 < $1) }.prefix(n)
                for i in best { keep[i] = true }
            }
        }
        return PruningMask(rows: rows, columns: k, keep: keep)
    }

    /// `‖x_k‖₂` over the rows of a calibration batch `X[M, K]`: the input norms for
    /// ``PruningScore/activationAware(inputNorms:)``.
    public static func inputNorms(_ x: Matrix<Float>) -> [Float] {
        var acc = [Double](repeating: 0, count: x.columns)
        x.withUnsafeBufferPointer { p in
            for i in 0..<x.rows { for k in 0..<x.columns { acc[k] += Double(p[i * x.columns + k]) * Double(p[i * x.columns + k]) } }
        }
        return acc.map { Float($0.squareRoot()) }
    }

    /// Structured pruning that really shrinks: removes whole output neurons (rows of W) of
    /// smallest L1 or L2 norm, keeping `keep` of them.
    /// - Throws: `CondenseError/invalidArgument(_:)` unless `1 <= keep <= N`; a bias of the wrong length.
    public static func neurons(_ w: Matrix<Float>, bias: [Float]? = nil, keep: Int, norm: NeuronNorm = .l2) throws -> NeuronPruning {
        guard keep >= 1, keep <= w.rows else {
            throw CondenseError.invalidArgument("neuron pruning must keep 1…\(w.rows) rows, got \(keep)")
        }
        if let bias, bias.count != w.rows {
            throw CondenseError.shapeMismatch("bias has \(bias.count) elements but the weight has \(w.rows) rows")
        }
        let norms: [Double] = (0..<w.rows).map { r in
            w.row(r).reduce(0.0) { $0 + (norm == .l1 ? Double(abs($1)) : Double($1) * Double($1)) }
        }
        let kept = (0..<w.rows).sorted { norms[$0] > norms[$1] || (norms[$0] == norms[$1] && $0 < $1) }
            .prefix(keep).sorted()
        let small = try Matrix<Float>(rows: keep, columns: w.columns) { r, c in w[kept[r], c] }
        return NeuronPruning(weight: small, bias: bias.map { b in kept.map { b[$0] } }, kept: Array(kept))
    }

    /// The next layer with only the input columns that survived neuron pruning of the layer before.
    /// - Throws: `CondenseError/invalidArgument(_:)` for an index outside `0..<next.columns`.
    public static func keepInputs(_ kept: [Int], of next: Matrix<Float>) throws -> Matrix<Float> {
        if let bad = kept.first(where: { $0 < 0 || $0 >= next.columns }) {
            throw CondenseError.invalidArgument("kept index \(bad) is outside the next layer's \(next.columns) inputs")
        }
        return try Matrix<Float>(rows: next.rows, columns: kept.count) { r, c in next[r, kept[c]] }
    }
}
