import ArgumentParser
import Condense
import Foundation

/// The registry the CLI uses: the built-in backends plus the plugins named by
/// CONDENSE_PLUGIN_PATH; each rejected plugin is reported on stderr with its file and reason.
func cliRegistry() -> BackendRegistry {
    let registry = BackendRegistry.standard()
    for failure in registry.loadPluginsFromEnvironment() {
        FileHandle.standardError.write(Data("note: skipped \(failure)\n".utf8))
    }
    return registry
}

struct Backends: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List every backend (built-in and plugins from CONDENSE_PLUGIN_PATH) with origin, score and formats.")

    func run() throws {
        let formats: [WeightFormat] = [.dense, .sparse24, .csr, .int8, .int4(group: 32), .sparse24Int8]
        print("\(pad("backend", 12)) \(pad("origin", 40)) \(pad("score", 6)) formats")
        for b in cliRegistry().backends {
            let origin: String, score: String
            if let p = b as? PluginBackend {
                origin = "plugin \(p.path)"
                score = "\(p.score)"
            } else {
                origin = "built-in"
                score = "-"
            }
            var status = formats.filter { b.supports($0) }.map(\.description).joined(separator: ", ")
            if case let .unavailable(reason) = b.availability { status = "unavailable: \(reason)" }
            print("\(pad(b.name, 12)) \(pad(origin, 40)) \(pad(score, 6)) \(status)")
        }
    }
}
