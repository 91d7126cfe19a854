import CCondenseKernels
import Foundation
import Condense
import Testing

/// bf16 and f16 weights: every kernel of the half family this CPU runs, against the f64
/// reference on the exactly widened weights (and, for the bf16 dot kernel, on X rounded to bf16
/// as that kernel rounds it).
@Suite struct HalfPrecisionTests {
    /// (M, N, K): tails in N (not a multiple of 16 or 32), odd K, K beyond one 4096 slice.
    static let shapes = [(1, 7, 16), (3, 33, 31), (5, 17, 101), (13, 40, 257), (1, 65, 1000), (40, 5, 64), (4, 9, 1),
                         (2, 17, 4095), (3, 9, 8195), (30, 70, 130)]

    static func kernels(for kind: HalfPrecisionMatrix.Kind) -> [UnsafePointer<condense_half_kernel>] {
        (0..<condense_half_kernel_count()).compactMap { i in
            guard let k = condense_half_kernel_at(i), (k.pointee.types >> UInt32(kind == .bf16 ? 0 : 1)) & 1 == 1,
                  ISA(rawValue: Int(k.pointee.isa.rawValue)).map(\.isRunnable) ?? false,
                  condense_cpu_features() & k.pointee.features == k.pointee.features else { return nil }
            return k
        }
    }

