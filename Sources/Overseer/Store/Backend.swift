import Foundation

/// A store backend other than the embedded LMDB one, such as PostgreSQL (the `OverseerPostgres`
/// module). The core keeps every rule of the log (positions, revisions, hashes, the fold, the
/// worker operations) and asks a backend only for ordered key-value spaces inside transactions.
///
/// The spaces are the ones named in ``StoreLayout/spaces``; a backend identifies them by their
/// index there. Keys sort byte-wise, as in LMDB. The `facts` space is special: its entries are
/// written through ``BackendTransaction/insertFact(_:line:)`` so that a backend can keep the
/// fact's columns (for example a unique `(job, revision)` key) beside its bytes.
public protocol StoreBackend: AnyObject, Sendable {
    /// Names the store in messages: a path, or a connection string with its password hidden.
    var displayName: String { get }

    /// Creates the store's schema on first use, or checks its format. Must leave a foreign or
    /// newer store unchanged, and throw ``StoreError`` saying so.
    func prepare() throws

    /// Runs `body` over one consistent, read-only snapshot.
    func read<T>(_ body: (any BackendTransaction) throws -> T) throws -> T

    /// Runs `body` in one write transaction that holds the log's write lock from its start (so
    /// no other writer, in any process on any host, appends meanwhile), then commits durably.
    /// A throw from `body` rolls back and is rethrown unchanged. Called only from the store's
    /// writer thread.
    ///
    /// Throws ``BackendUnavailable`` when the backend cannot be reached; its `commitUnknown`
    /// says whether the commit may nevertheless have happened.
    func write(_ body: (any BackendTransaction) throws -> Void) throws

    /// Calls `notify` whenever another process may have appended (for example through
    /// PostgreSQL's LISTEN/NOTIFY). Pollers remain the fallback, so this may do nothing.
    func watchChanges(_ notify: @escaping @Sendable () -> Void)

    /// How long a write keeps retrying while the backend is unreachable, before it fails.
    var retryWindow: Duration { get }

    /// Bytes the store occupies.
    func sizeInBytes() throws -> Int

    /// Stops background work; the backend is not used after this.
    func close()
}

/// One transaction of a ``StoreBackend``: ordered key-value spaces, plus the facts.
///
/// Buffers passed out (by `get` and `forEach`) stay valid until the transaction ends.
public protocol BackendTransaction: AnyObject {
    func get(_ space: Int, _ key: [UInt8]) throws -> UnsafeRawBufferPointer?
    /// Writes `value` under `key`; with `noOverwrite`, throws when the key exists.
    func put(_ space: Int, _ key: [UInt8], _ value: [UInt8], noOverwrite: Bool) throws
    /// Returns false when the key was not there.
    func delete(_ space: Int, _ key: [UInt8]) throws -> Bool
    func count(_ space: Int) throws -> Int
    func clear(_ space: Int) throws
    /// Calls `body` for each entry whose key is `>= start` (and `< end` when given), in key order
    /// (or reversed), until it returns false.
    func forEach(
        _ space: Int, from start: [UInt8], to end: [UInt8]?, reverse: Bool,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws
    /// Stores a fact under its position in the `facts` space. `line` is its exact stored form.
    func insertFact(_ fact: Fact, line: [UInt8]) throws
}

/// The backend could not be reached (a lost connection, a server restart).
public struct BackendUnavailable: Error, Sendable, CustomStringConvertible {
    /// True when the failure came while committing: the transaction may have committed.
    public let commitUnknown: Bool
    /// What happened, without secrets.
    public let message: String

    public init(commitUnknown: Bool, message: String) {
        self.commitUnknown = commitUnknown
        self.message = message
    }

    public var description: String { message }
}

/// The spaces every store keeps; see docs/ARCHITECTURE.md for their keys and values.
public enum StoreLayout {
    /// A backend's space number is the index in this list. Never reorder it: append only.
    public static let spaces: [String] = Databases.names
    /// The index of the `facts` space.
    public static let factsSpace = 0
    /// The index of the `meta` space (format marker and head).
    public static let metaSpace = 1
    /// The key of the head record in the `meta` space, which writers lock.
    public static let headKey: [UInt8] = Keys.head
    /// The key of the format marker in the `meta` space.
    public static let formatKey: [UInt8] = Keys.format
    /// The format marker a new store records.
    public static var formatMarker: [UInt8] { StoreFormat.encoded }
    /// The head record of an empty log.
    public static var emptyHead: [UInt8] { Head.empty.encoded }
    /// The store format this build reads and writes.
    public static let formatVersion = StoreFormat.version
    /// Checks a format marker read from a store: nil when this build can use it, otherwise the
    /// reason it cannot (foreign, or newer).
    public static func checkFormat(_ marker: [UInt8]?, store: String) -> StoreError? {
        guard let marker, let text = String(validating: marker, as: UTF8.self) else {
            return StoreError(.notAStore, path: store, "not an Overseer store: no Overseer format marker")
        }
        let parts = text.split(separator: " ")
        guard parts.count == 2, parts[0] == StoreFormat.magic, let version = Int(parts[1]) else {
            return StoreError(.notAStore, path: store, "not an Overseer store: unknown format marker '\(text)'")
        }
        if version > StoreFormat.version {
            return StoreError(.newerFormat, path: store, "written by a newer Overseer (store format \(version); this build reads up to \(StoreFormat.version)). Upgrade Overseer; the store was not changed.")
        }
        return nil
    }
}
