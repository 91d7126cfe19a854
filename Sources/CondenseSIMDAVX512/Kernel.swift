import CondenseSIMDKit

/// ``SIMDTile`` on `SIMD16<Float>`, compiled in this module with `-target-cpu skylake-avx512`
/// (Package.swift): zmm FMAs, 6 rows × 32 columns. Only this function is here, and the `simd`
/// backend calls it only where AVX-512 runs; its name and tile live outside, in the baseline code.
public func swiftSIMDTileAVX512(rows: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
                                c: UnsafeMutablePointer<Float>, ldc: Int) {
    SIMDTile.run(rows: rows, kc: kc, a: a, lda: lda, b: b, c: c, ldc: ldc, SIMD16<Float>.self)
}
