import Condense
import CondenseTraining
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One bin of a reliability diagram: predictions whose confidence fell in [lower, upper).
public struct ReliabilityBin: Sendable, Codable, Equatable {
    public let lower: Double, upper: Double
    public let count: Int
    /// Mean confidence (max probability) and accuracy of the predictions in the bin.
    public let confidence: Double, accuracy: Double
}

/// Latency of a whole forward pass through the registry.
public struct LatencyFigure: Sendable, Codable, Equatable {
    public let batch: Int
    public let p50: Double, p95: Double
    public let runs: Int
}

/// Everything measured about one model on one data set.
public struct Evaluation: Sendable, Codable {
    public let accuracy: Double
    /// Mean negative log-likelihood of the true class (nats).
    public let nll: Double
    /// Expected calibration error over 15 equal-width confidence bins.
    public let ece: Double
    public let reliability: [ReliabilityBin]
    /// Fraction of predictions equal to the reference model's (nil without a reference).
    public let agreement: Double?
    public let formats: [String]
    public let sparsity: [Double]
    /// Bytes of the serialized model file.
    public let fileBytes: Int
    /// Bytes of weights in their formats (what the kernels read).
    public let weightBytes: Int
    public let latency: [LatencyFigure]
    /// Where each layer ran: "format → backend/kernel".
    public let placement: [String]
    /// Peak resident memory of the process so far (getrusage), bytes: an upper bound that
    /// includes everything evaluated before.
    public let peakProcessBytes: Int
    /// The predictions, for agreement with later variants (not serialized).
    public var predictions: [Int] = []

    enum CodingKeys: String, CodingKey {
        case accuracy, nll, ece, reliability, agreement, formats, sparsity, fileBytes, weightBytes, latency, placement, peakProcessBytes
    }
}

/// Measures a model against a test set and a reference: accuracy, NLL, calibration, agreement
/// and latency through the runtime (``Evaluation``).
public enum Evaluator {
    /// Measures `model` on `data`: quality from the logits of the prepared model (the kernels
    /// that would serve it), size from its serialized file, latency p50/p95 at each batch size.
    ///
    /// ```swift
    /// let e = try Evaluator.evaluate(compressed, on: test, registry: .standard())
    /// print(e.accuracy, e.ece, e.latency, e.placement)
    /// ```
    public static func evaluate(_ model: CompressedMLP, on data: Dataset, registry: BackendRegistry,
                                policy: SelectionPolicy = .priority, reference: [Int]? = nil,
                                latencyBatches: [Int] = [1, 64], latencyRuns: Int = 200) throws -> Evaluation {
        guard data.features == model.inFeatures, data.classes == model.outFeatures else {
            throw CondenseError.shapeMismatch("data has \(data.features) features and \(data.classes) classes; the model maps \(model.inFeatures) → \(model.outFeatures)")
        }
        if let reference, reference.count != data.count {
            throw CondenseError.shapeMismatch("\(reference.count) reference predictions for \(data.count) rows")
        }
        // Latency first: placement under `.fastest` is measured per batch bucket.
        var latency: [LatencyFigure] = []
        var placement: [String] = []
        var batch64: PreparedMLP?
        for b in latencyBatches where b >= 1 {
            let policyB: SelectionPolicy = { if case .fastest = policy { return .fastest(batch: b) }; return policy }()
            let prepared = try model.prepare(on: registry, policy: policyB)
            if b == 64 { batch64 = prepared }
            if placement.isEmpty || b == 1 { placement = prepared.layers.map { "\($0.placement.format) → \($0.placement.backend)/\($0.kernelName(forBatch: b))" } }
            let rows = min(b, data.count)
            let x = try Matrix(rows: rows, columns: data.features, elements: Array(data.x[0..<(rows * data.features)]))
            _ = try prepared.logits(x)
            let runs = b == 1 ? latencyRuns : max(10, latencyRuns / 10)
            var ts: [Double] = []
            for _ in 0..<runs {
                let t0 = DispatchTime.now().uptimeNanoseconds
                _ = try prepared.logits(x)
                ts.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
            }
            ts.sort()
            latency.append(LatencyFigure(batch: b, p50: ts[ts.count / 2], p95: ts[min(ts.count - 1, Int(Double(ts.count) * 0.95))], runs: runs))
        }
        // Quality runs in batches of up to 256 rows: the batch-64 placement when it was measured.
        let prepared = try batch64 ?? model.prepare(on: registry, policy: { if case .fastest = policy { return .fastest(batch: 64) }; return policy }())
        var probs: [Float] = []
        var start = 0
        while start < data.count {
            let end = min(start + 256, data.count)
            let x = try Matrix(rows: end - start, columns: data.features, elements: Array(data.x[(start * data.features)..<(end * data.features)]))
            probs += Loss.softmax(try prepared.logits(x).elements, rows: end - start, classes: data.classes)
            start = end
        }
        let q = quality(probs: probs, labels: data.y, classes: data.classes, reference: reference)
        var usage = rusage()
        #if os(Linux)
        getrusage(RUSAGE_SELF.rawValue, &usage)
        #else
        getrusage(RUSAGE_SELF, &usage)
        #endif
        var e = Evaluation(accuracy: q.accuracy, nll: q.nll, ece: q.ece, reliability: q.bins, agreement: q.agreement,
                           formats: model.layers.map(\.format.description), sparsity: model.sparsity,
                           fileBytes: try model.serializedBytes, weightBytes: model.weightBytes, latency: latency,
                           placement: placement, peakProcessBytes: Int(usage.ru_maxrss) * 1024)
        e.predictions = q.predictions
        return e
    }

    /// Accuracy, NLL, ECE (15 bins) and agreement from class probabilities.
    public static func quality(probs: [Float], labels: [Int32], classes: Int, reference: [Int]? = nil, bins: Int = 15)
        -> (accuracy: Double, nll: Double, ece: Double, bins: [ReliabilityBin], agreement: Double?, predictions: [Int]) {
        let n = labels.count
        var correct = 0, nll = 0.0
        var count = [Int](repeating: 0, count: bins), conf = [Double](repeating: 0, count: bins), hit = [Int](repeating: 0, count: bins)
        var preds: [Int] = []
        for i in 0..<n {
            let row = probs[(i * classes)..<((i + 1) * classes)]
            let p = row.indices.max { row[$0] < row[$1] }! - i * classes
            preds.append(p)
            let c = Double(row[i * classes + p])
            let ok = p == Int(labels[i])
            if ok { correct += 1 }
            nll -= log(max(Double(row[i * classes + Int(labels[i])]), 1e-12))
            let b = min(bins - 1, Int(c * Double(bins)))
            count[b] += 1
            conf[b] += c
            if ok { hit[b] += 1 }
        }
        var ece = 0.0
        var table: [ReliabilityBin] = []
        for b in 0..<bins {
            let mc = count[b] > 0 ? conf[b] / Double(count[b]) : 0
            let acc = count[b] > 0 ? Double(hit[b]) / Double(count[b]) : 0
            ece += Double(count[b]) / Double(max(n, 1)) * abs(acc - mc)
            table.append(ReliabilityBin(lower: Double(b) / Double(bins), upper: Double(b + 1) / Double(bins), count: count[b], confidence: mc, accuracy: acc))
        }
        let agreement = reference.map { r in Double(zip(r, preds).filter { $0 == $1 }.count) / Double(max(n, 1)) }
        return (Double(correct) / Double(max(n, 1)), nll / Double(max(n, 1)), ece, table, agreement, preds)
    }
}
