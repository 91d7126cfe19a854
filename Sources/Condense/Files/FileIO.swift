import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reading files given by a user: every failure says which file and what is wrong with it in
/// plain words ("does not exist", "is a directory", "is not UTF-8 text at byte 12"), never a
/// Foundation error dump, and a missing file is never reported as a decoding problem.
///
/// ```swift
/// let text = try FileInput.text("sentences.txt")
/// for line in FileInput.lines(text) { print(line) }   // \n, \r\n and \r all end a line
/// ```
public enum FileInput {
    /// Why `path` cannot be opened for reading, or nil when it can.
    static func problem(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return errno == ENOENT ? "no such file" : String(cString: strerror(errno)) }
        if (st.st_mode & S_IFMT) == S_IFDIR { return "is a directory, not a file" }
        guard access(path, R_OK) == 0 else { return String(cString: strerror(errno)) }
        return nil
    }

    /// The file's bytes, memory-mapped where the system allows.
    /// - Throws: ``CondenseError/unreadableFile(path:reason:)``.
    public static func mapped(_ path: String) throws -> Data {
        if let p = problem(path) { throw CondenseError.unreadableFile(path: path, reason: p) }
        do { return try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw CondenseError.unreadableFile(path: path, reason: problem(path) ?? "read failed")
        }
    }

    /// The file as UTF-8 text (a leading byte-order mark is dropped).
    /// - Throws: ``CondenseError/unreadableFile(path:reason:)`` for a missing file or invalid UTF-8,
    ///   naming the byte offset of the first bad sequence.
    public static func text(_ path: String) throws -> String {
        let data = try mapped(path)
        var bytes = [UInt8](data)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        guard let s = String(validating: bytes, as: UTF8.self) else {
            var it = UTF8.ForwardParser()
            var offset = 0
            var iterator = bytes.makeIterator()
            loop: while true {
                switch it.parseScalar(from: &iterator) {
                case let .valid(v): offset += v.count
                case .emptyInput, .error: break loop
                }
            }
            throw CondenseError.unreadableFile(path: path, reason: "not UTF-8 text (invalid byte sequence at byte \(offset))")
        }
        return s
    }

    /// Lines of `text`, split at `\n`, `\r\n` and `\r` (a Swift `Character` holds `\r\n` as one,
    /// so splitting on `"\n"` alone would never split a CRLF file). A final line ending does not
    /// make an extra empty line; empty lines inside are kept, so line numbers stay right.
    public static func lines(_ text: String) -> [Substring] {
        var out = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
        if out.last?.isEmpty == true { out.removeLast() }
        return out
    }
}

/// Writing files a user names: the output is checked against every input before any work starts
/// (same path after resolving links, or the same file by device and inode), its folder must be
/// writable, and the file is replaced atomically so a failure leaves the old one whole.
///
/// ```swift
/// try FileOutput.check(outputs: ["emb.npy"], inputs: ["sentences.txt"], option: "--output")
/// try FileOutput.write(data, to: "emb.npy")
/// ```
public enum FileOutput {
    /// The path with `.`/`..` and symbolic links resolved (the parent's, when the file does not exist yet).
    static func resolved(_ path: String) -> String {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        if FileManager.default.fileExists(atPath: url.path) { return url.resolvingSymlinksInPath().path }
        return url.deletingLastPathComponent().resolvingSymlinksInPath().appendingPathComponent(url.lastPathComponent).path
    }

