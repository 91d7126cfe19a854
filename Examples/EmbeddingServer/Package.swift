// swift-tools-version: 6.2
// A consumer package: a Hummingbird 2 service with its own embeddings route, using Condense as a
// library (not `condense serve`). It depends on Condense by path; in your own package use the
// URL and a version instead.
import PackageDescription

let package = Package(
    name: "EmbeddingServer",
    dependencies: [
        .package(name: "Condense", path: "../.."),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
    ],
    targets: [
        .executableTarget(name: "EmbeddingServer", dependencies: [
            .product(name: "Condense", package: "Condense"),
            .product(name: "CondenseInference", package: "Condense"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
    ]
)
