import Condense
import CondenseInference
import Foundation
import Hummingbird
import NIOCore

/// `POST /v1/embeddings`: strings or token arrays, `float` or `base64`, `dimensions`; requests that
/// queue while a batch runs form the next batch (``EmbeddingBatcher``).
extension CondenseServer {
    func embeddings(_ f: Fields) async throws -> Response {
        let (name, session) = try embeddingModel(f)
        guard let batcher else { throw APIError(.notFound, "no embedding model is served") }
        let tokenizer = session.model.tokenizer, maxLength = session.model.maxLength
        guard let input = f.o["input"], !(input is NSNull) else { throw APIError(.badRequest, "'input' is required", param: "input") }
        let truncate = try f.bool("truncate") ?? false
        var seqs: [[Int32]] = []
        func tokens(_ v: Any, _ i: Int) throws -> [Int32] {
            if let s = v as? String {
                let pieces = tokenizer.wordPieces(s)
                if pieces.count + 2 > maxLength && !truncate {
                    throw APIError(.badRequest, "input \(i) has \(pieces.count + 2) tokens; the model takes at most \(maxLength) (or send \"truncate\": true)", param: "input")
                }
                return tokenizer.encode(s, maxLength: maxLength)
            }
            if let a = v as? [Any], a.allSatisfy({ $0 is NSNumber && !JSON.isBool($0) }) {
                let ids = try a.map { x -> Int32 in
                    let d = (x as! NSNumber).doubleValue
                    guard d == d.rounded(), d >= 0, d < Double(tokenizer.tokens.count) else {
                        throw APIError(.badRequest, "input \(i): token \(d) is outside the vocabulary of \(tokenizer.tokens.count)", param: "input")
                    }
                    return Int32(d)
                }
                if ids.count + 2 > maxLength && !truncate {
                    throw APIError(.badRequest, "input \(i) has \(ids.count + 2) tokens; the model takes at most \(maxLength) (or send \"truncate\": true)", param: "input")
                }
                return [tokenizer.cls] + ids.prefix(maxLength - 2) + [tokenizer.sep]
            }
            throw APIError(.badRequest, "input \(i) must be a string or an array of token ids, got \(JSON.kind(v))", param: "input")
        }
        if input is String {
            seqs = [try tokens(input, 0)]
        } else if let a = input as? [Any] {
            guard !a.isEmpty else { throw APIError(.badRequest, "'input' is an empty array", param: "input") }
            if a.allSatisfy({ $0 is NSNumber && !JSON.isBool($0) }) {
                seqs = [try tokens(a, 0)]
            } else {
                guard a.count <= 2048 else { throw APIError(.badRequest, "'input' has \(a.count) items; at most 2048", param: "input") }
                seqs = try a.enumerated().map { try tokens($0.element, $0.offset) }
            }
        } else {
            throw APIError(.badRequest, "'input' must be a string, an array of strings or token arrays, got \(JSON.kind(input))", param: "input")
        }
        let format = try f.string("encoding_format") ?? "float"
        guard format == "float" || format == "base64" else {
            throw APIError(.badRequest, "'encoding_format' must be \"float\" or \"base64\", got \"\(format)\"", param: "encoding_format")
        }
        let width = session.model.config.hiddenSize
        let dims = try f.integer("dimensions", 1...width)
        var vectors = try await batcher.embed(seqs)
        if let dims {
            vectors = vectors.map { v in
                let cut = Array(v.prefix(dims))
                let norm = cut.reduce(0) { $0 + $1 * $1 }.squareRoot()
                return norm > 0 ? cut.map { $0 / norm } : cut
            }
        }
        let data: [[String: Any]] = vectors.enumerated().map { i, v in
            let e: Any = format == "float" ? v.map { Double($0) } : v.withUnsafeBufferPointer { Data(buffer: $0).base64EncodedString() }
            return ["object": "embedding", "index": i, "embedding": e]
        }
        let used = seqs.reduce(0) { $0 + $1.count }
        return JSON.response(["object": "list", "data": data, "model": name, "usage": ["prompt_tokens": used, "total_tokens": used]])
    }
}
