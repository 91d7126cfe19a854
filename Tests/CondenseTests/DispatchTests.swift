import Condense
import Foundation
import Testing

/// Measured dispatch. Which backend is faster is a benchmark question; these tests check that the
/// policy does what it says with whatever it measured.
@Suite(.serialized) struct DispatchTests {
    @Test func fastestKeepsTheMeasuredMinimumAndSaysWhy() throws {
        let registry = BackendRegistry.standard()
        let w = SparseKernelTests.sparseMatrix(96, 128, density: 0.5, seed: 900)
        let layer = try LinearLayer(weights: .dense(w), activation: .relu).converted(to: .csr)
        let placed = try registry.prepare(layer, policy: .fastest(batch: 32))
        let p = placed.placement
        #expect(p.source == "measured")
        let labels = p.timings.map(\.candidate)
        #expect(labels == ["native", "native (dense)", "simd (dense)"])  // reference is not a candidate
        let best = p.timings.min { $0.seconds < $1.seconds }!
        #expect(best.candidate.hasPrefix(p.backend))
        #expect((p.warning != nil) == best.candidate.hasSuffix("(dense)"))
        #expect(p.format == (best.candidate.hasSuffix("(dense)") ? .dense : .csr))
        let x = randomMatrix(5, 128, seed: 901)
        #expect(Expected(x: x, w: w, bias: nil, activation: .relu).firstMismatch(try placed.apply(x)) == nil)
        // The same signature and batch bucket comes from the cache, unmeasured.
        let again = try registry.prepare(layer, policy: .fastest(batch: 20))
        #expect(again.placement.source == "tuning cache" && again.placement.timings.isEmpty)
        #expect(again.placement.backend == p.backend && again.placement.format == p.format)
        #expect(throws: CondenseError.invalidArgument("fastest needs a batch size >= 1, got 0")) {
            try registry.prepare(layer, policy: .fastest(batch: 0))
        }
    }

    /// A slow plugin registered first wins under priority; under fastest it must be measured
    /// against the rest (the template's plain loop is the slowest here by far).
    @Test func pluginsAreCandidatesLikeAnyBackend() throws {
        let path = try PluginFixtures.build("condense_template", path: "Plugins/template/condense_template_plugin.c")
        let registry = BackendRegistry.standard()
        try registry.loadPlugin(at: path, first: true)
        let layer = try LinearLayer(weights: .dense(randomMatrix(64, 256, seed: 910)))
        #expect(try registry.prepare(layer).placement.backend == "template")
        let p = try registry.prepare(layer, policy: .fastest(batch: 8)).placement
        #expect(p.timings.map(\.candidate) == ["template", "native", "simd"])
        #expect(p.timings.min { $0.seconds < $1.seconds }!.candidate == p.backend)
    }

    @Test func tuningCachePersistsAndIsDroppedWhenTheEnvironmentChanges() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("condense-tuning-\(getpid()).json").path
        try? FileManager.default.removeItem(atPath: file)
        let layer = try LinearLayer(weights: .dense(randomMatrix(32, 64, seed: 920)))
        let r1 = BackendRegistry.standard()
        r1.tuningCache = try TuningCache(path: file)
        _ = try r1.prepare(layer, policy: .fastest(batch: 1))
        let stored = try String(contentsOfFile: file, encoding: .utf8)
        #expect(stored.contains("\"version\" : 1") && stored.contains("32x64"))
        // A new process (here: a new registry and cache) reuses it.
        let r2 = BackendRegistry.standard()
        r2.tuningCache = try TuningCache(path: file)
        #expect(r2.tuningCache.count == 1)
        #expect(try r2.prepare(layer, policy: .fastest(batch: 1)).placement.source == "tuning cache")
        // Another set of backends is another environment: measured again, file rewritten.
        struct Idle: KernelBackend {
            let name = "idle"
            var availability: BackendAvailability { .available }
            func supports(_ format: WeightFormat) -> Bool { false }
            var kernels: [KernelInfo] { [] }
            func prepare(_ layer: LinearLayer) throws -> any PreparedLinear { throw CondenseError.noBackend("idle") }
        }
        let r3 = BackendRegistry.standard()
        r3.register(Idle())
        r3.tuningCache = try TuningCache(path: file)
        #expect(r3.tuningCache.count == 1)
        #expect(try r3.prepare(layer, policy: .fastest(batch: 1)).placement.source == "measured")
        #expect(try TuningCache(path: file).count == 1)  // the old environment's entry was dropped
        try? FileManager.default.removeItem(atPath: file)
    }

    /// The cache key holds the format's parameters: a 50 % and a 99 % sparse CSR layer of one
    /// shape, static and dynamic int8, int4 of two group sizes are measured separately; the same
    /// parameters again come from the cache.
    @Test func tuningKeyHoldsTheFormatsParameters() throws {
        let registry = BackendRegistry.standard()
        let half = try LinearLayer(weights: .dense(SparseKernelTests.sparseMatrix(48, 64, density: 0.5, seed: 960))).converted(to: .csr)
        let sparse = try LinearLayer(weights: .dense(SparseKernelTests.sparseMatrix(48, 64, density: 0.01, seed: 961))).converted(to: .csr)
        let halfAgain = try LinearLayer(weights: .dense(SparseKernelTests.sparseMatrix(48, 64, density: 0.5, seed: 962))).converted(to: .csr)
        #expect(try registry.prepare(half, policy: .fastest(batch: 8)).placement.source == "measured")
        #expect(try registry.prepare(sparse, policy: .fastest(batch: 8)).placement.source == "measured")
        #expect(try registry.prepare(halfAgain, policy: .fastest(batch: 8)).placement.source == "tuning cache")
        let w = randomMatrix(48, 64, seed: 963)
        let dynamic = try Int8Weights(quantizing: w)
        let stat = try Int8Weights(rows: 48, columns: 64, values: dynamic.values, scales: dynamic.scales,
                                   staticActivation: .init(scale: 0.01, zeroPoint: 128))
        #expect(try registry.prepare(LinearLayer(weights: .int8(dynamic)), policy: .fastest(batch: 8)).placement.source == "measured")
        #expect(try registry.prepare(LinearLayer(weights: .int8(stat)), policy: .fastest(batch: 8)).placement.source == "measured")
        let g32 = try Int4Weights(quantizing: w, groupSize: 32), g32d = g32.with(path: .dequantize)
        #expect(try registry.prepare(LinearLayer(weights: .int4(g32)), policy: .fastest(batch: 8)).placement.source == "measured")
        #expect(try registry.prepare(LinearLayer(weights: .int4(g32d)), policy: .fastest(batch: 8)).placement.source == "measured")
        #expect(CompressedWeights.csr(try CSRMatrix(dense: SparseKernelTests.sparseMatrix(48, 64, density: 0.5, seed: 964))).tuningSignature
                == half.weights.tuningSignature)
    }

    /// Measured dispatch times a large layer's candidates on its first rows: the slice must be
    /// the same layer, row for row, in every format.
    @Test(arguments: ["dense", "2:4", "csr", "int8", "int4", "2:4-int8"])
    func leadingRowsAreTheLayersFirstOutputs(format: String) throws {
        let (n, k, rows) = (37, 70, 13)
        let w24 = SparseKernelTests.matrix24(n, k, seed: 930)
        let layer: LinearLayer
        switch format {
        case "2:4": layer = try LinearLayer(weights: .sparse24(Sparse24Matrix(dense: w24)), activation: .relu)
        case "2:4-int8": layer = try LinearLayer(weights: .sparse24Int8(Sparse24Int8Weights(quantizing: Sparse24Matrix(dense: w24))))
        case "csr": layer = try LinearLayer(weights: .csr(CSRMatrix(dense: SparseKernelTests.sparseMatrix(n, k, density: 0.2, seed: 931))))
        case "int8": layer = try LinearLayer(weights: .int8(Int8Weights(quantizing: randomMatrix(n, k, seed: 932))), bias: (0..<n).map { Float($0) })
        case "int4": layer = try LinearLayer(weights: .int4(Int4Weights(quantizing: randomMatrix(n, k, seed: 933), groupSize: 16)))
        default: layer = try LinearLayer(weights: .dense(randomMatrix(n, k, seed: 934)), bias: (0..<n).map { -Float($0) }, activation: .gelu)
        }
        let slice = try layer.leadingRows(rows)
        #expect(slice.format == layer.format && slice.outFeatures == rows && slice.inFeatures == k)
        let registry = BackendRegistry.standard()
        let x = randomMatrix(3, k, seed: 935)
        let full = try registry.prepare(layer, policy: .forced("reference")).apply(x)
        let part = try registry.prepare(slice, policy: .forced("reference")).apply(x)
        for r in 0..<3 { for c in 0..<rows { #expect(part[r, c] == full[r, c]) } }
        #expect(throws: CondenseError.invalidArgument("leading rows must be in 1…\(n), got 0")) { try layer.leadingRows(0) }
        #expect(throws: CondenseError.invalidArgument("leading rows must be in 1…\(n), got \(n + 1)")) { try layer.leadingRows(n + 1) }
    }

    /// A layer too big to pack once per candidate is triaged on a slice; the winner is prepared
    /// whole and computes the whole layer.
    @Test func largeLayersAreTriagedOnASlice() throws {
        let (n, k) = (640, 2048)  // 5 MB of f32: a 512-row slice
        let w = randomMatrix(n, k, seed: 940)
        let layer = try LinearLayer(weights: .int8(Int8Weights(quantizing: w)))
        let placed = try BackendRegistry.standard().prepare(layer, policy: .fastest(batch: 1))
        let p = placed.placement
        #expect(p.sliceRows == 512)
        #expect(p.sliceTimings.map(\.candidate) == ["native", "native (dense)", "simd (dense)"])
        // Each candidate is either dropped with its ratio or a finalist; finalists are timed whole
        // when more than one is left, and a lone finalist wins without a second measurement. (Which
        // candidates come within the margin is a timing, so the test holds for any outcome.)
        let candidates = p.sliceTimings.map(\.candidate)
        // Triage entries read "<label> 3.1× on 512 rows"; labels contain spaces ("native (dense)").
        let droppedLabels = Set(p.triaged.map { $0.split(separator: " ").dropLast(4).joined(separator: " ") })
        let finalists = candidates.filter { !droppedLabels.contains($0) }
        #expect(!finalists.isEmpty && finalists.contains { p.backend == $0 || $0.hasPrefix(p.backend + " ") })
        for c in candidates {
            let dropped = droppedLabels.contains(c)
            let timed = p.timings.contains { $0.candidate == c }
            #expect(finalists.count > 1 ? dropped != timed : !timed, "\(c): dropped \(dropped), timed \(timed), finalists \(finalists)")
        }
        #expect(placed.outFeatures == n)
        let x = randomMatrix(2, k, seed: 941)
        let y = try placed.apply(x)
        // The winner's own prepare of the whole layer computes exactly the same.
        let same = try BackendRegistry.standard().prepare(layer.converted(to: p.format), policy: .forced(p.backend)).apply(x)
        #expect(y.withUnsafeBufferPointer(Array.init) == same.withUnsafeBufferPointer(Array.init))
        #expect(BackendRegistry.sliceRows(n: 4096, k: 4096) == 256 && BackendRegistry.sliceRows(n: 768, k: 768) == 768)
    }
}

/// Two forms of one layer, each run at the row counts where it was measured faster.
@Suite struct RowSplitTests {
    /// A layer that writes `value` everywhere, taking `delay` per call.
    struct Constant: PreparedLinear {
        let value: Float, delay: UInt32
        var backendName: String { "test" }
        var kernelName: String { "constant \(value)" }
        var inFeatures: Int { 8 }
        var outFeatures: Int { 3 }
        func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
            if delay > 0 { usleep(delay) }
            y.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] = value } }
        }
    }

    @Test func eachFormRunsOnItsSideOfTheCrossover() throws {
        let split = try RowSplitLinear(small: Constant(value: 1, delay: 0), large: Constant(value: 2, delay: 0), crossover: 16)
        for (m, want) in [(1, Float(1)), (15, 1), (16, 2), (300, 2)] {
            let y = try split.apply(Matrix(rows: m, columns: 8))
            #expect(y.elements.allSatisfy { $0 == want }, "\(m) rows")
            #expect(split.kernelName(forBatch: m) == "constant \(want)")
        }
        #expect(throws: CondenseError.self) { try RowSplitLinear(small: Constant(value: 1, delay: 0), large: Constant(value: 2, delay: 0), crossover: 1) }
    }

    /// The measurement picks the faster form: a large form that is always slower is never used;
    /// one that is always faster runs from the smallest measured row count.
    @Test func theCrossoverIsMeasured() throws {
        let fast = Constant(value: 1, delay: 0), slow = Constant(value: 2, delay: 2000)
        #expect(try RowSplitLinear.crossover(fast, slow, samples: 3) == nil)
        #expect(try RowSplitLinear.crossover(slow, fast, samples: 3) == RowSplitLinear.measuredRows[0])
        // Faster, but not by the margin the second form's memory must buy.
        #expect(try RowSplitLinear.crossover(slow, Constant(value: 3, delay: 1900), samples: 3, margin: 1.5) == nil)
        // Remembered by key: a measured "no split" is told apart from "not measured yet".
        let key = "row-split-test-\(UInt64.random(in: 0...UInt64.max))"
        #expect(RowSplitLinear.remembered(key) == nil)
        #expect(try RowSplitLinear.crossover(fast, slow, samples: 3, key: key) == nil)
        #expect(RowSplitLinear.remembered(key) == .some(nil))
    }
}
