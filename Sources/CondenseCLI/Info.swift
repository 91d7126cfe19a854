import ArgumentParser
import Foundation
import Condense
import CondenseInference

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the CPU features found, the ISA chosen, threads, backends and kernels.")

    @Flag(help: "Print one JSON object: the machine (CPU, ISA levels, threads, caches, read probe), backends with their kernels, plugins.")
    var json = false

    /// The block a bug report needs; benchmark records carry its "machine" part.
    static func report() -> [String: Any] {
        var machine = MachineRecord.value
        machine["features"] = CondenseRuntime.cpuFeatures
        machine["isa_detected"] = "\(CondenseRuntime.detectedISA)"
        machine["isa_levels"] = CondenseRuntime.runnableISAs.map(\.description)
        machine["isa_override"] = CondenseRuntime.isaOverride ?? NSNull()
        machine["openmp"] = CondenseRuntime.openMPEnabled
        let backends: [[String: Any]] = cliRegistry().backends.map { b in
            var r: [String: Any] = ["name": b.name, "kernels": b.kernels.map { k in
                ["name": k.name, "isa": k.isa.map { "\($0)" } ?? "portable", "runnable": k.runnable] as [String: Any]
            }]
            switch b.availability {
            case .available: r["available"] = true
            case let .unavailable(reason): r["available"] = false; r["reason"] = reason
            }
            return r
        }
        let plugins = (ProcessInfo.processInfo.environment["CONDENSE_PLUGIN_PATH"] ?? "").split(separator: ":").map(String.init)
        return ["version": condenseVersion, "machine": machine, "backends": backends, "plugin_path": plugins,
                "decoders": DecoderArchitecture.supportedNames]
    }

    func run() throws {
        if json {
            let data = try JSONSerialization.data(withJSONObject: Self.report(), options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("cpu:        \(CondenseRuntime.cpuBrand.isEmpty ? "unknown" : CondenseRuntime.cpuBrand)")
        print("features:   \(CondenseRuntime.cpuFeatures.joined(separator: " "))")
        print("isa:        detected \(CondenseRuntime.detectedISA), active \(CondenseRuntime.activeISA)"
              + (CondenseRuntime.isaOverride.map { " (CONDENSE_ISA=\($0))" } ?? "")
              + "; levels here: \(CondenseRuntime.runnableISAs.map(\.description).joined(separator: " < "))")
        do { try CondenseRuntime.validateEnvironment() } catch { print("            warning: \(error)") }
        print("threads:    \(CondenseRuntime.threads) of \(CondenseRuntime.processorCount) processors on Condense's thread team; OpenMP \(CondenseRuntime.openMPEnabled ? "linked (thread-count defaults)" : "off (built without the OpenMP trait)")")
        let m = MachineRecord.value
        let caches = CondenseRuntime.cacheSizes.sorted { $0.key < $1.key }.map { "L\($0.key) \($0.value >> 10) KiB" }
        print("caches:     \(caches.isEmpty ? "not reported" : caches.joined(separator: ", ")) (cpu0)")
        print("read probe: \(String(format: "%.1f", m["read_probe_gbps"] as! Double)) GB/s reading \((m["read_probe_bytes"] as! Int) >> 20) MiB with \(CondenseRuntime.threads) thread(s)")
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
