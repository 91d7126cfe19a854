import CCondenseKernels
import Condense
import Testing

/// Every C entry point that can fail says so, and the Swift layer throws instead of returning
/// stale output. The allocation hook fails the next allocations on this thread only, so these
/// tests run beside the others; 1 thread keeps every allocation on this thread.
@Suite struct KernelFailureTests {
    static let w24 = SparseKernelTests.matrix24(40, 96, seed: 990)

    static func layer(_ format: String) throws -> LinearLayer {
        let w = randomMatrix(40, 96, seed: 991)
        switch format {
        case "int8": return try LinearLayer(weights: .int8(Int8Weights(quantizing: w)))
        case "int4-integer": return try LinearLayer(weights: .int4(Int4Weights(quantizing: w, groupSize: 32, path: .integer)))
        case "int4-dequant": return try LinearLayer(weights: .int4(Int4Weights(quantizing: w, groupSize: 32, path: .dequantize)))
        case "2:4-int8": return try LinearLayer(weights: .dense(w24)).converted(to: .sparse24Int8)
        case "csr": return try LinearLayer(weights: .dense(SparseKernelTests.sparseMatrix(40, 96, density: 0.2, seed: 992))).converted(to: .csr)
        case "2:4": return try LinearLayer(weights: .dense(w24)).converted(to: .sparse24)
        default: return try LinearLayer(weights: .dense(w))
        }
    }

    /// A scratch buffer that cannot be allocated fails the call with the kernel named; once memory
    /// is back, the same prepared layer computes the right answer. On every ISA path, at M = 1 and
    /// at M = 16 (the sparse "xt" kernels allocate where the "dot" ones do not).
    @Test(arguments: ["int8", "int4-integer", "int4-dequant", "2:4-int8", "csr", "2:4"])
    func scratchAllocationFailureIsAnError(format: String) throws {
        let layer = try Self.layer(format)
        let w = layer.weights.densified()
        for isa in runnableISAs {
            let p = try NativeBackend(isa: isa, threads: 1).prepare(layer)
            for m in [1, 16] {
                let x = randomMatrix(m, 96, seed: UInt64(993 + m))
                let good = try p.apply(x)
                condense_test_fail_allocations(64)
                var y = try Matrix<Float>(rows: m, columns: 40)
                let failed: Bool
                do { try p.apply(x, into: &y); failed = false } catch CondenseError.kernelFailed(let kernel, let reason) {
                    failed = true
                    #expect(reason.contains("out of memory") && !kernel.isEmpty)
                }
                condense_test_fail_allocations(0)
                // Kernels that allocate nothing (f32 panel, 2:4 panel, CSR dot) may succeed; the
                // families that quantize X or transpose it must report the failure.
                let mustFail = ["int8", "int4-integer", "2:4-int8"].contains(format) && !(format == "int4-integer" && p.kernelName.contains("dequant"))
                    || (format == "int4-dequant") || (format == "csr" && p.kernelName(forBatch: m).contains("_xt_"))
                if mustFail { #expect(failed, "\(format) \(isa) M=\(m) \(p.kernelName(forBatch: m)): no error with allocations failing") }
                if !failed { #expect(y.withUnsafeBufferPointer(Array.init) == good.withUnsafeBufferPointer(Array.init)) }
                let again = try p.apply(x)
                #expect(again.withUnsafeBufferPointer(Array.init) == good.withUnsafeBufferPointer(Array.init))
                if format == "dense" { #expect(Expected(x: x, w: w, bias: nil, activation: .none).firstMismatch(again) == nil) }
            }
        }
    }

    /// A pack that cannot be allocated is a thrown outOfMemory, for every family.
    @Test(arguments: ["dense", "int8", "int4-integer", "int4-dequant", "2:4-int8", "csr", "2:4"])
    func packAllocationFailureIsAnError(format: String) throws {
        let layer = try Self.layer(format)
        condense_test_fail_allocations(1)
        defer { condense_test_fail_allocations(0) }
        #expect(throws: CondenseError.self) { try NativeBackend(threads: 1).prepare(layer) }
    }
}

/// A pinned ISA reaches every kernel a layer or model runs, not only the GEMM.
@Suite struct PinnedISATests {
    /// The activation quantizer on every ISA path against the Swift model of it.
    @Test(arguments: runnableISAs)
    func quantizerOnEveryPath(_ isa: ISA) {
        var rng = TestRNG(995)
        for (m, k) in [(1, 1), (3, 17), (5, 64), (2, 100), (4, 4097)] {
            let x = rng.matrix(m, k)
            let k4 = (k + 3) / 4 * 4, ldq = (k4 + 63) / 64 * 64
            var xq = [UInt8](repeating: 0xAA, count: m * ldq), sx = [Float](repeating: 0, count: m), zx = [Int32](repeating: 0, count: m)
            x.withUnsafeBufferPointer { xp in
                condense_q8_quantize_rows(xp.baseAddress, m, k, k, &xq, ldq, k4, &sx, &zx, nil, nil, condense_isa(UInt32(isa.rawValue)))
            }
            for i in 0..<m {
                let (s, z, q) = quantizedRowModel(x.row(i))
                #expect(abs(sx[i] - s) <= 1e-6 * s && Float(zx[i]) == z, "\(isa) row \(i)")
                let bad = (0..<k).first { Float(xq[i * ldq + $0]) != q[$0] }
                #expect(bad == nil, "\(isa) M=\(m) K=\(k) row \(i) col \(bad ?? 0)")
                #expect((k..<k4).allSatisfy { xq[i * ldq + $0] == 0 })
            }
        }
    }
}

/// Every kernel any native layer runs is in the C tables (the one registration point), and the
/// tables list every family.
@Suite struct KernelTableTests {
    @Test func everyKernelThatRunsIsRegistered() throws {
        let names = Set(NativeKernels.all.map(\.name))
        for prefix in ["f32_gemm_", "f32_s24_", "f32_csr_", "q8_gemm_", "q4_gemm_", "s24q8_dot_", "gguf_q4_1_x16_"] {
            #expect(names.contains { $0.hasPrefix(prefix) }, "no \(prefix) kernel listed")
        }
        for format in ["dense", "int8", "int4-integer", "int4-dequant", "2:4-int8", "csr", "2:4"] {
            let layer = try KernelFailureTests.layer(format)
            for isa in runnableISAs {
                let p = try NativeBackend(isa: isa).prepare(layer)
                for m in [1, 8, 16, 32, 64] {
                    #expect(names.contains(p.kernelName(forBatch: m)), "\(format) \(isa) M=\(m): \(p.kernelName(forBatch: m)) not in the tables")
                }
            }
        }
    }
}
