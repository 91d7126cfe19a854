import CCondensePluginABI

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A loaded plugin library. Layers it prepared keep it alive, so it is never unloaded under them.
final class PluginLibrary: @unchecked Sendable {
    // Immutable after init; the table is the plugin's static data.
    let path: String
    let handle: UnsafeMutableRawPointer
    let table: UnsafePointer<condense_plugin_v1>

    init(path: String, handle: UnsafeMutableRawPointer, table: UnsafePointer<condense_plugin_v1>) {
        self.path = path
        self.handle = handle
        self.table = table
    }

    deinit { dlclose(handle) }
}

/// A backend provided by a C-ABI plugin loaded at run time (see docs/plugin-abi.md).
///
/// ```swift
/// let registry = BackendRegistry.standard()
/// let plugin = try registry.loadPlugin(at: "/opt/plugins/libcondense_onednn.so")
/// print(plugin.name, plugin.score)
/// ```
public struct PluginBackend: KernelBackend {
    let library: PluginLibrary
    public let name: String
    /// Name and version: a new plugin version re-measures.
    public var tuningIdentity: String { "\(name)@\(version)" }
    /// The plugin's own version.
    public let version: UInt32
    /// Its suitability on this CPU as it reports it (never 0 for a loaded plugin).
    public let score: UInt32
    /// The file it was loaded from.
    public var path: String { library.path }

