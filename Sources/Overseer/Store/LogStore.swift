import CLMDB
import Foundation
import Synchronization

/// How a store is opened.
public struct StoreOptions: Sendable {
    /// How commits reach the disk.
    public enum Durability: Sendable {
        /// Default: an append returns only after its transaction is committed with fsync.
        case durable
        /// Opt-in, for throwaway stores and benchmarks only: commits skip fsync (LMDB's
        /// MDB_NOSYNC). A system crash may lose the last transactions or damage the store; a
        /// process crash loses nothing.
        case unsafeNoSync
    }

    public var durability: Durability = .durable
    /// Initial map size; the map doubles automatically when full. The file stays sparse.
    public var initialMapSize: Int = 256 << 20
    /// The map never grows past this; appends then fail with ``StoreError/Code/full``.
    public var maximumMapSize: Int = 1 << 40
    /// Concurrent read transactions allowed across all processes.
    public var maximumReaders: Int = 1024
    /// Requests taken into one write transaction at most.
    public var maximumBatch: Int = 4096
    /// Create the store when the path does not exist.
    public var createIfMissing: Bool = true

    public init() {}
}

/// The durable, append-only log of facts, with its views, in one LMDB environment.
///
/// ```swift
/// let store = try LogStore(path: "myapp.lmdb")
/// let outcome = try await store.append(
///     FactDraft(kind: .jobClaimed, run: "r1", job: "r1/start", author: Author(name: "w1"), attempt: 1),
///     expecting: 1)
/// ```
///
/// One process may open the same path any number of times: the instances share one environment
/// and one writer thread. Several processes may open it at once; LMDB's lock serializes their
/// writers. Thread-safe.
public final class LogStore: Sendable {
    /// Facts larger than this (in their JSON Lines form) are refused.
    public static let maximumFactSize = 1 << 20

    public let path: String
    let core: StoreCore

    /// Opens or creates the store at `path` (a directory).
    public init(path: String, options: StoreOptions = StoreOptions()) throws(StoreError) {
        self.path = path
        self.core = try StoreCore.shared(path: path, options: options)
    }

    /// Opens a store kept by another backend (for example `OverseerPostgres`). The backend's
    /// ``StoreBackend/prepare()`` runs first: it creates the schema or checks the format.
    /// `path` then names the backend in messages (``StoreBackend/displayName``).
    public init(backend: any StoreBackend, options: StoreOptions = StoreOptions()) throws {
        self.path = backend.displayName
        self.core = try StoreCore(backend: backend, options: options)
    }

    /// The backend, when the store is not the embedded LMDB one.
    public var backend: (any StoreBackend)? {
        if case .backend(let b) = core.engine { return b }
        return nil
    }

    var dbs: Databases { core.dbs }

    // MARK: Writing

    /// Runs `body` inside the shared write transaction on the writer thread. It may read views
    /// and append facts; a throw undoes everything it did. Returns after the commit is on disk.
    public func write<T: Sendable>(_ body: @escaping @Sendable (inout LogWriter) throws -> T) async throws -> T {
        if core.writer.isCurrent { throw StoreError(.invalid, path: path, "write called from inside a write") }
        let value: any Sendable = try await withCheckedThrowingContinuation { continuation in
            core.writer.submit(WriteRequest(body: { try body(&$0) }) { continuation.resume(with: $0) })
        }
        return value as! T
    }

    /// The blocking form of ``write(_:)``, for code that is not async.
    public func writeSync<T: Sendable>(_ body: @escaping @Sendable (inout LogWriter) throws -> T) throws -> T {
        if core.writer.isCurrent { throw StoreError(.invalid, path: path, "write called from inside a write") }
        let box = Mutex<Result<any Sendable, any Error>?>(nil)
        let semaphore = DispatchSemaphore(value: 0)
        core.writer.submit(WriteRequest(body: { try body(&$0) }) { result in
            box.withLock { $0 = result }
            semaphore.signal()
        })
        semaphore.wait()
        return try box.withLock { $0! }.get() as! T
    }

    /// Compare-and-append of one fact: see ``LogWriter/append(_:expecting:)``.
    public func append(_ draft: FactDraft, expecting revision: UInt64?) async throws -> AppendOutcome {
        try await write { try $0.append(draft, expecting: revision) }
    }

