import Dispatch

/// Pure Swift on `SIMD16<Float>`: the portable path for CPUs without a C kernel for their ISA
/// (on arm64 the SIMD types lower to NEON). Swift has no per-function ISA choice, so this runs
/// at the build's baseline (SSE2 on x86-64); the ISA-specific speed lives in the native backend.
public struct SIMDBackend: KernelBackend {
    public let name = "simd"
    public init() {}
    public var availability: BackendAvailability { .available }
    public func supports(_ format: WeightFormat) -> Bool { format == .dense }
    public var kernels: [KernelInfo] { [KernelInfo(name: "f32_gemm_4xdot16__swiftsimd", isa: nil, runnable: true)] }

    public func prepare(_ layer: LinearLayer) throws -> any PreparedLinear {
        guard case let .dense(w) = layer.weights else {
            throw CondenseError.unsupportedFormat(backend: name, format: layer.format.description)
        }
        return try SIMDLinear(weight: w, bias: layer.bias, activation: layer.activation)
    }
}

/// Weights stored row-major with K padded to a multiple of 16 (zeros), so every dot product
/// runs in whole SIMD16 steps; four output rows share each load of x.
final class SIMDLinear: PreparedLinear, @unchecked Sendable {
    private let padded: Matrix<Float>  // [N, K16]
    private let bias: [Float]?
    private let activation: Activation
    let backendName = "simd"
    let kernelName = "f32_gemm_4xdot16__swiftsimd"
    let inFeatures: Int
    let outFeatures: Int
    private let k16: Int

    init(weight: Matrix<Float>, bias: [Float]?, activation: Activation) throws {
        inFeatures = weight.columns
        outFeatures = weight.rows
        k16 = (weight.columns + 15) / 16 * 16
        var p = try Matrix<Float>(rows: weight.rows, columns: k16)
        let (n, k, k16) = (weight.rows, weight.columns, k16)
        weight.withUnsafeBufferPointer { src in
            p.withUnsafeMutableBufferPointer { dst in
                for r in 0..<n { for c in 0..<k { dst[r * k16 + c] = src[r * k + c] } }
            }
        }
        padded = p
        self.bias = bias
        self.activation = activation
    }

    func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        try checkShapes(x, y)
        let (m, n, k, k16) = (x.rows, outFeatures, inFeatures, k16)
        guard m > 0, n > 0 else { return }
        let chunks = m * n * k >= 1 << 18 ? max(1, min(CondenseRuntime.threads, m)) : 1
        let rowsPerChunk = (m + chunks - 1) / chunks
        x.withUnsafeBufferPointer { xp in
            padded.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                    nonisolated(unsafe) let xb = xp.baseAddress!
                    nonisolated(unsafe) let wb = wp.baseAddress!
                    nonisolated(unsafe) let yb = yp.baseAddress!
                    DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: k16)
                        defer { scratch.deallocate() }
                        scratch.initialize(repeating: 0, count: k16)
                        let r0 = chunk * rowsPerChunk
                        for i in r0..<min(m, r0 + rowsPerChunk) {
                            // Copy the row into a zero-padded buffer so the K tail is whole SIMD16 steps.
                            scratch.update(from: xb + i * k, count: k)
                            self.row(scratch, wb, yb + i * n)
                        }
                    }
                }
            }
        }
    }

    @inline(__always) private func load(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
    }

    private func row(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        let (n, k16) = (outFeatures, k16)
        var j = 0
        while j + 4 <= n {
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
            let (w0, w1, w2, w3) = (w + j * k16, w + (j + 1) * k16, w + (j + 2) * k16, w + (j + 3) * k16)
            var l = 0
            while l < k16 {
                let xv = load(x + l)
                a0 += xv * load(w0 + l)
                a1 += xv * load(w1 + l)
                a2 += xv * load(w2 + l)
                a3 += xv * load(w3 + l)
                l += 16
            }
            y[j] = finish(a0.sum(), j)
            y[j + 1] = finish(a1.sum(), j + 1)
            y[j + 2] = finish(a2.sum(), j + 2)
            y[j + 3] = finish(a3.sum(), j + 3)
            j += 4
        }
        while j < n {
            var a = SIMD16<Float>()
            var l = 0
            while l < k16 { a += load(x + l) * load(w + j * k16 + l); l += 16 }
            y[j] = finish(a.sum(), j)
            j += 1
        }
    }

    @inline(__always) private func finish(_ s: Float, _ j: Int) -> Float {
        activation.apply(bias.map { s + $0[j] } ?? s)
    }
}
