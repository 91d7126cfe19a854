import CCondenseKernels
import Foundation

/// 2:4 sparse weights with signed 4-bit values and one f16 scale per 64 columns: 3.25 bits per
/// weight (Q4_0 is 4.5, Q4_1 5), for token generation, which reads every weight once per token.
/// Stored as rows of K/64 blocks of 26 bytes (`CONDENSE_BLOCK_S24Q4`): the f16 scale `d`, a
/// 64-bit keep-mask with exactly 2 bits of every 4, and the 32 kept codes `q + 8` as nibbles;
/// `W[n, c] = d·q` where kept, 0 elsewhere. Run by ``GGUFBlockLinear`` (X quantized per block of
/// 32 to int8, VNNI dots over the weights expanded by `vpexpandb`).
///
/// ```swift
/// let w24 = try Sparse24Int4Weights(quantizing: w)      // keeps the 2 largest of every 4
/// let layer = try GGUFBlockLinear(w24)
/// let y = try layer.apply(x)
/// ```
public struct Sparse24Int4Weights: Sendable, Equatable {
    public let rows: Int
    public let columns: Int
    /// `rows × columns/64 × 26` bytes.
    public let blocks: [UInt8]

    /// Bytes per block of 64 columns.
    public static let blockBytes = 26

    /// Validates raw blocks: the count, 2 kept of every 4 columns, finite scales.
    /// - Throws: ``CondenseError/invalidArgument(_:)`` naming the row and block.
    public init(rows: Int, columns: Int, blocks: [UInt8]) throws {
        guard rows >= 1, columns >= 64, columns % 64 == 0 else {
            throw CondenseError.invalidArgument("2:4-int4 needs K a multiple of 64 and N >= 1, got \(rows)×\(columns)")
        }
        let need = try CheckedSize.product(rows, columns / 64, Self.blockBytes, of: "2:4-int4 blocks")
        guard blocks.count == need else { throw CondenseError.invalidArgument("2:4-int4 \(rows)×\(columns): \(blocks.count) bytes, \(need) needed") }
        for b in 0..<(need / Self.blockBytes) {
            let o = b * Self.blockBytes
            let d = Float(Float16(bitPattern: UInt16(blocks[o]) | UInt16(blocks[o + 1]) << 8))
            guard d.isFinite else { throw CondenseError.invalidArgument("2:4-int4 row \(b / (columns / 64)) block \(b % (columns / 64)): scale \(d)") }
            for j in 0..<8 {
                let m = blocks[o + 2 + j]
                guard (m & 15).nonzeroBitCount == 2, (m >> 4).nonzeroBitCount == 2 else {
                    throw CondenseError.invalidArgument("2:4-int4 row \(b / (columns / 64)) block \(b % (columns / 64)): mask byte \(j) is \(m), not 2 of 4")
                }
            }
        }
        (self.rows, self.columns, self.blocks) = (rows, columns, blocks)
    }

    /// Quantizes `w` (`[N, K]`, K a multiple of 64): the 2 largest magnitudes of every 4
    /// columns are kept (a 2:4 matrix keeps its non-zeros; ties go to the first), and each
    /// block of 64 columns gets `d = f16(v / −8)`, `v` its kept value of largest magnitude, so
    /// that `q = clamp(round(w/d), −8, 7)` uses all 16 codes, as ggml's Q4_0 does.
    /// `scales` (one per row and block of 64) replaces that choice: GPTQ picks its grid first.
    public init(quantizing w: Matrix<Float>, scales: [Float]? = nil) throws {
        let (n, k) = (w.rows, w.columns)
        guard k % 64 == 0, k >= 64 else { throw CondenseError.invalidArgument("2:4-int4 needs K a multiple of 64, got \(k)") }
        let per = k / 64
        if let scales, scales.count != n * per {
            throw CondenseError.shapeMismatch("2:4-int4 scales: \(scales.count) for \(n)×\(per) blocks")
        }
        var out = [UInt8](repeating: 0, count: n * per * Self.blockBytes)
        w.withUnsafeBufferPointer { p in
            for r in 0..<n {
                for b in 0..<per {
                    let base = r * k + b * 64
                    var keep = [Int](), amax: Float = 0, vmax: Float = 0
                    for g in 0..<16 {
                        let idx = (0..<4).map { base + 4 * g + $0 }
                        let order = idx.sorted { (abs(p[$0]), $1) > (abs(p[$1]), $0) }
                        for i in order.prefix(2).sorted() {
                            keep.append(i)
                            if abs(p[i]) > amax { amax = abs(p[i]); vmax = p[i] }
                        }
                    }
                    let d = Float(Float16(scales?[r * per + b] ?? vmax / -8))
                    let id: Float = d != 0 && d.isFinite ? 1 / d : 0
                    let o = (r * per + b) * Self.blockBytes
                    let bits = Float16(d).bitPattern
                    out[o] = UInt8(bits & 0xFF)
                    out[o + 1] = UInt8(bits >> 8)
                    for (j, i) in keep.enumerated() {
                        let c = i - base
                        out[o + 2 + c / 8] |= UInt8(1 << (c % 8))
                        let v = (p[i] * id).rounded(.toNearestOrEven)
                        let q = v.isNaN ? 0 : Int(max(-8, min(7, v)))
                        out[o + 10 + j / 2] |= UInt8(q + 8) << (4 * (j % 2))
                    }
                }
            }
        }
        (rows, columns, blocks) = (n, k, out)
    }

