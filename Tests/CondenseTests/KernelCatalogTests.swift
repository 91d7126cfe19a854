import CCondenseKernels
import Condense
import Foundation
import Testing

@Suite struct KernelCatalogTests {
    /// One descriptor type for every family: each kernel once, its name starting with its
    /// family's prefix and ending in `__<level>` whose ISA is the descriptor's and whose feature
    /// (vnni, vbmi2, bf16) the descriptor requires; the Swift lists are the catalog's.
    @Test func namesAgreeWithDescriptors() {
        let prefixes: [String: [String]] = ["f32_gemm": ["f32_gemm_"], "half": ["bf16_", "f16_", "half_"], "sparse": ["f32_s24_", "f32_csr_"],
                                            "q8": ["q8_"], "q4": ["q4_"], "s24q8": ["s24q8_"], "gguf": ["gguf_", "s24q4_"]]
        let levels: [(String, condense_isa)] = [("scalar", CONDENSE_ISA_SCALAR), ("avx2", CONDENSE_ISA_AVX2), ("avxvnni", CONDENSE_ISA_AVXVNNI),
                                                ("avx512", CONDENSE_ISA_AVX512), ("neon", CONDENSE_ISA_NEON), ("dotprod", CONDENSE_ISA_DOTPROD),
                                                ("i8mm", CONDENSE_ISA_I8MM)]
        let featureBits: [(String, UInt32)] = [("vnni", UInt32(CONDENSE_CPU_AVX512VNNI)), ("vbmi2", UInt32(CONDENSE_CPU_AVX512VBMI2)),
                                               ("bf16", UInt32(CONDENSE_CPU_AVX512BF16))]
        var names = Set<String>(), families = Set<String>()
        #expect(condense_kernel_count() > 50 && condense_kernel_at(-1) == nil && condense_kernel_at(condense_kernel_count()) == nil)
        for i in 0..<condense_kernel_count() {
            let k = condense_kernel_at(i)!.pointee
            let name = String(cString: k.name), family = String(cString: k.family)
            #expect(names.insert(name).inserted, "\(name) listed twice")
            families.insert(family)
            #expect(prefixes[family]?.contains { name.hasPrefix($0) } == true, "\(name) in family \(family)")
            guard let suffix = name.components(separatedBy: "__").last, name.contains("__") else { Issue.record("\(name) has no __level"); continue }
            let level = levels.filter { suffix.hasPrefix($0.0) }.max { $0.0.count < $1.0.count }
            #expect(level?.1 == k.isa, "\(name): suffix \(suffix), isa \(k.isa.rawValue)")
            if k.isa == CONDENSE_ISA_AVX512 {
                for (f, bit) in featureBits where suffix.hasPrefix("avx512" + f) { #expect(k.features & bit == bit, "\(name) needs \(f)") }
            }
        }
        #expect(families == Set(prefixes.keys))
        #expect(NativeKernels.all.map(\.name) == (0..<condense_kernel_count()).map { String(cString: condense_kernel_at($0)!.pointee.name) })
        #expect(NativeKernels.gguf.count == condense_gguf_kernel_count() && NativeKernels.f32Gemm.count == condense_f32_gemm_kernel_count())
        // What this CPU runs: every scalar kernel.
        let scalarRunnable = NativeKernels.all.filter { $0.isa == .scalar }.allSatisfy { $0.runnable }
        #expect(scalarRunnable)
    }
}

@Suite struct JSONBooleanTests {
    /// true and false are booleans; 0, 1 and 1.0 are numbers, though `as? Bool` takes them on Linux.
    @Test func booleansAreTellableFromNumbers() throws {
        let o = try #require(try JSONSerialization.jsonObject(with: Data(#"[true, false, 1, 0, 1.0]"#.utf8)) as? [NSNumber])
        #expect(o.map(\.isJSONBoolean) == [true, true, false, false, false])
    }
}
