// swift-tools-version: 6.2
// A consumer package: an app that embeds a GGUF language model and streams its answer. It
// depends on Condense by path; in your own package use the URL and a version instead:
//     .package(url: "https://github.com/<owner>/condense", from: "0.3.0")
import PackageDescription

let package = Package(
    name: "StreamingLLM",
    dependencies: [.package(name: "Condense", path: "../..")],
    targets: [
        .executableTarget(name: "StreamingLLM", dependencies: [
            .product(name: "Condense", package: "Condense"),
            .product(name: "CondenseInference", package: "Condense"),
        ]),
    ]
)
