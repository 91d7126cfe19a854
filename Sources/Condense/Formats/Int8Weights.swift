/// int8 weights for the integer kernels: symmetric (zero point 0) with one scale per output
/// channel, `W[n, k] ≈ scales[n] · values[n·K + k]`. Activations are quantized to u8 at run time,
/// per row (dynamic), or with a calibrated scale and zero point (static).
///
/// ```swift
/// let q = try Int8Weights(quantizing: w)                    // per-channel min–max
/// let layer = try LinearLayer(weights: .int8(q), bias: b)
/// ```
/// `CondenseCompression.Quantizer` offers the other observers and produces this type too.
public struct Int8Weights: Sendable, Equatable {
    public let rows: Int
    public let columns: Int
    /// Row-major, −128…127 (the quantizer uses −127…127 to keep the range symmetric).
    public let values: [Int8]
    /// One per row, finite and > 0.
    public let scales: [Float]
    /// Calibrated activation quantization (u8 scale and zero point), or nil for per-row dynamic.
    public let staticActivation: StaticActivation?
    /// Full int8 (integer kernels, u8 activations) or weight-only (activations stay f32).
    public var path: Path = .integer

    /// How a native backend runs the layer.
    public enum Path: String, Sendable, Equatable {
        /// Weights and activations in int8: the integer (VNNI) kernels.
        case integer
        /// Weight-only: the weights are dequantized exactly (s·q) when the layer is prepared and
        /// run by the f32 kernel, so activations are never rounded. The prepared layer holds f32
        /// weights in memory; the model's stored weights stay int8.
        case weightOnly
    }

    /// The same weights run on another path.
    public func with(path: Path) -> Int8Weights {
        var w = self
        w.path = path
        return w
    }

    /// u8 activation parameters shared by every row.
    public struct StaticActivation: Sendable, Equatable {
        public let scale: Float
        public let zeroPoint: Int32
        /// - Throws: ``CondenseError/invalidArgument(_:)`` for a scale that is not finite and > 0 or a
        ///   zero point outside 0…255.
        public init(scale: Float, zeroPoint: Int32) throws {
            guard scale.isFinite, scale > 0 else { throw CondenseError.invalidArgument("activation scale must be finite and > 0, got \(scale)") }
            guard (0...255).contains(zeroPoint) else { throw CondenseError.invalidArgument("u8 zero point must be in 0…255, got \(zeroPoint)") }
            self.scale = scale
            self.zeroPoint = zeroPoint
        }
    }

    /// - Throws: ``CondenseError`` when the counts do not match the shape or a scale is not finite and > 0.
    public init(rows: Int, columns: Int, values: [Int8], scales: [Float], staticActivation: StaticActivation? = nil) throws {
        guard rows >= 0 else { throw CondenseError.invalidDimension(name: "rows", value: rows) }
        guard columns >= 0 else { throw CondenseError.invalidDimension(name: "columns", value: columns) }
        let count = try CheckedSize.product(rows, columns, of: "int8 weights")
        guard values.count == count else {
            throw CondenseError.shapeMismatch("int8 weights \(rows)×\(columns) need \(count) values, got \(values.count)")
        }
        guard scales.count == rows else {
            throw CondenseError.shapeMismatch("int8 weights need one scale per row (\(rows)), got \(scales.count)")
        }
        if let bad = scales.firstIndex(where: { !($0.isFinite && $0 > 0) }) {
            throw CondenseError.invalidArgument("int8 scale of row \(bad) must be finite and > 0, got \(scales[bad])")
        }
        self.rows = rows
        self.columns = columns
        self.values = values
        self.scales = scales
        self.staticActivation = staticActivation
    }

    /// Symmetric per-channel min–max quantization: `s = max|w| / 127`, `q = round(w / s)`. Zeros
    /// stay exactly zero.
    public init(quantizing w: Matrix<Float>) throws {
        var values = [Int8](repeating: 0, count: w.count)
        var scales = [Float](repeating: 1, count: w.rows)
        let k = w.columns
        w.withUnsafeBufferPointer { p in
            for r in 0..<w.rows {
                var a: Float = 0
                for c in 0..<k where p[r * k + c].isFinite { a = max(a, abs(p[r * k + c])) }
                let s: Float = a > 0 ? a / 127 : 1
                scales[r] = s
                for c in 0..<k {
                    let q = (p[r * k + c] / s).rounded(.toNearestOrEven)
                    values[r * k + c] = q.isNaN ? 0 : Int8(max(-127, min(127, q)))
                }
            }
        }
        try self.init(rows: w.rows, columns: w.columns, values: values, scales: scales)
    }

    /// Bytes of values and scales.
    public var byteCount: Int { values.count + scales.count * 4 }

    /// `scales[n] · values[n, k]` as f32.
    public func densified() -> Matrix<Float> {
        Matrix<Float>(validatedRows: rows, columns: columns) { r, c in scales[r] * Float(values[r * columns + c]) }
    }
}