    /// Loads and validates a plugin.
    /// - Throws: ``CondenseError/pluginRejected(path:reason:)`` naming the file and the reason: it
    ///   cannot be loaded, has no `condense_plugin_entry`, refuses this host's ABI, was built for
    ///   another ABI version, has a table too small or a required member that is NULL, or reports
    ///   a score of 0 (unusable here).
    public init(path: String) throws {
        // RTLD_NODELETE: once its code has run, a plugin stays mapped for the life of the process.
        // Its code can still be reached after the last layer is gone — a thread-exit destructor it
        // registered (pthread keys, thread-local storage), its library's worker threads — and
        // unmapping it under them crashes the process at some later thread exit.
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            let why = dlerror().map { String(cString: $0) } ?? "unknown error"
            throw CondenseError.pluginRejected(path: path, reason: "cannot be loaded: \(why)")
        }
        var keep = false
        defer { if !keep { dlclose(handle) } }
        guard let sym = dlsym(handle, CONDENSE_PLUGIN_ENTRY) else {
            throw CondenseError.pluginRejected(path: path, reason: "no '\(CONDENSE_PLUGIN_ENTRY)' symbol: not a Condense plugin")
        }
        let entry = unsafeBitCast(sym, to: condense_plugin_entry_fn.self)
        guard let table = entry(UInt32(CONDENSE_PLUGIN_ABI_VERSION)) else {
            throw CondenseError.pluginRejected(path: path, reason: "it refuses host ABI version \(CONDENSE_PLUGIN_ABI_VERSION)")
        }
        let t = table.pointee
        guard t.abi_version == UInt32(CONDENSE_PLUGIN_ABI_VERSION) else {
            throw CondenseError.pluginRejected(
                path: path, reason: "built for plugin ABI version \(t.abi_version), this host speaks \(CONDENSE_PLUGIN_ABI_VERSION)")
        }
        // Every v1 member must lie inside the size the plugin declares.
        let needed = MemoryLayout<condense_plugin_v1>.offset(of: \condense_plugin_v1.unusable_reason)! + MemoryLayout<UnsafeRawPointer?>.size
        guard Int(t.struct_size) >= needed else {
            throw CondenseError.pluginRejected(path: path, reason: "function table is \(t.struct_size) bytes, ABI v1 needs \(needed)")
        }
        let missing = [("name", t.name == nil), ("supports", t.supports == nil), ("prepare", t.prepare == nil),
                       ("run", t.run == nil), ("release", t.release == nil)].filter(\.1).map(\.0)
        guard missing.isEmpty else {
            throw CondenseError.pluginRejected(path: path, reason: "required member(s) NULL: \(missing.joined(separator: ", "))")
        }
        let score = t.score?() ?? 1
        guard score > 0 else {
            let why = t.unusable_reason?().map { String(cString: $0) } ?? "no reason given"
            throw CondenseError.pluginRejected(path: path, reason: "reports itself unusable on this machine (score 0): \(why)")
        }
        let pluginName = String(cString: t.name)
        // The name keys placements, the tuning cache and CONDENSE_BACKEND: it must be a plain word.
        guard !pluginName.isEmpty, pluginName.count <= 64,
              pluginName.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_-.".contains($0)) }) else {
            throw CondenseError.pluginRejected(path: path, reason: "name '\(pluginName)' is not 1–64 letters, digits, '_', '-' or '.'")
        }
        keep = true
        library = PluginLibrary(path: path, handle: handle, table: table)
        name = pluginName
        version = t.version
        self.score = score
    }

    public var availability: BackendAvailability { .available }

    /// What the plugin declared when it was loaded.
    public func supports(_ format: WeightFormat) -> Bool {
        var layer = condense_plugin_layer()
        layer.abi_version = UInt32(CONDENSE_PLUGIN_ABI_VERSION)
        layer.struct_size = UInt32(MemoryLayout<condense_plugin_layer>.size)
        layer.format = Self.code(format)
        layer.n = 1
        layer.k = 1
        return library.table.pointee.supports(&layer) != 0
    }

    public var kernels: [KernelInfo] { [] }

    static func code(_ f: WeightFormat) -> UInt32 {
        switch f {
        case .dense: return UInt32(CONDENSE_PLUGIN_DENSE.rawValue)
        case .sparse24: return UInt32(CONDENSE_PLUGIN_S24.rawValue)
        case .csr: return UInt32(CONDENSE_PLUGIN_CSR.rawValue)
        case .int8: return UInt32(CONDENSE_PLUGIN_INT8.rawValue)
        case .int4: return UInt32(CONDENSE_PLUGIN_INT4.rawValue)
        case .sparse24Int8, .bf16, .f16: return UInt32.max  // not in ABI v1
        }
    }

    /// Hands the weights to the plugin through the C ABI; its packed copy lives until the layer is released.
    public func prepare(_ layer: LinearLayer) throws -> any PreparedLinear {
        var l = condense_plugin_layer()
        l.abi_version = UInt32(CONDENSE_PLUGIN_ABI_VERSION)
        l.struct_size = UInt32(MemoryLayout<condense_plugin_layer>.size)
        l.format = Self.code(layer.format)
        l.n = UInt64(layer.outFeatures)
        l.k = UInt64(layer.inFeatures)
        l.has_bias = layer.bias == nil ? 0 : 1
        l.activation = layer.activation == .none ? 0 : layer.activation == .relu ? 1 : 2
        if case let .int4(g) = layer.format { l.group_size = UInt32(g) }
        let t = library.table.pointee
        guard t.supports(&l) != 0 else {
            throw CondenseError.unsupportedFormat(backend: name, format: "\(layer.format) \(layer.outFeatures)×\(layer.inFeatures) \(layer.activation)")
        }
        let state: UnsafeMutableRawPointer? = try withPluginWeights(layer, &l) { w in t.prepare(w) }
        guard let state else {
            throw CondenseError.pluginRejected(path: path, reason: "prepare returned NULL for \(layer.format) \(layer.outFeatures)×\(layer.inFeatures)")
        }
        return PluginLinear(library: library, state: state, backendName: name,
                            kernelName: t.kernel_name?(state).map { String(cString: $0) } ?? name,
                            inFeatures: layer.inFeatures, outFeatures: layer.outFeatures)
    }

    /// Describes the layer's weights in the ABI's struct for the duration of `body`.
    private func withPluginWeights<R>(_ layer: LinearLayer, _ l: inout condense_plugin_layer,
                                      _ body: (UnsafePointer<condense_plugin_weights>) -> R) throws -> R {
        var w = condense_plugin_weights()
        w.abi_version = UInt32(CONDENSE_PLUGIN_ABI_VERSION)
        w.struct_size = UInt32(MemoryLayout<condense_plugin_weights>.size)
        return withUnsafePointer(to: &l) { lp in
            w.layer = lp
            return withOptionalPointer(layer.bias) { bias in
                w.bias = bias
                switch layer.weights {
                case let .dense(m):
                    return m.withUnsafeBufferPointer { p in w.dense = p.baseAddress; return body(&w) }
                case let .sparse24(s):
                    return s.values.withUnsafeBufferPointer { v in
                        s.metadata.withUnsafeBufferPointer { meta in
                            w.values = v.baseAddress; w.meta = meta.baseAddress
                            w.k4 = UInt64(s.paddedColumns); w.meta_stride = UInt64(s.metadataStride)
                            return body(&w)
                        }
                    }
                case let .csr(c):
                    return c.rowOffsets.withUnsafeBufferPointer { r in
                        c.values.withUnsafeBufferPointer { v in
                            w.row_ptr = r.baseAddress; w.values = v.baseAddress
                            w.index_bytes = UInt32(c.columnIndices.width)
                            switch c.columnIndices {
                            case let .u16(ix): return ix.withUnsafeBytes { w.index = $0.baseAddress; return body(&w) }
                            case let .u32(ix): return ix.withUnsafeBytes { w.index = $0.baseAddress; return body(&w) }
                            }
                        }
                    }
                case let .int8(q):
                    return q.values.withUnsafeBufferPointer { v in
                        q.scales.withUnsafeBufferPointer { s in w.q8 = v.baseAddress; w.scales = s.baseAddress; return body(&w) }
                    }
                case let .int4(q):
                    return q.packed.withUnsafeBufferPointer { v in
                        q.scales.withUnsafeBufferPointer { s in w.q4 = v.baseAddress; w.scales = s.baseAddress; return body(&w) }
                    }
                case .sparse24Int8, .half:
                    return body(&w)  // unreachable: supports() is asked first with an unknown format code
                }
            }
        }
    }
}

