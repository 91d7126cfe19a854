/// Plain Swift loops with Double accumulation: slow, obvious, and the oracle every test
/// compares the fast kernels against.
public struct ReferenceBackend: KernelBackend {
    public let name = "reference"
    /// The plain-loop backend every kernel is checked against.
    public init() {}
    public var availability: BackendAvailability { .available }
    /// Every format: weights are densified and multiplied in plain Swift loops.
    public func supports(_ format: WeightFormat) -> Bool { true }
    public var kernels: [KernelInfo] { [KernelInfo(name: "f32_gemm_reference", isa: nil, runnable: true)] }

    /// The layer as plain loops over its dense weights (slow; for checking others).
    public func prepare(_ layer: LinearLayer) throws -> any PreparedLinear {
        ReferenceLinear(weight: layer.weights.densified(), bias: layer.bias, activation: layer.activation)
    }
}

struct ReferenceLinear: PreparedLinear {
    let weight: Matrix<Float>
    let bias: [Float]?
    let activation: Activation
    let backendName = "reference"
    let kernelName = "f32_gemm_reference"
    var inFeatures: Int { weight.columns }
    var outFeatures: Int { weight.rows }

    func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        try checkShapes(x, y)
        let (m, n, k) = (x.rows, weight.rows, weight.columns)
        x.withUnsafeBufferPointer { xp in
            weight.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                    for i in 0..<m {
                        for j in 0..<n {
                            var s = 0.0
                            for l in 0..<k { s += Double(xp[i * k + l]) * Double(wp[j * k + l]) }
                            if let bias { s += Double(bias[j]) }
                            yp[i * n + j] = activation.apply(Float(s))
                        }
                    }
                }
            }
        }
    }
}
