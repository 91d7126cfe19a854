import CondenseTraining

/// Deterministic data for the training and compression tests: `classes` Gaussian-ish blobs
/// (centres uniform in ±2, points ±1 around them), classes in turn.
public func gaussianBlobs(count: Int, features: Int, classes: Int, seed: UInt64) throws -> Dataset {
    var rng = SplitMix64(seed: seed)
    let centers = (0..<classes).map { _ in (0..<features).map { _ in rng.uniform(-2, 2) } }
    var x: [Float] = [], y: [Int32] = []
    for i in 0..<count {
        let c = i % classes
        for f in 0..<features { x.append(centers[c][f] + rng.uniform(-1, 1)) }
        y.append(Int32(c))
    }
    return try Dataset(features: features, classes: classes, x: x, y: y)
}
