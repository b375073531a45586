import Foundation
import Overseer
import OverseerPostgres
import Synchronization

/// Which store a suite measures: `--store lmdb` (the default) or `--store postgres`.
enum BenchStoreKind: String, Sendable {
    case lmdb, postgres
}

/// Opens a store named by a location: a `postgres://` / `postgresql://` URL, or an LMDB path.
enum BenchStore {
    static func isPostgres(_ location: String) -> Bool {
        location.hasPrefix("postgres://") || location.hasPrefix("postgresql://")
    }

    static func open(_ location: String) throws -> LogStore {
        isPostgres(location) ? try LogStore.postgres(location) : try LogStore(path: location)
    }
}

/// The PostgreSQL server of a `--store postgres` run: the one `--url` names, or a throwaway one
/// that scripts/pg-test-server.sh starts in a temp directory and `destroy()` deletes.
///
/// Every measurement gets a schema of its own (`search_path` in the URL), so no run reads or grows
/// another's log; `dropSchema` removes it afterwards.
final class BenchPostgres: Sendable {
    /// The server's URL as given (password included; never printed).
    let baseURL: String
    /// The throwaway server's directory; nil for a server named by `--url`.
    let ownedDirectory: String?
    /// A superuser connection string (the throwaway server's Unix socket trusts local users), for
    /// the statement count; nil for a server named by `--url`.
    let superuser: String?
    private let counter = Mutex(0)

    /// scripts/pg-test-server.sh of the checkout this binary was built from.
    static let script: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("scripts/pg-test-server.sh").path
    }()

    init(url: String) {
        baseURL = url
        ownedDirectory = nil
        superuser = nil
    }

    private init(url: String, directory: String, superuser: String) {
        baseURL = url
        ownedDirectory = directory
        self.superuser = superuser
    }

    /// Starts a throwaway server on the first free port from 55432.
    static func startThrowaway() throws -> BenchPostgres {
        guard FileManager.default.isExecutableFile(atPath: script) || FileManager.default.fileExists(atPath: script) else {
            throw BenchError("cannot find \(script), which starts the throwaway server; pass --url URL instead")
        }
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array((base + "/overseer-bench-pg.XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw BenchError("cannot create a temp directory under \(base)")
        }
        let dir = String(cString: made)
        // The script runs the server as the postgres user, which must enter the directory; the
        // marker lets `destroy` delete it even if `start` fails half-way.
        chmod(dir, 0o755)
        _ = FileManager.default.createFile(atPath: dir + "/.overseer-pg-test-server", contents: nil)
        var lastError = ""
        for port in 55432...55531 {
            let (status, out, err) = try runScript(["start", dir, String(port)])
            if status == 0, let url = out.split(separator: "\n").last.map(String.init), !url.isEmpty {
                Progress.say("postgres: throwaway server in \(dir) on port \(port) (fsync on, synchronous_commit on)")
                return BenchPostgres(url: url, directory: dir, superuser: "host=\(dir) port=\(port) user=postgres dbname=overseer")
            }
            lastError = err.trimmingCharacters(in: .whitespacesAndNewlines)
            guard lastError.contains("already in use") else { break }
        }
        _ = try? runScript(["destroy", dir])
        throw BenchError("could not start a throwaway PostgreSQL server: \(lastError)")
    }

    @discardableResult
    static func runScript(_ arguments: [String]) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [script] + arguments
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    /// The server's log file (throwaway server only).
    var logPath: String? { ownedDirectory.map { $0 + "/log" } }

    /// A URL whose tables live in `schema`.
    func url(schema: String) -> String {
        if BenchStore.isPostgres(baseURL) {
            return baseURL + (baseURL.contains("?") ? "&" : "?") + "options=-csearch_path%3D\(schema)"
        }
        return baseURL + " options='-csearch_path=\(schema)'"
    }

    func connect() throws -> PGConnection { try PGConnection(withConnectionDefaults(baseURL)) }

    /// Creates a new, empty schema and returns its name and a URL for a store in it.
    func makeSchema(_ tag: String) throws -> (name: String, url: String) {
        let n = counter.withLock { c -> Int in c += 1; return c }
        let name = "bench_\(getpid())_\(n)_" + tag.filter { $0.isLetter || $0.isNumber }.lowercased()
        let c = try connect()
        defer { c.close() }
        try c.exec("CREATE SCHEMA \(pgQuoteIdentifier(name))")
        return (name, url(schema: name))
    }

    func dropSchema(_ name: String) {
        guard let c = try? connect() else { return }
        defer { c.close() }
        _ = try? c.exec("DROP SCHEMA IF EXISTS \(pgQuoteIdentifier(name)) CASCADE")
    }

    /// Runs SQL as the superuser (throwaway server only).
    func asSuperuser(_ sql: String) throws {
        guard let superuser else { throw BenchError("no superuser connection for a server named by --url") }
        let c = try PGConnection(superuser)
        defer { c.close() }
        try c.exec(sql)
    }

    /// Stops and deletes the throwaway server; nothing for a server named by `--url`.
    func destroy() {
        guard let dir = ownedDirectory else { return }
        let result = try? BenchPostgres.runScript(["destroy", dir])
        if let result, result.0 != 0 {
            Progress.say("postgres: could not remove the server in \(dir): \(result.2)")
        }
    }

    /// Server settings that decide what a commit costs, for the progress output.
    func describeSettings() -> String {
        guard let c = try? connect() else { return "?" }
        defer { c.close() }
        var parts: [String] = []
        for name in ["server_version", "fsync", "synchronous_commit", "wal_sync_method", "shared_buffers"] {
            if let r = try? c.exec("SHOW \(name)"), let v = r.string(0, 0) { parts.append("\(name)=\(v)") }
        }
        return parts.joined(separator: " ")
    }
}
