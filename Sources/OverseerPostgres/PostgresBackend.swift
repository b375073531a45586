import Foundation
import Overseer
import Synchronization

/// The log in a PostgreSQL database: the same facts, views and rules as the embedded store,
/// shared by workers on any number of hosts. See docs/postgres.md.
///
/// How the guarantees hold:
/// - **Dense positions in commit order.** Every write transaction first locks the one head row
///   (`SELECT ... FOR UPDATE` on the `meta`/`head` entry) and keeps the lock until it commits.
///   Positions are taken from the head under that lock, so the writer of position 10 cannot
///   begin before the writer of position 9 has committed: no reader ever sees 10 without 9.
///   Positions are not a sequence, so a rolled-back transaction leaves no gap.
/// - **Compare-and-append** runs in the core under that lock, and the database enforces it as
///   well: `overseer_facts` has a unique `(job, revision)` key and a unique fact id.
/// - **Group commit.** The core's writer thread runs every queued request in one transaction.
/// - **Views in the same transaction** as their facts: everything goes through one connection
///   inside one `BEGIN ... COMMIT`.
/// - **Durable**: PostgreSQL's default `synchronous_commit = on` (the WAL is flushed at commit).
public final class PostgresBackend: StoreBackend, @unchecked Sendable {
    // @unchecked: `writer` is used only from the store's writer thread (StoreBackend.write's
    // contract); the pool and the listener state are behind Mutexes.
    public let displayName: String
    public let retryWindow: Duration
    let conninfo: String
    let createIfMissing: Bool

    private var writer: PGConnection?
    private let pool = Mutex<[PGConnection]>([])
    private let listener = StopFlag()

    /// Tells the listener thread to end.
    final class StopFlag: Sendable {
        private let value = Mutex(false)
        var isSet: Bool { value.withLock { $0 } }
        func set() { value.withLock { $0 = true } }
    }

    static let channel = "overseer_log"
    /// The schema version this build creates and reads.
    public static let schemaVersion = 1

    /// - Parameters:
    ///   - url: a `postgres://` URL or libpq key=value string. Its password never appears in
    ///     messages.
    ///   - retryWindow: how long an operation keeps retrying while the server is unreachable.
    public init(url: String, createIfMissing: Bool = true, retryWindow: Duration = .seconds(30)) {
        self.conninfo = withConnectionDefaults(url)
        self.displayName = redactConnectionString(url)
        self.createIfMissing = createIfMissing
        self.retryWindow = retryWindow
    }

    // MARK: Connections

    private func connect(writer: Bool = false) throws -> PGConnection {
        do {
            let c = try PGConnection(conninfo)
            try Self.configureSession(c, writer: writer)
            return c
        } catch {
            // Name the store as the user wrote it, not with the options added to it.
            let message = error.message
                .replacingOccurrences(of: "cannot connect to PostgreSQL at \(redactConnectionString(conninfo)): ", with: "cannot connect to PostgreSQL: ")
                .replacingOccurrences(of: redactConnectionString(conninfo), with: displayName)
            if Self.isTransient(error) { throw BackendUnavailable(commitUnknown: false, message: message) }
            throw StoreError(.unavailable, path: displayName, message)
        }
    }

    /// Settings for the server's side of a store connection, applied only where the server's own
    /// configuration (postgresql.conf, ALTER ROLE or DATABASE ... SET, the connection's `options`)
    /// left them at their defaults. They bound how long the server keeps the session of a client
    /// that vanished (a host cut off from the network, powered off or paused):
    ///
    /// - `idle_in_transaction_session_timeout`, for the writer only: a client that stops sending
    ///   inside a write transaction holds the log's lock (the head row), and every other host's
    ///   writes wait behind it. The server ends such a session after 10 s, which rolls it back and
    ///   frees the lock. Overseer's write transactions never pause between statements (the client
    ///   only folds and hashes in between), so only a vanished or stopped client reaches it.
    ///   Without it the lock stayed held until the server's TCP keepalive gave up on the dead
    ///   connection: two hours with Linux's defaults (docs/postgres.md, "Many hosts").
    /// - `tcp_keepalives_*` and `tcp_user_timeout`: the server notices a dead peer in about 10 s,
    ///   as the client does with the options of `withConnectionDefaults`, instead of keeping its
    ///   session (and a connection slot) for two hours.
    static func sessionSettings(writer: Bool) -> String {
        var settings = [
            ("tcp_keepalives_idle", "5"), ("tcp_keepalives_interval", "2"), ("tcp_keepalives_count", "3"),
            ("tcp_user_timeout", "10000"),
        ]
        if writer { settings.append(("idle_in_transaction_session_timeout", "10000")) }
        let values = settings.map { "('\($0.0)', '\($0.1)')" }.joined(separator: ", ")
        // Joined with pg_settings, so a server without one of them (tcp_user_timeout came in 12) skips it.
        return "SELECT count(set_config(d.name, d.value, false)) FROM (VALUES \(values)) AS d(name, value) JOIN pg_settings s ON s.name = d.name WHERE s.source = 'default'"
    }

