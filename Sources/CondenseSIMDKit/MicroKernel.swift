/// A register-tile micro-kernel for ``SwiftGEMM``: the only part a Swift backend has to write.
///
/// It computes one tile of `Y = X · Wᵀ`: for `rows` ≤ ``mr`` rows of X and one packed weight
/// panel of ``nr`` columns,
///
///     c[i·ldc + j] = Σ_k a[i·lda + k] · b[k·nr + j]      (i < rows, j < nr, k < kc)
///
/// `a` points at rows of X in place, `b` at the panel (`[kc][nr]`, zero-padded past N), `c` at the
/// output (all `nr` columns may be written: the driver hands a scratch tile at the right edge).
/// The driver adds the bias and the activation afterwards. Keep the tile in registers: write it
/// with `SIMD` vectors and let ``SIMDTile`` show how.
///
/// ```swift
/// struct PlainTile: GEMMMicroKernel {     // portable; for wide vectors see TileKernel
///     let mr = 4, nr = 8, name = "f32_gemm_4x8__plain"
///     func run(rows: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
///              c: UnsafeMutablePointer<Float>, ldc: Int) {
///         SIMDTile.run(rows: rows, kc: kc, a: a, lda: lda, b: b, c: c, ldc: ldc, SIMD4<Float>.self)
///     }
/// }
/// ```
public protocol GEMMMicroKernel: Sendable {
    /// Rows of X per tile (at most).
    var mr: Int { get }
    /// Columns per weight panel: the packing width.
    var nr: Int { get }
    /// The kernel's name as placements and `condense info` show it.
    var name: String { get }
    func run(rows: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
             c: UnsafeMutablePointer<Float>, ldc: Int)
}

/// A micro-kernel from a function: its name and tile, and the tile function itself. Use it when
/// the function lives in a module built with `-target-cpu`: only `run` enters that module, so
/// listing or registering the kernel on a CPU without those instructions executes none of them.
///
/// ```swift
/// let k = TileKernel(name: "f32_gemm_6x32__mine", mr: 6, nr: 32, myTile)   // myTile: the wide module's
/// ```
public struct TileKernel: GEMMMicroKernel {
    /// The tile function: `C[rows × nr] = A[rows × kc] · B[kc × nr]` from one packed panel of B.
    public typealias Body = @Sendable (_ rows: Int, _ kc: Int, _ a: UnsafePointer<Float>, _ lda: Int,
                                       _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) -> Void
    public let name: String
    public let mr: Int
    public let nr: Int
    private let body: Body

    /// Wraps a tile function of `mr` × `nr` (its name shows in placements).
    public init(name: String, mr: Int, nr: Int, _ body: @escaping Body) {
        self.name = name
        self.mr = mr
        self.nr = nr
        self.body = body
    }

    /// Runs the tile on `rows` ≤ mr rows of A against one packed panel of B.
    public func run(rows: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
                    c: UnsafeMutablePointer<Float>, ldc: Int) {
        body(rows, kc, a, lda, b, c, ldc)
    }
}

/// The generic 6 × (2·V.scalarCount) register tile: twelve vector accumulators, each panel row
/// loaded once as two vectors and multiplied by six broadcasts of X. `@inlinable` and always
/// inlined, so it is compiled where it is called, with that module's target CPU: the same source
/// gives zmm code in a module built with `-target-cpu skylake-avx512`, ymm with `haswell`, and
/// NEON on AArch64.
public enum SIMDTile {
    /// The panel width for vector type `V`: two vectors.
    @inlinable public static func nr<V: SIMD>(_: V.Type) -> Int where V.Scalar == Float { 2 * V.scalarCount }

