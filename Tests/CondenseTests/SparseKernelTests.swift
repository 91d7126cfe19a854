import Condense
import Testing

/// Sparse kernels against the double-precision reference on the densified weights.
@Suite struct SparseKernelTests {
    /// Batch sizes on both sides of every dot/xt switch (4, 8, 16) and of the 16/32-lane blocks.
    static let batches = [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 33, 65]

    /// A random matrix with about `density` of its elements kept, and some all-zero rows.
    static func sparseMatrix(_ n: Int, _ k: Int, density: Double, seed: UInt64) -> Matrix<Float> {
        var rng = TestRNG(seed)
        var w = rng.matrix(n, k)
        for r in 0..<n {
            let emptyRow = r % 7 == 3
            for c in 0..<k where emptyRow || Double(rng.next() % 10_000) / 10_000 >= density { w[r, c] = 0 }
        }
        return w
    }

    /// A random 2:4 matrix: in each group of 4 (the last one may be partial) at most two non-zeros.
    static func matrix24(_ n: Int, _ k: Int, seed: UInt64) -> Matrix<Float> {
        var rng = TestRNG(seed)
        var w = rng.matrix(n, k)
        for r in 0..<n {
            for g in stride(from: 0, to: k, by: 4) {
                let keep = (Int(rng.next() % 4), Int(rng.next() % 4))
                for i in 0..<4 where g + i < k && i != keep.0 && i != keep.1 { w[r, g + i] = 0 }
            }
            if r % 5 == 2 { for c in 0..<k { w[r, c] = 0 } }
        }
        return w
    }