    /// Applies `sessionSettings`. A lost connection is an error; any other failure leaves the
    /// server's defaults in place (the settings only shorten how long a dead peer is waited for).
    static func configureSession(_ c: PGConnection, writer: Bool) throws(PGError) {
        do {
            try c.exec(sessionSettings(writer: writer))
        } catch where error.connectionLost {
            throw error
        } catch {
            return
        }
    }

    /// Whether a failed connection attempt may succeed later (the server is down, restarting or
    /// unreachable), as opposed to one that never will (a wrong password, an unknown database).
    static func isTransient(_ error: PGError) -> Bool {
        if let state = error.sqlState {
            return state.hasPrefix("08") || state.hasPrefix("57P")
        }
        let m = error.message.lowercased()
        let permanent = ["authentication failed", "does not exist", "no pg_hba.conf entry", "invalid", "permission denied", "missing \"=\"", "unsupported", "could not translate host name"]
        return !permanent.contains { m.contains($0) }
    }

    /// Runs `body` with a pooled connection; a connection that failed is dropped, not returned.
    private func withPooled<T>(_ body: (PGConnection) throws -> T) throws -> T {
        let connection = try pool.withLock { $0.popLast() } ?? connectRetrying()
        do {
            let value = try body(connection)
            giveBack(connection)
            return value
        } catch {
            if connection.isOK {
                _ = try? connection.exec("ROLLBACK")
                giveBack(connection)
            } else {
                connection.close()
            }
            throw error
        }
    }

    /// Connects, retrying with backoff within the retry window.
    private func connectRetrying() throws -> PGConnection {
        let clock = ContinuousClock()
        let start = clock.now
        var backoff = 0.05
        while true {
            do {
                return try connect()
            } catch let e as BackendUnavailable {
                if clock.now - start > retryWindow { throw e }
                Thread.sleep(forTimeInterval: backoff)
                backoff = min(backoff * 2, 2)
            }
        }
    }

    // MARK: StoreBackend

    public func prepare() throws {
        _ = try withPooled { c in try Schema.prepare(c, store: displayName, create: createIfMissing) }
    }