    /// Atomic append of several facts: all, or none on the first conflict.
    public func append(_ items: [(FactDraft, expecting: UInt64?)]) async throws -> AppendBatchOutcome {
        try await write { try $0.appendAll(items) }
    }

    /// Waits until a fact past `position` may exist (a commit in this process, or `timeout`).
    public func waitForAppend(after position: UInt64, timeout: Duration = .milliseconds(50)) async throws {
        if try lastPosition() > position { return }
        await core.commits.wait(timeout: timeout)
    }

    // MARK: Reading

    func read<T>(_ body: (Transaction) throws -> T) throws -> T {
        try core.read(body)
    }

    /// The position of the last fact (0 for an empty log).
    public func lastPosition() throws -> UInt64 {
        try read { try core.head($0).position }
    }

    /// The hash of the last fact (all zeros for an empty log).
    public func headHash() throws -> Digest {
        try read { try core.head($0).hash }
    }

    public func fact(at position: UInt64) throws -> Fact? {
        try read { txn in try core.fact(txn, position) }
    }

    /// Facts after `position`, in order, at most `limit`.
    public func facts(after position: UInt64, limit: Int = Int.max) throws -> [Fact] {
        try read { txn in
            var out: [Fact] = []
            try txn.forEach(dbs.facts, from: Keys.position(position + 1)) { _, v in
                out.append(try Fact.decodeTrusted(v))
                return out.count < limit
            }
            return out
        }
    }

    /// Calls `body` with every fact in `positions` (inclusive), in order, without holding them all.
    public func forEachFact(in positions: ClosedRange<UInt64>, _ body: (Fact) throws -> Bool) throws {
        try read { txn in
            try txn.forEach(dbs.facts, from: Keys.position(positions.lowerBound), to: positions.upperBound == .max ? nil : Keys.position(positions.upperBound + 1)) { _, v in
                try body(try Fact.decodeTrusted(v))
            }
        }
    }

    /// Raw lines in `positions`, as stored (for export and verify).
    func forEachLine(in positions: ClosedRange<UInt64>, _ body: (UInt64, UnsafeRawBufferPointer) throws -> Bool) throws {
        try read { txn in
            try txn.forEach(dbs.facts, from: Keys.position(positions.lowerBound), to: positions.upperBound == .max ? nil : Keys.position(positions.upperBound + 1)) { k, v in
                try body(readBigEndian64(k), v)
            }
        }
    }

