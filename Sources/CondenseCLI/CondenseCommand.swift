import ArgumentParser
import Condense
import CondenseInference

@main
struct CondenseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "condense",
        abstract: "Run compressed neural-network layers fast on CPUs.",
        version: condenseVersion,
        subcommands: [Demo.self, Compress.self, Eval.self, Embed.self, Generate.self, Chat.self, PerplexityCommand.self, Tokenize.self, Serve.self, Info.self, Backends.self, Tune.self, Bench.self]
    )
}

/// Options every command that runs kernels shares.
extension KVCacheType: ExpressibleByArgument {}

/// The release this build is (CHANGELOG.md lists what each one changed).
let condenseVersion = "0.4.1"

/// Options of the commands that run a language model.
struct DecoderOptions: ParsableArguments {
    @Option(help: "KV cache element type of keys and values: f16 (llama.cpp's default; half the bytes attention reads), f32, q8_0 or q4_0 (ggml's blocks; heads of a multiple of 32).")
    var kvCache: KVCacheType = .f16
    @Option(name: [.customLong("ctk", withSingleDash: true), .customLong("cache-type-k")], help: "The key cache's type alone (llama.cpp's -ctk).")
    var cacheTypeK: KVCacheType?
    @Option(name: [.customLong("ctv", withSingleDash: true), .customLong("cache-type-v")], help: "The value cache's type alone (llama.cpp's -ctv).")
    var cacheTypeV: KVCacheType?

    /// The key cache's type.
    var keys: KVCacheType { cacheTypeK ?? kvCache }
    /// The value cache's type.
    var values: KVCacheType { cacheTypeV ?? kvCache }
    /// How a report names the pair.
    var label: String { keys == values ? keys.rawValue : "K \(keys.rawValue), V \(values.rawValue)" }
}

struct RuntimeOptions: ParsableArguments {
    @Option(help: "Kernel threads (default: CONDENSE_NUM_THREADS or OpenMP's default).")
    var threads: Int?

    /// Validates CONDENSE_ISA and applies --threads; a bad value ends the command with its message.
    func apply() throws {
        do {
            try CondenseRuntime.validateEnvironment()
            if let threads { try CondenseRuntime.setThreads(threads) }
        } catch let e as CondenseError {
            throw ValidationError(e.description)
        }
    }
}
