import Foundation
import Overseer
import OverseerPostgres
import OverseerTestSupport
import Synchronization
import Testing

/// The PostgreSQL backend's own behaviour: unknown commit outcomes, LISTEN/NOTIFY between
/// processes' stores, and the CLI commands that exist for it.
@Suite(.serialized)
struct PostgresBackendTests {
    /// A real PostgreSQL backend whose next commit's acknowledgement is lost on the way back:
    /// the commit either happens (`.afterCommit`) or not (`.beforeCommit`), and the writer is told
    /// only that the connection dropped while committing. Everything else is the real backend.
    final class LostAcknowledgement: ForwardingBackend, @unchecked Sendable {
        // @unchecked: `mode` is behind a Mutex; `inner` is Sendable.
        enum Mode { case none, afterCommit, beforeCommit }
        let inner: PostgresBackend
        let mode = Mutex<Mode>(.none)
        let writes = Mutex(0)

        init(_ inner: PostgresBackend) { self.inner = inner }

        func write(_ body: (any BackendTransaction) throws -> Void) throws {
            writes.withLock { $0 += 1 }
            let m = mode.withLock { m -> Mode in
                defer { m = .none }
                return m
            }
            switch m {
            case .none:
                try inner.write(body)
            case .afterCommit:
                try inner.write(body)
                throw BackendUnavailable(commitUnknown: true, message: "test: the connection dropped after COMMIT was sent")
            case .beforeCommit:
                struct Withheld: Error {}
                // Run the body for real, then roll back: nothing reaches the log.
                do {
                    try inner.write { txn in
                        try body(txn)
                        throw Withheld()
                    }
                } catch is Withheld {}
                throw BackendUnavailable(commitUnknown: true, message: "test: the connection dropped before COMMIT arrived")
            }
        }
    }

    @Test(arguments: [LostAcknowledgement.Mode.afterCommit, .beforeCommit])
    func aCommitWithAnUnknownOutcomeIsResolvedWithoutWritingTwice(mode: LostAcknowledgement.Mode) async throws {
        guard TestStores.available(.postgres) else {
            if TestStores.postgresRequired { Issue.record("OVERSEER_TEST_POSTGRES is not set") }
            return
        }
        let schema = try TestStores.makeSchema()
        defer { TestStores.dropSchema(schema) }
        let backend = LostAcknowledgement(PostgresBackend(url: try TestStores.url(schema: schema)))
        let store = try LogStore(backend: backend)
        _ = try await store.submit(RunPlan(id: "u", graph: ["a": []]))
        let before = backend.writes.withLock { $0 }
        backend.mode.withLock { $0 = mode }
        // A claim, the kind of write whose repetition would be a second claim.
        let claims = try await store.write { w in
            try w.claimNext(worker: Author(name: "w"), types: ["a"], count: 1, leaseMilliseconds: 60_000)
        }
        #expect(claims.count == 1 && claims.first?.job == "u/a")
        // The committer looked the batch's fact id up (after), or ran the batch again (before).
        #expect(backend.writes.withLock { $0 } == before + (mode == .afterCommit ? 1 : 2))
        let history = try store.history(ofJob: "u/a")
        #expect(history.filter { $0.kind == .jobClaimed }.count == 1, "\(history)")
        #expect(try store.job("u/a")?.revision == 2)
        let report = try store.verify()
        #expect(report.ok, "\(report)")
    }

    @Test func anotherStoreOnTheSameDatabaseIsWokenByNotify() async throws {
        guard TestStores.available(.postgres) else { return }
        let schema = try TestStores.makeSchema()
        defer { TestStores.dropSchema(schema) }
        let url = try TestStores.url(schema: schema)
        // Two stores with backends of their own, as two processes (or hosts) would have.
        let writer = try LogStore(backend: PostgresBackend(url: url))
        let reader = try LogStore(backend: PostgresBackend(url: url))
        _ = try reader.lastPosition()
        let started = ContinuousClock.now
        let waiter = Task { try await reader.waitForAppend(after: 0, timeout: .seconds(60)) }
        try await Task.sleep(for: .milliseconds(300))  // the waiter is waiting
        _ = try await writer.append(FactDraft(kind: .workerStarted, author: Author(name: "w")), expecting: nil)
        try await waiter.value
        // Not a performance check: without the notification the wait would run its full minute.
        #expect(ContinuousClock.now - started < .seconds(30), "the wait ended by timeout, not by NOTIFY")
        #expect(try reader.lastPosition() == 1)
    }

    @Test func theCommandLineMigratesCopiesAndReadsAPostgresStore() async throws {
        guard TestStores.available(.postgres) else { return }
        let schema = try TestStores.makeSchema()
        defer { TestStores.dropSchema(schema) }
        let url = try TestStores.url(schema: schema)
        let password = URL(string: try #require(TestStores.postgresURL))?.password ?? "\u{0}"
        let dir = FileManager.default.temporaryDirectory.path + "/pg-cli-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cli = productsDirectory().appendingPathComponent("overseer").path
        func run(_ args: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
            let r = try await runOffPool { try PGShell.run(cli, args) }
            #expect(!r.stdout.contains(password) && !r.stderr.contains(password), "the password was printed: \(args.first ?? "")")
            return r
        }
        // Read-only commands do not create the schema.
        let status = try await run(["status", "--db", url])
        #expect(status.status == 3 && status.stderr.contains("overseer migrate"), "\(status.stderr)")
        let first = try await run(["migrate", "--db", url])
        #expect(first.status == 0 && first.stdout.contains("schema version 1 created"), "\(first)")
        let again = try await run(["migrate", "--db", url])
        #expect(again.status == 0 && again.stdout.contains("already in place"), "\(again)")
        // A run on LMDB, copied up to PostgreSQL, worked on there, and copied back down.
        let pipeline = dir + "/p.json"
        try """
            { "name": "p", "jobs": { "a": { "command": ["true"] }, "b": { "after": ["a"], "command": ["true"] } } }
            """.write(toFile: pipeline, atomically: true, encoding: .utf8)
        let lmdb = dir + "/one.lmdb"
        #expect(try await run(["run", pipeline, "--db", lmdb, "--run", "r1"]).status == 0)
        let up = try await run(["copy", "--from", lmdb, "--to", url])
        #expect(up.status == 0 && up.stdout.contains("copied"), "\(up)")
        let refused = try await run(["copy", "--from", lmdb, "--to", url])
        #expect(refused.status == 2, "a second copy into a non-empty store: \(refused)")
        #expect(try await run(["run", pipeline, "--db", url, "--run", "r2"]).status == 0)
        let json = try await run(["status", "r2", "--db", url, "--json"])
        #expect(json.status == 0 && json.stdout.contains("\"finished\""))
        let down = try await run(["copy", "--from", url, "--to", dir + "/two.lmdb"])
        #expect(down.status == 0, "\(down)")
        #expect(try await run(["verify", "--db", dir + "/two.lmdb"]).status == 0)
        let e1 = try await run(["export", "--db", url])
        let e2 = try await run(["export", "--db", dir + "/two.lmdb"])
        #expect(e1.status == 0 && e1.stdout == e2.stdout && !e1.stdout.isEmpty)
    }
}
