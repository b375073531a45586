import Foundation
import Overseer

/// One transaction on a PostgreSQL connection, seen by the core as ordered key-value spaces.
///
/// Writes are buffered and sent in multi-row statements: before any range scan or count (so
/// the server sees them) and before the commit. Reads look at the buffer first, then at what
/// this transaction already read (a write transaction holds the log's lock, so nobody else
/// changes those rows meanwhile), then at the server.
///
/// Buffers handed out by `get` live in a ring of the most recent ones. The core decodes or
/// copies every buffer at once (see `Transaction`), so a ring of 256 is ample and keeps a long
/// read (a verify over millions of facts) from holding every value it ever looked at.
final class PostgresTransaction: BackendTransaction {
    let connection: PGConnection
    let writable: Bool
    private let store: String

    /// Pending writes per space: nil deletes.
    private var pending: [Int: [[UInt8]: [UInt8]?]] = [:]
    private var pendingOrder: [(Int, [UInt8])] = []
    private var pendingFacts: [(fact: Fact, line: [UInt8])] = []
    /// What this write transaction has read or written, per space (nil: known absent).
    private var known: [Int: [[UInt8]: [UInt8]?]] = [:]
    private var ring: [UnsafeMutableRawBufferPointer] = []
    private var ringNext = 0
    private static let ringSize = 256
    /// Facts inserted by this transaction (its commit notifies listeners when nonzero).
    private(set) var insertedFacts = 0

    init(connection: PGConnection, writable: Bool, store: String) {
        self.connection = connection
        self.writable = writable
        self.store = store
    }

    deinit {
        for b in ring { b.deallocate() }
    }

    // MARK: BackendTransaction

    func get(_ space: Int, _ key: [UInt8]) throws -> UnsafeRawBufferPointer? {
        if let entry = pending[space]?[key] { return entry.map(hold) }
        if space == StoreLayout.factsSpace {
            let position = Self.position(key)
            if let p = pendingFacts.last(where: { $0.fact.position == position }) { return hold(p.line) }
            let r = try run("SELECT line FROM overseer_facts WHERE position = $1", [.int64(Int64(bitPattern: position))])
            return r.rowCount == 0 ? nil : hold(r.bytes(0, 0) ?? [])
        }
        if writable, let entry = known[space]?[key] { return entry.map(hold) }
        let r = try run("SELECT v FROM overseer_kv WHERE space = $1 AND k = $2", [.int32(Int32(space)), .bytes(key)])
        let value = r.rowCount == 0 ? nil : (r.bytes(0, 0) ?? [])
        if writable { known[space, default: [:]][key] = .some(value) }
        return value.map(hold)
    }

    /// Records a value this write transaction has already read from the server, so that `get`
    /// answers it without a round trip. Only for rows nobody else can change before the commit
    /// (the head row, read `FOR UPDATE`).
    func remember(_ space: Int, _ key: [UInt8], _ value: [UInt8]?) {
        guard writable, pending[space]?[key] == nil else { return }
        known[space, default: [:]][key] = .some(value)
    }

    func put(_ space: Int, _ key: [UInt8], _ value: [UInt8], noOverwrite: Bool) throws {
        try requireWritable()
        if noOverwrite, try get(space, key) != nil {
            throw StoreError(.invalid, path: store, "key already present in space '\(StoreLayout.spaces[space])'")
        }
        stage(space, key, value)
    }

    func delete(_ space: Int, _ key: [UInt8]) throws -> Bool {
        try requireWritable()
        guard try get(space, key) != nil else { return false }
        stage(space, key, nil)
        return true
    }

    func count(_ space: Int) throws -> Int {
        try flush()
        let r = space == StoreLayout.factsSpace
            ? try run("SELECT count(*) FROM overseer_facts", [])
            : try run("SELECT count(*) FROM overseer_kv WHERE space = $1", [.int32(Int32(space))])
        return Int(r.int64(0, 0) ?? 0)
    }

    func clear(_ space: Int) throws {
        try requireWritable()
        try flush()
        if space == StoreLayout.factsSpace {
            try run("DELETE FROM overseer_facts", [])
        } else {
            try run("DELETE FROM overseer_kv WHERE space = $1", [.int32(Int32(space))])
        }
        known[space] = nil
    }

