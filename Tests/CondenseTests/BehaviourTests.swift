import CCondenseKernels
import Condense
import Testing

@Suite struct NaNAndInfTests {
    /// NaN and Inf propagate like IEEE arithmetic, as BLAS does: a NaN in row i of X makes row i of
    /// Y NaN; an Inf times a non-zero weight gives ±Inf; Inf·0 is NaN. ReLU keeps NaN.
    @Test(arguments: runnableISAs)
    func propagation(_ isa: ISA) throws {
        var rng = TestRNG(11)
        var x = rng.matrix(4, 40)
        let w = rng.matrix(20, 40)
        x[1, 7] = .nan
        x[2, 3] = .infinity
        var w2 = w
        for j in 0..<20 { w2[j, 3] = abs(w2[j, 3]) + 0.5 }  // positive weights where row 2 has +Inf
        w2[5, 3] = 0                                         // Inf · 0 = NaN
        for act in [Activation.none, .relu] {
            let p = try NativeBackend(isa: isa, threads: 2).prepare(LinearLayer(weights: .dense(w2), activation: act))
            let y = try p.apply(x)
            for j in 0..<20 {
                #expect(y[1, j].isNaN, "NaN row, column \(j), act \(act)")
                if j == 5 { #expect(y[2, j].isNaN, "Inf·0 must be NaN") }
                else { #expect(y[2, j] == .infinity, "Inf row, column \(j): \(y[2, j])") }
                #expect(y[0, j].isFinite && y[3, j].isFinite)
            }
        }
    }
}

@Suite struct BadInputTests {
    let w = randomMatrix(8, 16, seed: 3)

    @Test func mismatchedInputColumns() throws {
        let p = try NativeBackend().prepare(LinearLayer(weights: .dense(w)))
        let x = try Matrix<Float>(rows: 2, columns: 15)
        #expect(throws: CondenseError.shapeMismatch(
            "input has 15 columns but the layer has 16 input features (x is 2×15)")) { try p.apply(x) }
    }

    @Test func mismatchedOutput() throws {
        let p = try NativeBackend().prepare(LinearLayer(weights: .dense(w)))
        let x = try Matrix<Float>(rows: 2, columns: 16)
        var y = try Matrix<Float>(rows: 3, columns: 8)
        #expect(throws: CondenseError.shapeMismatch("output is 3×8 but must be 2×8")) { try p.apply(x, into: &y) }
    }

    @Test func biasLength() {
        #expect(throws: CondenseError.shapeMismatch("bias has 7 elements but the weight has 8 output features")) {
            try LinearLayer(weights: .dense(w), bias: [Float](repeating: 0, count: 7))
        }
    }

    @Test func negativeDimensions() {
        #expect(throws: CondenseError.invalidDimension(name: "rows", value: -1)) { try Matrix<Float>(rows: -1, columns: 3) }
        #expect(throws: CondenseError.invalidDimension(name: "columns", value: -5)) { try Matrix<Float>(rows: 2, columns: -5) }
        #expect(throws: CondenseError.self) { try Matrix<Float>(rows: 2, columns: 2, elements: [1, 2, 3]) }
    }

    @Test func threadCounts() {
        #expect(throws: CondenseError.invalidArgument("thread count must be in 1…1024, got 0")) { try CondenseRuntime.setThreads(0) }
        #expect(throws: CondenseError.invalidArgument("thread count must be >= 1, got -2")) {
            try NativeBackend(threads: -2).prepare(LinearLayer(weights: .dense(w)))
        }
    }

    @Test func forcedBackends() throws {
        let r = BackendRegistry.standard()
        let layer = try LinearLayer(weights: .dense(w))
        #expect(throws: CondenseError.noBackend("backend 'gpu' is not registered (have: native, simd, reference)")) {
            try r.prepare(layer, policy: .forced("gpu"))
        }
        // Every machine lacks some level (at least the other architecture's ladder): pinning it fails.
        let missing = try #require(ISA.allCases.first { !$0.isRunnable })
        r.register(NativeBackend(isa: missing))
        #expect(throws: CondenseError.self) { try r.prepare(layer, policy: .forced("native")) }
    }

    @Test func isaNames() throws {
        #expect(try ISA(parsing: "avx2") == .avx2)
        #expect(throws: CondenseError.invalidISA(value: "avx9", reason: "expected one of scalar, avx2, avxvnni, avx512, neon, dotprod, i8mm")) {
            try ISA(parsing: "avx9")
        }
    }

    /// The CONDENSE_ISA rule: only known names, and only lowering.
    @Test func isaEnvironmentRule() {
        var out = CONDENSE_ISA_SCALAR
        #expect(condense_isa_resolve(nil, CONDENSE_ISA_AVX2, &out) == CONDENSE_DISPATCH_OK && out == CONDENSE_ISA_AVX2)
        #expect(condense_isa_resolve("scalar", CONDENSE_ISA_AVX512, &out) == CONDENSE_DISPATCH_OK && out == CONDENSE_ISA_SCALAR)
        #expect(condense_isa_resolve("avx512", CONDENSE_ISA_AVX2, &out) == CONDENSE_DISPATCH_UNAVAILABLE && out == CONDENSE_ISA_AVX2)
        #expect(condense_isa_resolve("avxvnni", CONDENSE_ISA_AVX512, &out) == CONDENSE_DISPATCH_OK && out == CONDENSE_ISA_AVXVNNI)
        #expect(condense_isa_resolve("avxvnni", CONDENSE_ISA_AVX2, &out) == CONDENSE_DISPATCH_UNAVAILABLE)
        #expect(condense_isa_resolve("AVX2", CONDENSE_ISA_AVX512, &out) == CONDENSE_DISPATCH_INVALID_VALUE)
        #expect(condense_isa_resolve("sse", CONDENSE_ISA_AVX512, &out) == CONDENSE_DISPATCH_INVALID_VALUE)
        // Each architecture has its own ladder: a level of the other one is unavailable, not lower.
        #expect(condense_isa_resolve("neon", CONDENSE_ISA_AVX512, &out) == CONDENSE_DISPATCH_UNAVAILABLE && out == CONDENSE_ISA_AVX512)
        #expect(condense_isa_resolve("avx2", CONDENSE_ISA_I8MM, &out) == CONDENSE_DISPATCH_UNAVAILABLE && out == CONDENSE_ISA_I8MM)
        #expect(condense_isa_resolve("dotprod", CONDENSE_ISA_I8MM, &out) == CONDENSE_DISPATCH_OK && out == CONDENSE_ISA_DOTPROD)
        #expect(condense_isa_resolve("i8mm", CONDENSE_ISA_DOTPROD, &out) == CONDENSE_DISPATCH_UNAVAILABLE)
        #expect(condense_isa_resolve("neon", CONDENSE_ISA_SCALAR, &out) == CONDENSE_DISPATCH_UNAVAILABLE)
        #expect(condense_isa_resolve("scalar", CONDENSE_ISA_NEON, &out) == CONDENSE_DISPATCH_OK && out == CONDENSE_ISA_SCALAR)
        #expect(ISA.allCases.map(\.description) == ["scalar", "avx2", "avxvnni", "avx512", "neon", "dotprod", "i8mm"])
        #expect(ISA.scalar.isRunnable && CondenseRuntime.runnableISAs.contains(CondenseRuntime.detectedISA))
    }
}

