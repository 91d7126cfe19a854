import Condense
import Foundation
import Testing

/// Raw safetensors bytes: the 8-byte length, `header` as given, then `data`.
func safetensorsFile(_ header: String, data: [UInt8] = []) -> Data {
    var d = Data()
    var n = UInt64(header.utf8.count).littleEndian
    withUnsafeBytes(of: &n) { d.append(contentsOf: $0) }
    d.append(contentsOf: Array(header.utf8))
    d.append(contentsOf: data)
    return d
}

@Suite struct SafeTensorsTests {
    @Test func roundTripsEveryDtypeAndMetadata() throws {
        var f = SafeTensors()
        f.metadata["format"] = "pt"
        try f.add("w", shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        try f.add("q", shape: [4], int8: [-128, -1, 0, 127])
        try f.add("m", shape: [3], uint8: [1, 2, 255])
        try f.add("i", shape: [2], uint32: [7, 4_000_000_000])
        try f.add("e", shape: [0], floats: [])
        let back = try SafeTensors(data: f.serialized())
        #expect(back.metadata == ["format": "pt"])
        #expect(try back.floats("w", shape: [2, 3]) == [1, 2, 3, 4, 5, 6])
        #expect(try back.elements("q", as: Int8.self, dtype: .i8) == [-128, -1, 0, 127])
        #expect(try back.elements("i", as: UInt32.self, dtype: .u32) == [7, 4_000_000_000])
        #expect(try back.floats("e").isEmpty)
        #expect(back.names == ["w", "q", "m", "i", "e"])
        // Data starts 8-byte aligned (the header is padded).
        let d = try f.serialized()
        let n = d.prefix(8).withUnsafeBytes { $0.load(as: UInt64.self) }
        #expect((8 + Int(n)) % 8 == 0)
    }

    /// Each malformation is refused with the tensor and the reason, before any tensor is used.
    @Test func validationNamesTheProblem() throws {
        let cases: [(Data, CondenseError)] = [
            (Data([1, 2, 3]), .malformedFile("file is 3 bytes, shorter than the 8-byte header length")),
            (safetensorsFile("{}").prefix(8) + Data([0xFF]), .malformedFile("header length 2 runs past the end of the 9-byte file")),
            (safetensorsFile("[1, 2]"), .malformedFile("the header is not a JSON object")),
            (safetensorsFile("{\"a\": {\"dtype\": \"F7\", \"shape\": [1], \"data_offsets\": [0, 4]}}", data: [0, 0, 0, 0]),
             .invalidTensor(name: "a", reason: "unknown dtype 'F7'")),
            (safetensorsFile("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}", data: [0, 0, 0, 0]),
             .invalidTensor(name: "a", reason: "4 bytes for F32 [2], which needs 8")),
            (safetensorsFile("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 8]}}", data: [0, 0, 0, 0]),
             .invalidTensor(name: "a", reason: "data_offsets [0, 8] outside the 4 data bytes")),
            (safetensorsFile("{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", data: [0, 0, 0, 0]),
             .invalidTensor(name: "a", reason: "shape [-1] has a non-integer or negative entry")),
            (safetensorsFile("{\"a\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [0, 2]}, \"b\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [1, 3]}}", data: [0, 0, 0]),
             .invalidTensor(name: "b", reason: "data overlaps tensor 'a'")),
            (safetensorsFile("{\"__metadata__\": {\"k\": 3}}"), .malformedFile("__metadata__ value of 'k' is not a string")),
            (safetensorsFile("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 4]}}", data: [0, 0, 0, 0]),
             .invalidTensor(name: "a", reason: "shape [4294967296, 4294967296] is too large")),
        ]
        for (bytes, want) in cases {
            #expect(throws: want) { try SafeTensors(data: bytes) }
        }
        do {
            _ = try SafeTensors(contentsOf: "/nonexistent.safetensors")
            Issue.record("a missing file was read")
        } catch let CondenseError.unreadableFile(path, _) {
            #expect(path == "/nonexistent.safetensors")
        }
    }

    /// Inputs from the fuzzer's corpus (Benchmarks/fuzz/fuzz_safetensors.sh; 5.5 M executions in
    /// 60 s found no crash) and any crasher it ever finds: each must be refused or parsed
    /// consistently, never crash.
    @Test func fuzzerRegressionInputs() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/safetensors-corpus")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        #expect(files.count >= 5)
        for name in files {
            let data = try Data(contentsOf: dir.appendingPathComponent(name))
            if let f = try? SafeTensors(data: data) {
                for n in f.names { #expect(f.tensors[n]!.data.count == f.tensors[n]!.elementCount * f.tensors[n]!.dtype.size, "\(name)") }
            }
        }
    }
}
