// libFuzzer entry point for the safetensors parser: any input must either parse into tensors
// whose declared sizes match their bytes, or throw — never crash, hang or read out of bounds.
// Built and run by fuzz_safetensors.sh (coverage-guided, with AddressSanitizer).
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let data = Data(bytes: start, count: count)
    if let file = try? SafeTensors(data: data) {
        for name in file.names {
            let t = file.tensors[name]!
            precondition(t.data.count == t.elementCount * t.dtype.size, "size check let \(name) through")
            if t.dtype == .f32 { _ = try? file.floats(name) }
        }
        // What parses must also survive a write and a re-read unchanged.
        if let bytes = try? file.serialized() {
            let again = try! SafeTensors(data: bytes)
            precondition(again.names.sorted() == file.names.sorted(), "round trip changed the tensor set")
        }
    }
    return 0
}
