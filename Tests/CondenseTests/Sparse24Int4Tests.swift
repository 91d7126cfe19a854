import CCondenseKernels
@testable import Condense
import Foundation
import Testing

/// 2:4-int4 (``Sparse24Int4Weights``, block `CONDENSE_BLOCK_S24Q4`): the format, and its kernels
/// against a Double reference on every ISA path.
@Suite struct Sparse24Int4Tests {
    /// A random matrix, then 2:4 by magnitude through the quantizer.
    static func weights(_ n: Int, _ k: Int, seed: UInt64) throws -> Sparse24Int4Weights {
        var rng = TestRNG(seed)
        return try Sparse24Int4Weights(quantizing: rng.matrix(n, k))
    }

    /// The same weights as Q4_0 blocks: dequantized by ggml's rule they are the 2:4-int4 weights
    /// exactly, and the dense Q4_0 kernel gives the 2:4 kernel's output (both quantize X per 32).
    @Test func asQ4_0BlocksTheWeightsAreExactlyTheSame() throws {
        let w = try Self.weights(19, 192, seed: 8)
        let data = w.q4_0Blocks()
        #expect(data.count == 19 * 192 / 32 * 18)
        let back = try GGUFDequantize.floats(data, type: .q4_0, count: 19 * 192, name: "q4_0")
        #expect(back == w.dequantized().elements)
        var rng = TestRNG(9)
        let x = rng.matrix(7, 192)
        let t = GGUFFile.Tensor(name: "w", dims: [192, 19], type: .q4_0, data: data)
        let a = try GGUFBlockLinear(w).apply(x), b = try GGUFBlockLinear(t).apply(x)
        for (u, v) in zip(a.elements, b.elements) { #expect(abs(u - v) <= 1e-4 * max(1, abs(u)), "\(u) vs \(v)") }
    }

    @Test func quantizingKeepsTwoOfFourOnAGridOf16() throws {
        var rng = TestRNG(3)
        let w = rng.matrix(5, 128)
        let q = try Sparse24Int4Weights(quantizing: w)
        let d = q.dequantized()
        for r in 0..<5 {
            for g in 0..<32 {
                let cols = (0..<4).map { 4 * g + $0 }
                let kept = cols.filter { d[r, $0] != 0 }
                #expect(kept.count <= 2)
                // The kept ones are the two largest magnitudes of the original four.
                let top = cols.sorted { abs(w[r, $0]) > abs(w[r, $1]) }.prefix(2)
                #expect(Set(kept).isSubset(of: Set(top)))
            }
            for b in 0..<2 {
                let amax = (0..<64).map { abs(w[r, 64 * b + $0]) }.max()!
                for c in 0..<64 where d[r, 64 * b + c] != 0 {
                    // Half a step, or a whole one for a value of the other sign than the extreme
                    // (which sits on code −8, so +8 clamps to +7).
                    let e = abs(d[r, 64 * b + c] - w[r, 64 * b + c])
                    #expect(e <= amax / 8 * 1.01)
                    if w[r, 64 * b + c].sign == (0..<64).map({ w[r, 64 * b + $0] }).max(by: { abs($0) < abs($1) })!.sign {
                        #expect(e <= amax / 16 * 1.01)
                    }
                }
            }
        }
        // A 2:4 matrix on the grid survives the round trip exactly.
        #expect(try Sparse24Int4Weights(quantizing: d).dequantized() == d)
        #expect(try Sparse24Int4Weights(rows: 5, columns: 128, blocks: q.blocks) == q)
    }

    @Test func refusesMalformedBlocks() throws {
        let q = try Self.weights(2, 64, seed: 1)
        var bad = q.blocks
        bad[2] = 0b0111_0011   // three kept in the second group of 4
        #expect(throws: CondenseError.invalidArgument("2:4-int4 row 0 block 0: mask byte 0 is 115, not 2 of 4")) {
            try Sparse24Int4Weights(rows: 2, columns: 64, blocks: bad)
        }
        #expect(throws: CondenseError.self) { try Sparse24Int4Weights(rows: 2, columns: 64, blocks: Array(q.blocks.dropLast())) }
        #expect(throws: CondenseError.self) { try Sparse24Int4Weights(rows: 2, columns: 96, blocks: q.blocks) }
        var inf = q.blocks
        (inf[0], inf[1]) = (0x00, 0x7C)
        #expect(throws: CondenseError.self) { try Sparse24Int4Weights(rows: 2, columns: 64, blocks: inf) }
        // The kernel's pack refuses a bad mask on its own (a caller bypassing the Swift checks).
        var out = [UInt8](repeating: 0, count: condense_gguf_packed_size(UInt32(CONDENSE_BLOCK_S24Q4), 2, 64))
        let status = out.withUnsafeMutableBytes { o in bad.withUnsafeBytes { condense_gguf_pack(UInt32(CONDENSE_BLOCK_S24Q4), $0.baseAddress, 2, 64, o.baseAddress) } }
        #expect(status == CONDENSE_ERR_INVALID.rawValue)
    }

