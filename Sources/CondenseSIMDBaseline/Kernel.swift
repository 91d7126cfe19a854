import CondenseSIMDKit

/// ``SIMDTile`` on `SIMD4<Float>` at the build's baseline, 6 rows × 8 columns: NEON FMLA on
/// AArch64, SSE2 multiply and add on x86-64 (no FMA there). Runs on any CPU.
public func swiftSIMDTileBaseline(rows: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
                                  c: UnsafeMutablePointer<Float>, ldc: Int) {
    SIMDTile.run(rows: rows, kc: kc, a: a, lda: lda, b: b, c: c, ldc: ldc, SIMD4<Float>.self)
}
