import Foundation
import Synchronization

/// Winners of measured dispatch, per layer signature and batch bucket, optionally persisted as a
/// versioned JSON file. The file's key names the CPU, the thread count and every backend with its
/// version: when any of them changes, the stored measurements no longer apply and are dropped.
///
/// ```swift
/// let registry = BackendRegistry.standard()
/// registry.tuningCache = try TuningCache(path: "/var/cache/myapp/condense-tuning.json")
/// let layer = try registry.prepare(linear, policy: .fastest(batch: 8))   // measured once per machine
/// ```
public final class TuningCache: Sendable {
    /// File format version.
    public static let formatVersion = 1
    public let path: String?
    private let state = Mutex<[String: String]>([:])
    private let environment = Mutex<String>("")

    /// An in-memory cache (`path == nil`) or one backed by a file (loaded now if it exists).
    /// - Throws: only for a file that exists but cannot be read; a file of another version or
    ///   environment is ignored (re-measured and overwritten).
    public init(path: String? = nil) throws {
        self.path = path
        if let path, FileManager.default.fileExists(atPath: path) {
            let data = try FileInput.mapped(path)
            if let file = try? JSONDecoder().decode(File.self, from: data), file.version == Self.formatVersion {
                state.withLock { $0 = file.entries }
                environment.withLock { $0 = file.environment }
            }
        }
    }

    struct File: Codable {
        let version: Int
        let environment: String
        let entries: [String: String]
    }

    /// The winner stored for `key` under `env`, if the stored environment is the same.
    func winner(_ key: String, env: String) -> String? {
        guard environment.withLock({ $0 }) == env else { return nil }
        return state.withLock { $0[key] }
    }

    /// Stores a winner; a different environment first clears every entry.
    func store(_ key: String, _ label: String, env: String) {
        environment.withLock { current in
            if current != env {
                state.withLock { $0.removeAll() }
                current = env
            }
        }
        state.withLock { $0[key] = label }
        if let path {
            let file = File(version: Self.formatVersion, environment: env, entries: state.withLock { $0 })
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            if let data = try? enc.encode(file) {
                try? FileManager.default.createDirectory(
                    at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
                try? data.write(to: URL(fileURLWithPath: path), options: .atomic)
            }
        }
    }

    /// Number of stored winners.
    public var count: Int { state.withLock { $0.count } }
}