    static func identity(_ path: String) -> (UInt64, UInt64)? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return (UInt64(st.st_dev), UInt64(st.st_ino))
    }

    /// Whether two paths name the same file or folder.
    public static func same(_ a: String, _ b: String) -> Bool {
        if resolved(a) == resolved(b) { return true }
        if let x = identity(a), let y = identity(b) { return x == y }
        return false
    }

    /// Refuses outputs that are inputs, or that cannot be written: the parent folder must exist
    /// and be writable, and a file output must not be an existing folder.
    /// - Parameters:
    ///   - outputs: every path that will be written.
    ///   - inputs: every path that will be read.
    ///   - option: the option that named the output, for the message (`-o`, `--output`).
    /// - Throws: ``CondenseError/invalidArgument(_:)`` naming both paths.
    public static func check(outputs: [String], inputs: [String], option: String) throws {
        for o in outputs {
            if let i = inputs.first(where: { same(o, $0) }) {
                throw CondenseError.invalidArgument("\(option) \(o) is the input \(i): refusing to overwrite an input")
            }
        }
        for o in outputs {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: o, isDirectory: &isDir), isDir.boolValue {
                throw CondenseError.invalidArgument("\(option) \(o) is a directory, not a file")
            }
            let parent = URL(fileURLWithPath: o).standardizedFileURL.deletingLastPathComponent().path
            guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDir), isDir.boolValue else {
                throw CondenseError.invalidArgument("\(option) \(o): folder \(parent) does not exist")
            }
            guard access(parent, W_OK) == 0 else {
                throw CondenseError.invalidArgument("\(option) \(o): folder \(parent) is not writable")
            }
        }
    }

    /// A folder output (a model folder): not an input folder, not the folder of an input file,
    /// and writable or creatable.
    public static func checkFolder(_ folder: String, inputs: [String], option: String, owned: Set<String>? = nil) throws {
        // Writing a folder replaces the files in it: refuse the input folder itself and any
        // folder that directly holds an input file.
        if let i = inputs.first(where: { same(folder, $0) || same(folder, URL(fileURLWithPath: $0).standardizedFileURL.deletingLastPathComponent().path) }) {
            throw CondenseError.invalidArgument("\(option) \(folder) holds the input \(i): refusing to overwrite an input")
        }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder, isDirectory: &isDir) {
            guard isDir.boolValue else { throw CondenseError.invalidArgument("\(option) \(folder) exists and is not a directory") }
            guard access(folder, W_OK) == 0 else { throw CondenseError.invalidArgument("\(option) \(folder) is not writable") }
            // A folder that holds files this command does not write belongs to someone else.
            if let owned, let other = (try? FileManager.default.contentsOfDirectory(atPath: folder))?.sorted().first(where: { !owned.contains($0) }) {
                throw CondenseError.invalidArgument("\(option) \(folder) holds '\(other)', which this command does not write: give an empty or new folder")
            }
        } else {
            let parent = URL(fileURLWithPath: folder).standardizedFileURL.deletingLastPathComponent().path
            guard access(parent, W_OK) == 0 else { throw CondenseError.invalidArgument("\(option) \(folder): folder \(parent) does not exist or is not writable") }
        }
    }

    /// Writes `data` to `path` through a temporary file in the same folder and a rename.
    /// - Throws: ``CondenseError/unwritableFile(path:reason:)``.
    public static func write(_ data: Data, to path: String) throws {
        let tmp = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw CondenseError.unwritableFile(path: path, reason: String(cString: strerror(errno))) }
        var ok = true
        var reason = ""
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            var off = 0
            while off < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 { if errno == EINTR { continue }; ok = false; reason = String(cString: strerror(errno)); return }
                off += n
            }
        }
        if close(fd) != 0 && ok { ok = false; reason = String(cString: strerror(errno)) }
        if ok && rename(tmp, path) != 0 { ok = false; reason = String(cString: strerror(errno)) }
        if !ok {
            unlink(tmp)
            throw CondenseError.unwritableFile(path: path, reason: reason)
        }
    }

    /// Creates a folder (and its parents) if missing.
    /// - Throws: ``CondenseError/unwritableFile(path:reason:)`` naming the folder, in plain words.
    public static func createFolder(_ path: String) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
            guard isDir.boolValue else { throw CondenseError.unwritableFile(path: path, reason: "exists and is not a directory") }
            return
        }
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            let parent = URL(fileURLWithPath: path).standardizedFileURL.deletingLastPathComponent().path
            let reason = access(parent, W_OK) == 0 || !FileManager.default.fileExists(atPath: parent) ? "cannot create the folder" : "folder \(parent) is not writable"
            throw CondenseError.unwritableFile(path: path, reason: reason)
        }
    }

    /// Writes UTF-8 text atomically.
    public static func write(_ text: String, to path: String) throws { try write(Data(text.utf8), to: path) }
}
