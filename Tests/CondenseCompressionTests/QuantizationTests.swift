import Condense
import CondenseCompression
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct QuantizationTests {
    @Test(arguments: [QuantBits.int8, .int4])
    func roundTripWithinHalfAStep(_ bits: QuantBits) throws {
        let w = rand(17, 45, seed: 10)
        for mode in [QuantMode.symmetric, .asymmetric] {
            for g in [QuantGranularity.perTensor, .perChannel, .perGroup(32), .perGroup(7)] {
                let q = try Quantizer.quantize(w, bits: bits, mode: mode, granularity: g)
                let d = q.dequantized()
                for r in 0..<17 {
                    for c in 0..<45 {
                        let s = q.scales[paramIndex(q, r, c)]
                        #expect(abs(d[r, c] - w[r, c]) <= s / 2 + 1e-6, "\(bits) \(mode) \(g) (\(r),\(c))")
                    }
                }
                let err = QuantizationError.measure(w, d)
                #expect(err.sqnr > (bits == .int8 ? 35 : 12), "\(bits) \(mode) \(g): SQNR \(err.sqnr)")
            }
        }
    }

    func paramIndex(_ q: QuantizedMatrix, _ r: Int, _ c: Int) -> Int {
        switch q.granularity {
        case .perTensor: return 0
        case .perChannel: return r
        case let .perGroup(g): return r * ((q.columns + g - 1) / g) + c / g
        }
    }

    /// Pruned weights stay exactly zero after quantization, in every mode.
    @Test func prunedZerosStayExactlyZero() throws {
        let w = try Pruning.unstructured(rand(20, 64, seed: 11), sparsity: 0.7).apply(to: rand(20, 64, seed: 11))
        var shifted = w  // all non-zeros positive: an asymmetric range that would not contain 0
        shifted.withUnsafeMutableBufferPointer { p in for i in p.indices where p[i] != 0 { p[i] = abs(p[i]) + 1 } }
        for m in [w, shifted] {
            for bits in [QuantBits.int8, .int4] {
                for mode in [QuantMode.symmetric, .asymmetric] {
                    let d = try Quantizer.quantize(m, bits: bits, mode: mode, granularity: .perGroup(16)).dequantized()
                    for (a, b) in zip(m.elements, d.elements) where a == 0 { #expect(b == 0, "\(bits) \(mode)") }
                }
            }
        }
    }

    @Test func int4PackingRoundTripsAndLayout() throws {
        for k in [1, 2, 7, 32] {
            let w = rand(5, k, seed: UInt64(20 + k))
            for mode in [QuantMode.symmetric, .asymmetric] {
                let q = try Quantizer.quantize(w, bits: .int4, mode: mode, granularity: .perGroup(32))
                let packed = q.packedInt4
                #expect(packed.count == 5 * ((k + 1) / 2))
                let back = try QuantizedMatrix.unpackInt4(packed, rows: 5, columns: k, signed: mode == .symmetric)
                #expect(back == q.values, "K=\(k) \(mode)")
            }
        }
        let one = try Quantizer.quantize(try Matrix<Float>(rows: 1, columns: 2, elements: [-7, 7]), bits: .int4, granularity: .perTensor)
        #expect(one.values == [-7, 7] && one.packedInt4 == [0x79])  // low nibble −7 = 0x9, high 7
    }

    @Test func observers() throws {
        var xs = (0..<10_000).map { Float($0 % 100) / 100 }
        xs[5] = 1000  // one huge outlier
        let (_, hiMinMax) = try Quantizer.range(xs, observer: .minMax)
        let (_, hiPct) = try Quantizer.range(xs, observer: .percentile(99.9))
        #expect(hiMinMax == 1000 && hiPct < 1.5)
        // Heavy tails at 4 bits: MSE-optimal clipping lowers the error below min–max's.
        var seed: UInt64 = 99
        let lap: [Float] = (0..<5000).map { i in
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            let u = Float(seed >> 40) / Float(1 << 24) + 1e-7
            return (i % 2 == 0 ? 1 : -1) * -log(u)
        }
        func mse(_ r: (Float, Float)) -> Double {
            let s = max(abs(r.0), abs(r.1)) / 7
            return lap.reduce(0.0) { acc, x in
                let q = max(-8, min(7, (x / s).rounded(.toNearestOrEven)))
                return acc + Double((x - s * q) * (x - s * q))
            }
        }
        let rMinMax = try Quantizer.range(lap, observer: .minMax)
        let rMSE = try Quantizer.range(lap, observer: .mseOptimal, bits: .int4, mode: .symmetric)
        #expect(rMSE.1 < rMinMax.1 && mse(rMSE) < mse(rMinMax))
        var obs = ActivationObserver(.movingAverageMinMax(momentum: 0.5))
        try obs.observe(try Matrix<Float>(rows: 1, columns: 2, elements: [-1, 1]))
        try obs.observe(try Matrix<Float>(rows: 1, columns: 2, elements: [-3, 3]))
        #expect(obs.low == -2 && obs.high == 2)
        let (s, z) = obs.parameters()
        #expect(abs(s - 4 / 255) < 1e-7 && z == Int32((2 / s).rounded()))
    }

    /// Outliers, all-equal rows, all zeros and non-finite values give sane parameters.
    @Test func extremeRows() throws {
        let w = try Matrix<Float>(rows: 4, columns: 4, elements: [
            0, 0, 0, 0,  3, 3, 3, 3,  1e-3, -1e-3, 5e4, 0,  -1, .nan, .infinity, 1])
        for mode in [QuantMode.symmetric, .asymmetric] {
            let q = try Quantizer.quantize(w, bits: .int8, mode: mode, granularity: .perChannel)
            let d = q.dequantized()
            #expect(d.row(0) == [0, 0, 0, 0])
            for c in 0..<4 { #expect(abs(d[1, c] - 3) < 0.02, "\(mode) all-equal row") }
            #expect(abs(d[2, 2] - 5e4) / 5e4 < 0.01)
            #expect(q.scales.allSatisfy { $0.isFinite && $0 > 0 })
        }
    }

    @Test func badParametersAreErrors() {
        #expect(throws: CondenseError.invalidArgument("quantization supports 8 or 4 bits, got 3")) { try QuantBits(checking: 3) }
        #expect(throws: CondenseError.invalidArgument("quantization group size must be >= 1, got 0")) {
            try Quantizer.quantize(rand(2, 8, seed: 1), bits: .int4, granularity: .perGroup(0))
        }
        #expect(throws: CondenseError.invalidArgument("percentile must be in (0, 100], got 120.0")) {
            try Quantizer.quantize(rand(2, 8, seed: 1), bits: .int8, observer: .percentile(120))
        }
        #expect(throws: CondenseError.self) {
            try Quantizer.quantize(rand(2, 8, seed: 1), bits: .int8, mode: .asymmetric).int8Weights()
        }
    }

    /// The quantizer's int8 output runs on the native integer kernels.
    @Test func quantizerFeedsTheInt8Kernels() throws {
        let w = rand(30, 70, seed: 30), x = rand(5, 70, seed: 31)
        let q = try Quantizer.quantize(w, bits: .int8, mode: .symmetric, granularity: .perChannel, observer: .mseOptimal)
        let p = try BackendRegistry.standard().prepare(LinearLayer(weights: .int8(q.int8Weights())))
        #expect(p.placement.backend == "native" && p.kernelName.hasPrefix("q8_gemm_"))
        let y = try p.apply(x), f = try BackendRegistry.standard().prepare(LinearLayer(weights: .dense(w))).apply(x)
        for (a, b) in zip(f.elements, y.elements) { #expect(abs(a - b) < 0.1) }
    }
}

@Suite struct Int4BridgeTests {
    /// The quantizer's symmetric int4 output and Int4Weights(quantizing:) agree, and run natively.
    @Test func quantizerToInt4Kernels() throws {
        let w = rand(20, 70, seed: 40), x = rand(3, 70, seed: 41)
        let q = try Quantizer.quantize(w, bits: .int4, mode: .symmetric, granularity: .perGroup(32))
        let i4 = try q.int4Weights(path: .dequantize)
        #expect(i4.densified() == q.dequantized())
        let y = try BackendRegistry.standard().prepare(LinearLayer(weights: .int4(i4))).apply(x)
        let ref = try BackendRegistry.standard().prepare(LinearLayer(weights: .dense(q.dequantized()))).apply(x)
        for (a, b) in zip(y.elements, ref.elements) { #expect(abs(a - b) < 1e-4) }
        #expect(throws: CondenseError.self) { try Quantizer.quantize(w, bits: .int4, mode: .asymmetric).int4Weights() }
    }
}
