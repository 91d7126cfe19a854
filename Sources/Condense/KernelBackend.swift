/// A description of one kernel a backend can run, for `condense info` and placement reports.
public struct KernelInfo: Sendable, Hashable {
    /// Grammar `datatype_op_tile__isa`, e.g. `f32_gemm_12x32__avx512`.
    public let name: String
    /// The ISA level it needs, or `nil` for portable Swift code.
    public let isa: ISA?
    /// Whether this CPU can run it.
    public let runnable: Bool

    /// For backends written outside Condense: `KernelInfo(name: "f32_loop", isa: nil, runnable: true)`.
    public init(name: String, isa: ISA?, runnable: Bool) {
        self.name = name
        self.isa = isa
        self.runnable = runnable
    }
}

/// Something that runs linear layers: it says what it supports and prepares weights once.
///
/// Conform to add a backend written in Swift, then register it:
///
/// ```swift
/// struct MyBackend: KernelBackend {
///     let name = "mine"
///     var availability: BackendAvailability { .available }
///     func supports(_ format: WeightFormat) -> Bool { format == .dense }
///     var kernels: [KernelInfo] { [] }
///     func prepare(_ layer: LinearLayer) throws -> any PreparedLinear {
///         try ReferenceBackend().prepare(layer)   // your packing and kernel here
///     }
/// }
/// let registry = BackendRegistry.standard()
/// registry.register(MyBackend(), first: true)
/// ```
public protocol KernelBackend: Sendable {
    /// A short unique name (`native`, `simd`, `reference`, ...).
    var name: String { get }
    /// Whether it can run on this machine, and why not.
    var availability: BackendAvailability { get }
    /// Whether it runs layers whose weights are in `format`.
    func supports(_ format: WeightFormat) -> Bool
    /// The kernels it may choose among.
    var kernels: [KernelInfo] { get }
    /// Packs the layer's weights for this backend's kernels. Called once per layer.
    func prepare(_ layer: LinearLayer) throws -> any PreparedLinear
    /// What measurements of this backend depend on besides the CPU and thread count: its name,
    /// version and settings. Part of the tuning cache's key, so a change re-measures.
    /// Defaults to ``name``.
    var tuningIdentity: String { get }
}

extension KernelBackend {
    public var tuningIdentity: String { name }
}

/// Whether a backend can run here.
public enum BackendAvailability: Sendable, Equatable {
    case available
    case unavailable(reason: String)

    public var isAvailable: Bool { self == .available }
}

/// A layer whose weights a backend has packed: `apply` is the cheap per-batch call.
///
/// Implementations are immutable after preparation, so many threads may call `apply` at once.
public protocol PreparedLinear: Sendable {
    /// The backend that prepared it.
    var backendName: String { get }
    /// The kernel `apply` runs.
    var kernelName: String { get }
    /// K.
    var inFeatures: Int { get }
    /// N.
    var outFeatures: Int { get }
    /// Writes `act(x · Wᵀ + b)` into `y`, which must be `[x.rows, outFeatures]`.
    func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws
    /// The kernel `apply` runs for a batch of `m` rows (sparse layers switch kernels with M).
    func kernelName(forBatch m: Int) -> String
}

extension PreparedLinear {
    /// One kernel for every batch size unless the layer says otherwise.
    public func kernelName(forBatch m: Int) -> String { kernelName }

    /// Returns `act(x · Wᵀ + b)` as a new `[x.rows, outFeatures]` matrix.
    ///
    /// ```swift
    /// let layer = try BackendRegistry.standard().prepare(linear)
    /// let y = try layer.apply(x)
    /// ```
    public func apply(_ x: Matrix<Float>) throws -> Matrix<Float> {
        var y = try Matrix<Float>(rows: x.rows, columns: outFeatures)
        try apply(x, into: &y)
        return y
    }

    /// Throws unless `x` is `[M, inFeatures]` and `y` is `[M, outFeatures]`.
    public func checkShapes(_ x: Matrix<Float>, _ y: Matrix<Float>) throws {
        guard x.columns == inFeatures else {
            throw CondenseError.shapeMismatch(
                "input has \(x.columns) columns but the layer has \(inFeatures) input features (x is \(x.rows)×\(x.columns))")
        }
        guard y.rows == x.rows, y.columns == outFeatures else {
            throw CondenseError.shapeMismatch(
                "output is \(y.rows)×\(y.columns) but must be \(x.rows)×\(outFeatures)")
        }
    }
}
