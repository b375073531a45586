import CLMDB
import Foundation

/// A named LMDB database inside an environment.
struct Database: Sendable, Hashable {
    let dbi: MDB_dbi
}

/// One LMDB environment (a directory holding `data.mdb` and `lock.mdb`).
///
/// Read transactions may run on any thread (the environment is opened with `MDB_NOTLS`, because
/// "a thread may use parallel read-only transactions" only then, and Swift tasks hop threads).
/// Write transactions must begin and commit on one OS thread: lmdb.h says the caller "must also
/// serialize the write transactions in an OS thread, since LMDB's write locking is unaware of the
/// user threads". ``LogStore`` runs every write on its single writer thread.
///
/// Map growth (`mdb_env_set_mapsize`) "may be called ... if no transactions are active in this
/// process", so every transaction holds `resizeLock` shared, and a resize holds it exclusively.
final class Environment: @unchecked Sendable {
    // @unchecked: `env` is an LMDB handle that is safe to share between threads under MDB_NOTLS;
    // the mutable `mapSize` is only touched while `resizeLock` is held exclusively.
    let env: OpaquePointer
    let path: String
    private(set) var mapSize: Int
    private var resizeLock = pthread_rwlock_t()

    /// Opens (creating if needed) the environment in `directory`; `path` (the store's path as the
    /// user gave it) is what error messages name.
    init(directory: String, path: String, mapSize: Int, maxDatabases: Int, maxReaders: Int, noSync: Bool) throws(LMDBError) {
        var handle: OpaquePointer?
        try check(mdb_env_create(&handle), "mdb_env_create", path: path)
        guard let handle else { throw LMDBError(code: ENOMEM, operation: "mdb_env_create", path: path) }
        do throws(LMDBError) {
            try check(mdb_env_set_maxdbs(handle, MDB_dbi(maxDatabases)), "mdb_env_set_maxdbs", path: path)
            try check(mdb_env_set_maxreaders(handle, UInt32(maxReaders)), "mdb_env_set_maxreaders", path: path)
            try check(mdb_env_set_mapsize(handle, mapSize), "mdb_env_set_mapsize", path: path)
            var flags = UInt32(MDB_NOTLS)
            if noSync { flags |= UInt32(MDB_NOSYNC) }
            // Mode 0600: the store is readable and writable by its owner only.
            try check(mdb_env_open(handle, directory, flags, 0o600), "open", path: path)
            var dead: Int32 = 0
            // Clear reader slots left by processes that died while reading.
            try check(mdb_reader_check(handle, &dead), "mdb_reader_check", path: path)
            var info = MDB_envinfo()
            try check(mdb_env_info(handle, &info), "mdb_env_info", path: path)
            // A data file shorter than its own meta page says would make reads past its end fault
            // (SIGBUS on the memory map): refuse it as damaged instead.
            var envStat = MDB_stat()
            try check(mdb_env_stat(handle, &envStat), "mdb_env_stat", path: path)
            if let size = fileSize(directory + "/data.mdb"), size > 0 {
                let needed = (info.me_last_pgno + 1) * Int(envStat.ms_psize)
                if size < needed {
                    throw LMDBError(code: MDB_CORRUPTED, operation: "open (data.mdb holds \(size) bytes, its meta page needs \(needed): truncated)", path: path)
                }
            }
            self.mapSize = max(mapSize, info.me_mapsize)
        } catch {
            // A failed open must release the handle before throwing (see ENVIRONMENT.md §4).
            mdb_env_close(handle)
            throw error
        }
        self.env = handle
        self.path = path
        pthread_rwlock_init(&resizeLock, nil)
    }

    deinit {
        mdb_env_close(env)
        pthread_rwlock_destroy(&resizeLock)
    }

    /// Runs `body` in a read-only transaction. Bytes borrowed from the map are valid only inside.
    func read<T>(_ body: (Transaction) throws -> T) throws -> T {
        try transaction(readOnly: true, commit: false, body)
    }

    /// Opens named databases in a read-only transaction and keeps their handles: lmdb.h says a
    /// handle opened in a transaction "will be private to the current transaction until the
    /// transaction is successfully committed. If the transaction is aborted the handle will be
    /// closed automatically", so this one commits.
    func openDatabases<T>(_ body: (Transaction) throws -> T) throws -> T {
        try transaction(readOnly: true, commit: true, body)
    }

    /// Runs `body` in a write transaction; a return commits (with fsync unless opened `noSync`),
    /// a throw aborts. Call only from the store's writer thread.
    func write<T>(_ body: (Transaction) throws -> T) throws -> T {
        try transaction(readOnly: false, commit: true, body)
    }

