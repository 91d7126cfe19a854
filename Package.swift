// swift-tools-version: 6.2
// Tools version 6.2 is the lowest at which a package that uses `unsafeFlags` (needed for
// `-fopenmp`) can still be depended on by version tag. See docs/architecture.md.
import PackageDescription

/// The kernels run on Condense's own pthread team on every platform; libomp only supplies the
/// thread-count default (`OMP_NUM_THREADS`) where it exists. So `-fopenmp` and the library are
/// Linux-only (Apple's clang has none) and behind the default `OpenMP` trait, which
/// `swift build --disable-default-traits` turns off. No architecture flag is passed at all: the
/// x86 kernels carry per-function `target` attributes and compile to nothing on AArch64, whose
/// extensions (dotprod, i8mm) get their own attributes; Tests/aarch64/run.sh checks the ARM build.
let openMPC: [CSetting] = [
    .unsafeFlags(["-fopenmp"], .when(platforms: [.linux], traits: ["OpenMP"])),
]
let openMPLink: [LinkerSetting] = [
    .linkedLibrary("omp5", .when(platforms: [.linux], traits: ["OpenMP"])),
]

/// Swift has no per-function target attribute, but a per-module one: the Swift SIMD kernel is
/// compiled once per x86 level in a small module of its own, chosen at run time (SIMDBackend).
/// `#if arch` reads the host building the package; on AArch64 these modules get no flag (NEON is
/// the baseline there) and the backend never selects them.
#if arch(x86_64)
let avx512Swift: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "skylake-avx512"])]
let avx2Swift: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]
#else
let avx512Swift: [SwiftSetting] = []
let avx2Swift: [SwiftSetting] = []
#endif

