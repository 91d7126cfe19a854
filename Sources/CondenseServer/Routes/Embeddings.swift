import Condense
import CondenseInference
import Foundation
import Hummingbird
import NIOCore

/// `POST /v1/embeddings` (``EmbeddingBody``): strings or token arrays, `float` or `base64`,
/// `dimensions`; requests that queue while a batch runs form the next batch (``EmbeddingBatcher``).
extension CondenseServer {
    func embeddings(_ f: Fields) async throws -> Response {
        let (name, session) = try embeddingModel(f)
        guard let batcher else { throw APIError(.notFound, "no embedding model is served") }
        let tokenizer = session.model.tokenizer, maxLength = session.model.maxLength
        let body = try decodeBody(EmbeddingBody.self, from: f.data)
        guard let input = body.input else { throw APIError(.badRequest, "'input' is required", param: "input") }
        let truncate = body.truncate ?? false
        func tokens(_ v: EmbeddingBody.Input.Item, _ i: Int) throws -> [Int32] {
            switch v {
            case let .text(s):
                let pieces = tokenizer.wordPieces(s)
                if pieces.count + 2 > maxLength && !truncate {
                    throw APIError(.badRequest, "input \(i) has \(pieces.count + 2) tokens; the model takes at most \(maxLength) (or send \"truncate\": true)", param: "input")
                }
                return tokenizer.encode(s, maxLength: maxLength)
            case let .ids(a):
                let ids = try a.map { d -> Int32 in
                    guard d == d.rounded(), d >= 0, d < Double(tokenizer.tokens.count) else {
                        throw APIError(.badRequest, "input \(i): token \(d) is outside the vocabulary of \(tokenizer.tokens.count)", param: "input")
                    }
                    return Int32(d)
                }
                if ids.count + 2 > maxLength && !truncate {
                    throw APIError(.badRequest, "input \(i) has \(ids.count + 2) tokens; the model takes at most \(maxLength) (or send \"truncate\": true)", param: "input")
                }
                return [tokenizer.cls] + ids.prefix(maxLength - 2) + [tokenizer.sep]
            case let .other(kind):
                throw APIError(.badRequest, "input \(i) must be a string or an array of token ids, got \(kind)", param: "input")
            }
        }
        guard !input.items.isEmpty else { throw APIError(.badRequest, "'input' is an empty array", param: "input") }
        guard input.items.count <= 2048 else { throw APIError(.badRequest, "'input' has \(input.items.count) items; at most 2048", param: "input") }
        let seqs = try input.items.enumerated().map { try tokens($0.element, $0.offset) }
        let format = body.encodingFormat ?? "float"
        guard format == "float" || format == "base64" else {
            throw APIError(.badRequest, "'encoding_format' must be \"float\" or \"base64\", got \"\(format)\"", param: "encoding_format")
        }
        let width = session.model.config.hiddenSize
        let dims = try CompletionBody.integer(body.dimensions, "dimensions", 1...width)
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
