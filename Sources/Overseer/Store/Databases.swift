import CLMDB

/// The named databases of one store environment. See docs/ARCHITECTURE.md for each one's keys.
struct Databases: Sendable {
    /// position (8 bytes, big-endian) → the fact's line (canonical JSON with its hash).
    let facts: Database
    /// name → value: `format`, `head`.
    let meta: Database
    /// job id → ``JobState`` (binary).
    let jobs: Database
    /// run id → ``RunState`` (binary).
    let runs: Database
    /// ``ReadyEntry/key`` → ``ReadyEntry/value``.
    let ready: Database
    /// job type → live claims (8 bytes).
    let active: Database
    /// job id · 0x00 · position → empty. History of a job.
    let byJob: Database
    /// run id · 0x00 · position → empty. History and as-of of a run.
    let byRun: Database
    /// time (8 bytes, sign-flipped big-endian) · position → empty.
    let byTime: Database
    /// fact id → position. Makes an append with a known id a no-op.
    let factIDs: Database
    /// job id → lease (worker, claim revision, expiry). Liveness only, not history; rewritten freely.
    let leases: Database
    /// job id → parents not finished yet (8 bytes); absent when 0. View: drives `ready`.
    let waiting: Database
    /// run id → the run's args (canonical JSON), copied from `run.created` so a claim need not
    /// parse the whole run.created fact (which also holds the graph). Index.
    let runArgs: Database

    static let names = ["facts", "meta", "jobs", "runs", "ready", "active", "by_job", "by_run", "by_time", "fact_ids", "leases", "waiting", "run_args"]

    init(open: (String) throws -> Database) rethrows {
        facts = try open("facts")
        meta = try open("meta")
        jobs = try open("jobs")
        runs = try open("runs")
        ready = try open("ready")
        active = try open("active")
        byJob = try open("by_job")
        byRun = try open("by_run")
        byTime = try open("by_time")
        factIDs = try open("fact_ids")
        leases = try open("leases")
        waiting = try open("waiting")
        runArgs = try open("run_args")
    }

    /// The views that a re-fold must reproduce exactly (leases are not among them).
    var views: [(String, Database)] {
        [("jobs", jobs), ("runs", runs), ("ready", ready), ("active", active), ("waiting", waiting)]
    }
}

enum Keys {
    static func position(_ p: UInt64) -> [UInt8] {
        var k = [UInt8]()
        k.reserveCapacity(8)
        k.appendBigEndian(p)
        return k
    }

    static func prefixed(_ id: String, _ p: UInt64) -> [UInt8] {
        var k = Array(id.utf8)
        k.append(0)
        k.appendBigEndian(p)
        return k
    }

    static func prefix(_ id: String) -> [UInt8] {
        var k = Array(id.utf8)
        k.append(0)
        return k
    }

    static func time(_ t: Instant, _ p: UInt64) -> [UInt8] {
        var k = [UInt8]()
        k.reserveCapacity(16)
        k.appendBigEndian(UInt64(bitPattern: t.microseconds) ^ (1 << 63))
        k.appendBigEndian(p)
        return k
    }

    static let format = Array("format".utf8)
    static let head = Array("head".utf8)
}

/// The store's format marker. A store records it at creation; opening checks it.
enum StoreFormat {
    static let magic = "overseer-log"
    static let version = 1

    static var encoded: [UInt8] { Array("\(magic) \(version)".utf8) }
}

/// The log's tail, kept in `meta/head`: position, hash and time of the last fact.
struct Head: Sendable, Equatable {
    var position: UInt64
    var hash: Digest
    var time: Instant

    static let empty = Head(position: 0, hash: .zero, time: Instant(microseconds: Int64.min))

    var encoded: [UInt8] {
        var b = Keys.position(position)
        b.append(contentsOf: hash.bytes)
        b.appendBigEndian(UInt64(bitPattern: time.microseconds))
        return b
    }

    init(position: UInt64, hash: Digest, time: Instant) {
        self.position = position
        self.hash = hash
        self.time = time
    }

    init(decoding b: UnsafeRawBufferPointer) throws(ViewCorruption) {
        guard b.count == 48 else { throw ViewCorruption(what: "head record of \(b.count) bytes") }
        position = readBigEndian64(b, at: 0)
        hash = Digest(bytes: Array(b[8..<40]))
        time = Instant(microseconds: Int64(bitPattern: readBigEndian64(b, at: 40)))
    }
}