    /// The generic tile on vectors of type `V`: the built-in `simd` backend's, compiled once per ISA module.
    @inlinable @inline(__always)
    public static func run<V: SIMD>(rows: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
                                    c: UnsafeMutablePointer<Float>, ldc: Int, _ v: V.Type) where V.Scalar == Float {
        switch rows {
        case 1: gemv(kc: kc, a: a, b: b, c: c, v)
        case 2: tile(2, kc: kc, a: a, lda: lda, b: b, c: c, ldc: ldc, v)
        case 3: tile(3, kc: kc, a: a, lda: lda, b: b, c: c, ldc: ldc, v)
        case 4: tile(4, kc: kc, a: a, lda: lda, b: b, c: c, ldc: ldc, v)
        case 5: tile(5, kc: kc, a: a, lda: lda, b: b, c: c, ldc: ldc, v)
        default: tile(6, kc: kc, a: a, lda: lda, b: b, c: c, ldc: ldc, v)
        }
    }

    @inlinable @inline(__always)
    static func load<V: SIMD>(_ p: UnsafePointer<Float>, _: V.Type) -> V where V.Scalar == Float {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inlinable @inline(__always)
    static func store<V: SIMD>(_ x: V, _ p: UnsafeMutablePointer<Float>) where V.Scalar == Float {
        UnsafeMutableRawPointer(p).storeBytes(of: x, as: V.self)
    }

    /// One row of X: four accumulator chains (even and odd K), since one row's two chains
    /// would wait on the FMA latency.
    @inlinable @inline(__always)
    static func gemv<V: SIMD>(kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>,
                              _ v: V.Type) where V.Scalar == Float {
        let w = V.scalarCount, nr = 2 * w
        var c0 = V(), c1 = V(), e0 = V(), e1 = V()
        var k = 0
        while k + 2 <= kc {
            let p = b + k * nr
            let x0 = V(repeating: a[k]), x1 = V(repeating: a[k + 1])
            c0 = c0.addingProduct(x0, load(p, v)); c1 = c1.addingProduct(x0, load(p + w, v))
            e0 = e0.addingProduct(x1, load(p + nr, v)); e1 = e1.addingProduct(x1, load(p + nr + w, v))
            k += 2
        }
        if k < kc {
            let p = b + k * nr, x0 = V(repeating: a[k])
            c0 = c0.addingProduct(x0, load(p, v)); c1 = c1.addingProduct(x0, load(p + w, v))
        }
        store(c0 + e0, c); store(c1 + e1, c + w)
    }

    /// R rows (a constant after inlining, so the unused rows' code folds away).
    @inlinable @inline(__always)
    static func tile<V: SIMD>(_ R: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
                              c: UnsafeMutablePointer<Float>, ldc: Int, _ v: V.Type) where V.Scalar == Float {
        let w = V.scalarCount, nr = 2 * w
        var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
        var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
        let a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda, a4 = a + 4 * lda, a5 = a + 5 * lda
        var k = 0
        while k < kc {
            let p = b + k * nr
            let b0: V = load(p, v), b1: V = load(p + w, v)
            var x = V(repeating: a0[k]); c00 = c00.addingProduct(x, b0); c01 = c01.addingProduct(x, b1)
            x = V(repeating: a1[k]); c10 = c10.addingProduct(x, b0); c11 = c11.addingProduct(x, b1)
            if R > 2 { x = V(repeating: a2[k]); c20 = c20.addingProduct(x, b0); c21 = c21.addingProduct(x, b1) }
            if R > 3 { x = V(repeating: a3[k]); c30 = c30.addingProduct(x, b0); c31 = c31.addingProduct(x, b1) }
            if R > 4 { x = V(repeating: a4[k]); c40 = c40.addingProduct(x, b0); c41 = c41.addingProduct(x, b1) }
            if R > 5 { x = V(repeating: a5[k]); c50 = c50.addingProduct(x, b0); c51 = c51.addingProduct(x, b1) }
            k += 1
        }
        store(c00, c); store(c01, c + w)
        store(c10, c + ldc); store(c11, c + ldc + w)
        if R > 2 { store(c20, c + 2 * ldc); store(c21, c + 2 * ldc + w) }
        if R > 3 { store(c30, c + 3 * ldc); store(c31, c + 3 * ldc + w) }
        if R > 4 { store(c40, c + 4 * ldc); store(c41, c + 4 * ldc + w) }
        if R > 5 { store(c50, c + 5 * ldc); store(c51, c + 5 * ldc + w) }
    }
}
