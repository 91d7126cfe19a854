import CCondenseKernels
import Condense

/// The three GEMMs of a linear layer's training step, all on Condense's f32 kernel: the
/// backward products are the same `Y = X·Wᵀ` with the right-hand operand packed from its
/// transpose (`condense_f32_pack_t`), so training reuses the inference kernel instead of a
/// second GEMM.
///
/// ```swift
/// // y[4, 3] = x[4, 8] · w[3, 8]ᵀ, then dw[3, 8] = dyᵀ · x
/// try TrainGEMM.forward(x, m: 4, k: 8, w, n: 3, bias: nil, into: y)
/// try TrainGEMM.gradWeight(dy, m: 4, n: 3, x, k: 8, into: dw)
/// ```
///
/// Each takes the ISA to run (`nil`: the active one), so a pinned ISA reaches training too, and
/// throws `CondenseError/outOfMemory(bytes:)` when a pack cannot be allocated.
public enum TrainGEMM {
    static func kernel(_ isa: ISA?) -> UnsafePointer<condense_f32_gemm_kernel> {
        let level = CondenseRuntime.clamped(isa ?? CondenseRuntime.activeISA)
        return condense_f32_gemm_kernel_for(condense_isa(UInt32(level.rawValue)))
    }

    private static func packed(_ p: UnsafeMutablePointer<condense_f32_packed>?, bytes: Int) throws -> UnsafeMutablePointer<condense_f32_packed> {
        guard let p else { throw CondenseError.outOfMemory(bytes: bytes) }
        return p
    }

    /// y[m, n] = x[m, k] · w[n, k]ᵀ + bias.
    public static func forward(_ x: UnsafePointer<Float>, m: Int, k: Int, _ w: UnsafePointer<Float>, n: Int,
                               bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>, isa: ISA? = nil) throws {
        guard m > 0, n > 0 else { return }
        guard k > 0 else { fill(y, m * n, bias: bias, n: n); return }
        let p = try packed(condense_f32_pack(kernel(isa), w, n, k, k, bias), bytes: n * k * 4)
        defer { condense_f32_packed_free(p) }
        try NativeStatus.check(condense_f32_gemm(p, m, x, k, y, n, Int32(CONDENSE_ACT_NONE.rawValue), 0), kernel: "train forward")
    }

    /// dx[m, k] = dy[m, n] · w[n, k]: the "weights" are wᵀ, stored as w itself.
    public static func gradInput(_ dy: UnsafePointer<Float>, m: Int, n: Int, _ w: UnsafePointer<Float>, k: Int,
                                 into dx: UnsafeMutablePointer<Float>, isa: ISA? = nil) throws {
        guard m > 0, k > 0 else { return }
        guard n > 0 else { dx.update(repeating: 0, count: m * k); return }
        let p = try packed(condense_f32_pack_t(kernel(isa), w, k, n, k), bytes: n * k * 4)
        defer { condense_f32_packed_free(p) }
        try NativeStatus.check(condense_f32_gemm(p, m, dy, n, dx, k, Int32(CONDENSE_ACT_NONE.rawValue), 0), kernel: "train grad input")
    }

    /// dw[n, k] = dy[m, n]ᵀ · x[m, k]: rows of dyᵀ times the "weights" xᵀ, stored as x itself.
    public static func gradWeight(_ dy: UnsafePointer<Float>, m: Int, n: Int, _ x: UnsafePointer<Float>, k: Int,
                                  into dw: UnsafeMutablePointer<Float>, isa: ISA? = nil) throws {
        guard n > 0, k > 0 else { return }
        guard m > 0 else { dw.update(repeating: 0, count: n * k); return }
        let dyT = UnsafeMutablePointer<Float>.allocate(capacity: n * m)
        defer { dyT.deallocate() }
        transpose(dy, rows: m, columns: n, into: dyT)
        let p = try packed(condense_f32_pack_t(kernel(isa), x, k, m, k), bytes: m * k * 4)
        defer { condense_f32_packed_free(p) }
        try NativeStatus.check(condense_f32_gemm(p, n, dyT, m, dw, k, Int32(CONDENSE_ACT_NONE.rawValue), 0), kernel: "train grad weight")
    }

    /// t[columns, rows] = aᵀ, in cache-sized blocks.
    public static func transpose(_ a: UnsafePointer<Float>, rows: Int, columns: Int, into t: UnsafeMutablePointer<Float>) {
        let b = 32  // blocks that fit in L1 both ways
        var i0 = 0
        while i0 < rows {
            var j0 = 0
            while j0 < columns {
                for i in i0..<min(i0 + b, rows) {
                    for j in j0..<min(j0 + b, columns) { t[j * rows + i] = a[i * columns + j] }
                }
                j0 += b
            }
            i0 += b
        }
    }

    private static func fill(_ y: UnsafeMutablePointer<Float>, _ count: Int, bias: UnsafePointer<Float>?, n: Int) {
        for i in 0..<count { y[i] = bias?[i % n] ?? 0 }
    }
}