    func forEach(
        _ space: Int, from start: [UInt8], to end: [UInt8]?, reverse: Bool,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try flush()
        if space == StoreLayout.factsSpace {
            return try forEachFact(from: start, to: end, reverse: reverse, body)
        }
        // Pages grow from small (a claim looks at the first few ready jobs) to large (a scan).
        var limit = 64
        var lower = start
        var lowerInclusive = true
        var upper = end
        while true {
            var sql = "SELECT k, v FROM overseer_kv WHERE space = $1"
            var params: [PGParam] = [.int32(Int32(space))]
            if !lower.isEmpty || !lowerInclusive {
                params.append(.bytes(lower))
                sql += " AND k \(lowerInclusive ? ">=" : ">") $\(params.count)"
            }
            if let upper {
                params.append(.bytes(upper))
                sql += " AND k < $\(params.count)"
            }
            sql += reverse ? " ORDER BY k DESC" : " ORDER BY k"
            sql += " LIMIT \(limit)"
            let r = try run(sql, params)
            var last: [UInt8]?
            for row in 0..<r.rowCount {
                let k = r.bytes(row, 0) ?? []
                let v = r.bytes(row, 1) ?? []
                let more = try k.withUnsafeBytes { kb in try v.withUnsafeBytes { vb in try body(kb, vb) } }
                if !more { return }
                last = k
            }
            guard r.rowCount == limit, let last else { return }
            if reverse { upper = last } else { lower = last; lowerInclusive = false }
            limit = min(limit * 4, 4096)
        }
    }

    func insertFact(_ fact: Fact, line: [UInt8]) throws {
        try requireWritable()
        pendingFacts.append((fact, line))
        if pendingFacts.count >= 500 { try flush() }
    }

    // MARK: Flushing

    /// Sends every buffered write to the server (still inside the transaction), in one statement:
    /// the DELETE of `overseer_kv` rows, their upsert and the facts INSERT as data-modifying CTEs
    /// of one INSERT. They run on one snapshot in no set order, which is safe because their rows
    /// are disjoint: a key appears once per flush (the dictionary holds its last value, a value or
    /// a delete), and the facts are another table. Past 1000 deletes, 1000 upserts or 500 facts
    /// the writes go in several such statements.
    func flush() throws {
        var upserts: [(Int, [UInt8], [UInt8])] = []
        var deletes: [(Int, [UInt8])] = []
        for (space, key) in pendingOrder {
            guard let entry = pending[space]?[key] else { continue }
            if let value = entry { upserts.append((space, key, value)) } else { deletes.append((space, key)) }
        }
        pending.removeAll(keepingCapacity: true)
        pendingOrder.removeAll(keepingCapacity: true)
        let facts = pendingFacts
        pendingFacts.removeAll(keepingCapacity: true)
        var d = 0, u = 0, f = 0
        while d < deletes.count || u < upserts.count || f < facts.count {
            let dn = min(1000, deletes.count - d), un = min(1000, upserts.count - u), fn = min(500, facts.count - f)
            var parts: [String] = []
            var params: [PGParam] = []
            if dn > 0 {
                var values: [String] = []
                for (space, key) in deletes[d..<d + dn] {
                    params.append(.int32(Int32(space)))
                    params.append(.bytes(key))
                    values.append("($\(params.count - 1)::smallint, $\(params.count)::bytea)")
                }
                parts.append("DELETE FROM overseer_kv WHERE (space, k) IN (VALUES \(values.joined(separator: ",")))")
            }
            if un > 0 {
                var values: [String] = []
                for (space, key, value) in upserts[u..<u + un] {
                    params.append(.int32(Int32(space)))
                    params.append(.bytes(key))
                    params.append(.bytes(value))
                    values.append("($\(params.count - 2)::smallint, $\(params.count - 1)::bytea, $\(params.count)::bytea)")
                }
                parts.append("INSERT INTO overseer_kv (space, k, v) VALUES \(values.joined(separator: ",")) ON CONFLICT (space, k) DO UPDATE SET v = EXCLUDED.v")
            }
            if fn > 0 {
                var values: [String] = []
                for (fact, line) in facts[f..<f + fn] {
                    let base = params.count
                    params.append(.int64(Int64(bitPattern: fact.position)))
                    params.append(.text(fact.id))
                    params.append(.int64(fact.time.microseconds))
                    params.append(.text(fact.kind.rawValue))
                    params.append(fact.run.map { .text($0) } ?? .null)
                    params.append(fact.job.map { .text($0) } ?? .null)
                    params.append(fact.revision.map { .int64(Int64($0)) } ?? .null)
                    params.append(.bytes(line))
                    values.append("(" + (1...8).map { "$\(base + $0)" }.joined(separator: ",") + ")")
                }
                parts.append("INSERT INTO overseer_facts (position, id, time_us, kind, run, job, revision, line) VALUES \(values.joined(separator: ","))")
            }
            // The last part is the main statement; the others run as CTEs of it.
            let main = parts.removeLast()
            let sql = parts.isEmpty ? main : "WITH " + parts.enumerated().map { "w\($0.offset) AS (\($0.element))" }.joined(separator: ", ") + " " + main
            try sendFlush(sql, params, deletes: dn, upserts: un, facts: fn)
            insertedFacts += fn
            d += dn
            u += un
            f += fn
        }
    }

