import Foundation
import Overseer

/// The PostgreSQL schema (docs/postgres.md) and its migrations.
///
/// - `overseer_schema(version, migrated_at)`: one row per migration applied.
/// - `overseer_facts(position, id, time_us, kind, run, job, revision, line)`: the log. `line`
///   holds the fact's exact canonical bytes (what the hashes cover); the other columns are
///   copies for SQL and for the database's own checks: unique position, unique id, unique
///   `(job, revision)`.
/// - `overseer_kv(space, k, v)`: the views and indexes, as ordered key-value spaces, with the
///   same binary keys and values as in the LMDB store (space numbers: `StoreLayout.spaces`).
///   The head record (`space` 1, key `head`) is the row every writer locks.
enum Schema {
    /// Serializes concurrent migrations (any constant of our own).
    static let migrationLock: Int64 = 0x6F76_7273_6565_7231  // "ovrseer1"

    static let version1 = """
        CREATE TABLE overseer_schema (
            version integer NOT NULL PRIMARY KEY,
            migrated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE overseer_facts (
            position bigint PRIMARY KEY CHECK (position > 0),
            id text NOT NULL UNIQUE,
            time_us bigint NOT NULL,
            kind text NOT NULL,
            run text,
            job text,
            revision bigint,
            line bytea NOT NULL,
            UNIQUE (job, revision)
        );
        CREATE INDEX overseer_facts_time ON overseer_facts (time_us, position);
        CREATE TABLE overseer_kv (
            space smallint NOT NULL,
            k bytea NOT NULL,
            v bytea NOT NULL,
            PRIMARY KEY (space, k)
        );
        """

    /// What `prepare` found or did.
    struct Outcome {
        var version: Int
        var created: Bool
    }

    /// Checks the schema, creating or upgrading it when allowed. A foreign or newer schema is
    /// left untouched.
    @discardableResult
    static func prepare(_ c: PGConnection, store: String, create: Bool) throws -> Outcome {
        do {
            let found = try inspect(c, store: store)
            if let version = found, version == PostgresBackend.schemaVersion {
                try checkMarker(c, store: store)
                return Outcome(version: version, created: false)
            }
            guard create else {
                throw StoreError(.notAStore, path: store, "no Overseer schema in this database; run `overseer migrate --db URL` first")
            }
            try c.exec("BEGIN")
            do {
                try c.exec("SELECT pg_advisory_xact_lock($1)", [.int64(migrationLock)])
                // Again under the lock: another process may have migrated meanwhile.
                let again = try inspect(c, store: store)
                var created = false
                if again == nil {
                    try c.exec(version1)
                    try c.exec("INSERT INTO overseer_schema (version) VALUES (1)", [])
                    try c.exec(
                        "INSERT INTO overseer_kv (space, k, v) VALUES ($1, $2, $3), ($1, $4, $5)",
                        [.int32(Int32(StoreLayout.metaSpace)), .bytes(StoreLayout.formatKey), .bytes(StoreLayout.formatMarker),
                         .bytes(StoreLayout.headKey), .bytes(StoreLayout.emptyHead)])
                    created = true
                }
                try c.exec("COMMIT")
                try checkMarker(c, store: store)
                return Outcome(version: PostgresBackend.schemaVersion, created: created)
            } catch {
                if c.isOK { _ = try? c.exec("ROLLBACK") }
                throw error
            }
        } catch let e as PGError {
            if e.connectionLost { throw BackendUnavailable(commitUnknown: false, message: e.message) }
            throw StoreError(.io, path: store, "preparing the schema: \(e.message)")
        }
    }

    /// The schema version present, nil when there is none. Throws for a newer schema, and for
    /// a database whose `overseer_` tables were not made by Overseer.
    private static func inspect(_ c: PGConnection, store: String) throws -> Int? {
        let tables = try c.exec(
            "SELECT to_regclass('overseer_schema') IS NOT NULL, to_regclass('overseer_facts') IS NOT NULL, to_regclass('overseer_kv') IS NOT NULL",
            [])
        let schema = tables.bytes(0, 0) == [1]
        let facts = tables.bytes(0, 1) == [1]
        let kv = tables.bytes(0, 2) == [1]
        if !schema {
            if facts || kv {
                throw StoreError(.notAStore, path: store, "not an Overseer store: the database has overseer_facts or overseer_kv tables but no overseer_schema; nothing was changed")
            }
            return nil
        }
        let r = try c.exec("SELECT max(version) FROM overseer_schema", [])
        guard let v = r.int64(0, 0) else {
            throw StoreError(.notAStore, path: store, "not an Overseer store: overseer_schema is empty")
        }
        if v > PostgresBackend.schemaVersion {
            throw StoreError(.newerFormat, path: store, "written by a newer Overseer (schema version \(v); this build reads up to \(PostgresBackend.schemaVersion)). Upgrade Overseer; the database was not changed.")
        }
        if !facts || !kv {
            throw StoreError(.corrupt, path: store, "the Overseer schema is incomplete (overseer_facts or overseer_kv is missing)")
        }
        return Int(v)
    }

    private static func checkMarker(_ c: PGConnection, store: String) throws {
        let r = try c.exec(
            "SELECT v FROM overseer_kv WHERE space = $1 AND k = $2",
            [.int32(Int32(StoreLayout.metaSpace)), .bytes(StoreLayout.formatKey)])
        if let problem = StoreLayout.checkFormat(r.rowCount == 1 ? r.bytes(0, 0) : nil, store: store) { throw problem }
    }
}
