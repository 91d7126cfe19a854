/// Every error Condense throws, in every module. Each case names the problem and the value it
/// saw; errors about a file carry its path (``inFile(path:error:)`` wraps the inner cause).
/// Misuse by the calling code (an index out of range) is a precondition, not an error.
///
/// ```swift
/// do { _ = try SafeTensors(contentsOf: "model.safetensors") }
/// catch let e as CondenseError { print(e) }   // model.safetensors: tensor 'w': shape [9223372036854775807, 2] is too large
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
    /// A kernel that could not run (its status), so its output is not an answer.
    case kernelFailed(kernel: String, reason: String)
    /// A plugin file that was not loaded, and why.
    case pluginRejected(path: String, reason: String)
    /// A file that does not exist, cannot be opened, or is not text where text was expected.
    case unreadableFile(path: String, reason: String)
    /// A file that could not be written.
    case unwritableFile(path: String, reason: String)
    /// A file whose structure is broken (header, JSON, sizes), without a single tensor to blame.
    case malformedFile(String)
    /// A tensor (or per-layer metadata key) that is present but wrong.
    case invalidTensor(name: String, reason: String)
    /// A tensor the model needs and the file lacks.
    case missingTensor(String)
    /// A model or configuration that is inconsistent (a config value, a layer missing or left over).
    case invalidModel(String)
    /// Training or evaluation data that does not fit (sizes, labels).
    case invalidData(String)
    /// Input to a model that it cannot take (text, token counts, output values).
    case invalidInput(String)
    /// Any of the above, in the named file.
    indirect case inFile(path: String, error: CondenseError)

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
        case let .kernelFailed(kernel, reason):
            return "kernel \(kernel) failed: \(reason)"
        case let .pluginRejected(path, reason):
            return "plugin '\(path)' rejected: \(reason)"
        case let .unreadableFile(path, reason):
            return "cannot read \(path): \(reason)"
        case let .unwritableFile(path, reason):
            return "cannot write \(path): \(reason)"
        case let .malformedFile(s):
            return "malformed file: \(s)"
        case let .invalidTensor(n, r):
            return "tensor '\(n)': \(r)"
        case let .missingTensor(n):
            return "tensor '\(n)' is missing"
        case let .invalidModel(s):
            return "invalid model: \(s)"
        case let .invalidData(s):
            return "invalid data: \(s)"
        case let .invalidInput(s):
            return "invalid input: \(s)"
        case let .inFile(path, error):
            return "\(path): \(error)"
        }
    }
}

extension CondenseError {
    /// The error with the file's path attached (once: an error already naming a file keeps it).
    public func inFile(_ path: String) -> CondenseError {
        if case .inFile = self { return self }
        if case .unreadableFile = self { return self }
        if case .unwritableFile = self { return self }
        return .inFile(path: path, error: self)
    }

    /// The innermost cause, without the file context.
    public var cause: CondenseError {
        if case let .inFile(_, e) = self { return e.cause }
        return self
    }

    /// Runs `body`, attaching `path` to any ``CondenseError`` it throws.
    public static func attaching<T>(path: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as CondenseError { throw e.inFile(path) }
    }
}

@available(*, deprecated, renamed: "CondenseError", message: "one error type: CondenseError")
/// The errors of the safetensors reader (an alias kept for source compatibility).
public typealias SafeTensorsError = CondenseError