    /// Runs one flush statement. It succeeds or fails as a whole; the server's error names the
    /// table (and constraint) it came from, which the message repeats.
    private func sendFlush(_ sql: String, _ params: [PGParam], deletes: Int, upserts: Int, facts: Int) throws {
        do {
            try connection.exec(sql, params)
        } catch let e where e.connectionLost {
            throw BackendUnavailable(commitUnknown: false, message: e.message)
        } catch {
            // overseer_kv's only unique key is the one its upsert resolves, so a unique violation
            // comes from the facts (position, id, or job and revision).
            if error.kind == .uniqueViolation, facts > 0, error.table != "overseer_kv" {
                throw StoreError(.io, path: store, "the database refused a fact: \(error.message). Another writer appended without holding the log's lock; nothing was written.")
            }
            var what: [String] = []
            if deletes > 0 { what.append("\(deletes) deletes") }
            if upserts > 0 { what.append("\(upserts) upserts") }
            if facts > 0 { what.append("\(facts) facts") }
            let table = error.table.map { " (in \($0))" } ?? ""
            throw StoreError(.io, path: store, "writing \(what.joined(separator: ", ")) in one statement failed\(table), so none of them was written: \(error.description)")
        }
    }

    // MARK: Helpers

    private func stage(_ space: Int, _ key: [UInt8], _ value: [UInt8]?) {
        if pending[space]?[key] == nil { pendingOrder.append((space, key)) }
        pending[space, default: [:]][key] = .some(value)
        known[space, default: [:]][key] = .some(value)
    }

    private func forEachFact(
        from start: [UInt8], to end: [UInt8]?, reverse: Bool,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        // Keys are 8-byte big-endian positions; bounds of other lengths round the right way.
        var low: Int64 = start.isEmpty ? 0 : Int64(bitPattern: Self.position(start)) + (start.count > 8 ? 1 : 0)
        var high: Int64? = end.map { Int64(bitPattern: Self.position($0)) + ($0.count > 8 ? 1 : 0) }
        var limit = 256
        while true {
            var sql = "SELECT position, line FROM overseer_facts WHERE position >= $1"
            var params: [PGParam] = [.int64(low)]
            if let high {
                params.append(.int64(high))
                sql += " AND position < $2"
            }
            sql += reverse ? " ORDER BY position DESC LIMIT \(limit)" : " ORDER BY position LIMIT \(limit)"
            let r = try run(sql, params)
            var last: Int64?
            for row in 0..<r.rowCount {
                let p = r.int64(row, 0) ?? 0
                var key = [UInt8]()
                key.reserveCapacity(8)
                for shift in stride(from: 56, through: 0, by: -8) { key.append(UInt8(truncatingIfNeeded: UInt64(bitPattern: p) >> UInt64(shift))) }
                let more = try r.withBytes(row, 1) { line in try key.withUnsafeBytes { kb in try body(kb, line) } } ?? true
                if !more { return }
                last = p
            }
            guard r.rowCount == limit, let last else { return }
            if reverse { high = last } else { low = last + 1 }
            limit = min(limit * 4, 8192)
        }
    }

    private func hold(_ bytes: [UInt8]) -> UnsafeRawBufferPointer {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
        if ring.count < Self.ringSize {
            ring.append(buffer)
        } else {
            ring[ringNext].deallocate()
            ring[ringNext] = buffer
            ringNext = (ringNext + 1) % Self.ringSize
        }
        return UnsafeRawBufferPointer(start: buffer.baseAddress, count: bytes.count)
    }

    private func requireWritable() throws {
        if !writable { throw StoreError(.readOnly, path: store, "a write was attempted in a read transaction") }
    }

    @discardableResult
    private func run(_ sql: String, _ params: [PGParam]) throws -> PGResult {
        do {
            return try connection.exec(sql, params)
        } catch let e where e.connectionLost {
            throw BackendUnavailable(commitUnknown: false, message: e.message)
        } catch {
            throw StoreError(.io, path: store, error.description)
        }
    }

    /// The position a facts-space key names (big-endian; shorter keys are padded with zeros).
    static func position(_ key: [UInt8]) -> UInt64 {
        var p: UInt64 = 0
        for i in 0..<8 { p = (p << 8) | UInt64(i < key.count ? key[i] : 0) }
        return p
    }
}