let package = Package(
    name: "Condense",
    products: [
        .library(name: "Condense", targets: ["Condense"]),
        .library(name: "CondenseTraining", targets: ["CondenseTraining"]),
        // For Swift backend authors: GEMMMicroKernel, SIMDTile and the SwiftGEMM driver.
        .library(name: "CondenseSIMDKit", targets: ["CondenseSIMDKit"]),
        .library(name: "CondenseCompression", targets: ["CondenseCompression"]),
        .library(name: "CondenseInference", targets: ["CondenseInference"]),
        .library(name: "CondenseServer", targets: ["CondenseServer"]),
        .executable(name: "condense", targets: ["CondenseCLI"]),
        // Example plugins, loaded at run time (docs/plugin-abi.md): `swift build -c release
        // --product condense_onednn_plugin` → .build/release/libcondense_onednn_plugin.so.
        .library(name: "condense_onednn_plugin", type: .dynamic, targets: ["CondenseOneDNNPlugin"]),
        .library(name: "condense_cblas_plugin", type: .dynamic, targets: ["CondenseCBLASPlugin"]),
        .library(name: "condense_template_plugin", type: .dynamic, targets: ["CondenseTemplatePlugin"]),
    ],
    traits: [
        .trait(name: "OpenMP", description: "Multi-threaded kernels through libomp (Debian: libomp-dev)."),
        .default(enabledTraits: ["OpenMP"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The HTTP server only (CondenseServer); the library targets stay free of NIO.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        // `swift package generate-documentation` (Tests/docs/run.sh builds every catalog with
        // warnings as errors); a command plugin, nothing of it is linked.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        // The C kernels. Always optimised, also in debug builds: tests run them on real sizes.
        .target(
            name: "CCondenseKernels",
            path: "Kernels",
            cSettings: openMPC + [
                .unsafeFlags(["-O2", "-fno-math-errno"]),
                .headerSearchPath("common"),
            ],
            linkerSettings: openMPLink + [.linkedLibrary("m")]
        ),
        // The plugin ABI: one header a plugin author includes, nothing else (docs/plugin-abi.md).
        .target(
            name: "CCondensePluginABI",
            path: "Plugins",
            exclude: ["template", "cblas", "onednn"],
            sources: ["abi.c"],
            publicHeadersPath: "include"
        ),
        // The example plugins: each includes only the ABI header and finds its library by dlopen.
        .target(name: "CondenseOneDNNPlugin", dependencies: ["CCondensePluginABI"], path: "Plugins/onednn", publicHeadersPath: ".",
                cSettings: [.unsafeFlags(["-O2"])], linkerSettings: [.linkedLibrary("m")]),
        .target(name: "CondenseCBLASPlugin", dependencies: ["CCondensePluginABI"], path: "Plugins/cblas", publicHeadersPath: ".",
                cSettings: [.unsafeFlags(["-O2"])], linkerSettings: [.linkedLibrary("m")]),
        .target(name: "CondenseTemplatePlugin", dependencies: ["CCondensePluginABI"], path: "Plugins/template", publicHeadersPath: ".",
                cSettings: [.unsafeFlags(["-O2"])]),
        // The Swift SIMD toolkit (micro-kernel protocol, generic register tile, driver) and the
        // per-ISA modules that compile the tile for one level each. Free of global state: nothing
        // in a wide module runs before the run-time ISA check.
        .target(name: "CondenseSIMDKit", dependencies: ["CCondenseKernels"],
                swiftSettings: [.swiftLanguageMode(.v6)]),
        .target(name: "CondenseSIMDBaseline", dependencies: ["CondenseSIMDKit"],
                swiftSettings: [.swiftLanguageMode(.v6)]),
        .target(name: "CondenseSIMDAVX2", dependencies: ["CondenseSIMDKit"],
                swiftSettings: [.swiftLanguageMode(.v6)] + avx2Swift),
        .target(name: "CondenseSIMDAVX512", dependencies: ["CondenseSIMDKit"],
                swiftSettings: [.swiftLanguageMode(.v6)] + avx512Swift),
        // The README's custom Swift backend (not a product): a user's micro-kernel in a module of
        // its own built for AVX-512, tested and timed like the built-in backends.
        .target(name: "CondenseExampleBackend",
                path: "Examples/CustomBackend", swiftSettings: [.swiftLanguageMode(.v6)] + avx512Swift),
        .target(
            name: "Condense",
            dependencies: ["CCondenseKernels", "CCondensePluginABI", "CondenseSIMDKit", "CondenseSIMDBaseline",
                           "CondenseSIMDAVX2", "CondenseSIMDAVX512"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // A small training engine (MLPs, forward and backward on the native GEMM, SGD/Adam, QAT's
        // fake quantization, distillation losses): what compression needs to recover accuracy.
        .target(
            name: "CondenseTraining",
            dependencies: ["Condense", "CCondenseKernels"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // Pruning, quantization, distillation pipelines, evaluation and encoder recovery:
        // produces the CompressedWeights (and compressed models) the runtime runs.
        .target(
            name: "CondenseCompression",
            dependencies: ["Condense", "CondenseTraining", "CondenseInference"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // Models served by the runtime: the BERT-family sentence encoder, its WordPiece tokenizer,
        // InferenceSession.
        .target(
            name: "CondenseInference",
            dependencies: ["Condense", "CCondenseKernels"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // The OpenAI-compatible HTTP server: routes, batching queues, metrics, graceful shutdown.
        .target(
            name: "CondenseServer",
            dependencies: [
                "Condense",
                "CondenseInference",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "CondenseCLI",
            dependencies: [
                "Condense",
                "CondenseCompression",
                "CondenseTraining",
                "CondenseInference",
                "CondenseServer",
                "CondenseExampleBackend",
                "CondenseSIMDKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            resources: [.copy("Resources/mnist"), .copy("Resources/text")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "CondenseTests",
            dependencies: ["Condense", "CCondenseKernels", "CondenseTestSupport", "CondenseSIMDKit", "CondenseExampleBackend"],
            exclude: ["Fixtures"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // Helpers shared by the test targets (not a product).
        .target(
            name: "CondenseTestSupport",
            dependencies: ["CondenseTraining", "Condense", "CondenseInference"],
            path: "Tests/CondenseTestSupport",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "CondenseTrainingTests",
            dependencies: ["CondenseTraining", "Condense", "CCondenseKernels", "CondenseTestSupport"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "CondenseInferenceTests",
            dependencies: ["CondenseInference", "Condense", "CondenseCompression", "CondenseTestSupport"],
            exclude: ["Scripts"],   // run by python3 from their path, not bundled
            resources: [.copy("Fixtures")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // The `condense` command as a user runs it: hostile options, files and environments.
        .testTarget(
            name: "CondenseCLITests",
            dependencies: ["CondenseCLI", "Condense", "CondenseTestSupport"],
            exclude: ["Scripts"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "CondenseServerTests",
            dependencies: ["CondenseServer", "CondenseInference", "Condense", "CondenseTestSupport",
                           .product(name: "HummingbirdTesting", package: "hummingbird")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "CondenseCompressionTests",
            dependencies: ["CondenseCompression", "CondenseTraining", "Condense", "CondenseInference", "CondenseTestSupport"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