/// A layer prepared by a plugin. Holds the library, so it is not unloaded under it.
final class PluginLinear: PreparedLinear, @unchecked Sendable {
    // Immutable after init; the plugin promises `run` may be called concurrently.
    private let library: PluginLibrary
    private let state: UnsafeMutableRawPointer
    let backendName: String
    let kernelName: String
    let inFeatures: Int
    let outFeatures: Int

    init(library: PluginLibrary, state: UnsafeMutableRawPointer, backendName: String, kernelName: String,
         inFeatures: Int, outFeatures: Int) {
        self.library = library
        self.state = state
        self.backendName = backendName
        self.kernelName = kernelName
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
    }

    deinit { library.table.pointee.release(state) }

    func apply(_ x: Matrix<Float>, into y: inout Matrix<Float>) throws {
        let (t, state, name) = (library.table.pointee, state, backendName)
        var status: Int32 = 0
        try runKernel(x, &y) { m, xp, _, yp, _ in
            status = t.run(state, xp, yp, UInt64(m), Int32(CondenseRuntime.threads))
        }
        guard status == 0 else { throw CondenseError.backendUnavailable(name: name, reason: "plugin run failed with status \(status)") }
    }
}

extension BackendRegistry {
    /// Loads a plugin and registers its backend (last in priority order, or first).
    /// - Throws: ``CondenseError/pluginRejected(path:reason:)``; the registry is unchanged then.
    @discardableResult
    public func loadPlugin(at path: String, first: Bool = false) throws -> PluginBackend {
        let plugin = try PluginBackend(path: path)
        do { try registerNew(plugin, first: first) } catch let CondenseError.invalidArgument(why) {
            throw CondenseError.pluginRejected(path: path, reason: why)
        }
        return plugin
    }

    /// Loads every plugin named by `CONDENSE_PLUGIN_PATH` (colon-separated files or folders;
    /// folders contribute their `*.so` / `*.dylib` files). Nothing is loaded from the working
    /// directory implicitly. Returns the failures, each naming the file and the reason; the
    /// plugins that load are registered.
    @discardableResult
    public func loadPluginsFromEnvironment(_ value: String? = nil) -> [CondenseError] {
        guard let spec = value ?? getenv("CONDENSE_PLUGIN_PATH").map({ String(cString: $0) }), !spec.isEmpty else { return [] }
        var failures: [CondenseError] = []
        for entry in spec.split(separator: ":").map(String.init) where !entry.isEmpty {
            let files: [String]
            if FileManagerShim.isDirectory(entry) {
                files = FileManagerShim.contents(entry).filter { $0.hasSuffix(".so") || $0.hasSuffix(".dylib") }
                    .sorted().map { entry + "/" + $0 }
            } else {
                files = [entry]
            }
            for f in files {
                do { try loadPlugin(at: f) } catch let e as CondenseError { failures.append(e) } catch {}
            }
        }
        return failures
    }
}

/// Directory helpers without Foundation (the runtime target does not import it).
enum FileManagerShim {
    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func contents(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var out: [String] = []
        while let e = readdir(dir) {
            let name = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
            if name != "." && name != ".." { out.append(name) }
        }
        return out
    }
}
