import CLMDB
import Foundation

/// A live store transaction, valid only inside the closure that received it: an LMDB
/// transaction, or one of a ``StoreBackend`` (PostgreSQL). Everything above the storage layer
/// (the writer, the fold, verify, export) works through this one type.
///
/// Buffers returned by ``get(_:_:)`` and cursors point into the memory map (or the backend's
/// transaction buffers); they are valid until the transaction ends or the same key is written,
/// so callers decode or copy them at once.
struct Transaction {
    /// The LMDB transaction; nil for a backend transaction.
    let txn: OpaquePointer?
    let backend: (any BackendTransaction)?
    let path: String

    init(lmdb txn: OpaquePointer, environment: Environment) {
        self.txn = txn
        self.backend = nil
        self.path = environment.path
    }

    init(backend: any BackendTransaction, path: String) {
        self.txn = nil
        self.backend = backend
        self.path = path
    }

    func get(_ db: Database, _ key: [UInt8]) throws -> UnsafeRawBufferPointer? {
        guard let txn else { return try backend!.get(Int(db.dbi), key) }
        var result: UnsafeRawBufferPointer?
        var rc: Int32 = 0
        key.withUnsafeBytes { k in
            var mk = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            var mv = MDB_val()
            rc = mdb_get(txn, db.dbi, &mk, &mv)
            if rc == MDB_SUCCESS { result = UnsafeRawBufferPointer(start: mv.mv_data, count: mv.mv_size) }
        }
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "get", path: path)
        return result
    }

    func getBytes(_ db: Database, _ key: [UInt8]) throws -> [UInt8]? {
        guard let buffer = try get(db, key) else { return nil }
        return Array(buffer)
    }

    /// Writes `value` under `key`. `append` uses MDB_APPEND, which fails with MDB_KEYEXIST unless
    /// the key sorts after every existing key; the log relies on it to refuse out-of-order positions.
    func put(_ db: Database, _ key: [UInt8], _ value: [UInt8], append: Bool = false, noOverwrite: Bool = false) throws {
        // A backend has no MDB_APPEND; the keys put with `append` (a new fact's position in the
        // time index) cannot exist yet under the log's write lock, so they need no check.
        guard let txn else { return try backend!.put(Int(db.dbi), key, value, noOverwrite: noOverwrite) }
        var flags: UInt32 = 0
        if append { flags |= UInt32(MDB_APPEND) }
        if noOverwrite { flags |= UInt32(MDB_NOOVERWRITE) }
        var rc: Int32 = 0
        key.withUnsafeBytes { k in
            value.withUnsafeBytes { v in
                var mk = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
                var mv = MDB_val(mv_size: v.count, mv_data: UnsafeMutableRawPointer(mutating: v.baseAddress))
                rc = mdb_put(txn, db.dbi, &mk, &mv, flags)
            }
        }
        try check(rc, "put", path: path)
    }

    /// Stores a fact's line under its position, after every existing position.
    func appendFact(_ db: Database, _ fact: Fact, line: [UInt8]) throws {
        if let backend { return try backend.insertFact(fact, line: line) }
        try put(db, Keys.position(fact.position), line, append: true)
    }

    /// Deletes `key`; returns false when it was not there.
    @discardableResult
    func delete(_ db: Database, _ key: [UInt8]) throws -> Bool {
        guard let txn else { return try backend!.delete(Int(db.dbi), key) }
        var rc: Int32 = 0
        key.withUnsafeBytes { k in
            var mk = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            rc = mdb_del(txn, db.dbi, &mk, nil)
        }
        if rc == MDB_NOTFOUND { return false }
        try check(rc, "delete", path: path)
        return true
    }

    func count(_ db: Database) throws -> Int {
        guard let txn else { return try backend!.count(Int(db.dbi)) }
        var stat = MDB_stat()
        try check(mdb_stat(txn, db.dbi, &stat), "mdb_stat", path: path)
        return stat.ms_entries
    }

    /// Removes every entry of `db` (the database itself stays).
    func clear(_ db: Database) throws {
        guard let txn else { return try backend!.clear(Int(db.dbi)) }
        try check(mdb_drop(txn, db.dbi, 0), "mdb_drop", path: path)
    }

    /// Calls `body` for each entry whose key is `>= start` (and `< end` when given), in key order,
    /// until it returns false.
    func forEach(
        _ db: Database, from start: [UInt8] = [], to end: [UInt8]? = nil, reverse: Bool = false,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        if let backend { return try backend.forEach(Int(db.dbi), from: start, to: end, reverse: reverse, body) }
        let cursor = try Cursor(self, db)
        defer { cursor.close() }
        if reverse {
            var entry = try end.map { e throws -> (UnsafeRawBufferPointer, UnsafeRawBufferPointer)? in
                // Position before `end`: seek to the first key >= end, then step back.
                if try cursor.seek(e) != nil { return try cursor.step(MDB_PREV) }
                return try cursor.step(MDB_LAST)
            } ?? cursor.step(MDB_LAST)
            while let (k, v) = entry {
                if !start.isEmpty, compare(k, start) < 0 { return }
                if try !body(k, v) { return }
                entry = try cursor.step(MDB_PREV)
            }
            return
        }
        var entry = start.isEmpty ? try cursor.step(MDB_FIRST) : try cursor.seek(start)
        while let (k, v) = entry {
            if let end, compare(k, end) >= 0 { return }
            if try !body(k, v) { return }
            entry = try cursor.step(MDB_NEXT)
        }
    }
}

/// Byte-wise comparison, the same order LMDB uses for keys by default.
func compare(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> Int {
    let n = min(a.count, b.count)
    if n > 0 {
        let r = b.withUnsafeBytes { bb in memcmp(a.baseAddress!, bb.baseAddress!, n) }
        if r != 0 { return Int(r) }
    }
    return a.count - b.count
}

final class Cursor {
    let cursor: OpaquePointer
    let path: String

    init(_ txn: Transaction, _ db: Database) throws(LMDBError) {
        var c: OpaquePointer?
        try check(mdb_cursor_open(txn.txn!, db.dbi, &c), "mdb_cursor_open", path: txn.path)
        cursor = c!
        path = txn.path
    }

    func close() { mdb_cursor_close(cursor) }

    func step(_ op: MDB_cursor_op) throws(LMDBError) -> (UnsafeRawBufferPointer, UnsafeRawBufferPointer)? {
        var k = MDB_val()
        var v = MDB_val()
        let rc = mdb_cursor_get(cursor, &k, &v, op)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "cursor", path: path)
        return (UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size), UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }

    func seek(_ key: [UInt8]) throws(LMDBError) -> (UnsafeRawBufferPointer, UnsafeRawBufferPointer)? {
        var rc: Int32 = 0
        var k = MDB_val()
        var v = MDB_val()
        key.withUnsafeBytes { kb in
            k = MDB_val(mv_size: kb.count, mv_data: UnsafeMutableRawPointer(mutating: kb.baseAddress))
            rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
        }
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "cursor seek", path: path)
        return (UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size), UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }
}
