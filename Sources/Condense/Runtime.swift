import CCondenseKernels
import Foundation

/// Instruction-set levels of the C kernels, lowest first.
public enum ISA: Int, CaseIterable, Comparable, Sendable, CustomStringConvertible {
    /// Portable C; runs on any CPU.
    case scalar = 0
    /// AVX2 + FMA (x86-64-v3).
    case avx2 = 1
    /// AVX2 + AVX-VNNI (256-bit VEX `vpdpbusd`): client CPUs without AVX-512 (Alder Lake and
    /// later). Its kernels check the feature bit; the rest of the level runs the AVX2 kernels.
    case avxvnni = 2
    /// AVX-512 F/BW/DQ/VL (x86-64-v4).
    case avx512 = 3
    /// AArch64 Advanced SIMD: every ARMv8-A CPU.
    case neon = 4
    /// AArch64 with SDOT/UDOT (FEAT_DotProd): Apple M1, Cortex-A76/Neoverse N1 and later.
    case dotprod = 5
    /// AArch64 with the int8 matrix multiply (FEAT_I8MM: SMMLA/USMMLA/USDOT): Apple M2,
    /// Graviton 3, Neoverse V1/N2 and later.
    case i8mm = 6

    /// Levels compare by capability within one architecture's ladder.
    public static func < (a: ISA, b: ISA) -> Bool { a.rawValue < b.rawValue }

    /// `"scalar"`, `"avx2"`, `"avxvnni"`, `"avx512"`, `"neon"`, `"dotprod"` or `"i8mm"`: the
    /// spelling `CONDENSE_ISA` accepts.
    public var description: String { String(cString: condense_isa_name(condense_isa(UInt32(rawValue)))) }

    /// Parses the `CONDENSE_ISA` spelling.
    /// - Throws: ``CondenseError/invalidISA(value:reason:)`` naming the accepted values.
    public init(parsing text: String) throws {
        guard let isa = ISA.allCases.first(where: { $0.description == text }) else {
            throw CondenseError.invalidISA(value: text, reason: "expected one of \(ISA.allCases.map(\.description).joined(separator: ", "))")
        }
        self = isa
    }

    /// Whether this CPU runs kernels of this level: the level is on this architecture's ladder
    /// (x86-64: avx2 < avxvnni < avx512; AArch64: neon < dotprod < i8mm) and not above the
    /// detected one. `scalar` runs everywhere.
    ///
    /// ```swift
    /// let levels = ISA.allCases.filter(\.isRunnable)   // e.g. [scalar, neon, dotprod] on an M1
    /// ```
    public var isRunnable: Bool { condense_isa_runs_on(c, condense_isa_detected()) != 0 }

    init(_ c: condense_isa) { self = ISA(rawValue: Int(c.rawValue)) ?? .scalar }
    var c: condense_isa { condense_isa(UInt32(rawValue)) }
}

/// What the kernels found on this machine and how they run: the ISA ladder, threads, OpenMP.
///
/// ```swift
/// try CondenseRuntime.validateEnvironment()      // throws if CONDENSE_ISA is bad
/// print(CondenseRuntime.activeISA, CondenseRuntime.threads)
/// CondenseRuntime.threads = 1                     // e.g. inside an app's own worker pool
/// ```
public enum CondenseRuntime {
    /// CPU model name from CPUID ("" when unknown).
    public static var cpuBrand: String { String(cString: condense_cpu_brand()) }

    /// Names of the CPU features found (only those the OS also enables, per XCR0).
    public static var cpuFeatures: [String] {
        let bits = UInt32(condense_cpu_features())
        let names: [(Int, String)] = [
            (Int(CONDENSE_CPU_SSE42), "sse4.2"), (Int(CONDENSE_CPU_AVX), "avx"), (Int(CONDENSE_CPU_AVX2), "avx2"),
            (Int(CONDENSE_CPU_FMA), "fma"), (Int(CONDENSE_CPU_F16C), "f16c"), (Int(CONDENSE_CPU_AVX512F), "avx512f"),
            (Int(CONDENSE_CPU_AVX512BW), "avx512bw"), (Int(CONDENSE_CPU_AVX512DQ), "avx512dq"),
            (Int(CONDENSE_CPU_AVX512VL), "avx512vl"), (Int(CONDENSE_CPU_AVX512VNNI), "avx512vnni"),
            (Int(CONDENSE_CPU_AVXVNNI), "avxvnni"), (Int(CONDENSE_CPU_AVX512BF16), "avx512bf16"),
            (Int(CONDENSE_CPU_AVX512VBMI2), "avx512vbmi2"), (Int(CONDENSE_CPU_NEON), "neon"),
            (Int(CONDENSE_CPU_DOTPROD), "dotprod"), (Int(CONDENSE_CPU_I8MM), "i8mm"),
            (Int(CONDENSE_CPU_ARM_BF16), "bf16"), (Int(CONDENSE_CPU_FP16), "fp16"),
        ]
        return names.filter { bits & UInt32($0.0) != 0 }.map(\.1)
    }

