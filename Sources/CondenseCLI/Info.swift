import ArgumentParser
import Condense
import CondenseInference

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the CPU features found, the ISA chosen, threads, backends and kernels.")

    func run() throws {
        print("cpu:        \(CondenseRuntime.cpuBrand.isEmpty ? "unknown" : CondenseRuntime.cpuBrand)")
        print("features:   \(CondenseRuntime.cpuFeatures.joined(separator: " "))")
        print("isa:        detected \(CondenseRuntime.detectedISA), active \(CondenseRuntime.activeISA)"
              + (CondenseRuntime.isaOverride.map { " (CONDENSE_ISA=\($0))" } ?? "")
              + "; levels here: \(CondenseRuntime.runnableISAs.map(\.description).joined(separator: " < "))")
        do { try CondenseRuntime.validateEnvironment() } catch { print("            warning: \(error)") }
        print("threads:    \(CondenseRuntime.threads) of \(CondenseRuntime.processorCount) processors on Condense's thread team; OpenMP \(CondenseRuntime.openMPEnabled ? "linked (thread-count defaults)" : "off (built without the OpenMP trait)")")
        print("decoders:   \(DecoderArchitecture.supportedNames.joined(separator: ", ")) (GGUF general.architecture); tokenizers gpt2 (byte-level BPE), llama (SentencePiece)")
        print("")
        print("backends (priority order):")
        for b in cliRegistry().backends {
            let avail: String
            switch b.availability {
            case .available: avail = "available"
            case let .unavailable(reason): avail = "unavailable: \(reason)"
            }
            print("  \(b.name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(avail)")
            // Pad, never cut: a kernel's name says which code runs.
            let width = max(30, b.kernels.map(\.name.count).max() ?? 0)
            for k in b.kernels {
                let isa = k.isa.map { "\($0)" } ?? "portable"
                print("      \(k.name.padding(toLength: width, withPad: " ", startingAt: 0)) isa \(isa.padding(toLength: 9, withPad: " ", startingAt: 0)) \(k.runnable ? "runnable" : "not on this CPU")")
            }
        }
    }
}