    public func read<T>(_ body: (any BackendTransaction) throws -> T) throws -> T {
        // A pooled connection may have died with a server restart; that shows at BEGIN. Drop it
        // and take the next one (or a new connection), so a restart costs no failed read.
        while true {
            let pooled = pool.withLock { $0.popLast() }
            let c = try pooled ?? connectRetrying()
            do {
                try begin(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            } catch let e as BackendUnavailable {
                c.close()
                if pooled != nil { continue }
                throw e
            }
            do {
                let txn = PostgresTransaction(connection: c, writable: false, store: displayName)
                let value = try body(txn)
                try endRead(c)
                giveBack(c)
                return value
            } catch {
                if c.isOK {
                    _ = try? c.exec("ROLLBACK")
                    giveBack(c)
                } else {
                    c.close()
                }
                throw error
            }
        }
    }

    private func giveBack(_ c: PGConnection) {
        let kept = pool.withLock { connections -> Bool in
            guard connections.count < 8 else { return false }
            connections.append(c)
            return true
        }
        if !kept { c.close() }
    }

    public func write(_ body: (any BackendTransaction) throws -> Void) throws {
        let c: PGConnection
        if let w = writer, w.isOK {
            c = w
        } else {
            writer?.close()
            writer = nil
            c = try connect(writer: true)
            writer = c
        }
        // One round trip: BEGIN and the head lock go in one simple-protocol string. READ
        // COMMITTED: after the head lock is granted, every later statement sees every transaction
        // that committed before it, which is all of them (they all took the lock). Nothing can
        // have committed here, so a lost connection is never an unknown outcome.
        let head: PGResult
        do {
            head = try c.exec(statements: [Self.beginWrite, Self.lockHead])[1]
        } catch {
            rollback(c)
            if error.connectionLost { throw BackendUnavailable(commitUnknown: false, message: error.message) }
            let what = error.statement == 0 ? "BEGIN" : "locking the log's head row"
            throw StoreError(.io, path: displayName, "\(what) failed: \(error.message)")
        }
        var notify = false
        do {
            guard head.rowCount == 1, let value = head.bytea(0, 0) else {
                throw StoreError(.corrupt, path: displayName, "the store lacks its head record (run `overseer migrate`)")
            }
            let txn = PostgresTransaction(connection: c, writable: true, store: displayName)
            // The core reads the head first thing; the locked row is it, current until the commit.
            txn.remember(StoreLayout.metaSpace, StoreLayout.headKey, value)
            try body(txn)
            try txn.flush()
            notify = txn.insertedFacts > 0
        } catch let e as PGError {
            rollback(c)
            if e.connectionLost { throw BackendUnavailable(commitUnknown: false, message: e.message) }
            throw StoreError(.io, path: displayName, e.message)
        } catch {
            rollback(c)
            throw error
        }
        try commit(c, notify: notify)
    }

    static let beginWrite = "BEGIN ISOLATION LEVEL READ COMMITTED"
    /// The head row, locked until the commit. The key is a literal (decode, so that neither
    /// `standard_conforming_strings` nor `bytea_output` matters): a simple-protocol string
    /// takes no parameters.
    static let lockHead = "SELECT v FROM overseer_kv WHERE space = \(StoreLayout.metaSpace) AND k = decode('"
        + StoreLayout.headKey.map { String(format: "%02x", $0) }.joined() + "', 'hex') FOR UPDATE"
    static let notify = "SELECT pg_notify('\(channel)', '')"

    /// Commits, with the notification in the same round trip when facts were appended: one
    /// simple-protocol string, `SELECT pg_notify(...); COMMIT`. The server stops at the first
    /// statement that fails, so a server error in pg_notify means COMMIT never ran (nothing was
    /// committed; the caller rolls back). A lost connection is an unknown outcome whichever
    /// statement's result was missing, because COMMIT went out in the same string.
    private func commit(_ c: PGConnection, notify: Bool) throws {
        let statements = notify ? [Self.notify, "COMMIT"] : ["COMMIT"]
        do {
            try c.exec(statements: statements)
        } catch {
            if error.connectionLost {
                throw BackendUnavailable(commitUnknown: true, message: error.message)
            }
            if error.statement == statements.count - 1 {
                // COMMIT itself failed: the transaction is over, rolled back.
                if error.kind == .serialization || error.kind == .deadlock {
                    throw BackendUnavailable(commitUnknown: false, message: error.message)
                }
                throw StoreError(.io, path: displayName, "COMMIT failed: \(error.message)")
            }
            rollback(c)
            throw StoreError(.io, path: displayName, "pg_notify failed, so the COMMIT sent after it did not run: \(error.message)")
        }
    }

    private func rollback(_ c: PGConnection) {
        if c.isOK { _ = try? c.exec("ROLLBACK") }
    }

    private func begin(_ c: PGConnection, _ sql: String) throws {
        do {
            try c.exec(sql)
        } catch {
            if error.connectionLost { throw BackendUnavailable(commitUnknown: false, message: error.message) }
            throw StoreError(.io, path: displayName, error.message)
        }
    }

    /// Commits a read transaction. It wrote nothing, so a lost connection is never an unknown
    /// outcome (write transactions end in ``commit(_:notify:)``).
    private func endRead(_ c: PGConnection) throws {
        do {
            try c.exec("COMMIT")
        } catch {
            if error.connectionLost {
                throw BackendUnavailable(commitUnknown: false, message: error.message)
            }
            if error.kind == .serialization || error.kind == .deadlock {
                throw BackendUnavailable(commitUnknown: false, message: error.message)
            }
            throw StoreError(.io, path: displayName, error.message)
        }
    }

    public func watchChanges(_ notify: @escaping @Sendable () -> Void) {
        let conninfo = self.conninfo
        let stop = self.listener
        let thread = Thread {
            var connection: PGConnection?
            var backoff = 0.1
            while !stop.isSet {
                do {
                    if connection == nil || !(connection!.isOK) {
                        connection?.close()
                        let c = try PGConnection(conninfo)
                        try PostgresBackend.configureSession(c, writer: false)
                        try c.exec("LISTEN \(PostgresBackend.channel)")
                        connection = c
                        backoff = 0.1
                        notify()  // anything may have happened while we were not listening
                    }
                    var pfd = pollfd(fd: connection!.socket, events: Int16(POLLIN), revents: 0)
                    if poll(&pfd, 1, 250) > 0 {
                        if try !connection!.notifications().isEmpty { notify() }
                    }
                } catch {
                    connection?.close()
                    connection = nil
                    Thread.sleep(forTimeInterval: backoff)
                    backoff = min(backoff * 2, 2)
                }
            }
            connection?.close()
        }
        thread.name = "overseer-pg-listen"
        thread.start()
    }

    public func sizeInBytes() throws -> Int {
        try withPooled { c in
            let r = try c.exec("SELECT pg_total_relation_size('overseer_facts') + pg_total_relation_size('overseer_kv')", [])
            return Int(r.int64(0, 0) ?? 0)
        }
    }

    public func close() {
        listener.set()
        pool.withLock { connections in
            for c in connections { c.close() }
            connections.removeAll()
        }
        writer?.close()
        writer = nil
    }
}