    /// Per row and column, whether the weight is kept (exactly 2 of every 4; a kept weight may
    /// still round to 0).
    public var keepMask: [Bool] {
        let per = columns / 64
        var m = [Bool](repeating: false, count: rows * columns)
        for r in 0..<rows {
            for b in 0..<per {
                let o = (r * per + b) * Self.blockBytes
                for c in 0..<64 where blocks[o + 2 + c / 8] >> (c % 8) & 1 == 1 { m[r * columns + b * 64 + c] = true }
            }
        }
        return m
    }

    /// The same weights as ggml Q4_0 blocks (rows of K/32 blocks of 18 bytes), exactly: each
    /// 64-column block's scale serves its two 32-column halves and a pruned weight is code 8
    /// (`q = 0`). 4.5 bits per weight instead of 3.25, for the batch sizes where the dense
    /// Q4_0 kernel outruns the 2:4 one.
    ///
    /// ```swift
    /// let q40 = GGUFFile.Tensor(name: "w", dims: [w24.columns, w24.rows], type: .q4_0, data: w24.q4_0Blocks())
    /// ```
    public func q4_0Blocks() -> Data {
        let per = columns / 64
        var out = Data(count: rows * per * 36)
        var codes = [UInt8](repeating: 8, count: 64)   // one block's 64 codes, pruned ones 8
        out.withUnsafeMutableBytes { raw in
            let o = raw.bindMemory(to: UInt8.self)
            for r in 0..<rows {
                for b in 0..<per {
                    let src = (r * per + b) * Self.blockBytes
                    for c in 0..<64 { codes[c] = 8 }
                    var j = 0
                    for c in 0..<64 where blocks[src + 2 + c / 8] >> (c % 8) & 1 == 1 {
                        codes[c] = blocks[src + 10 + j / 2] >> (4 * (j % 2)) & 15
                        j += 1
                    }
                    for h in 0..<2 {
                        let dst = (r * per + b) * 36 + h * 18
                        (o[dst], o[dst + 1]) = (blocks[src], blocks[src + 1])
                        for i in 0..<16 { o[dst + 2 + i] = codes[h * 32 + i] | codes[h * 32 + 16 + i] << 4 }
                    }
                }
            }
        }
        return out
    }

    /// The weights as f32 (`d·q` where kept, 0 elsewhere).
    public func dequantized() -> Matrix<Float> {
        let per = columns / 64
        var w = [Float](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for b in 0..<per {
                let o = (r * per + b) * Self.blockBytes
                let d = Float(Float16(bitPattern: UInt16(blocks[o]) | UInt16(blocks[o + 1]) << 8))
                var j = 0
                for c in 0..<64 where blocks[o + 2 + c / 8] >> (c % 8) & 1 == 1 {
                    let q = Int(blocks[o + 10 + j / 2] >> (4 * (j % 2)) & 15) - 8
                    w[r * columns + b * 64 + c] = d * Float(q)
                    j += 1
                }
            }
        }
        return try! Matrix(rows: rows, columns: columns, elements: w)  // sizes checked at init
    }
}
