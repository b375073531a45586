import CLMDB
import Foundation

/// The baseline: plain LMDB, opened as Overseer opens its store (MDB_NOTLS, fsync on every
/// commit: no MDB_NOSYNC, no MDB_WRITEMAP), in its own temp directory, writing ~300-byte values
/// under ascending 8-byte keys. Everything runs on the calling thread (a write transaction begins
/// and commits without an await in between).
final class RawLMDB {
    let path: String
    private let env: OpaquePointer
    private let dbi: MDB_dbi
    /// Further named databases, for `putSpread`.
    private var spread: [MDB_dbi] = []
    private var nextKey: UInt64 = 1
    private var value: [UInt8]

    static let valueSize = 300

    /// `databases` > 1 also opens that many named databases, for ``putSpread(commits:)``.
    init(path: String, mapSize: Int = 4 << 30, databases: Int = 1) throws {
        self.path = path
        guard mkdir(path, 0o700) == 0 else { throw BenchError("mkdir \(path): \(String(cString: strerror(errno)))") }
        var handle: OpaquePointer?
        try RawLMDB.check(mdb_env_create(&handle), "mdb_env_create")
        env = handle!
        try RawLMDB.check(mdb_env_set_mapsize(env, mapSize), "mdb_env_set_mapsize")
        try RawLMDB.check(mdb_env_set_maxdbs(env, MDB_dbi(max(databases, 1) + 1)), "mdb_env_set_maxdbs")
        try RawLMDB.check(mdb_env_open(env, path, UInt32(MDB_NOTLS), 0o600), "mdb_env_open")
        var txn: OpaquePointer?
        try RawLMDB.check(mdb_txn_begin(env, nil, 0, &txn), "mdb_txn_begin")
        var d: MDB_dbi = 0
        try RawLMDB.check(mdb_dbi_open(txn, nil, 0, &d), "mdb_dbi_open")
        if databases > 1 {
            for i in 0..<databases {
                var named: MDB_dbi = 0
                try RawLMDB.check(mdb_dbi_open(txn, "d\(i)", UInt32(MDB_CREATE), &named), "mdb_dbi_open")
                spread.append(named)
            }
        }
        try RawLMDB.check(mdb_txn_commit(txn), "mdb_txn_commit")
        dbi = d
        // A JSON-ish 300-byte value, roughly what a fact line looks like.
        let text = "{\"position\":0,\"kind\":\"job.claimed\",\"data\":{\"lease_ms\":30000},\"prev\":\""
        value = Array(text.utf8)
        while value.count < RawLMDB.valueSize { value.append(UInt8(ascii: "0") + UInt8(value.count % 10)) }
    }

    deinit { mdb_env_close(env) }

    /// Writes `records` values, `perCommit` puts per durable commit. Returns seconds taken.
    func put(records: Int, perCommit: Int) throws -> Double {
        let (_, seconds) = try measure {
            var left = records
            while left > 0 {
                let n = min(perCommit, left)
                var txn: OpaquePointer?
                try RawLMDB.check(mdb_txn_begin(env, nil, 0, &txn), "mdb_txn_begin")
                for _ in 0..<n {
                    var key = nextKey.bigEndian
                    nextKey += 1
                    let rc = withUnsafeMutableBytes(of: &key) { k in
                        value.withUnsafeMutableBytes { v in
                            var kv = MDB_val(mv_size: k.count, mv_data: k.baseAddress)
                            var vv = MDB_val(mv_size: v.count, mv_data: v.baseAddress)
                            return mdb_put(txn, dbi, &kv, &vv, UInt32(MDB_APPEND))
                        }
                    }
                    if rc != 0 {
                        mdb_txn_abort(txn)
                        try RawLMDB.check(rc, "mdb_put")
                    }
                }
                try RawLMDB.check(mdb_txn_commit(txn), "mdb_txn_commit")
                left -= n
            }
        }
        return seconds
    }

    /// `commits` durable commits, each putting one record into every named database (ascending
    /// keys, the cheapest case for LMDB). What one fact's commit costs LMDB when it touches as many
    /// trees as an Overseer fact does (the log, its indexes and the views). Returns seconds taken.
    func putSpread(commits: Int) throws -> Double {
        try putSpread(commits: commits, perCommit: 1, scattered: false)
    }

    /// `commits` durable commits of `perCommit` record sets each: one record into every named
    /// database per set. With `scattered`, every other database gets its key from a
    /// multiplicative hash of the sequence number instead of the next ascending key, as the
    /// views and the per-job and per-run indexes do when the facts of one commit belong to
    /// different jobs. Returns seconds taken.
    func putSpread(commits: Int, perCommit: Int, scattered: Bool) throws -> Double {
        let (_, seconds) = try measure {
            for _ in 0..<commits {
                var txn: OpaquePointer?
                try RawLMDB.check(mdb_txn_begin(env, nil, 0, &txn), "mdb_txn_begin")
                for _ in 0..<perCommit {
                    let sequence = nextKey
                    nextKey += 1
                    for (index, db) in spread.enumerated() {
                        let spreadOut = scattered && index % 2 == 1
                        var key = spreadOut ? (sequence &* 0x9E37_79B9_7F4A_7C15).bigEndian : sequence.bigEndian
                        let rc = withUnsafeMutableBytes(of: &key) { k in
                            value.withUnsafeMutableBytes { v in
                                var kv = MDB_val(mv_size: k.count, mv_data: k.baseAddress)
                                var vv = MDB_val(mv_size: 100, mv_data: v.baseAddress)
                                return mdb_put(txn, db, &kv, &vv, spreadOut ? 0 : UInt32(MDB_APPEND))
                            }
                        }
                        if rc != 0 {
                            mdb_txn_abort(txn)
                            try RawLMDB.check(rc, "mdb_put")
                        }
                    }
                }
                try RawLMDB.check(mdb_txn_commit(txn), "mdb_txn_commit")
            }
        }
        return seconds
    }

    private static func check(_ rc: Int32, _ op: String) throws {
        if rc != 0 { throw BenchError("\(op): \(String(cString: mdb_strerror(rc)))") }
    }
}
