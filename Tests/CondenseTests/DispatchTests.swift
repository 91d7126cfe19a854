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
}
