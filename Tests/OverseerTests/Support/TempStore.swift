import Foundation
@_exported import OverseerTestSupport
import Testing

@testable import Overseer

/// A fresh directory under the system temp dir, removed by `cleanup()`.
struct TempDirectory {
    let path: String

    init(_ label: String = "overseer") {
        let base = FileManager.default.temporaryDirectory.path
        path = base + "/\(label)-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// Runs `body` with a store in its own temp directory; afterwards re-folds the whole log and
/// checks that it equals the stored views (the consistency check after every test).
func withStore<T>(
    _ label: String = "store", options: StoreOptions = StoreOptions(),
    _ body: (LogStore, String) async throws -> T
) async throws -> T {
    let dir = TempDirectory(label)
    defer { dir.cleanup() }
    let path = dir.path + "/db.lmdb"
    let store = try LogStore(path: path, options: options)
    let result = try await body(store, path)
    let report = try store.verify()
    #expect(report.ok, "verify after test: \(report)")
    return result
}

/// The seed's diamond: start → result1, result2 → finish.
let seedDiamond: JobGraph = [
    "start": [],
    "result1": ["start"],
    "result2": ["start"],
    "finish": ["result1", "result2"],
]

extension LogStore {
    /// Claims `job` for `worker` (test shorthand), expecting the current revision.
    @discardableResult
    func claim(_ job: String, worker: String = "w1", lease: Int64 = 60_000) async throws -> AppendOutcome {
        let state = try #require(try self.job(job))
        return try await append(
            FactDraft(kind: .jobClaimed, run: state.run, job: job, author: Author(name: worker), attempt: state.attempt + 1, data: ["lease_ms": .int(lease)]),
            expecting: state.revision)
    }

    /// Appends an outcome fact for the current attempt of `job`.
    @discardableResult
    func settle(_ job: String, _ kind: FactKind, reason: String? = nil, data: JSONValue = .object([:])) async throws -> AppendOutcome {
        let state = try #require(try self.job(job))
        return try await append(
            FactDraft(kind: kind, run: state.run, job: job, author: Author(name: state.worker ?? "op"), attempt: state.attempt, reason: reason, data: data),
            expecting: state.revision)
    }
}

/// Rewrites a closed store's format marker through a raw environment (as a newer Overseer
/// would have left it); returns the marker it found there.
@discardableResult
func rewriteFormatMarker(_ path: String, to marker: String) throws -> [UInt8]? {
    let env = try Environment(directory: path, path: path, mapSize: 256 << 20, maxDatabases: 20, maxReaders: 16, noSync: false)
    return try env.write { txn in
        let meta = try env.openDatabase("meta", in: txn, create: false)!
        let found = try txn.getBytes(meta, Keys.format)
        try txn.put(meta, Keys.format, Array(marker.utf8))
        return found
    }
}
