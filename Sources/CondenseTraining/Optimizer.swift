import Condense

/// How parameters move along their gradients.
public enum Optimizer: Sendable, Equatable {
    /// SGD with (heavy-ball) momentum: `v ← μ·v + g`, `θ ← θ − lr·v`.
    case sgd(learningRate: Float, momentum: Float = 0.9)
    /// Adam (Kingma & Ba) with bias correction.
    case adam(learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8)

    public var learningRate: Float {
        switch self {
        case let .sgd(lr, _): return lr
        case let .adam(lr, _, _, _): return lr
        }
    }
}

/// The optimizer's per-parameter state for one model: one slot per parameter array.
///
/// ```swift
/// var state = OptimizerState(shapes: [w.count, b.count])
/// state.step += 1                                   // once per optimizer step, before apply
/// state.apply(.adam(learningRate: 1e-4), params: &w, grads: dw, slot: 0, scale: 1)
/// state.apply(.adam(learningRate: 1e-4), params: &b, grads: db, slot: 1, scale: 1)
/// ```
public struct OptimizerState: Sendable {
    var m: [[Float]]
    var v: [[Float]]
    /// Steps taken (Adam's bias correction needs it); the caller increments it.
    public var step = 0

    /// Zero moments for parameters of these sizes.
    public init(shapes: [Int]) {
        m = shapes.map { [Float](repeating: 0, count: $0) }
        v = m
    }

    /// Adam's first and second moments (SGD's velocity in `first`), per slot: what a
    /// checkpoint saves so that training resumes where it stopped.
    public var moments: (first: [[Float]], second: [[Float]]) { (m, v) }

    /// A state restored from ``moments`` and ``step``.
    /// - Throws: `CondenseError/shapeMismatch(_:)` when the slots' sizes differ from `shapes`.
    public init(shapes: [Int], first: [[Float]], second: [[Float]], step: Int) throws {
        guard first.map(\.count) == shapes, second.map(\.count) == shapes, step >= 0 else {
            throw CondenseError.shapeMismatch("optimizer state of \(first.map(\.count)) / \(second.map(\.count)) for slots \(shapes), step \(step)")
        }
        (m, v, self.step) = (first, second, step)
    }

    /// Updates `params[i]` with `grads[i]`, at `scale` × the base learning rate (decay schedules).
    public mutating func apply(_ opt: Optimizer, params: inout [Float], grads: [Float], slot i: Int, scale: Float) {
        switch opt {
        case let .sgd(lr, mu):
            let a = lr * scale
            m[i].withUnsafeMutableBufferPointer { v in
                params.withUnsafeMutableBufferPointer { p in
                    grads.withUnsafeBufferPointer { g in
                        for j in p.indices {
                            v[j] = mu * v[j] + g[j]
                            p[j] -= a * v[j]
                        }
                    }
                }
            }
        case let .adam(lr, b1, b2, eps):
            let t = Float(step)
            let c1 = 1 - powf(b1, t), c2 = 1 - powf(b2, t)
            let a = lr * scale * c2.squareRoot() / c1
            m[i].withUnsafeMutableBufferPointer { mp in
                v[i].withUnsafeMutableBufferPointer { vp in
                    params.withUnsafeMutableBufferPointer { p in
                        grads.withUnsafeBufferPointer { g in
                            for j in p.indices {
                                mp[j] = b1 * mp[j] + (1 - b1) * g[j]
                                vp[j] = b2 * vp[j] + (1 - b2) * g[j] * g[j]
                                p[j] -= a * mp[j] / (vp[j].squareRoot() + eps)
                            }
                        }
                    }
                }
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