/// The live views inside a write transaction: the fold's target when appending.
struct LMDBViews: FoldTarget {
    let txn: Transaction
    let dbs: Databases

    func job(_ id: String) throws -> JobState? {
        guard let b = try txn.get(dbs.jobs, Array(id.utf8)) else { return nil }
        return try JobState(decoding: b)
    }
    func putJob(_ job: JobState) throws { try txn.put(dbs.jobs, Array(job.id.utf8), job.encoded) }
    func run(_ id: String) throws -> RunState? {
        guard let b = try txn.get(dbs.runs, Array(id.utf8)) else { return nil }
        return try RunState(decoding: b)
    }
    func putRun(_ run: RunState) throws { try txn.put(dbs.runs, Array(run.id.utf8), run.encoded) }
    func insertReady(_ entry: ReadyEntry) throws { try txn.put(dbs.ready, entry.key, entry.value) }
    func removeReady(_ entry: ReadyEntry) throws {
        if try !txn.delete(dbs.ready, entry.key) {
            throw ViewCorruption(what: "ready entry of '\(entry.job)' missing")
        }
    }
    func active(_ type: String) throws -> Int { try counter(dbs.active, type) }
    func setActive(_ type: String, _ count: Int) throws { try setCounter(dbs.active, type, count) }
    func unfinishedParents(_ job: String) throws -> Int { try counter(dbs.waiting, job) }
    func setUnfinishedParents(_ job: String, _ count: Int) throws { try setCounter(dbs.waiting, job, count) }

    /// A count stored as 8 big-endian bytes; absent means 0.
    private func counter(_ db: Database, _ key: String) throws -> Int {
        guard let b = try txn.get(db, Array(key.utf8)), b.count == 8 else { return 0 }
        return Int(readBigEndian64(b))
    }

    private func setCounter(_ db: Database, _ key: String, _ count: Int) throws {
        if count == 0 {
            try txn.delete(db, Array(key.utf8))
        } else {
            try txn.put(db, Array(key.utf8), Keys.position(UInt64(count)))
        }
    }
}

/// Views held in memory: the target of as-of queries, replay and `verify()`.
public struct MemoryViews: Sendable, FoldTarget {
    public internal(set) var jobs: [String: JobState] = [:]
    public internal(set) var runs: [String: RunState] = [:]
    var ready: [[UInt8]: ReadyEntry] = [:]
    var activeByType: [String: Int] = [:]
    var waiting: [String: Int] = [:]

    public init() {}

    /// Each run's job ids, in creation order (so a run can be compared and dropped by verify).
    var jobsOfRun: [String: [String]] = [:]

    func job(_ id: String) -> JobState? { jobs[id] }
    mutating func putJob(_ job: JobState) {
        if jobs.updateValue(job, forKey: job.id) == nil { jobsOfRun[job.run, default: []].append(job.id) }
    }
    func run(_ id: String) -> RunState? { runs[id] }
    mutating func putRun(_ run: RunState) { runs[run.id] = run }
    mutating func insertReady(_ entry: ReadyEntry) { ready[entry.key] = entry }
    mutating func removeReady(_ entry: ReadyEntry) throws {
        if ready.removeValue(forKey: entry.key) == nil {
            throw ViewCorruption(what: "ready entry of '\(entry.job)' missing")
        }
    }
    func active(_ type: String) -> Int { activeByType[type] ?? 0 }
    mutating func setActive(_ type: String, _ count: Int) {
        activeByType[type] = count == 0 ? nil : count
    }
    func unfinishedParents(_ job: String) -> Int { waiting[job] ?? 0 }
    mutating func setUnfinishedParents(_ job: String, _ count: Int) {
        waiting[job] = count == 0 ? nil : count
    }

    /// Applies one fact.
    public mutating func apply(_ fact: Fact) throws {
        try Fold.apply(fact, to: &self)
    }

    /// The ready jobs in claim order.
    public var readyJobs: [String] {
        ready.sorted { $0.key.lexicographicallyPrecedes($1.key) }.map(\.value.job)
    }
}
