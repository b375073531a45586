import Foundation
import Overseer
import OverseerPostgres
import Synchronization
import Testing

/// How a write transaction's combined round trips fail (docs/postgres.md, "When the server goes
/// away"): `BEGIN` with the head lock and `pg_notify` with `COMMIT` go as one string each, and a
/// flush sends its deletes, upserts and facts as one statement. Failures are made on the real
/// server: a deferred trigger that acts at COMMIT, a held head lock, a duplicate fact.
@Suite(.serialized)
struct PostgresRoundTripTests {
    /// The real backend, recording how each of its writes failed.
    final class Recording: ForwardingBackend, @unchecked Sendable {
        // @unchecked: `failures` is behind a Mutex; `inner` is Sendable.
        enum Failure: Sendable, Equatable {
            case unavailable(commitUnknown: Bool, message: String)
            case other(String)
        }
        let inner: PostgresBackend
        let failures = Mutex<[Failure]>([])

        init(_ inner: PostgresBackend) { self.inner = inner }

        func write(_ body: (any BackendTransaction) throws -> Void) throws {
            do {
                try inner.write(body)
            } catch let e as BackendUnavailable {
                failures.withLock { $0.append(.unavailable(commitUnknown: e.commitUnknown, message: e.message)) }
                throw e
            } catch {
                failures.withLock { $0.append(.other("\(error)")) }
                throw error
            }
        }
    }

    /// A new fact each time (a draft has its own id, and appending one twice is a no-op).
    static var draft: FactDraft { FactDraft(kind: .workerStarted, author: Author(name: "w")) }

    /// A store in a fresh schema, with `extra` URL options, and a plain connection to its schema.
    func withStore(options extra: String = "", _ body: (LogStore, Recording, PGConnection, String) async throws -> Void) async throws {
        guard TestStores.available(.postgres) else {
            if TestStores.postgresRequired { Issue.record("OVERSEER_TEST_POSTGRES is not set") }
            return
        }
        let schema = try TestStores.makeSchema()
        defer { TestStores.dropSchema(schema) }
        let url = try TestStores.url(schema: schema) + extra
        let backend = Recording(PostgresBackend(url: url, retryWindow: .seconds(20)))
        let store = try LogStore(backend: backend)
        let c = try PGConnection(withConnectionDefaults(try TestStores.url(schema: schema)))
        defer { c.close() }
        try await body(store, backend, c, schema)
    }

    /// Installs a deferred trigger on the facts that runs `action` (PL/pgSQL) at the first COMMIT
    /// that inserts a fact, and never again (a sequence counts, and sequences ignore rollbacks).
    func atFirstCommit(_ c: PGConnection, _ action: String) throws {
        try c.exec("""
            CREATE SEQUENCE test_once;
            CREATE FUNCTION test_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('test_once') = 1 THEN \(action); END IF;
                RETURN NULL;
            END $$;
            CREATE CONSTRAINT TRIGGER test_at_commit AFTER INSERT ON overseer_facts
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_at_commit()
            """)
    }

    @Test func aConnectionLostInTheCommitStringIsAnUnknownOutcome() async throws {
        try await withStore { store, backend, c, _ in
            // The session ends while COMMIT runs (pg_notify before it in the same string succeeded).
            try atFirstCommit(c, "PERFORM pg_terminate_backend(pg_backend_pid())")
            let outcome = try await store.append(Self.draft, expecting: nil)
            let failures = backend.failures.withLock { $0 }
            #expect(failures.count == 1, "\(failures)")
            if case .unavailable(let unknown, let message)? = failures.first {
                #expect(unknown, "a connection lost during the COMMIT string must leave the outcome unknown: \(message)")
            } else {
                Issue.record("expected BackendUnavailable, got \(failures)")
            }
            // The terminated COMMIT did not commit; the writer found that out and ran the batch again.
            #expect(try store.lastPosition() == 1)
            #expect(outcome.fact?.position == 1)
            #expect(try c.exec("SELECT count(*) FROM overseer_facts").int64(0, 0) == 1)
            #expect(try store.verify().ok)
        }
    }