    func run(_ kernel: UnsafePointer<condense_half_kernel>, _ h: HalfPrecisionMatrix, bias: [Float]?, act: Activation,
             x: Matrix<Float>, threads: Int) throws -> Matrix<Float> {
        let p = h.bits.withUnsafeBufferPointer { bp in
            bias.withUnsafeBufferPointerOrNil { condense_half_pack_for(kernel, h.kind == .bf16 ? 0 : 1, bp.baseAddress, h.rows, h.columns, h.columns, $0) }
        }
        let packed = try #require(p)
        defer { condense_half_packed_free(packed) }
        var y = try Matrix<Float>(rows: x.rows, columns: h.rows, elements: [Float](repeating: .nan, count: x.rows * h.rows))
        let status = x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                condense_half_gemm(packed, x.rows, xp.baseAddress, x.columns, yp.baseAddress, h.rows,
                                   act == .none ? 0 : act == .relu ? 1 : 2, Int32(threads))
            }
        }
        #expect(status == 0)
        return y
    }

    @Test(arguments: [HalfPrecisionMatrix.Kind.bf16, .f16])
    func everyKernelAgainstTheReference(_ kind: HalfPrecisionMatrix.Kind) throws {
        var rng = TestRNG(kind == .bf16 ? 61 : 62)
        let kernels = Self.kernels(for: kind)
        #expect(kernels.count >= 1)
        for (m, n, k) in Self.shapes {
            let w = rng.matrix(n, k), x = rng.matrix(m, k), b = rng.vector(n)
            let h = HalfPrecisionMatrix(converting: w, to: kind)
            for kernel in kernels {
                let name = String(cString: kernel.pointee.name)
                let roundsX = kernel.pointee.bf16_activations != 0
                let xr = roundsX ? try Matrix(rows: m, columns: k, elements: x.elements.map {
                    Float(bitPattern: UInt32(condense_f32_to_bf16($0)) << 16) }) : x
                for act in [Activation.none, .gelu] {
                    for bias in [nil, b] {
                        let expected = Expected(x: xr, w: h.densified(), bias: bias, activation: act)
                        for threads in [1, 2] {
                            let problem = expected.firstMismatch(try run(kernel, h, bias: bias, act: act, x: x, threads: threads))
                            #expect(problem == nil, "\(name) \(kind) M=\(m) N=\(n) K=\(k) act=\(act) bias=\(bias != nil) t=\(threads): \(problem ?? "")")
                        }
                    }
                }
            }
        }
    }

    /// The format as a user meets it: `converted(to:)`, every ISA level through the backend,
    /// the byte count, and the round trip through a safetensors layer file.
    @Test(arguments: [HalfPrecisionMatrix.Kind.bf16, .f16])
    func layersConvertRunAndRoundTrip(_ kind: HalfPrecisionMatrix.Kind) throws {
        let w = randomMatrix(37, 70, seed: 63), x = randomMatrix(9, 70, seed: 64)
        let layer = try LinearLayer(weights: .dense(w), bias: Array(repeating: 0.5, count: 37), activation: .relu)
            .converted(to: kind == .bf16 ? .bf16 : .f16)
        #expect(layer.format.description == kind.rawValue && layer.weights.byteCount == 37 * 70 * 2)
        guard case let .half(h) = layer.weights else { Issue.record("not half"); return }
        #expect(h.kind == kind)
        let exact = Expected(x: x, w: h.densified(), bias: layer.bias, activation: .relu)
        // Rounding error of the weights themselves: bf16 keeps 8 significant bits, f16 11.
        let err = relativeError(try ReferenceBackend().prepare(layer).apply(x),
                                try ReferenceBackend().prepare(LinearLayer(weights: .dense(w), bias: layer.bias, activation: .relu)).apply(x))
        #expect(err < (kind == .bf16 ? 1e-2 : 2e-3) && err > 0)
        for isa in runnableISAs {
            let p = try NativeBackend(isa: isa, threads: 2).prepare(layer)
            let y = try p.apply(x)
            if p.kernelName.contains("bf16_dot") {
                #expect(relativeError(y, try ReferenceBackend().prepare(layer).apply(x)) < 1e-2, "\(p.kernelName)")
            } else {
                #expect(exact.firstMismatch(y) == nil, "\(p.kernelName) at \(isa)")
            }
        }
        var st = SafeTensors()
        try st.add(layer, prefix: "l.")
        let back = try SafeTensors(data: st.serialized()).linearLayer(prefix: "l.")
        guard case let .half(h2) = back.weights else { Issue.record("read back as \(back.format)"); return }
        #expect(h2 == h && back.bias == layer.bias && back.activation == .relu)
    }

    /// A layer file whose `weight` is not what its format says: the other 16-bit type, f32, a
    /// truncated count. Each is an error naming the tensor, never a reinterpretation.
    @Test func layerFilesWithTheWrongWeightAreErrors() throws {
        let layer = try LinearLayer(weights: .dense(randomMatrix(3, 5, seed: 65))).converted(to: .bf16)
        guard case let .half(h) = layer.weights else { Issue.record("not half"); return }
        let bytes = h.bits.withUnsafeBytes { Data($0) }
        let cases: [(SafeTensors.DType, [Int], Data)] = [(.f16, [3, 5], bytes), (.f32, [3, 5], bytes + bytes), (.bf16, [3, 4], bytes.prefix(24))]
        for (dtype, shape, data) in cases {
            var st = SafeTensors()
            st.metadata = ["l.format": "bf16", "l.activation": "none", "l.shape": "3,5"]
            try st.add("l.weight", dtype: dtype, shape: shape, bytes: Data(data))
            let f = try SafeTensors(data: st.serialized())
            do {
                _ = try f.linearLayer(prefix: "l.")
                Issue.record("\(dtype) \(shape) loaded")
            } catch let e as CondenseError {
                #expect("\(e)".contains("l.weight"), "\(e)")
            }
        }
    }

    @Test func conversionRoundsToNearestEvenAndKeepsSpecials() throws {
        // 1 + 2^-8 is halfway between two bf16 values: ties to even (1.0); 1 + 3·2^-8 rounds up.
        let w = try Matrix<Float>(rows: 1, columns: 5, elements: [1 + 0x1p-8, 1 + 3 * 0x1p-8, .infinity, -0.0, 70000])
        let b = HalfPrecisionMatrix(converting: w, to: .bf16)
        #expect(b.bits[0] == 0x3F80 && b.bits[1] == 0x3F82 && b.bits[2] == 0x7F80 && b.bits[3] == 0x8000)
        #expect(condense_f32_to_bf16(.nan) & 0x7FFF > 0x7F80)
        let f = HalfPrecisionMatrix(converting: w, to: .f16)
        #expect(f.bits[2] == 0x7C00 && f.bits[3] == 0x8000 && f.bits[4] == 0x7C00)  // beyond 65504: inf
        #expect(throws: CondenseError.shapeMismatch("bf16 weights 2×3 need 6 values, got 5")) {
            try HalfPrecisionMatrix(kind: .bf16, rows: 2, columns: 3, bits: [0, 0, 0, 0, 0])
        }
    }
}

/// ‖a − b‖ / ‖b‖.
private func relativeError(_ a: Matrix<Float>, _ b: Matrix<Float>) -> Double {
    var d = 0.0, n = 0.0
    for (x, y) in zip(a.elements, b.elements) { d += Double(x - y) * Double(x - y); n += Double(y) * Double(y) }
    return (d / max(n, 1e-30)).squareRoot()
}

private extension Optional where Wrapped == [Float] {
    func withUnsafeBufferPointerOrNil<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        switch self {
        case .none: return body(nil)
        case let .some(a): return a.withUnsafeBufferPointer { body($0.baseAddress) }
        }
    }
}
