import Foundation
import Overseer
import OverseerPostgres
import Synchronization
import Testing

// Shared by the PostgreSQL tests: the server under test, schemas of their own, private servers to
// crash. `make test` runs them with a throwaway server (scripts/with-pg-server.sh, docs/postgres.md).

private let environment = ProcessInfo.processInfo.environment

/// The test server's URL (OVERSEER_TEST_POSTGRES), when set.
let testPostgresURL: String? = environment["OVERSEER_TEST_POSTGRES"].flatMap { $0.isEmpty ? nil : $0 }

/// The test server's directory (OVERSEER_TEST_PG_DIR), when scripts/pg-test-server.sh made it.
let testPostgresDir: String? = environment["OVERSEER_TEST_PG_DIR"].flatMap { $0.isEmpty ? nil : $0 }

/// In CI (or with OVERSEER_REQUIRE_POSTGRES) a missing server fails the run instead of skipping tests.
let postgresRequired = ["CI", "OVERSEER_REQUIRE_POSTGRES"].contains { environment[$0].map { !$0.isEmpty } ?? false }

let noPostgres = "OVERSEER_TEST_POSTGRES is not set: run `make test`, or `scripts/with-pg-server.sh swift test --filter PostgresTests`"

/// scripts/pg-test-server.sh in this checkout.
let pgTestServerScript: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.appendingPathComponent("scripts/pg-test-server.sh").path
}()

/// A connection to the test server, with Overseer's connection defaults.
func connectToTestServer() throws -> PGConnection {
    let url = try #require(testPostgresURL, Comment(rawValue: noPostgres))
    return try PGConnection(withConnectionDefaults(url))
}

/// The PGError `body` throws; records an issue and returns nil when it throws none.
func pgError(_ body: () throws(PGError) -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> PGError? {
    do {
        try body()
        Issue.record("expected a PGError", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

/// A fresh schema on `conn`, dropped (with what it holds) after `body`.
func withSchema<T>(_ conn: PGConnection, _ body: (String) throws -> T) throws -> T {
    let name = "lt_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
    try conn.exec("CREATE SCHEMA \(name)")
    defer {
        if !conn.isOK { try? conn.reset() }
        _ = try? conn.exec("DROP SCHEMA IF EXISTS \(name) CASCADE")
    }
    return try body(name)
}

/// Runs `body` on a thread of its own; `wait()` returns its result.
final class Background<T: Sendable>: @unchecked Sendable {
    private var value: T?
    private let done = DispatchSemaphore(value: 0)

    init(_ body: @escaping @Sendable () -> T) {
        Thread.detachNewThread { [self] in
            value = body()
            done.signal()
        }
    }

    func wait() -> T {
        done.wait()
        return value!
    }
}

/// Runs scripts/pg-test-server.sh with `arguments`.
@discardableResult
func pgTestServer(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = [pgTestServerScript] + arguments
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    // Read both pipes to their end before waiting, so that neither can fill up and block the script.
    let errData = Background { err.fileHandleForReading.readDataToEndOfFile() }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errText = String(decoding: errData.wait(), as: UTF8.self)
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: outData, as: UTF8.self), errText)
}

/// A server of a test's own (scripts/pg-test-server.sh in a temporary directory), for crash tests
/// that must not disturb the shared test server other tests use at the same time.
final class PrivatePGServer: Sendable {
    let dir: String
    let url: String

    private static let nextPort = Mutex<Int>(55600 + Int.random(in: 0..<200))

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("overseer-pg-" + UUID().uuidString.prefix(8)).path
        url = try Self.start(dir)
    }

    private static func start(_ dir: String) throws -> String {
        var lastError = ""
        for _ in 0..<5 {
            let port = nextPort.withLock { p in
                defer { p = p >= 55999 ? 55600 : p + 1 }
                return p
            }
            let r = try pgTestServer(["start", dir, String(port)])
            if r.status == 0 { return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) }
            lastError = r.stderr
            _ = try? pgTestServer(["destroy", dir])
            if !r.stderr.contains("in use") { break }
        }
        throw PrivateServerError(text: "pg-test-server.sh start failed: \(lastError)")
    }

    func kill() throws { try run(["kill", dir]) }
    func restart() throws { try run(["restart", dir]) }

    func destroy() { _ = try? pgTestServer(["destroy", dir]) }

    private func run(_ arguments: [String]) throws {
        let r = try pgTestServer(arguments)
        guard r.status == 0 else {
            throw PrivateServerError(text: "pg-test-server.sh \(arguments[0]) failed: \(r.stderr)")
        }
    }
}

struct PrivateServerError: Error, CustomStringConvertible {
    let text: String
    var description: String { text }
}

/// A backend for tests that wraps the real one: everything but `write` goes straight to
/// `inner`, so a conformer only says how its writes differ.
protocol ForwardingBackend: StoreBackend {
    var inner: PostgresBackend { get }
}

extension ForwardingBackend {
    var displayName: String { inner.displayName }
    var retryWindow: Duration { inner.retryWindow }
    func prepare() throws { try inner.prepare() }
    func read<T>(_ body: (any BackendTransaction) throws -> T) throws -> T { try inner.read(body) }
    func watchChanges(_ notify: @escaping @Sendable () -> Void) { inner.watchChanges(notify) }
    func sizeInBytes() throws -> Int { try inner.sizeInBytes() }
    func close() { inner.close() }
}
