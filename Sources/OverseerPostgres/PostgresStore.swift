import Foundation
import Overseer
import Synchronization

extension LogStore {
    /// Opens the log kept in the PostgreSQL database at `url` (`postgres://user@host:port/db`, or
    /// a libpq key=value string), creating its schema on first use unless
    /// `options.createIfMissing` is false.
    ///
    /// ```swift
    /// let store = try LogStore.postgres("postgres://overseer@db.internal:5432/pipelines")
    /// ```
    ///
    /// Within one process, every call with the same `url` returns the same store, so its
    /// writes share one writer and one connection (group commit).
    public static func postgres(
        _ url: String, options: StoreOptions = StoreOptions(), retryWindow: Duration = .seconds(30)
    ) throws -> LogStore {
        try PostgresStores.shared(url: url, options: options, retryWindow: retryWindow)
    }
}

extension Overseer.Store {
    /// The log in PostgreSQL, shared by workers on many hosts (docs/postgres.md).
    public static func postgres(_ url: String, options: StoreOptions = StoreOptions()) -> Overseer.Store {
        Overseer.Store { try LogStore.postgres(url, options: options) }
    }
}

/// Schema management, for `overseer migrate` and deployment scripts.
public enum PostgresSchema {
    /// The schema version this build creates and reads.
    public static var version: Int { PostgresBackend.schemaVersion }

    /// Creates the schema when it is missing; checks it otherwise. Idempotent, and safe to run
    /// from several hosts at once (an advisory lock serializes them). Returns the schema version
    /// and whether this call created it. Refuses a newer or foreign schema without changing it.
    @discardableResult
    public static func migrate(url: String) throws -> (version: Int, created: Bool) {
        let store = redactConnectionString(url)
        let c: PGConnection
        do {
            c = try PGConnection(withConnectionDefaults(url))
        } catch {
            throw StoreError(.unavailable, path: store, "cannot connect to PostgreSQL: \(error.message)")
        }
        defer { c.close() }
        do {
            let outcome = try Schema.prepare(c, store: store, create: true)
            return (outcome.version, outcome.created)
        } catch let e as BackendUnavailable {
            throw StoreError(.unavailable, path: store, e.message)
        }
    }
}

/// One store per URL per process.
enum PostgresStores {
    private struct Weak: @unchecked Sendable {
        // @unchecked: a weak reference to a Sendable class, touched only under the lock.
        weak var store: LogStore?
    }
    private static let registry = Mutex<[String: Weak]>([:])

    static func shared(url: String, options: StoreOptions, retryWindow: Duration) throws -> LogStore {
        try registry.withLock { entries in
            if let existing = entries[url]?.store { return existing }
            let backend = PostgresBackend(url: url, createIfMissing: options.createIfMissing, retryWindow: retryWindow)
            let store: LogStore
            do {
                store = try LogStore(backend: backend, options: options)
            } catch let e as BackendUnavailable {
                backend.close()
                throw StoreError(.unavailable, path: backend.displayName, e.message)
            } catch {
                backend.close()
                throw error
            }
            entries[url] = Weak(store: store)
            return store
        }
    }
}
