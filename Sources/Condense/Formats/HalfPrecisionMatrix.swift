import CCondenseKernels

/// A weight matrix stored in 16-bit floats: bfloat16 or IEEE half (`W[N, K]`, row-major bits).
///
/// Half the bytes of f32 with no calibration. The native kernels widen the weights exactly to
/// f32 in registers, except bf16 on CPUs with AVX-512 BF16, whose kernel rounds activations to
/// bf16 and multiplies pairs with `vdpbf16ps` (as llama.cpp and oneDNN run bf16 weights).
/// Safetensors and GGUF files that store a projection in BF16 or F16 load into this type.
///
/// ```swift
/// let h = HalfPrecisionMatrix(converting: w, to: .bf16)   // round to nearest even
/// let layer = try LinearLayer(weights: .half(h))
/// // or: try LinearLayer(weights: .dense(w)).converted(to: .bf16)
/// ```
public struct HalfPrecisionMatrix: Sendable, Equatable {
    /// The 16-bit float type.
    public enum Kind: String, Sendable, Equatable {
        /// bfloat16: an f32's sign, 8-bit exponent and top 7 mantissa bits.
        case bf16
        /// IEEE 754 binary16: 5-bit exponent, 10-bit mantissa (range ±65504).
        case f16

        var c: Int32 { self == .bf16 ? Int32(CONDENSE_HALF_BF16.rawValue) : Int32(CONDENSE_HALF_F16.rawValue) }
        /// The weight format of a layer holding this type.
        var format: WeightFormat { self == .bf16 ? .bf16 : .f16 }
        /// Its safetensors dtype.
        var dtype: SafeTensors.DType { self == .bf16 ? .bf16 : .f16 }
        /// The type a safetensors dtype stores, if it is a 16-bit float.
        ///
        /// ```swift
        /// HalfPrecisionMatrix.Kind(dtype: .bf16)   // .bf16;  Kind(dtype: .f32) is nil
        /// ```
        public init?(dtype: SafeTensors.DType) {
            switch dtype {
            case .bf16: self = .bf16
            case .f16: self = .f16
            default: return nil
            }
        }
    }

    public let kind: Kind
    public let rows: Int
    public let columns: Int
    /// Row-major bit patterns, `rows · columns` of them.
    public let bits: [UInt16]

    /// - Throws: ``CondenseError`` for a negative dimension or a bit count that does not match.
    public init(kind: Kind, rows: Int, columns: Int, bits: [UInt16]) throws {
        guard rows >= 0 else { throw CondenseError.invalidDimension(name: "rows", value: rows) }
        guard columns >= 0 else { throw CondenseError.invalidDimension(name: "columns", value: columns) }
        let count = try CheckedSize.product(rows, columns, of: "\(kind) weights")
        guard bits.count == count else {
            throw CondenseError.shapeMismatch("\(kind) weights \(rows)×\(columns) need \(count) values, got \(bits.count)")
        }
        self.kind = kind
        self.rows = rows
        self.columns = columns
        self.bits = bits
    }

    /// Rounds every weight to `kind`, to nearest even (f16: values beyond ±65504 become ±inf,
    /// as a cast would).
    public init(converting w: Matrix<Float>, to kind: Kind) {
        var out = [UInt16](repeating: 0, count: w.count)
        w.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                guard let s = src.baseAddress, let d = dst.baseAddress else { return }
                switch kind {
                case .bf16: for i in 0..<src.count { d[i] = condense_f32_to_bf16(s[i]) }
                case .f16: condense_f32_to_f16(s, d, src.count, CondenseRuntime.detectedISA.c)
                }
            }
        }
        self.kind = kind
        rows = w.rows
        columns = w.columns
        bits = out
    }

    /// Bytes of the stored weights.
    public var byteCount: Int { bits.count * 2 }

    /// The weights widened to f32 (exact).
    public func densified() -> Matrix<Float> {
        // The shape was validated at init, so this cannot fail.
        try! Matrix(rows: rows, columns: columns, elements: Self.widened(bits, kind: kind))
    }

    /// 16-bit patterns of `kind` widened to f32 (exact).
    static func widened(_ bits: [UInt16], kind: Kind) -> [Float] {
        kind == .bf16 ? bits.map { Float(bitPattern: UInt32($0) << 16) } : bits.map { condense_f16_to_f32($0) }
    }

    /// The first `n` rows.
    func leadingRows(_ n: Int) -> HalfPrecisionMatrix {
        // n ≤ rows (checked by the caller), so the count matches.
        try! HalfPrecisionMatrix(kind: kind, rows: n, columns: columns, bits: Array(bits[0..<(n * columns)]))
    }
}
