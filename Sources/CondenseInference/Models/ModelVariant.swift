import Condense
import Foundation

/// A GGUF file's tensors with some replaced by stored parts (what compression tries before it
/// writes a folder). A replaced projection of a fused architecture comes with all its siblings
/// split (Q, K, V; gate, up), as a folder stores them.
struct OverlayTensorSource: TensorSource {
    var base: GGUFTensorSource
    let parts: [String: DecoderFolder.Part]
    var placer: ProjectionPlacer { base.placer }
    var tensorNames: [String] { Array(Set(base.tensorNames).union(parts.keys)) }

    func has(_ name: String) -> Bool { parts[name] != nil || base.has(name) }
    func vector(_ name: String, _ count: Int) throws -> [Float] {
        if case let .vector(v)? = parts[name] {
            guard v.count == count else { throw CondenseError.invalidTensor(name: name, reason: "\(v.count) values, expected \(count)") }
            return v
        }
        return try base.vector(name, count)
    }
    func embedding(hidden d: Int) throws -> GGUFFile.Tensor { try base.embedding(hidden: d) }

    mutating func projection(_ names: [String], outs: [Int], inp: Int, bias: Bool) throws -> any PreparedLinear {
        guard names.contains(where: { parts[$0 + ".weight"] != nil }) else { return try base.projection(names, outs: outs, inp: inp, bias: bias) }
        let ps = try zip(names, outs).map { n, out -> DecoderFolder.Part in
            guard let p = parts[n + ".weight"] else {
                throw CondenseError.invalidTensor(name: n + ".weight", reason: "its siblings \(names) are replaced but it is not")
            }
            try Self.check(p, n + ".weight", rows: out, columns: inp)
            return p
        }
        let b = bias ? try zip(names, outs).flatMap { try vector($0 + ".bias", $1) } : nil
        return try base.placer.place(names, parts: ps, outs: outs, bias: b)
    }

    mutating func head(vocab: Int, hidden d: Int, embedding: GGUFFile.Tensor) throws -> any PreparedLinear {
        guard parts[ModelTensor.output] != nil else { return try base.head(vocab: vocab, hidden: d, embedding: embedding) }
        return try projection(["output"], outs: [vocab], inp: d, bias: false)
    }

    static func check(_ p: DecoderFolder.Part, _ name: String, rows: Int, columns: Int) throws {
        let (r, c): (Int, Int)
        switch p {
        case let .ggml(_, rows, columns, _): (r, c) = (rows, columns)
        case let .sparse24Int4(w): (r, c) = (w.rows, w.columns)
        case let .linear(l): (r, c) = (l.outFeatures, l.inFeatures)
        case .vector: throw CondenseError.invalidTensor(name: name, reason: "a vector where a matrix belongs")
        }
        guard (r, c) == (rows, columns) else { throw CondenseError.invalidTensor(name: name, reason: "\(r)×\(c), expected \(rows)×\(columns)") }
    }
}

extension LanguageModel {
    /// This model with the tensors in `parts` (ggml names: `blk.3.attn_q.weight`,
    /// `output.weight`) replaced; the blocks and head they do not touch are shared, not copied.
    /// `f` must be the GGUF file this model was loaded from. Compression measures each candidate
    /// format of each projection on a variant like this before it chooses.
    ///
    /// ```swift
    /// let v = try lm.replacing(["blk.0.attn_q.weight": .sparse24Int4(w), "blk.0.attn_k.weight": k, "blk.0.attn_v.weight": v],
    ///                          file: gguf, registry: registry)
    /// ```
    /// - Throws: ``CondenseError`` for a part of the wrong shape, or one of a stacked group
    ///   (Q, K, V; gate, up) replaced without the others where the file fuses them.
    package func replacing(_ parts: [String: DecoderFolder.Part], file f: GGUFFile, registry: BackendRegistry) throws -> LanguageModel {
        let c = config
        let arch = try DecoderArchitecture.named(c.architecture)
        var touched = Set<Int>()
        for name in parts.keys where name.hasPrefix("blk.") {
            guard let l = Int(name.dropFirst(4).prefix { $0 != "." }), l >= 0, l < c.layers else {
                throw CondenseError.invalidTensor(name: name, reason: "no such block in a model of \(c.layers)")
            }
            touched.insert(l)
        }
        var source = OverlayTensorSource(base: GGUFTensorSource(file: f, placer: ProjectionPlacer(registry: registry, isa: registry.helperISA)),
                                         parts: parts)
        var ls = layers
        var bytes = weightBytesPerToken
        let has = Set(arch.block)
        for l in touched.sorted() {
            ls[l] = try Self.layer(l, c, has: has, source: &source)
            bytes += ls[l].bytesPerToken - layers[l].bytesPerToken
        }
        var h = head, hb = headBytesPerToken
        if parts[ModelTensor.output] != nil {
            let before = source.placer.perToken
            h = try source.head(vocab: vocabSize, hidden: c.hidden, embedding: tokenEmbedding)
            hb = source.placer.perToken - before
            bytes += hb - headBytesPerToken
        }
        return LanguageModel(config: c, tokenizer: tokenizer, isa: isa, name: name, tokenEmbedding: tokenEmbedding, layers: ls,
                             outputNorm: outputNorm, head: h, vocabSize: vocabSize, ropeFrequencyFactors: ropeFrequencyFactors,
                             placements: placements, weightBytesPerToken: bytes, headBytesPerToken: hb)
    }
}
