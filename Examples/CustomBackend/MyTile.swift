// The README's custom Swift backend: a 4 × 32 register tile in a module built with
// `-target-cpu skylake-avx512` (Package.swift), so SIMD16<Float> is one zmm register and
// `addingProduct` one FMA. Registered with `SwiftKernelBackend` (CondenseSIMDKit's SwiftGEMM
// does the packing, tiling, threads, bias and activation). Tested in
// Tests/CondenseTests/SwiftSIMDTests.swift, timed by `condense bench gemm --backends native,example`.
public func myTile(rows: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
                   c: UnsafeMutablePointer<Float>, ldc: Int) {
    typealias V = SIMD16<Float>
    func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    func store(_ v: V, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }
    // Rows past `rows` read row 0 again and are not stored: one loop for every tile height.
    if rows == 1 {  // one row: even and odd K in separate chains, so the FMA latency is hidden
        var c0 = V(), c1 = V(), e0 = V(), e1 = V(), k = 0
        while k + 1 < kc {
            let x = V(repeating: a[k]), y = V(repeating: a[k + 1]), p = b + 32 * k
            c0 = c0.addingProduct(x, load(p)); c1 = c1.addingProduct(x, load(p + 16))
            e0 = e0.addingProduct(y, load(p + 32)); e1 = e1.addingProduct(y, load(p + 48))
            k += 2
        }
        if k < kc { let x = V(repeating: a[k]); c0 = c0.addingProduct(x, load(b + 32 * k)); c1 = c1.addingProduct(x, load(b + 32 * k + 16)) }
        store(c0 + e0, c); store(c1 + e1, c + 16)
        return
    }
    let r1 = a + (rows > 1 ? lda : 0), r2 = a + (rows > 2 ? 2 * lda : 0), r3 = a + (rows > 3 ? 3 * lda : 0)
    var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V(), c30 = V(), c31 = V()
    for k in 0..<kc {
        let b0 = load(b + 32 * k), b1 = load(b + 32 * k + 16)
        var x = V(repeating: a[k]); c00 = c00.addingProduct(x, b0); c01 = c01.addingProduct(x, b1)
        x = V(repeating: r1[k]); c10 = c10.addingProduct(x, b0); c11 = c11.addingProduct(x, b1)
        x = V(repeating: r2[k]); c20 = c20.addingProduct(x, b0); c21 = c21.addingProduct(x, b1)
        x = V(repeating: r3[k]); c30 = c30.addingProduct(x, b0); c31 = c31.addingProduct(x, b1)
    }
    store(c00, c); store(c01, c + 16)
    if rows > 1 { store(c10, c + ldc); store(c11, c + ldc + 16) }
    if rows > 2 { store(c20, c + 2 * ldc); store(c21, c + 2 * ldc + 16) }
    if rows > 3 { store(c30, c + 3 * ldc); store(c31, c + 3 * ldc + 16) }
}
