import Condense
import Testing

// The Swift backend example of docs/plugin-abi.md, verbatim: keep the two in step.

/// Runs dense layers with a plain Swift loop: the smallest complete backend.
struct LoopBackend: KernelBackend {
    let name = "loop"
    var availability: BackendAvailability { .available }
    func supports(_ format: WeightFormat) -> Bool { format == .dense }
    var kernels: [KernelInfo] { [KernelInfo(name: "f32_loop", isa: nil, runnable: true)] }

    func prepare(_ layer: LinearLayer) throws -> any PreparedLinear {
        guard case let .dense(w) = layer.weights else {
            throw CondenseError.unsupportedFormat(backend: name, format: layer.format.description)
        }
        return LoopLinear(w: w.elements, bias: layer.bias, activation: layer.activation,
                          inFeatures: w.columns, outFeatures: w.rows)
    }
}

/// Immutable after prepare, so `apply` is safe from many threads at once.
struct LoopLinear: PreparedLinear {
    let w: [Float], bias: [Float]?, activation: Activation
    let inFeatures: Int, outFeatures: Int
    var backendName: String { "loop" }
    var kernelName: String { "f32_loop" }

    func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        try checkShapes(x, y)
        for i in 0..<x.rows {
            for j in 0..<outFeatures {
                var s = bias?[j] ?? 0
                for k in 0..<inFeatures { s += x[i, k] * w[j * inFeatures + k] }
                y[i, j] = activation.apply(s)
            }
        }
    }
}

@Suite struct SwiftBackendExampleTests {
    @Test func registeredSwiftBackendRunsLayersAndIsMeasuredUnderFastest() throws {
        let registry = BackendRegistry.standard()
        registry.register(LoopBackend(), first: true)
        var rng = TestRNG(870)
        let w = rng.matrix(9, 23), b = rng.vector(9), x = rng.matrix(4, 23)
        let layer = try LinearLayer(weights: .dense(w), bias: b, activation: .gelu)
        let placed = try registry.prepare(layer)  // priority: first registered
        #expect(placed.placement.backend == "loop" && placed.placement.kernel == "f32_loop")
        #expect(Expected(x: x, w: w, bias: b, activation: .gelu).firstMismatch(try placed.apply(x)) == nil)
        #expect(throws: CondenseError.self) { try placed.apply(rng.matrix(4, 22)) }
        // Under .fastest it is one more measured candidate.
        let measured = try registry.prepare(layer, policy: .fastest(batch: 4))
        #expect(measured.placement.timings.map(\.candidate).contains("loop"))
        // Formats it does not run go elsewhere, with the reason recorded.
        let q = try registry.prepare(layer.converted(to: .int8))
        #expect(q.placement.backend == "native" && q.placement.skipped.contains("loop: no int8 kernel"))
    }
}