    func check(_ w: Matrix<Float>, as format: WeightFormat, batches: [Int], seed: UInt64,
               activations: [Activation] = [.none]) throws {
        var rng = TestRNG(seed)
        let bias = rng.vector(w.rows)
        for m in batches {
            let x = rng.matrix(m, w.columns)
            for act in activations {
                for b in [nil, bias] {
                    let expected = Expected(x: x, w: w, bias: b, activation: act)
                    let layer = try LinearLayer(weights: .dense(w), bias: b, activation: act).converted(to: format)
                    for isa in runnableISAs {
                        for threads in [1, 2] {
                            let p = try NativeBackend(isa: isa, threads: threads).prepare(layer)
                            let problem = expected.firstMismatch(try p.apply(x))
                            #expect(problem == nil, """
                                \(format) N=\(w.rows) K=\(w.columns) M=\(m) isa=\(isa) threads=\(threads) \
                                kernel=\(p.kernelName(forBatch: m)) act=\(act) bias=\(b != nil): \(problem ?? "")
                                """)
                        }
                    }
                }
            }
        }
    }

    @Test(arguments: [1, 2, 3, 5, 15, 16, 17, 33, 63, 100, 1000, 4095, 8195])
    func sparse24TailsInK(_ k: Int) throws {
        try check(Self.matrix24(37, k, seed: UInt64(k)), as: .sparse24, batches: [1, 3, 4, 16, 17], seed: 1)
    }

    @Test func sparse24Batches() throws {
        try check(Self.matrix24(45, 70, seed: 2), as: .sparse24, batches: Self.batches, seed: 2, activations: [.none, .relu])
        try check(Self.matrix24(3, 33, seed: 3), as: .sparse24, batches: [1, 16, 33], seed: 3, activations: [.gelu])
    }

    /// The bucket kernel (M ≥ 16 on AVX-512, M ≥ 8 on AVX2): several tiles with a short last one, slabs of
    /// 32 rows of X with a ragged last slab, K tails, 256-row tiles (N > 2048), 1 and 2 threads.
    @Test func sparse24BucketTilesAndSlabs() throws {
        try check(Self.matrix24(300, 75, seed: 4), as: .sparse24, batches: [8, 9, 16, 23, 32, 33, 40, 64, 70], seed: 4,
                  activations: [.none, .gelu])
        try check(Self.matrix24(2100, 13, seed: 5), as: .sparse24, batches: [17, 48], seed: 5)
        try check(Self.matrix24(130, 4100, seed: 6), as: .sparse24, batches: [24], seed: 6)
        for isa in runnableISAs {
            let p = try NativeBackend(isa: isa, threads: 2).prepare(
                LinearLayer(weights: .dense(Self.matrix24(64, 64, seed: 7))).converted(to: .sparse24))
            // From 16 rows on AVX-512 (the panel kernel below), from 8 on AVX2 and NEON (the dot kernel below).
            let from = isa == .avx512 ? 16 : 8
            #expect(p.kernelName(forBatch: from).contains("bucket") == (isa != .scalar), "\(isa): \(p.kernelName(forBatch: from))")
            #expect(!p.kernelName(forBatch: from - 1).contains("bucket"))
        }
    }

    @Test(arguments: [0.0, 0.05, 0.3, 0.5, 1.0])
    func csrDensities(_ density: Double) throws {
        let w = Self.sparseMatrix(41, 77, density: density, seed: UInt64(density * 100) + 10)
        try check(w, as: .csr, batches: Self.batches, seed: 4)
    }

    @Test(arguments: [1, 2, 3, 16, 17, 255, 256, 257, 513, 1000, 4095, 8195])
    func csrTailsInK(_ k: Int) throws {
        try check(Self.sparseMatrix(23, k, density: 0.3, seed: UInt64(k) + 20), as: .csr,
                  batches: [1, 4, 33], seed: 5, activations: [.relu])
    }

    /// K above 65 536 switches CSR to 32-bit column indices and 2:4 to 32-bit index views.
    @Test func wideIndices() throws {
        let w = Self.sparseMatrix(5, 70_003, density: 0.01, seed: 30)
        let csr = CSRMatrix(dense: w)
        #expect(csr.columnIndices.width == 4)
        #expect(CSRMatrix(dense: Self.sparseMatrix(3, 65_536, density: 0.01, seed: 31)).columnIndices.width == 2)
        try check(w, as: .csr, batches: [1, 5, 16], seed: 6)
        try check(Self.matrix24(3, 70_001, seed: 32), as: .sparse24, batches: [1, 17], seed: 7)
    }

    @Test func emptyShapes() throws {
        try check(Self.sparseMatrix(9, 0, density: 0.5, seed: 40), as: .csr, batches: [0, 1, 20], seed: 8)
        try check(Self.matrix24(9, 0, seed: 41), as: .sparse24, batches: [0, 1, 20], seed: 9)
        try check(Self.sparseMatrix(0, 12, density: 0.5, seed: 42), as: .csr, batches: [3], seed: 10)
    }

    /// Kernels never read past K: a NaN at the start of row i+1 of X must not reach row i of Y,
    /// which it would through zero padding weights if a kernel loaded a whole group or vector
    /// beyond the end of row i.
    @Test(arguments: runnableISAs)
    func noReadsPastTheEndOfARow(_ isa: ISA) throws {
        for k in [5, 6, 7, 17, 33] {
            let w = Self.matrix24(40, k, seed: UInt64(k) + 60)
            for format in [WeightFormat.dense, .sparse24, .csr] {
                for m in [2, 5, 20, 40] {
                    var x = randomMatrix(m, k, seed: 61)
                    for c in 0..<min(3, k) { x[m - 1, c] = .nan }
                    let p = try NativeBackend(isa: isa, threads: 1).prepare(LinearLayer(weights: .dense(w)).converted(to: format))
                    let y = try p.apply(x)
                    for i in 0..<(m - 1) {
                        for r in 0..<40 {
                            #expect(y[i, r].isFinite, "\(format) K=\(k) M=\(m) kernel=\(p.kernelName(forBatch: m)) y[\(i), \(r)] = \(y[i, r])")
                        }
                    }
                }
            }
        }
    }

    /// NaN in X propagates through every stored weight it meets.
    @Test(arguments: runnableISAs)
    func nanThroughStoredWeights(_ isa: ISA) throws {
        var w = Self.matrix24(20, 32, seed: 50)
        for r in 0..<20 { w[r, 5] = 1; w[r, 4] = 0; w[r, 6] = 0; w[r, 7] = 0 }  // column 5 stored in every row
        for format in [WeightFormat.sparse24, .csr] {
            for m in [1, 20] {
                var x = randomMatrix(m, 32, seed: 51)
                x[0, 5] = .nan
                let p = try NativeBackend(isa: isa, threads: 2).prepare(LinearLayer(weights: .dense(w)).converted(to: format))
                let y = try p.apply(x)
                for r in 0..<20 { #expect(y[0, r].isNaN, "\(format) M=\(m) kernel=\(p.kernelName(forBatch: m)) row \(r)") }
                if m > 1 { for r in 0..<20 { #expect(y[1, r].isFinite) } }
            }
        }
    }
}

@Suite struct SparseFormatTests {
    @Test func csrRoundTripAndValidation() throws {
        let w = SparseKernelTests.sparseMatrix(13, 29, density: 0.4, seed: 60)
        let csr = CSRMatrix(dense: w)
        #expect(csr.densified() == w)
        #expect(csr.columnIndices.width == 2)
        #expect(throws: CondenseError.invalidArgument("CSR row 0 has column index 5, but there are 5 columns")) {
            try CSRMatrix(rows: 1, columns: 5, rowOffsets: [0, 1], columnIndices: .u16([5]), values: [1])
        }
        #expect(throws: CondenseError.invalidArgument("CSR row 0: column indices not strictly increasing (3 then 3)")) {
            try CSRMatrix(rows: 1, columns: 5, rowOffsets: [0, 2], columnIndices: .u16([3, 3]), values: [1, 2])
        }
        #expect(throws: CondenseError.shapeMismatch("CSR needs 3 row offsets for 2 rows, got 2")) {
            try CSRMatrix(rows: 2, columns: 5, rowOffsets: [0, 0], columnIndices: .u16([]), values: [])
        }
        #expect(throws: CondenseError.invalidArgument("CSR row offsets decrease at row 1: 2 then 1")) {
            try CSRMatrix(rows: 2, columns: 5, rowOffsets: [0, 2, 1], columnIndices: .u16([0]), values: [1])
        }
    }

    @Test func sparse24RoundTripLayoutAndPadding() throws {
        for k in [1, 2, 3, 4, 5, 7, 8, 9, 33] {
            let w = SparseKernelTests.matrix24(6, k, seed: UInt64(k) + 70)
            let s = try Sparse24Matrix(dense: w)
            #expect(s.paddedColumns == (k + 3) / 4 * 4)
            #expect(s.values.count == 6 * s.paddedColumns / 2)
            #expect(s.densified() == w, "K=\(k)")
            for byte in s.metadata {  // every present group has exactly two positions
                #expect((byte & 0xF).nonzeroBitCount == 2)
            }
        }
        let one = try Sparse24Matrix(dense: try Matrix<Float>(rows: 1, columns: 4, elements: [0, 3, 0, -1]))
        #expect(one.values == [3, -1] && one.metadata == [0b1010])
    }

    @Test func sparse24RejectsDenseGroupsNamingRowAndGroup() throws {
        var w = SparseKernelTests.matrix24(4, 12, seed: 80)
        w[2, 8] = 1; w[2, 9] = 1; w[2, 10] = 1
        #expect(throws: CondenseError.invalidArgument(
            "matrix is not 2:4 sparse: row 2, group 2 (columns 8…11) has 3 non-zeros")) { try Sparse24Matrix(dense: w) }
        #expect(throws: CondenseError.self) {
            try BackendRegistry.standard().prepare(LinearLayer(weights: .dense(w)), as: .sparse24)
        }
    }

    @Test func registryPreparesTheSameLayerDenseOrSparse() throws {
        let w = SparseKernelTests.matrix24(40, 64, seed: 90)
        let layer = try LinearLayer(weights: .dense(w))
        let r = BackendRegistry.standard()
        let dense = try r.prepare(layer, as: .dense), s24 = try r.prepare(layer, as: .sparse24), csr = try r.prepare(layer, as: .csr)
        #expect(dense.placement.format == .dense && s24.placement.format == .sparse24 && csr.placement.format == .csr)
        #expect(s24.placement.backend == "native" && s24.kernelName(forBatch: 1).contains("s24"))
        #expect(csr.kernelName(forBatch: 64).contains("csr_xt") || CondenseRuntime.detectedISA == .scalar)
        let x = randomMatrix(7, 64, seed: 91)
        let want = Expected(x: x, w: w, bias: nil, activation: .none)
        for p in [dense, s24, csr] { #expect(want.firstMismatch(try p.apply(x)) == nil) }
        // The SIMD backend has no sparse kernel: priority skips it, forcing it is an error.
        #expect(throws: CondenseError.unsupportedFormat(backend: "simd", format: "2:4")) {
            try r.prepare(layer, as: .sparse24, policy: .forced("simd"))
        }
    }
}
