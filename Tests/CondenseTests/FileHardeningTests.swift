import Condense
import CondenseTestSupport
import Foundation
import Testing

/// A safetensors file holding one layer in `format` whose shape metadata says `shape`, with the
/// parts of a real 4×8 layer.
private func layerFile(_ layer: LinearLayer, shape: String) throws -> SafeTensors {
    var f = SafeTensors()
    try f.add(layer, prefix: "l.")
    f.metadata["l.shape"] = shape
    return try SafeTensors(data: f.serialized())
}

@Suite struct SizesFromFilesTests {
    static let w = try! Matrix<Float>(rows: 4, columns: 8) { r, c in (r + c) % 3 == 0 ? 0 : Float(r * 8 + c) / 10 - 1 }

    static func layers() throws -> [LinearLayer] {
        let dense = try LinearLayer(weights: .dense(w))
        var w24 = w
        for r in 0..<4 { for c in stride(from: 0, to: 8, by: 4) { w24[r, c] = 0; w24[r, c + 1] = 0 } }
        return [
            dense,
            try dense.converted(to: .int8),
            try dense.converted(to: .int4(group: 16)),
            try LinearLayer(weights: .dense(w24)).converted(to: .sparse24),
            try LinearLayer(weights: .dense(w24)).converted(to: .sparse24Int8),
            try LinearLayer(weights: .csr(CSRMatrix(dense: w))),
            try dense.converted(to: .bf16),
            try dense.converted(to: .f16),
        ]
    }

    /// Shapes that overflow every size derived from them, or are not N,K: a thrown error for
    /// every format, never a trap and never an allocation of the claimed size.
    @Test(arguments: ["9223372036854775807,1", "1,9223372036854775807", "4294967296,4294967296", "9223372036854775807,9223372036854775807",
                      "-1,8", "4,0", "4,x", "4,8,1", "", "4", "4,8x"])
    func hostileShapesAreErrors(shape: String) throws {
        for layer in try Self.layers() {
            let f = try layerFile(layer, shape: shape)
            #expect(throws: CondenseError.self, "\(layer.format) with shape '\(shape)'") { try f.linearLayer(prefix: "l.") }
        }
    }

    /// The same files with their true shape load back exactly.
    @Test func trueShapesRoundTrip() throws {
        for layer in try Self.layers() {
            let back = try layerFile(layer, shape: "4,8").linearLayer(prefix: "l.")
            #expect(back.weights.densified() == layer.weights.densified(), "\(layer.format)")
        }
    }

    /// The formats' own initialisers check their arithmetic (a caller may pass any Int).
    @Test func formatInitialisersCheckOverflow() {
        #expect(throws: CondenseError.self) { try Int4Weights(rows: Int.max, columns: Int.max, groupSize: 16, packed: [], scales: []) }
        #expect(throws: CondenseError.self) { try Int4Weights(rows: 2, columns: Int.max, groupSize: 1, packed: [], scales: []) }
        #expect(throws: CondenseError.self) { try Int8Weights(rows: Int.max, columns: 2, values: [], scales: []) }
        #expect(throws: CondenseError.self) { try Sparse24Matrix(rows: Int.max, columns: Int.max, values: [], metadata: []) }
        #expect(throws: CondenseError.self) { try CSRMatrix(rows: Int.max, columns: 4, rowOffsets: [0], columnIndices: .u16([]), values: []) }
        #expect(throws: CondenseError.self) { try Matrix<Float>(rows: Int.max, columns: 3, elements: [1]) }
        #expect(throws: CondenseError.self) { try CheckedSize.product(1 << 40, 1 << 40, of: "x") }
        #expect(throws: CondenseError.self) { try CheckedSize.sum(Int.max, 1, of: "x") }
        #expect(throws: CondenseError.self) { try CheckedSize.roundUp(Int.max, to: 64, of: "x") }
        #expect((try? CheckedSize.roundUp(65, to: 64, of: "x")) == 128)
    }
}

@Suite struct SafeTensorsHostileTests {
    private func file(_ json: String, data: [UInt8] = []) -> Data { safetensorsFile(json, data: data) }

