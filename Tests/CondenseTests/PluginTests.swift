import Condense
import Foundation
import Testing

/// Plugins are compiled from source at test time with the system C compiler, the way a user builds
/// one from docs/plugin-abi.md: the template, and malformed ones the loader must reject.
/// Whether the libraries the example plugins find at run time are present.
enum PluginLibraries {
    static func present(_ names: [String]) -> Bool {
        names.contains { n in
            guard let h = dlopen(n, RTLD_NOW | RTLD_LOCAL) else { return false }
            dlclose(h)
            return true
        }
    }
    static let cblas = present(["libopenblas.so.0", "libopenblas.so", "libblis.so.4", "libmkl_rt.so.2", "libmkl_rt.so", "libcblas.so.3", "libblas.so.3"])
    static let onednn = present(["libdnnl.so.2", "libmkldnn.so.1"])
}

enum PluginFixtures {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let dir: URL = {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("condense-plugins-\(getpid())")
        try? FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }()

    private static let lock = NSLock()
    nonisolated(unsafe) private static var built: [String: String] = [:]

    /// Compiles C source (or the file at `path`) into folder/lib<name>.so once per process and
    /// returns its path. Suites run in parallel: without the lock one suite could dlopen a library
    /// another was still writing ("file too short"); the rename makes the file appear whole.
    static func build(_ name: String, source: String? = nil, path: String? = nil, in folder: URL = dir) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        let out = folder.appendingPathComponent("lib\(name).so").path
        if let done = built[out] { return done }
        try compile(name, source: source, path: path, in: folder, to: out)
        built[out] = out
        return out
    }

    private static func compile(_ name: String, source: String?, path: String?, in folder: URL, to out: String) throws {
        let src: String
        if let source {
            src = folder.appendingPathComponent("\(name).c").path
            try source.write(toFile: src, atomically: true, encoding: .utf8)
        } else {
            src = repo.appendingPathComponent(path!).path
        }
        let tmp = out + ".tmp\(getpid())"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["cc", "-O2", "-shared", "-fPIC", "-I", repo.appendingPathComponent("Plugins/include").path, src, "-o", tmp,
                       "-ldl", "-lm", "-lpthread"]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw CondenseError.invalidArgument("cc failed for \(name)") }
        guard rename(tmp, out) == 0 else { throw CondenseError.invalidArgument("could not move \(tmp) to \(out)") }
    }

    /// A plugin whose table the caller adjusts in C: `tweak` runs inside the entry function.
    static func variant(_ name: String, tweak: String, entryBody: String? = nil) throws -> String {
        try build(name, source: """
            #include <stddef.h>
            #include "condense_plugin.h"
            static uint32_t score(void) { return 1; }
            static int supports(const condense_plugin_layer *l) { (void)l; return 1; }
            static void *prepare(const condense_plugin_weights *w) { (void)w; return (void *)1; }
            static int run(void *s, const float *x, float *y, uint64_t r, int32_t t) { (void)s; (void)x; (void)y; (void)r; (void)t; return 0; }
            static int fails(void *s, const float *x, float *y, uint64_t r, int32_t t) { (void)s; (void)x; (void)y; (void)r; (void)t; return 7; }
            static void release(void *s) { (void)s; }
            static const char *why(void) { return "libfoo.so.1 not found"; }
            static condense_plugin_v1 table;
            const condense_plugin_v1 *condense_plugin_entry(uint32_t v) {
                (void)v;
                table = (condense_plugin_v1){CONDENSE_PLUGIN_ABI_VERSION, sizeof(condense_plugin_v1), "\(name)", 1,
                                             score, supports, prepare, run, release, NULL, why};
                \(tweak)
                \(entryBody ?? "return &table;")
            }
            """)
    }
}

@Suite(.serialized) struct PluginTests {
    @Test func templatePluginRunsLayersLikeTheReference() throws {
        let path = try PluginFixtures.build("condense_template", path: "Plugins/template/condense_template_plugin.c")
        let registry = BackendRegistry.standard()
        let plugin = try registry.loadPlugin(at: path, first: true)
        #expect(plugin.name == "template" && plugin.version == 1 && plugin.score == 1)
        #expect(registry.backends.map(\.name) == ["template", "native", "simd", "reference"])
        var rng = TestRNG(800)
        let w = rng.matrix(13, 37), x = rng.matrix(5, 37), b = rng.vector(13)
        for act in Activation.allCases {
            let placed = try registry.prepare(LinearLayer(weights: .dense(w), bias: b, activation: act))
            #expect(placed.placement.backend == "template" && placed.placement.kernel == "template_f32_loop")
            #expect(Expected(x: x, w: w, bias: b, activation: act).firstMismatch(try placed.apply(x)) == nil)
        }
        // Formats it does not take fall through to the next backend, with the reason recorded.
        let s24 = try registry.prepare(LinearLayer(weights: .dense(SparseKernelTests.matrix24(8, 16, seed: 801))), as: .sparse24)
        #expect(s24.placement.backend == "native" && s24.placement.skipped.contains("template: no 2:4 kernel"))
    }

