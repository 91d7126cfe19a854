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
        let rows: [[String]] = cliRegistry().backends.map { b in
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
            return [b.name, origin, score, status]
        }
        // Columns as wide as their longest cell: plugin paths vary in length.
        let header = ["backend", "origin", "score", "formats"]
        let widths = (0..<3).map { c in ([header] + rows).map { $0[c].count }.max()! }
        for r in [header] + rows {
            print((0..<3).map { pad(r[$0], widths[$0]) }.joined(separator: "  ") + "  " + r[3])
        }
    }
}
