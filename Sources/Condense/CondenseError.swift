/// Every error Condense throws. Each case names the problem and the value it saw.
///
/// ```swift
/// do { _ = try Matrix<Float>(rows: -1, columns: 4) }
/// catch let e as CondenseError { print(e) }   // rows must be >= 0, got -1
/// ```
public enum CondenseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A dimension or count outside its allowed range.
    case invalidDimension(name: String, value: Int)
    /// Operand shapes that do not fit together; the message names both.
    case shapeMismatch(String)
    /// A backend asked to prepare a weight format it does not run.
    case unsupportedFormat(backend: String, format: String)
    /// `CONDENSE_ISA` (or an ISA requested in code) is not a known level or not on this CPU.
    case invalidISA(value: String, reason: String)
    /// A backend that cannot run here (wrong CPU, missing library), with the reason.
    case backendUnavailable(name: String, reason: String)
    /// No registered backend runs the layer under the chosen policy.
    case noBackend(String)
    /// An argument outside its domain, e.g. a thread count of 0.
    case invalidArgument(String)
    /// An allocation the kernels asked for failed.
    case outOfMemory(bytes: Int)
    /// A plugin file that was not loaded, and why.
    case pluginRejected(path: String, reason: String)

    public var description: String {
        switch self {
        case let .invalidDimension(name, value):
            return "\(name) must be >= 0, got \(value)"
        case let .shapeMismatch(message):
            return "shape mismatch: \(message)"
        case let .unsupportedFormat(backend, format):
            return "backend '\(backend)' does not support weight format '\(format)'"
        case let .invalidISA(value, reason):
            return "invalid ISA '\(value)': \(reason)"
        case let .backendUnavailable(name, reason):
            return "backend '\(name)' is unavailable: \(reason)"
        case let .noBackend(message):
            return "no backend: \(message)"
        case let .invalidArgument(message):
            return "invalid argument: \(message)"
        case let .outOfMemory(bytes):
            return "out of memory allocating \(bytes) bytes"
        case let .pluginRejected(path, reason):
            return "plugin '\(path)' rejected: \(reason)"
        }
    }
}