    /// Follows the tail: every fact after `position`, then each new one as it is appended (by
    /// this process or another), until the task is cancelled.
    public func follow(after position: UInt64, poll: Duration = .milliseconds(50)) -> AsyncThrowingStream<Fact, any Error> {
        let store = self
        return AsyncThrowingStream { continuation in
            let task = Task {
                var last = position
                do {
                    while !Task.isCancelled {
                        let batch = try store.facts(after: last, limit: 1024)
                        for f in batch {
                            continuation.yield(f)
                            last = f.position
                        }
                        if batch.isEmpty { try await store.waitForAppend(after: last, timeout: poll) }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// The position of the last fact at or before `time` (0 if none).
    public func position(atOrBefore time: Instant) throws -> UInt64 {
        try read { txn in
            var result: UInt64 = 0
            let end = Keys.time(Instant(microseconds: time.microseconds &+ 1), 0)
            try txn.forEach(dbs.byTime, to: end, reverse: true) { k, _ in
                result = readBigEndian64(k, at: 8)
                return false
            }
            return result
        }
    }

    /// Facts whose time lies in `range`, in order.
    public func facts(in range: ClosedRange<Instant>) throws -> [Fact] {
        try read { txn in
            var out: [Fact] = []
            let end = Keys.time(Instant(microseconds: range.upperBound.microseconds &+ 1), 0)
            try txn.forEach(dbs.byTime, from: Keys.time(range.lowerBound, 0), to: end) { k, _ in
                if let f = try core.fact(txn, readBigEndian64(k, at: 8)) { out.append(f) }
                return true
            }
            return out
        }
    }

    /// Every fact about one job (rejected late results included), in order.
    public func history(ofJob job: String, through position: UInt64 = .max) throws -> [Fact] {
        try indexed(dbs.byJob, job, through: position)
    }

    /// Every fact about one run and its jobs, in order.
    public func history(ofRun run: String, through position: UInt64 = .max) throws -> [Fact] {
        try indexed(dbs.byRun, run, through: position)
    }

    private func indexed(_ db: Database, _ id: String, through position: UInt64) throws -> [Fact] {
        try read { txn in
            var out: [Fact] = []
            let end = position == .max ? Keys.prefixed(id, .max) : Keys.prefixed(id, position + 1)
            try txn.forEach(db, from: Keys.prefix(id), to: end) { k, _ in
                let p = readBigEndian64(k, at: k.count - 8)
                guard let f = try core.fact(txn, p) else {
                    throw StoreError(.corrupt, path: path, "index entry for '\(id)' points at missing position \(p)")
                }
                out.append(f)
                return true
            }
            return out
        }
    }

    /// A job's current state.
    public func job(_ id: String) throws -> JobState? {
        try read { txn in try LMDBViews(txn: txn, dbs: dbs).job(id) }
    }

    /// A run's current summary.
    public func run(_ id: String) throws -> RunState? {
        try read { txn in try LMDBViews(txn: txn, dbs: dbs).run(id) }
    }

    /// All runs, oldest first.
    public func runs() throws -> [RunState] {
        try read { txn in
            var out: [RunState] = []
            try txn.forEach(dbs.runs) { _, v in
                out.append(try RunState(decoding: v))
                return true
            }
            return out.sorted { ($0.createdPosition, $0.id) < ($1.createdPosition, $1.id) }
        }
    }

    /// The jobs of one run, in creation order.
    public func jobs(inRun run: String) throws -> [JobState] {
        try read { txn in
            var out: [JobState] = []
            try txn.forEach(dbs.jobs, from: Array(run.utf8) + [UInt8(ascii: "/")], to: Array(run.utf8) + [UInt8(ascii: "0")]) { _, v in
                out.append(try JobState(decoding: v))
                return true
            }
            return out.sorted { $0.createdPosition < $1.createdPosition }
        }
    }

    /// The ready set, in claim order: (job id, type, not-before).
    public func readyJobs(limit: Int = Int.max) throws -> [(job: String, type: String, notBefore: Instant?)] {
        try read { txn in
            var out: [(String, String, Instant?)] = []
            try txn.forEach(dbs.ready) { _, v in
                let (type, nb, job) = try ReadyEntry.decodeValue(v)
                out.append((job, type, nb == 0 ? nil : Instant(microseconds: nb)))
                return out.count < limit
            }
            return out
        }
    }

    /// The current lease of a job, if it is claimed.
    public func lease(of job: String) throws -> Lease? {
        try read { txn in
            guard let b = try txn.get(dbs.leases, Array(job.utf8)) else { return nil }
            var r = ByteReader(b)
            return Lease(worker: try r.string(), revision: try r.u64(), expires: Instant(microseconds: try r.i64()))
        }
    }

    /// Bytes of the data file in use.
    public func sizeInBytes() throws -> Int {
        switch core.engine {
        case .lmdb(let env):
            do { return try env.usedBytes() } catch let e as LMDBError { throw StoreError.from(e) }
        case .backend(let b):
            return try b.sizeInBytes()
        }
    }

    /// Clears reader slots left by dead processes; returns how many were cleared.
    @discardableResult
    public func clearStaleReaders() throws -> Int {
        guard case .lmdb(let env) = core.engine else { return 0 }
        do { return try env.clearStaleReaders() } catch let e as LMDBError { throw StoreError.from(e) }
    }
}

/// The per-process, per-path state shared by every ``LogStore`` opened on that path: lmdb.h says
/// a process must not open the same environment twice ("closing it ... will break fcntl locks").
final class StoreCore: Sendable {
    /// Where the bytes live.
    enum Engine: Sendable {
        case lmdb(Environment)
        case backend(any StoreBackend)
    }

    let engine: Engine
    let dbs: Databases
    let writer: WriterThread
    let commits = CommitSignal()
    let options: StoreOptions
    let path: String

    private static let registry = Mutex<[String: WeakCore]>([:])

    private struct WeakCore: @unchecked Sendable {
        // @unchecked: a weak reference to a Sendable class, only touched under the registry lock.
        weak var core: StoreCore?
    }

    static func shared(path: String, options: StoreOptions) throws(StoreError) -> StoreCore {
        let key = try canonicalPath(path, options: options)
        return try registry.withLock { (entries) throws(StoreError) -> StoreCore in
            if let existing = entries[key]?.core { return existing }
            let core = try StoreCore(path: path, directory: key, options: options)
            entries[key] = WeakCore(core: core)
            return core
        }
    }

    /// Makes sure the directory exists (creating it 0700), and returns its real path.
    private static func canonicalPath(_ path: String, options: StoreOptions) throws(StoreError) -> String {
        guard !path.isEmpty else { throw StoreError(.invalid, path: path, "the store path is empty") }
        var st = stat()
        if stat(path, &st) == 0 {
            if (st.st_mode & S_IFMT) != S_IFDIR {
                throw StoreError(.notAStore, path: path, "not an Overseer store: it is a file, and a store is a directory holding data.mdb and lock.mdb")
            }
        } else if errno == ENOENT {
            guard options.createIfMissing else { throw StoreError(.notAStore, path: path, "no store here (the directory does not exist)") }
            // Owner-only: the directory 0700, the files 0600.
            if mkdir(path, 0o700) != 0 && errno != EEXIST {
                let reason = String(cString: strerror(errno))
                let code: StoreError.Code = (errno == EACCES || errno == EROFS || errno == EPERM) ? .unwritable : .io
                throw StoreError(code, path: path, "cannot create the store directory: \(reason)")
            }
        } else {
            throw StoreError(.io, path: path, "cannot examine the store path: \(String(cString: strerror(errno)))")
        }
        guard let real = realpath(path, nil) else {
            throw StoreError(.io, path: path, "cannot resolve the store path: \(String(cString: strerror(errno)))")
        }
        defer { free(real) }
        return String(cString: real)
    }

    private init(path: String, directory: String, options: StoreOptions) throws(StoreError) {
        self.path = path
        self.options = options
        if access(directory, W_OK) != 0 {
            throw StoreError(.unwritable, path: path, "the store directory is not writable: \(String(cString: strerror(errno)))")
        }
        // Refuse obviously foreign directories before LMDB creates files in them.
        let data = directory + "/data.mdb"
        var st = stat()
        let dataExists = stat(data, &st) == 0
        if !dataExists {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            let foreign = entries.filter { $0 != "lock.mdb" && !$0.hasPrefix(".") }
            if !foreign.isEmpty {
                throw StoreError(.notAStore, path: path, "not an Overseer store: the directory holds other files (\(foreign.prefix(3).joined(separator: ", "))) but no data.mdb")
            }
        } else if st.st_size > 0 && st.st_size < 8192 {
            throw StoreError(.corrupt, path: path, "data.mdb is truncated (\(st.st_size) bytes); restore it from a backup or an export")
        }
        let env: Environment
        do {
            env = try Environment(
                directory: directory, path: path, mapSize: options.initialMapSize, maxDatabases: Databases.names.count + 2,
                maxReaders: options.maximumReaders, noSync: options.durability == .unsafeNoSync)
        } catch {
            throw StoreError.from(error)
        }
        let dbs: Databases
        do {
            dbs = try StoreCore.prepare(env, path: path, dataExisted: dataExists && st.st_size > 0)
        } catch let e as StoreError {
            throw e
        } catch let e as LMDBError {
            throw StoreError.from(e)
        } catch {
            throw StoreError(.io, path: path, "\(error)")
        }
        self.engine = .lmdb(env)
        self.dbs = dbs
        let commits = self.commits
        let committer = BatchCommitter(engine: .lmdb(env), dbs: dbs, path: path, maximumMapSize: options.maximumMapSize)
        let watch = ChangeWatcher.shared.watch(file: directory + "/data.mdb", signal: commits) { env.lastTransactionID }
        self.writer = WriterThread(name: "overseer-writer", maximumBatch: options.maximumBatch) { batch in
            let grew = committer.process(batch)
            // Recorded before the waiters are woken: the watcher then leaves this commit to them.
            watch?.noteOwnCommit(env.lastTransactionID)
            if grew { commits.notify() }
        }
        self.watch = watch
    }

    /// A core over a ``StoreBackend``: one writer thread per store object, with the same group
    /// commit; change notices come from the backend.
    init(backend: any StoreBackend, options: StoreOptions) throws {
        self.path = backend.displayName
        self.options = options
        try backend.prepare()
        let dbs = Databases { name in Database(dbi: MDB_dbi(Databases.names.firstIndex(of: name)!)) }
        self.engine = .backend(backend)
        self.dbs = dbs
        let commits = self.commits
        let committer = BatchCommitter(engine: .backend(backend), dbs: dbs, path: backend.displayName, maximumMapSize: 0)
        self.writer = WriterThread(name: "overseer-writer", maximumBatch: options.maximumBatch) { batch in
            if committer.process(batch) { commits.notify() }
        }
        self.watch = nil
        backend.watchChanges { commits.notify() }
    }

    func read<T>(_ body: (Transaction) throws -> T) throws -> T {
        switch engine {
        case .lmdb(let env):
            do {
                return try env.read(body)
            } catch let e as LMDBError {
                throw StoreError.from(e)
            }
        case .backend(let b):
            let path = self.path
            do {
                return try b.read { try body(Transaction(backend: $0, path: path)) }
            } catch let e as BackendUnavailable {
                throw StoreError(.unavailable, path: path, e.message)
            }
        }
    }

    /// Wakes this process's waiters when another process writes the store.
    let watch: ChangeWatcher.Watch?

    deinit {
        writer.stop()
        watch.map { ChangeWatcher.shared.remove($0) }
        if case .backend(let b) = engine { b.close() }
    }

    /// Checks the format marker (or creates the store), and opens every database.
    private static func prepare(_ env: Environment, path: String, dataExisted: Bool) throws -> Databases {
        // Look first without writing anything: a foreign or newer store must stay untouched.
        let state: (hasMeta: Bool, mainEntries: Int, format: [UInt8]?) = try env.read { txn in
            guard let meta = try env.openDatabase("meta", in: txn, create: false) else {
                let main = Database(dbi: 1)  // MAIN_DBI
                return (false, try txn.count(main), nil)
            }
            return (true, 0, try txn.getBytes(meta, Keys.format))
        }
        if state.hasMeta {
            guard state.format != nil else {
                throw StoreError(.notAStore, path: path, "not an Overseer store: an LMDB environment without an Overseer format marker")
            }
            if let problem = StoreLayout.checkFormat(state.format, store: path) { throw problem }
        } else if state.mainEntries > 0 {
            throw StoreError(.notAStore, path: path, "not an Overseer store: an LMDB environment holding other databases")
        }
        if !state.hasMeta {
            // New store (or one whose creation another process is racing us for: the write lock
            // serializes, and the check is repeated inside).
            try env.write { txn in
                let meta = try env.openDatabase("meta", in: txn, create: true)!
                if try txn.get(meta, Keys.format) == nil {
                    for name in Databases.names { _ = try env.openDatabase(name, in: txn, create: true) }
                    try txn.put(meta, Keys.format, StoreFormat.encoded)
                    try txn.put(meta, Keys.head, Head.empty.encoded)
                }
            }
        }
        return try env.openDatabases { txn in
            try Databases { name in
                guard let db = try env.openDatabase(name, in: txn, create: false) else {
                    throw StoreError(.corrupt, path: path, "the store lacks its '\(name)' database")
                }
                return db
            }
        }
    }

    func head(_ txn: Transaction) throws -> Head {
        guard let b = try txn.get(dbs.meta, Keys.head) else {
            throw StoreError(.corrupt, path: path, "the store lacks its head record")
        }
        return try Head(decoding: b)
    }

    func fact(_ txn: Transaction, _ position: UInt64) throws -> Fact? {
        guard let b = try txn.get(dbs.facts, Keys.position(position)) else { return nil }
        do {
            return try Fact.decodeTrusted(b)
        } catch {
            throw StoreError(.corrupt, path: path, "fact at position \(position) cannot be read: \(error)")
        }
    }

}


/// Notices writes to the data file by any process through inotify (IN_MODIFY fires on LMDB's
/// page writes, the meta page's last), and wakes the in-process waiters at once, so workers in
/// other processes pick up newly ready jobs without waiting for their poll. Polling stays as
/// the fallback: where inotify is unavailable (or on network file systems) this is nil.