    /// One transaction, holding `resizeLock` shared throughout. When another process grew the
    /// map (MDB_MAP_RESIZED at begin), adopts the new size and begins again.
    private func transaction<T>(readOnly: Bool, commit: Bool, _ body: (Transaction) throws -> T) throws -> T {
        while true {
            pthread_rwlock_rdlock(&resizeLock)
            let txn: Transaction
            do {
                txn = try begin(flags: readOnly ? UInt32(MDB_RDONLY) : 0)
            } catch let error where error.isMapResized {
                pthread_rwlock_unlock(&resizeLock)
                try adoptMapSize()
                continue
            } catch {
                pthread_rwlock_unlock(&resizeLock)
                throw error
            }
            defer { pthread_rwlock_unlock(&resizeLock) }
            let result: T
            do {
                result = try body(txn)
            } catch {
                mdb_txn_abort(txn.txn!)
                throw error
            }
            if commit {
                try check(mdb_txn_commit(txn.txn!), readOnly ? "commit (open databases)" : "commit", path: path)
            } else {
                mdb_txn_abort(txn.txn!)
            }
            return result
        }
    }

    private func begin(flags: UInt32) throws(LMDBError) -> Transaction {
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, flags, &txn), "mdb_txn_begin", path: path)
        return Transaction(lmdb: txn!, environment: self)
    }

    /// Grows the map to at least `minimum` bytes (doubling), holding off every transaction of this
    /// process while it does.
    func grow(minimum: Int? = nil) throws(LMDBError) {
        pthread_rwlock_wrlock(&resizeLock)
        defer { pthread_rwlock_unlock(&resizeLock) }
        var info = MDB_envinfo()
        try check(mdb_env_info(env, &info), "mdb_env_info", path: path)
        let target = max(minimum ?? 0, max(info.me_mapsize, mapSize) * 2)
        try check(mdb_env_set_mapsize(env, target), "mdb_env_set_mapsize", path: path)
        mapSize = target
    }

    /// Adopts a map size set by another process (after MDB_MAP_RESIZED).
    func adoptMapSize() throws(LMDBError) {
        pthread_rwlock_wrlock(&resizeLock)
        defer { pthread_rwlock_unlock(&resizeLock) }
        try check(mdb_env_set_mapsize(env, 0), "mdb_env_set_mapsize", path: path)
        var info = MDB_envinfo()
        try check(mdb_env_info(env, &info), "mdb_env_info", path: path)
        mapSize = info.me_mapsize
    }

    /// Opens a named database, creating it when `create` is set (only inside a write transaction).
    func openDatabase(_ name: String, in txn: Transaction, create: Bool, flags: Int32 = 0) throws(LMDBError) -> Database? {
        var dbi: MDB_dbi = 0
        let rc = mdb_dbi_open(txn.txn, name, UInt32(flags) | (create ? UInt32(MDB_CREATE) : 0), &dbi)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "open database '\(name)'", path: path)
        return Database(dbi: dbi)
    }

    /// The id of the last committed write transaction, by any process (read from the meta pages
    /// in the map: no system call).
    var lastTransactionID: Int {
        var info = MDB_envinfo()
        guard (withResizeLockShared { mdb_env_info(env, &info) }) == 0 else { return -1 }
        return info.me_last_txnid
    }

    /// Bytes used by the data file (pages in use × page size).
    func usedBytes() throws -> Int {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        let (rcInfo, rcStat) = withResizeLockShared { (mdb_env_info(env, &info), mdb_env_stat(env, &stat)) }
        try check(rcInfo, "mdb_env_info", path: path)
        try check(rcStat, "mdb_env_stat", path: path)
        return (info.me_last_pgno + 1) * Int(stat.ms_psize)
    }

    /// `mdb_env_info` and `mdb_env_stat` read the meta pages through the map, which a resize in
    /// this process unmaps and maps again (possibly elsewhere): outside a transaction, they must
    /// hold resizes off.
    private func withResizeLockShared<T>(_ body: () -> T) -> T {
        pthread_rwlock_rdlock(&resizeLock)
        defer { pthread_rwlock_unlock(&resizeLock) }
        return body()
    }

    func clearStaleReaders() throws -> Int {
        var dead: Int32 = 0
        try check(mdb_reader_check(env, &dead), "mdb_reader_check", path: path)
        return Int(dead)
    }
}

/// The size of a file in bytes, or nil when it cannot be examined.
func fileSize(_ path: String) -> Int? {
    var st = stat()
    guard stat(path, &st) == 0 else { return nil }
    return Int(st.st_size)
}