    /// Duplicate names are refused: a second entry would otherwise never be validated.
    @Test func duplicateKeysAreRefused() {
        let t = "{\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}"
        #expect(throws: CondenseError.malformedFile("duplicate key 'a'")) { try SafeTensors(data: file("{\"a\": \(t), \"a\": \(t)}", data: [7])) }
        // Escaped spellings of the same key are the same key.
        #expect(throws: CondenseError.malformedFile("duplicate key 'a'")) { try SafeTensors(data: file("{\"a\": \(t), \"\\u0061\": \(t)}", data: [7])) }
        // Inside an entry, too.
        #expect(throws: CondenseError.malformedFile("duplicate key 'shape' in 'a'")) {
            try SafeTensors(data: file("{\"a\": {\"dtype\": \"U8\", \"shape\": [1], \"shape\": [9], \"data_offsets\": [0, 1]}}", data: [7]))
        }
        #expect(throws: CondenseError.malformedFile("duplicate key 'k' in '__metadata__'")) {
            try SafeTensors(data: file("{\"__metadata__\": {\"k\": \"1\", \"k\": \"2\"}}"))
        }
        // Keys in arrays of objects are separate objects; strings with braces and escapes do not confuse the scan.
        #expect((try? SafeTensors(data: file("{\"__metadata__\": {\"k\": \"{\\\"a\\\": 1, \\\"a\\\": 2}\"}, \"a\": \(t)}", data: [7]))) != nil)
    }

    /// Errors from a file carry its path.
    @Test func errorsNameTheFile() throws {
        let dir = try scratchFolder("st-names")
        try file("{\"a\": 1}").write(to: URL(fileURLWithPath: dir + "/bad.safetensors"))
        #expect(throws: CondenseError.inFile(path: dir + "/bad.safetensors", error: .invalidTensor(name: "a", reason: "entry is not an object"))) {
            try SafeTensors(contentsOf: dir + "/bad.safetensors")
        }
        #expect(throws: CondenseError.unreadableFile(path: dir, reason: "is a directory, not a file")) { try SafeTensors(contentsOf: dir) }
        #expect(throws: CondenseError.unreadableFile(path: dir + "/none", reason: "no such file")) { try SafeTensors(contentsOf: dir + "/none") }
    }
}

@Suite struct TextAndOutputFileTests {
    /// \n, \r\n and \r each end a line; empty lines inside are kept (line numbers stay right).
    @Test func linesOfEveryEnding() {
        #expect(FileInput.lines("a\nb\n") == ["a", "b"])
        #expect(FileInput.lines("a\r\nb\r\n") == ["a", "b"])
        #expect(FileInput.lines("a\rb") == ["a", "b"])
        #expect(FileInput.lines("a\r\n\r\nb") == ["a", "", "b"])
        #expect(FileInput.lines("") == [])
        #expect(FileInput.lines("x") == ["x"])
    }

    @Test func textFilesSayWhatIsWrong() throws {
        let dir = try scratchFolder("text")
        try Data([0xEF, 0xBB, 0xBF, 0x61, 0x0A]).write(to: URL(fileURLWithPath: dir + "/bom.txt"))
        #expect(try FileInput.text(dir + "/bom.txt") == "a\n")
        try Data([0x61, 0x62, 0xC3]).write(to: URL(fileURLWithPath: dir + "/cut.txt"))
        #expect(throws: CondenseError.unreadableFile(path: dir + "/cut.txt", reason: "not UTF-8 text (invalid byte sequence at byte 2)")) {
            try FileInput.text(dir + "/cut.txt")
        }
        #expect(throws: CondenseError.unreadableFile(path: dir + "/no.txt", reason: "no such file")) { try FileInput.text(dir + "/no.txt") }
    }

    /// An output equal to an input in any spelling is refused; distinct files are fine.
    @Test func outputsAreComparedByPathAndIdentity() throws {
        let dir = try scratchFolder("out")
        let a = dir + "/a.bin"
        try Data([1]).write(to: URL(fileURLWithPath: a))
        try FileManager.default.createSymbolicLink(atPath: dir + "/sym", withDestinationPath: a)
        try FileManager.default.linkItem(atPath: a, toPath: dir + "/hard")
        for o in [a, dir + "/./a.bin", dir + "/../" + URL(fileURLWithPath: dir).lastPathComponent + "/a.bin", dir + "/sym", dir + "/hard"] {
            #expect(throws: CondenseError.self, "\(o)") { try FileOutput.check(outputs: [o], inputs: [a], option: "-o") }
        }
        try FileOutput.check(outputs: [dir + "/b.bin"], inputs: [a], option: "-o")
        #expect(throws: CondenseError.invalidArgument("-o \(dir) is a directory, not a file")) { try FileOutput.check(outputs: [dir], inputs: [], option: "-o") }
        #expect(throws: CondenseError.self) { try FileOutput.checkFolder(dir, inputs: [a], option: "-o") }
        #expect(throws: CondenseError.self) { try FileOutput.checkFolder(dir, inputs: [dir], option: "-o") }
        try FileOutput.checkFolder(dir + "/new", inputs: [a], option: "-o")
        // Atomic replace: the old file is whole until the new one is in place.
        try FileOutput.write(Data([9, 9]), to: dir + "/b.bin")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/b.bin")) == Data([9, 9]))
        #expect(throws: CondenseError.self) { try FileOutput.write(Data([1]), to: dir + "/missing/x") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).allSatisfy { !$0.contains(".tmp-") })
    }
}
