import CondenseSIMDKit

/// ``SIMDTile`` on `SIMD8<Float>`, compiled with `-target-cpu haswell` (AVX2 + FMA): ymm FMAs,
/// 6 rows × 16 columns. Called only where AVX2 and FMA run.
public func swiftSIMDTileAVX2(rows: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
                              c: UnsafeMutablePointer<Float>, ldc: Int) {
    SIMDTile.run(rows: rows, kc: kc, a: a, lda: lda, b: b, c: c, ldc: ldc, SIMD8<Float>.self)
}