    /// Data and unified cache sizes in bytes per level (1 = L1d, 2, 3) of the CPU this process
    /// starts on, as the OS reports them (Linux sysfs); empty where it reports none. Benchmark
    /// records carry them, since the same ISA on another core (another L2 or L3) gives other
    /// figures.
    ///
    /// ```swift
    /// let l3 = CondenseRuntime.cacheSizes[3]   // e.g. 33554432
    /// ```
    public static var cacheSizes: [Int: Int] {
        var out: [Int: Int] = [:]
        let base = "/sys/devices/system/cpu/cpu0/cache"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: base) else { return out }
        for e in entries where e.hasPrefix("index") {
            func read(_ f: String) -> String? {
                (try? String(contentsOfFile: "\(base)/\(e)/\(f)", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            guard let level = read("level").flatMap(Int.init), let type = read("type"), type != "Instruction",
                  var size = read("size") else { continue }
            var scale = 1
            if size.hasSuffix("K") { scale = 1024; size.removeLast() } else if size.hasSuffix("M") { scale = 1 << 20; size.removeLast() }
            if let v = Int(size), v > 0, v <= Int.max / scale { out[level] = v * scale }
        }
        return out
    }

    /// The highest ISA this CPU and OS support.
    public static var detectedISA: ISA { ISA(condense_isa_detected()) }

    /// The levels whose kernels this CPU runs, lowest first (see ``ISA/isRunnable``).
    public static var runnableISAs: [ISA] { ISA.allCases.filter(\.isRunnable) }

    /// `isa` when this CPU runs it, else the detected level: what a pinned level resolves to.
    ///
    /// ```swift
    /// let level = CondenseRuntime.clamped(.avx512)   // .avx512 on Zen 4, .i8mm on Graviton 3
    /// ```
    public static func clamped(_ isa: ISA) -> ISA { isa.isRunnable ? isa : detectedISA }

    /// The ISA the native kernels use by default: detected, or lowered by `CONDENSE_ISA`.
    public static var activeISA: ISA { ISA(condense_isa_active()) }

    /// The `CONDENSE_ISA` value seen at start-up, if any.
    public static var isaOverride: String? { condense_isa_env_value().map { String(cString: $0) } }

    /// Throws when `CONDENSE_ISA` names an unknown or unavailable level, `CONDENSE_NUM_THREADS`
    /// is not an integer in 1…``maxThreads``, or `CONDENSE_LAYER_JOB` is neither 0 nor 1, so a
    /// mistyped value is an error rather than a silent fallback. Native preparation calls it too.
    public static func validateEnvironment() throws {
        if let bad = condense_threads_env_rejected() {
            throw CondenseError.invalidArgument("CONDENSE_NUM_THREADS must be an integer in 1…\(maxThreads), got '\(String(cString: bad))'")
        }
        if let job = ProcessInfo.processInfo.environment["CONDENSE_LAYER_JOB"], job != "0", job != "1" {
            throw CondenseError.invalidArgument(
                "CONDENSE_LAYER_JOB must be 0 (a decoder's layers kernel by kernel) or 1 (one job of the thread team, the default), got '\(job)'")
        }
        switch condense_dispatch_status_get() {
        case CONDENSE_DISPATCH_INVALID_VALUE:
            throw CondenseError.invalidISA(
                value: isaOverride ?? "", reason: "CONDENSE_ISA must be one of \(ISA.allCases.map(\.description).joined(separator: ", "))")
        case CONDENSE_DISPATCH_UNAVAILABLE:
            throw CondenseError.invalidISA(
                value: isaOverride ?? "",
                reason: "this CPU runs \(runnableISAs.map(\.description).joined(separator: ", ")) (CONDENSE_ISA can only lower the level)")
        default:
            return
        }
    }

    /// Whether the kernels were built with OpenMP (the default `OpenMP` package trait).
    public static var openMPEnabled: Bool { condense_openmp_enabled() != 0 }

    /// Processors the kernels see (OpenMP's count when linked, else the online processors).
    public static var processorCount: Int { Int(condense_num_procs()) }

    /// Threads the native kernels' team uses (`CONDENSE_NUM_THREADS`, else OpenMP's default, else
    /// the processor count).
    /// Setting a value outside 1…``maxThreads`` clamps; use ``setThreads(_:)`` to get an error instead.
    public static var threads: Int {
        get { Int(condense_get_num_threads()) }
        set { _ = condense_set_num_threads(Int32(clamping: min(max(1, newValue), maxThreads))) }
    }

    /// The largest thread count accepted (from `CONDENSE_NUM_THREADS`, `--threads` or code).
    public static let maxThreads = Int(CONDENSE_MAX_THREADS)

    /// Sets the kernels' thread count.
    /// - Throws: ``CondenseError/invalidArgument(_:)`` for a count outside 1…``maxThreads``.
    public static func setThreads(_ n: Int) throws {
        guard (1...maxThreads).contains(n) else { throw CondenseError.invalidArgument("thread count must be in 1…\(maxThreads), got \(n)") }
        threads = n
    }
}
