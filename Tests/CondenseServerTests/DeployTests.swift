import CondenseTestSupport
import Foundation
import Testing

private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

private let kubernetesValidate: Bool = {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", "import kubernetes_validate"]
    p.standardError = FileHandle.nullDevice
    do { try p.run(); p.waitUntilExit(); return p.terminationStatus == 0 } catch { return false }
}()

private func validate(_ files: [String]) throws -> (status: Int32, output: String) {
    try runPythonCollecting(["-m", "kubernetes_validate", "--strict"] + files)
}

/// The Kubernetes manifests in deploy/k8s against the API schemas, offline (kubernetes-validate
/// from PyPI, strict: unknown fields are errors). Docker and a cluster are not available here:
/// the image is not built and nothing is applied.
@Suite(.enabled(if: kubernetesValidate, "kubernetes-validate not installed (pip install kubernetes-validate)"))
struct DeployManifestTests {
    @Test func manifestsValidateAgainstTheKubernetesSchemas() throws {
        let dir = repoRoot.appendingPathComponent("deploy/k8s")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files == ["deployment.yaml", "hpa-queue-depth.yaml", "hpa.yaml", "pdb.yaml", "service.yaml"])
        let r = try validate(files.map { dir.appendingPathComponent($0).path })
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.components(separatedBy: "passed").count - 1 == files.count, "\(r.output)")
        // The deployment probes the routes the server has, and drains.
        let deployment = try String(contentsOf: dir.appendingPathComponent("deployment.yaml"), encoding: .utf8)
        #expect(deployment.contains("path: /ready") && deployment.contains("path: /health") && deployment.contains("terminationGracePeriodSeconds"))
        #expect(deployment.contains("preStop") && deployment.contains("--kv-cache-mb"))
        let pdb = try String(contentsOf: dir.appendingPathComponent("pdb.yaml"), encoding: .utf8)
        #expect(pdb.contains("kind: PodDisruptionBudget") && pdb.contains("minAvailable: 1"))
    }

    /// The check fails on a manifest with a wrong field type: it is not a formality.
    @Test func aBrokenManifestFails() throws {
        let bad = FileManager.default.temporaryDirectory.appendingPathComponent("condense-bad-\(getpid()).yaml")
        try "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  ports:\n    - port: eighty\n".write(to: bad, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: bad) }
        #expect(try validate([bad.path]).status != 0)
    }
}
