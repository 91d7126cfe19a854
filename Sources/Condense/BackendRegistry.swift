import Synchronization

/// How the registry picks a backend for a layer.
public enum SelectionPolicy: Sendable, Equatable {
    /// The first available backend, in registration order, that supports the layer's format.
    case priority
    /// Exactly this backend; an error if it is missing, unavailable or cannot run the format.
    case forced(String)
}

/// Where a layer went and why: every prepared layer can answer "which kernel runs me?".
public struct Placement: Sendable, Equatable, CustomStringConvertible {
    public let backend: String
    public let kernel: String
    public let format: WeightFormat
    public let policy: SelectionPolicy
    /// Backends passed over, each with the reason (unavailable, format not supported).
    public let skipped: [String]

    public var description: String {
        var s = "\(format) → \(backend)/\(kernel)"
        if !skipped.isEmpty { s += " (skipped: \(skipped.joined(separator: "; ")))" }
        return s
    }
}

/// A prepared layer together with its placement.
public struct PlacedLinear: PreparedLinear {
    public let prepared: any PreparedLinear
    public let placement: Placement

    public var backendName: String { prepared.backendName }
    public var kernelName: String { prepared.kernelName }
    public var inFeatures: Int { prepared.inFeatures }
    public var outFeatures: Int { prepared.outFeatures }
    public func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws { try prepared.apply(x, into: &y) }
    public func kernelName(forBatch m: Int) -> String { prepared.kernelName(forBatch: m) }
}

/// The set of backends and the policy that sends each layer to one of them.
///
/// ```swift
/// let registry = BackendRegistry.standard()           // native, simd, reference
/// let layer = try registry.prepare(linear)            // priority: native first
/// print(layer.placement)                              // dense → native/f32_gemm_12x32__avx512
/// let y = try layer.apply(x)
/// ```
public final class BackendRegistry: Sendable {
    private let state = Mutex<[any KernelBackend]>([])

    /// An empty registry.
    public init() {}

    /// The built-in backends in priority order: `native` (C/OpenMP), `simd` (Swift SIMD),
    /// `reference` (plain Swift, the correctness oracle).
    public static func standard() -> BackendRegistry {
        let r = BackendRegistry()
        r.register(NativeBackend())
        r.register(SIMDBackend())
        r.register(ReferenceBackend())
        return r
    }

    /// Adds a backend, last in priority order or first. A backend with the same name is replaced.
    public func register(_ backend: any KernelBackend, first: Bool = false) {
        state.withLock { list in
            list.removeAll { $0.name == backend.name }
            if first { list.insert(backend, at: 0) } else { list.append(backend) }
        }
    }

    /// The registered backends in priority order.
    public var backends: [any KernelBackend] { state.withLock { $0 } }

    /// The backend called `name`, if registered.
    public func backend(named name: String) -> (any KernelBackend)? {
        state.withLock { list in list.first { $0.name == name } }
    }

    /// Prepares `layer` on the backend the policy chooses.
    /// - Throws: ``CondenseError/noBackend(_:)`` naming every backend tried and why it was passed over,
    ///   or the chosen backend's own error.
    public func prepare(_ layer: LinearLayer, policy: SelectionPolicy = .priority) throws -> PlacedLinear {
        try prepare(layer, policy: policy, backends: backends)
    }

    /// Prepares `layer` with its weights converted to `format` first, so "run this layer dense or
    /// sparse?" is one question: `prepare(layer, as: .dense)` versus `prepare(layer, as: .csr)`.
    public func prepare(_ layer: LinearLayer, as format: WeightFormat, policy: SelectionPolicy = .priority) throws -> PlacedLinear {
        try prepare(layer.converted(to: format), policy: policy)
    }

    private func prepare(_ layer: LinearLayer, policy: SelectionPolicy, backends list: [any KernelBackend]) throws -> PlacedLinear {
        switch policy {
        case let .forced(name):
            guard let b = list.first(where: { $0.name == name }) else {
                throw CondenseError.noBackend(
                    "backend '\(name)' is not registered (have: \(list.map(\.name).joined(separator: ", ")))")
            }
            if case let .unavailable(reason) = b.availability {
                throw CondenseError.backendUnavailable(name: name, reason: reason)
            }
            guard b.supports(layer.format) else {
                throw CondenseError.unsupportedFormat(backend: name, format: layer.format.description)
            }
            let p = try b.prepare(layer)
            return PlacedLinear(prepared: p, placement: Placement(
                backend: p.backendName, kernel: p.kernelName, format: layer.format, policy: policy, skipped: []))
        case .priority:
            var skipped: [String] = []
            for b in list {
                if case let .unavailable(reason) = b.availability {
                    skipped.append("\(b.name): \(reason)")
                    continue
                }
                guard b.supports(layer.format) else {
                    skipped.append("\(b.name): no \(layer.format) kernel")
                    continue
                }
                let p = try b.prepare(layer)
                return PlacedLinear(prepared: p, placement: Placement(
                    backend: p.backendName, kernel: p.kernelName, format: layer.format, policy: policy,
                    skipped: skipped))
            }
            throw CondenseError.noBackend(
                "no registered backend runs \(layer.format) weights [\(skipped.joined(separator: "; "))]")
        }
    }
}