    /// Every path against X quantized per block of 32 (q8_0) times the dequantized weights, in
    /// Double; odd N (partial groups of 16), every M tail of the 8-row tile, K from one block of
    /// 64 to many (1536, beyond one cache slice of a 16-row group); 1 and 2 threads; the same
    /// bits on every path.
    @Test func kernelsMatchTheQuantizedReference() throws {
        for (n, k) in [(1, 64), (7, 128), (33, 576), (5, 1536), (48, 64), (17, 192)] {
            let w = try Self.weights(n, k, seed: UInt64(n * 131 + k))
            let wf = w.dequantized().elements
            var rng = TestRNG(UInt64(k))
            let bias = rng.vector(n)
            for m in [1, 2, 3, 7, 8, 9, 17] {
                var x = rng.matrix(m, k)
                if m == 2 { x.withUnsafeMutableBufferPointer { p in for j in 0..<32 { p[j] = 0 } } }
                let (values, bounds) = GGUFBlockKernelTests.reference(.q4_0, Data(), dequantized: wf, n: n, k: k, x: x)
                var first: [Float]?
                for isa in runnableISAs {
                    for threads in [1, 2] {
                        let layer = try GGUFBlockLinear(w, bias: bias, isa: isa, threads: threads)
                        #expect(NativeKernels.all.contains { $0.name == layer.kernelName })
                        #expect(layer.kernelName.hasPrefix("s24q4_x16__"))
                        let y = try layer.apply(x).elements
                        let bad = (0..<(m * n)).first { abs(Double(y[$0]) - values[$0] - Double(bias[$0 % n])) > bounds[$0] + 1e-6 * abs(Double(bias[$0 % n])) }
                        #expect(bad == nil, "\(layer.kernelName) N=\(n) K=\(k) M=\(m) t=\(threads): element \(bad ?? 0) is \(bad.map { y[$0] } ?? 0), expected \(bad.map { values[$0] + Double(bias[$0 % n]) } ?? 0)")
                        if let first { #expect(first == y, "\(layer.kernelName) differs from the first path's bits") } else { first = y }
                    }
                }
            }
        }
    }

    @Test func stackedMatricesEqualTheirPartsSideBySide() throws {
        let parts = try [(32, 1), (16, 2), (9, 3)].map { try Self.weights($0.0, 128, seed: $0.1) }
        let stacked = try GGUFBlockLinear(stacking: parts)
        #expect(stacked.outFeatures == 57)
        var rng = TestRNG(5)
        let x = rng.matrix(3, 128)
        let y = try stacked.apply(x)
        var col = 0
        for p in parts {
            let alone = try GGUFBlockLinear(p).apply(x)
            for i in 0..<3 { for j in 0..<alone.columns { #expect(y[i, col + j] == alone[i, j]) } }
            col += alone.columns
        }
        #expect(throws: CondenseError.self) { try GGUFBlockLinear(stacking: [parts[0], Self.weights(4, 64, seed: 9)]) }
    }
}
