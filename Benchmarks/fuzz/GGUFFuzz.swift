// libFuzzer entry point for the GGUF reader: any input must either parse into tensors whose bytes
// match their type and shape and lie inside the input, or throw — never crash, hang, read out of
// bounds or allocate what a header merely claims. Built and run by fuzz_gguf.sh.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let data = Data(bytes: start, count: count)
    if let file = try? GGUFFile(data: data) {
        for t in file.tensors {
            let blocks = t.elementCount / t.type.blockSize
            precondition(t.elementCount % t.type.blockSize == 0, "partial block let through: \(t.name)")
            precondition(t.data.count == blocks * t.type.blockBytes, "size check let \(t.name) through")
            precondition(t.offset % file.alignment == 0, "misaligned \(t.name)")
        }
        // What parses must survive a write and a re-read with the same metadata and tensors.
        var w = GGUFWriter()
        w.alignment = file.alignment
        for k in file.keys { w.add(k, file.metadata[k]!) }
        for t in file.tensors { try! w.addTensor(t.name, dims: t.dims, type: t.type, bytes: t.data) }
        let again = try! GGUFFile(data: w.serialized())
        precondition(again.keys == file.keys && again.tensors.map(\.name) == file.tensors.map(\.name), "round trip changed the file")
    }
    return 0
}
