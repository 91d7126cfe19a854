import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A one-line progress bar on stderr. On a terminal it redraws in place; otherwise (CI logs, a
/// pipe) it prints the label once and a final line, so logs stay readable.
final class ProgressBar {
    private let label: String
    private let tty: Bool
    private let quiet: Bool
    private var last = -1
    private let start = Date()

    init(_ label: String, quiet: Bool = false) {
        self.label = label
        self.quiet = quiet
        tty = isatty(STDERR_FILENO) != 0
        if !quiet && !tty { write("\(label) …\n") }
    }

    /// `fraction` in [0, 1]; `detail` is shown after the bar (e.g. the loss).
    func update(_ fraction: Double, _ detail: String = "") {
        guard !quiet, tty else { return }
        let pct = Int((min(max(fraction, 0), 1) * 100).rounded())
        guard pct != last else { return }
        last = pct
        let width = 24, filled = width * pct / 100
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        write("\r\u{1B}[K\(label) \(bar) \(String(format: "%3d", pct)) % \(detail)")
    }

    func finish(_ detail: String = "") {
        guard !quiet else { return }
        let secs = String(format: "%.1f s", Date().timeIntervalSince(start))
        if tty { write("\r\u{1B}[K\(label) done in \(secs) \(detail)\n") } else { write("  done in \(secs) \(detail)\n") }
    }

    private func write(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }
}