    /// A plugin may not take a name that is already registered (a built-in or another plugin),
    /// nor an empty or odd one: rejected with the holder named, the registry unchanged.
    @Test func pluginNamesAreUniqueAndPlain() throws {
        let registry = BackendRegistry.standard()
        let native = try PluginFixtures.variant("native", tweak: "")
        #expect(throws: CondenseError.pluginRejected(path: native, reason: "backend name 'native' is already taken by a built-in backend")) {
            try registry.loadPlugin(at: native, first: true)
        }
        let a = try PluginFixtures.variant("twin", tweak: "")
        try registry.loadPlugin(at: a)
        let folder = PluginFixtures.dir.appendingPathComponent("twin2")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let b = try PluginFixtures.build("twin", source: try String(contentsOfFile: PluginFixtures.dir.appendingPathComponent("twin.c").path, encoding: .utf8), in: folder)
        #expect(throws: CondenseError.pluginRejected(path: b, reason: "backend name 'twin' is already taken by the plugin \(a)")) {
            try registry.loadPlugin(at: b)
        }
        for (file, shown) in [("emptyname", ""), ("spacename", "a b")] {
            let p = try PluginFixtures.variant(file, tweak: "table.name = \"\(shown)\";")
            #expect(throws: CondenseError.pluginRejected(path: p, reason: "name '\(shown)' is not 1–64 letters, digits, '_', '-' or '.'")) {
                try registry.loadPlugin(at: p)
            }
        }
        #expect(registry.backends.map(\.name) == ["native", "simd", "reference", "twin"])
        #expect(registry.backend(named: "native") is NativeBackend)
    }

    /// A plugin whose `run` fails while `fastest` measures is skipped with its status, like one whose
    /// `prepare` fails; the selection goes on among the others.
    @Test func failingRunIsSkippedByFastest() throws {
        let registry = BackendRegistry.standard()
        let p = try PluginFixtures.variant("runfails", tweak: "table.run = fails;")
        try registry.loadPlugin(at: p, first: true)
        let layer = try LinearLayer(weights: .dense(randomMatrix(24, 40, seed: 870)))
        let placed = try registry.prepare(layer, policy: .fastest(batch: 4))
        #expect(placed.placement.backend != "runfails")
        #expect(placed.placement.skipped.contains { $0.hasPrefix("runfails: run failed:") && $0.contains("status 7") }, "\(placed.placement.skipped)")
        let x = randomMatrix(4, 40, seed: 871)
        #expect(Expected(x: x, w: layer.weights.densified(), bias: nil, activation: .none).firstMismatch(try placed.apply(x)) == nil)
    }

    /// A plugin's code can run after its last layer is gone: here a thread-exit destructor it
    /// registered on the thread that ran it. The host keeps plugins mapped (RTLD_NODELETE), so
    /// the destructor finds its code; unmapping it crashed the test process at a later thread exit.
    @Test func pluginCodeOutlivesItsLayers() throws {
        let path = try PluginFixtures.build("tlsdestructor", source: """
            #include <pthread.h>
            #include <stddef.h>
            #include "condense_plugin.h"
            static pthread_key_t key;
            static pthread_once_t once = PTHREAD_ONCE_INIT;
            static volatile int destroyed;
            static void bye(void *p) { (void)p; destroyed++; }
            static void init(void) { pthread_key_create(&key, bye); }
            static uint32_t score(void) { return 1; }
            static int supports(const condense_plugin_layer *l) { return l->format == CONDENSE_PLUGIN_DENSE; }
            static void *prepare(const condense_plugin_weights *w) { (void)w; return (void *)1; }
            static int run(void *s, const float *x, float *y, uint64_t r, int32_t t) {
                (void)s; (void)x; (void)t; pthread_once(&once, init); pthread_setspecific(key, (void *)1);
                for (uint64_t i = 0; i < r; i++) y[i] = 0; return 0;
            }
            static void release(void *s) { (void)s; }
            static const condense_plugin_v1 table = {CONDENSE_PLUGIN_ABI_VERSION, sizeof(condense_plugin_v1), "tlsdestructor", 1,
                                                     score, supports, prepare, run, release, NULL, NULL};
            const condense_plugin_v1 *condense_plugin_entry(uint32_t v) { (void)v; return &table; }
            """)
        let ready = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        do {
            let registry = BackendRegistry()
            try registry.loadPlugin(at: path)
            let layer = try registry.prepare(LinearLayer(weights: .dense(randomMatrix(1, 4, seed: 880))))
            let x = randomMatrix(1, 4, seed: 881)
            let thread = Thread {
                _ = try? layer.apply(x)   // sets the plugin's thread-local value on this thread
                ready.signal()
                release.wait()
                done.signal()             // then the thread exits and runs the plugin's destructor
            }
            thread.start()
            ready.wait()
        }   // the registry and the layer are gone here: the plugin's last host reference
        release.signal()
        done.wait()
        Thread.sleep(forTimeInterval: 0.05)   // let the thread finish exiting
        #expect(Bool(true), "the process survived the destructor")
    }

    /// Many threads applying the same plugin-prepared layer at once get the same answer.
    @Test func pluginLayersUnderContention() async throws {
        let path = try PluginFixtures.build("condense_template", path: "Plugins/template/condense_template_plugin.c")
        let r = BackendRegistry()
        try r.loadPlugin(at: path)
        let w = randomMatrix(24, 40, seed: 840), x = randomMatrix(3, 40, seed: 841)
        let layer = try r.prepare(LinearLayer(weights: .dense(w), activation: .gelu))
        let want = try layer.apply(x)
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<16 { group.addTask { try layer.apply(x) == want } }
            for try await same in group { #expect(same) }
        }
    }

    /// A prepared layer keeps its plugin loaded after the registry and backend are gone.
    @Test func preparedLayersOutliveTheirRegistry() throws {
        let path = try PluginFixtures.build("condense_template", path: "Plugins/template/condense_template_plugin.c")
        let w = randomMatrix(4, 6, seed: 810), x = randomMatrix(2, 6, seed: 811)
        var layer: PlacedLinear?
        do {
            let r = BackendRegistry()
            try r.loadPlugin(at: path)
            layer = try r.prepare(LinearLayer(weights: .dense(w)))
        }
        #expect(Expected(x: x, w: w, bias: nil, activation: .none).firstMismatch(try layer!.apply(x)) == nil)
    }

    @Test func malformedPluginsAreRejectedWithTheFileAndReason() throws {
        let notALibrary = PluginFixtures.dir.appendingPathComponent("notes.so").path
        try "not a shared library".write(toFile: notALibrary, atomically: true, encoding: .utf8)
        let noEntry = try PluginFixtures.build("noentry", source: "int something_else(void) { return 1; }")
        let refuses = try PluginFixtures.variant("refuses", tweak: "", entryBody: "return NULL;")
        let wrongABI = try PluginFixtures.variant("wrongabi", tweak: "table.abi_version = 99;")
        let nullRun = try PluginFixtures.variant("nullrun", tweak: "table.run = NULL;")
        let scoreZero = try PluginFixtures.build("scorezero", source: """
            #include "condense_plugin.h"
            static uint32_t zero(void) { return 0; }
            static int supports(const condense_plugin_layer *l) { (void)l; return 1; }
            static void *prepare(const condense_plugin_weights *w) { (void)w; return (void *)1; }
            static int run(void *s, const float *x, float *y, uint64_t r, int32_t t) { (void)s; (void)x; (void)y; (void)r; (void)t; return 0; }
            static int fails(void *s, const float *x, float *y, uint64_t r, int32_t t) { (void)s; (void)x; (void)y; (void)r; (void)t; return 7; }
            static void release(void *s) { (void)s; }
            static const char *why(void) { return "libfoo.so.1 not found"; }
            static const condense_plugin_v1 table = {CONDENSE_PLUGIN_ABI_VERSION, sizeof(condense_plugin_v1), "scorezero", 1,
                                                     zero, supports, prepare, run, release, (void *)0, why};
            const condense_plugin_v1 *condense_plugin_entry(uint32_t v) { (void)v; return &table; }
            """)
        let tiny = try PluginFixtures.variant("tiny", tweak: "table.struct_size = 16;")
        let cases: [(String, String)] = [
            (notALibrary, "cannot be loaded"),
            (noEntry, "no 'condense_plugin_entry' symbol: not a Condense plugin"),
            (refuses, "it refuses host ABI version 1"),
            (wrongABI, "built for plugin ABI version 99, this host speaks 1"),
            (nullRun, "required member(s) NULL: run"),
            (scoreZero, "reports itself unusable on this machine (score 0): libfoo.so.1 not found"),
            (tiny, "function table is 16 bytes"),
            ("/nonexistent/libnothing.so", "cannot be loaded"),
        ]
        let registry = BackendRegistry.standard()
        for (path, reason) in cases {
            do {
                try registry.loadPlugin(at: path)
                Issue.record("\(path) was accepted")
            } catch let CondenseError.pluginRejected(p, r) {
                #expect(p == path)
                #expect(r.hasPrefix(reason), "\(path): \(r)")
            }
        }
        // The registry is untouched and still works.
        #expect(registry.backends.map(\.name) == ["native", "simd", "reference"])
        #expect(try registry.prepare(LinearLayer(weights: .dense(randomMatrix(3, 3, seed: 820)))).placement.backend == "native")
    }

    /// The CBLAS plugin with a BLAS present (CI installs libopenblas0): its layers match the
    /// reference. The path without one is CLIPluginTests's (a process of its own, since a plugin
    /// looks for its library once per process).
    @Test(.enabled(if: PluginLibraries.cblas, "no CBLAS library (apt-get install libopenblas0)"))
    func cblasPluginRuns() throws {
        let path = try PluginFixtures.build("condense_cblas", path: "Plugins/cblas/condense_cblas_plugin.c")
        let registry = BackendRegistry()
        let plugin = try registry.loadPlugin(at: path)
        #expect(plugin.name == "cblas" && plugin.score == 2)
        var rng = TestRNG(830)
        let w = rng.matrix(33, 70), x = rng.matrix(9, 70), b = rng.vector(33)
        for act in Activation.allCases {
            let p = try registry.prepare(LinearLayer(weights: .dense(w), bias: b, activation: act))
            #expect(p.kernelName.hasPrefix("cblas_sgemm ("))
            #expect(Expected(x: x, w: w, bias: b, activation: act).firstMismatch(try p.apply(x)) == nil)
        }
    }

    /// The oneDNN plugin with libdnnl.so.2 present (CI installs libdnnl2): dense f32 layers match the
    /// reference for every activation and several batch sizes through one prepared state (M is a
    /// run-time dimension), and int8 layers stay within the bound of its per-tensor s8 activation
    /// rounding.
    @Test(.enabled(if: PluginLibraries.onednn, "oneDNN not installed (apt-get install libdnnl2)"))
    func onednnPluginRuns() throws {
        let path = try PluginFixtures.build("condense_onednn", path: "Plugins/onednn/condense_onednn_plugin.c")
        let registry = BackendRegistry()
        let plugin = try registry.loadPlugin(at: path)
        #expect(plugin.name == "onednn" && plugin.score == 3)
        #expect(plugin.supports(.dense) && plugin.supports(.int8) && !plugin.supports(.csr))
        var rng = TestRNG(850)
        let w = rng.matrix(37, 71), b = rng.vector(37)
        for act in Activation.allCases {
            let p = try registry.prepare(LinearLayer(weights: .dense(w), bias: act == .relu ? nil : b, activation: act))
            #expect(p.kernelName.hasPrefix("onednn matmul"), "\(p.kernelName)")
            for m in [1, 5, 64] {
                let x = rng.matrix(m, 71)
                #expect(Expected(x: x, w: w, bias: act == .relu ? nil : b, activation: act).firstMismatch(try p.apply(x)) == nil)
            }
        }
        let q = try Int8Weights(quantizing: w)
        let wq = q.densified()
        for act in Activation.allCases {
            let p = try registry.prepare(LinearLayer(weights: .int8(q), bias: b, activation: act))
            #expect(p.kernelName.contains("(s8)"))
            for m in [1, 7] {
                let x = rng.matrix(m, 71)
                let y = try p.apply(x)
                let want = Expected(x: x, w: wq, bias: b, activation: act).values
                // Rounding X to s8 with scale s = max|x|/127 moves each dot by at most s/2·Σ|w|.
                let s = x.elements.map(abs).max()! / 127
                for i in 0..<m {
                    for j in 0..<37 {
                        let bound = 1.2 * s / 2 * (0..<71).reduce(Float(0)) { $0 + abs(wq[j, $1]) } + 1e-4
                        #expect(abs(Double(y[i, j]) - want[i * 37 + j]) <= Double(bound), "row \(i) col \(j): \(y[i, j]) vs \(want[i * 37 + j])")
                    }
                }
            }
        }
    }

    /// CONDENSE_PLUGIN_PATH: files and folders, colon-separated; failures reported, the rest loaded.
    @Test func environmentPathLoadsFoldersAndReportsFailures() throws {
        let folder = PluginFixtures.dir.appendingPathComponent("envdir")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        _ = try PluginFixtures.build("condense_template", path: "Plugins/template/condense_template_plugin.c", in: folder)
        let registry = BackendRegistry.standard()
        let failures = registry.loadPluginsFromEnvironment("\(folder.path):/nonexistent/libx.so")
        #expect(registry.backends.map(\.name).contains("template"))
        #expect(failures.count == 1)
        if case let .pluginRejected(p, _)? = failures.first { #expect(p == "/nonexistent/libx.so") }
    }
}
