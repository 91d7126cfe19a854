import ArgumentParser
import Condense
import CondenseInference

@main
struct CondenseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "condense",
        abstract: "Run compressed neural-network layers fast on CPUs.",
        subcommands: [Demo.self, Compress.self, Eval.self, Embed.self, Generate.self, Chat.self, PerplexityCommand.self, Tokenize.self, Serve.self, Info.self, Backends.self, Tune.self, Bench.self]
    )
}

/// Options every command that runs kernels shares.
extension KVCacheType: ExpressibleByArgument {}

/// Options of the commands that run a language model.
struct DecoderOptions: ParsableArguments {
    @Option(help: "KV cache element type: f16 (llama.cpp's default; half the bytes attention reads) or f32.")
    var kvCache: KVCacheType = .f16
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