@Suite struct RegistryTests {
    @Test func priorityPicksNativeAndSaysSo() throws {
        let w = randomMatrix(10, 12, seed: 5)
        let placed = try BackendRegistry.standard().prepare(LinearLayer(weights: .dense(w)))
        #expect(placed.placement.backend == "native")
        #expect(placed.placement.kernel.hasPrefix("f32_gemm_"))
        #expect(placed.placement.kernel.hasSuffix("__\(CondenseRuntime.activeISA)"))
    }

    @Test func unavailableBackendIsSkippedWithReason() throws {
        struct Offline: KernelBackend {
            let name = "offline"
            var availability: BackendAvailability { .unavailable(reason: "library not found") }
            func supports(_ format: WeightFormat) -> Bool { true }
            var kernels: [KernelInfo] { [] }
            func prepare(_ layer: LinearLayer) throws -> any PreparedLinear { fatalError("never prepared") }
        }
        let r = BackendRegistry.standard()
        r.register(Offline(), first: true)
        #expect(r.backends.map(\.name) == ["offline", "native", "simd", "reference"])
        let placed = try r.prepare(LinearLayer(weights: .dense(randomMatrix(4, 4, seed: 6))))
        #expect(placed.placement.backend == "native")
        #expect(placed.placement.skipped == ["offline: library not found"])
        #expect(throws: CondenseError.backendUnavailable(name: "offline", reason: "library not found")) {
            try r.prepare(LinearLayer(weights: .dense(randomMatrix(4, 4, seed: 6))), policy: .forced("offline"))
        }
    }

    /// The portable backends agree with the reference too.
    @Test(arguments: ["simd", "reference"])
    func portableBackends(_ name: String) throws {
        var rng = TestRNG(9)
        for (m, n, k) in [(1, 1, 1), (3, 7, 15), (17, 33, 65), (2, 5, 1000), (65, 31, 17), (4, 9, 0)] {
            let x = rng.matrix(m, k), w = rng.matrix(n, k), b = rng.vector(n)
            for act in Activation.allCases {
                let p = try BackendRegistry.standard().prepare(
                    LinearLayer(weights: .dense(w), bias: b, activation: act), policy: .forced(name))
                let problem = Expected(x: x, w: w, bias: b, activation: act).firstMismatch(try p.apply(x))
                #expect(problem == nil, "\(name) M=\(m) N=\(n) K=\(k) \(act): \(problem ?? "")")
            }
        }
    }

    /// Prepared layers are immutable: many threads may apply the same one at once.
    @Test func concurrentApply() async throws {
        var rng = TestRNG(12)
        let w = rng.matrix(70, 90), x = rng.matrix(9, 90)
        let p = try BackendRegistry.standard().prepare(LinearLayer(weights: .dense(w), activation: .relu))
        let want = try p.apply(x)
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<16 { group.addTask { try p.apply(x) == want } }
            for try await same in group { #expect(same) }
        }
    }
}

@Suite struct MatrixTests {
    @Test func valueSemanticsAndAlignment() throws {
        var a = try Matrix<Float>(rows: 2, columns: 3, elements: [1, 2, 3, 4, 5, 6])
        let b = a
        a[0, 0] = 9
        #expect(b[0, 0] == 1 && a[0, 0] == 9)
        #expect(a.row(1) == [4, 5, 6])
        a.withUnsafeBufferPointer { #expect(UInt(bitPattern: $0.baseAddress) % 64 == 0) }
        let e = try Matrix<Float>(rows: 0, columns: 5)
        #expect(e.count == 0 && e.elements.isEmpty)
    }
}
