import CCondenseKernels

/// Dense `Y = act(X · Wᵀ + bias)` around any ``GEMMMicroKernel``: packing, cache tiling, threads
/// on Condense's thread team, and the bias + activation epilogue. A Swift backend writes only its
/// micro-kernel; this is what the `simd` backend runs too.
///
/// ```swift
/// let gemm = try SwiftGEMM(kernel: MyTile(), weights: w, n: 768, k: 768, bias: b,
///                          activation: Int32(CONDENSE_ACT_GELU.rawValue))
/// gemm.run(m: 8, x: x, lda: 768, y: y, ldy: 768)    // threads: <= 0 for the default count
/// ```
public final class SwiftGEMM: @unchecked Sendable {
    public let kernel: any GEMMMicroKernel
    /// Output features (rows of W) and input features.
    public let n: Int, k: Int
    private let panels: UnsafeMutablePointer<Float>   // ⌈n/nr⌉ panels of [k][nr], zero-padded
    private let bias: [Float]?
    private let activation: Int32
    private let mc: Int

    /// Packs W[n, k] (row stride `ldw`, default k) into the kernel's panels. `activation` is a
    /// `CONDENSE_ACT_*` code. Throws ``SwiftGEMMError`` for sizes that overflow or a bias of the
    /// wrong length; the weights are copied, so the caller's buffer may go away.
    public init(kernel: any GEMMMicroKernel, weights: UnsafePointer<Float>, n: Int, k: Int, ldw: Int? = nil,
                bias: [Float]? = nil, activation: Int32 = 0) throws {
        let nr = kernel.nr
        guard n >= 0, k >= 0, kernel.mr >= 1, nr >= 1 else { throw SwiftGEMMError.invalidShape("n \(n), k \(k), tile \(kernel.mr)×\(nr)") }
        let ldw = ldw ?? k
        guard ldw >= k else { throw SwiftGEMMError.invalidShape("row stride \(ldw) < k \(k)") }
        if let bias, bias.count != n { throw SwiftGEMMError.invalidShape("bias has \(bias.count) values for n = \(n)") }
        let count = (n + nr - 1) / nr
        let (a, o1) = count.multipliedReportingOverflow(by: k)
        let (total, o2) = a.multipliedReportingOverflow(by: nr)
        guard !o1, !o2 else { throw SwiftGEMMError.invalidShape("\(n) × \(k) overflows") }
        self.kernel = kernel
        self.n = n
        self.k = k
        self.bias = bias
        self.activation = activation
        mc = max(kernel.mr, 72 / kernel.mr * kernel.mr)
        // 64-byte aligned: a panel row of 16 floats is then one cache line, not two (a zmm load
        // across two lines costs two).
        panels = UnsafeMutableRawPointer.allocate(byteCount: max(total, 1) * MemoryLayout<Float>.stride, alignment: 64)
            .bindMemory(to: Float.self, capacity: max(total, 1))
        panels.initialize(repeating: 0, count: max(total, 1))
        for p in 0..<count {
            let dst = panels + p * k * nr
            for j in 0..<min(nr, n - p * nr) {
                let src = weights + (p * nr + j) * ldw
                for kk in 0..<k { dst[kk * nr + j] = src[kk] }
            }
        }
    }

    deinit { panels.deallocate() }

    /// Y[m, n] = act(X[m, k] · Wᵀ + bias): X rows `lda` apart, Y rows `ldy` apart.
    public func run(m: Int, x: UnsafePointer<Float>, lda: Int, y: UnsafeMutablePointer<Float>, ldy: Int,
                    threads: Int = 0) {
        guard m > 0, n > 0 else { return }
        let nr = kernel.nr, count = (n + nr - 1) / nr
        let mblocks = (m + mc - 1) / mc
        let nt = threads > 0 ? threads : Int(condense_get_num_threads())
        // About four tiles per thread, at most 512 columns a tile (the C drivers' plan).
        let want = (4 * nt + mblocks - 1) / mblocks
        let ppc = max(1, min((count + want - 1) / want, max(1, 512 / nr)))
        let chunks = (count + ppc - 1) / ppc
        var job = Job(gemm: self, m: m, x: x, lda: lda, y: y, ldy: ldy, mblocks: mblocks, ppc: ppc, chunks: chunks)
        let tiles = chunks * mblocks
        withUnsafeMutablePointer(to: &job) { p in
            condense_parallel(Int32(min(nt, tiles)), { ctx, t, nt in
                ctx!.assumingMemoryBound(to: Job.self).pointee.share(Int(t), Int(nt))
            }, p)
        }
    }

    struct Job {
        let gemm: SwiftGEMM
        let m: Int, x: UnsafePointer<Float>, lda: Int, y: UnsafeMutablePointer<Float>, ldy: Int
        let mblocks: Int, ppc: Int, chunks: Int

        func share(_ t: Int, _ nt: Int) {
            let tiles = chunks * mblocks
            let kr = gemm.kernel, mr = kr.mr, nr = kr.nr
            withUnsafeTemporaryAllocation(of: Float.self, capacity: mr * nr) { edge in
                for tile in (tiles * t / nt)..<(tiles * (t + 1) / nt) {
                    let chunk = tile / mblocks, mb = tile % mblocks
                    let m0 = mb * gemm.mc, mlen = min(gemm.mc, m - m0)
                    let p0 = chunk * ppc, p1 = min(p0 + ppc, (gemm.n + nr - 1) / nr)
                    for p in p0..<p1 {
                        let b = UnsafePointer(gemm.panels + p * gemm.k * nr)
                        let col = p * nr, nv = min(nr, gemm.n - col)
                        var ir = 0
                        while ir < mlen {
                            let rows = min(mr, mlen - ir)
                            let a = x + (m0 + ir) * lda, out = y + (m0 + ir) * ldy + col
                            if nv == nr {
                                kr.run(rows: rows, kc: gemm.k, a: a, lda: lda, b: b, c: out, ldc: ldy)
                            } else {
                                kr.run(rows: rows, kc: gemm.k, a: a, lda: lda, b: b, c: edge.baseAddress!, ldc: nr)
                                for i in 0..<rows { (out + i * ldy).update(from: edge.baseAddress! + i * nr, count: nv) }
                            }
                            gemm.epilogue(out, ldy, rows, col, nv)
                            ir += rows
                        }
                    }
                }
            }
        }
    }

    /// Bias, then the activation with the C kernels' vector code for this CPU.
    @inline(__always) func epilogue(_ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ rows: Int, _ col: Int, _ nv: Int) {
        for i in 0..<rows {
            let r = y + i * ldy
            if let bias { bias.withUnsafeBufferPointer { b in for j in 0..<nv { r[j] += b[col + j] } } }
            if activation != 0 { condense_f32_activation(r, nv, activation, condense_isa_active()) }
        }
    }
}

/// What ``SwiftGEMM`` rejects.
public enum SwiftGEMMError: Error, Equatable, CustomStringConvertible {
    case invalidShape(String)
    public var description: String {
        switch self { case let .invalidShape(s): "SwiftGEMM: invalid shape: \(s)" }
    }
}