    @Test func aCommitTheServerRefusesIsReportedAsTheCommit() async throws {
        try await withStore { store, backend, c, _ in
            try atFirstCommit(c, "RAISE EXCEPTION 'test: refused at commit'")
            await #expect(throws: StoreError.self) { _ = try await store.append(Self.draft, expecting: nil) }
            let failures = backend.failures.withLock { $0 }
            guard case .other(let message)? = failures.first else {
                Issue.record("expected a StoreError, got \(failures)")
                return
            }
            #expect(message.contains("COMMIT failed") && message.contains("test: refused at commit"), "\(message)")
            #expect(try store.lastPosition() == 0)
            // The writer's connection is usable: the next transaction commits.
            _ = try await store.append(Self.draft, expecting: nil)
            #expect(try store.lastPosition() == 1)
            #expect(try store.verify().ok)
        }
    }

    @Test func aHeadLockTimeoutIsReportedAsTheLockNotBegin() async throws {
        try await withStore(options: "%20-clock_timeout%3D200") { store, backend, c, _ in
            _ = try await store.append(Self.draft, expecting: nil)
            // Another session holds the head row.
            try c.exec(statements: ["BEGIN", PostgresRoundTripTests.lockHead])
            await #expect(throws: StoreError.self) { _ = try await store.append(Self.draft, expecting: nil) }
            try c.exec("ROLLBACK")
            let failures = backend.failures.withLock { $0 }
            guard case .other(let message)? = failures.first else {
                Issue.record("expected a StoreError, got \(failures)")
                return
            }
            #expect(message.contains("locking the log's head row failed") && message.contains("lock timeout"), "\(message)")
            _ = try await store.append(Self.draft, expecting: nil)
            #expect(try store.lastPosition() == 2)
        }
    }

    @Test func aConnectionLostWaitingForTheHeadLockCommittedNothing() async throws {
        try await withStore { store, backend, c, _ in
            _ = try await store.append(Self.draft, expecting: nil)
            try c.exec(statements: ["BEGIN", PostgresRoundTripTests.lockHead])
            let append = Task { try await store.append(Self.draft, expecting: nil) }
            // The writer waits for the lock in its BEGIN + lock string; end its session there.
            let killer = try connectToTestServer()
            defer { killer.close() }
            try waitUntil(killer, "SELECT count(pg_terminate_backend(pid)) = 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) AND query LIKE 'BEGIN ISOLATION LEVEL READ COMMITTED; SELECT v FROM overseer_kv %'", [.int32(c.backendPID)])
            try await Task.sleep(for: .milliseconds(200))
            try c.exec("ROLLBACK")
            _ = try await append.value
            let failures = backend.failures.withLock { $0 }
            #expect(failures.count == 1, "\(failures)")
            if case .unavailable(let unknown, _)? = failures.first {
                #expect(!unknown, "nothing can have committed before the lock was granted")
            } else {
                Issue.record("expected BackendUnavailable, got \(failures)")
            }
            #expect(try store.lastPosition() == 2)
            #expect(try store.verify().ok)
        }
    }

    @Test func aDuplicateFactFailsTheWholeFlush() async throws {
        try await withStore { store, backend, c, _ in
            _ = try await store.submit(RunPlan(id: "r", graph: ["a": []]))
            let last = try store.lastPosition()
            let digest = "SELECT md5(string_agg(space::text || encode(k, 'hex') || '=' || encode(v, 'hex'), ',' ORDER BY space, k)) FROM overseer_kv"
            let views = try c.exec(digest, []).string(0, 0)
            // A fact at the next position, written behind the store's back.
            try c.exec(
                "INSERT INTO overseer_facts (position, id, time_us, kind, line) VALUES ($1, 'intruder', 0, 'worker.started', '\\x7b7d'::bytea)",
                [.int64(Int64(last + 1))])
            await #expect(throws: StoreError.self) {
                _ = try await store.write { w in
                    try w.claimNext(worker: Author(name: "w"), types: ["a"], count: 1, leaseMilliseconds: 60_000)
                }
            }
            let failures = backend.failures.withLock { $0 }
            guard case .other(let message)? = failures.first else {
                Issue.record("expected a StoreError, got \(failures)")
                return
            }
            #expect(message.contains("refused a fact") && message.contains("overseer_facts_pkey"), "\(message)")
            // Nothing of the flush landed: the views (deletes and upserts in the same statement) are as before.
            #expect(try c.exec(digest, []).string(0, 0) == views)
            #expect(try c.exec("SELECT count(*) FROM overseer_facts").int64(0, 0) == Int64(last + 1))
        }
    }

    static let lockHead = "SELECT v FROM overseer_kv WHERE space = \(StoreLayout.metaSpace) AND k = decode('"
        + StoreLayout.headKey.map { String(format: "%02x", $0) }.joined() + "', 'hex') FOR UPDATE"
}
