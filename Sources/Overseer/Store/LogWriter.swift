import Foundation

/// The outcome of a compare-and-append. A conflict is a normal outcome, not an error.
public enum AppendOutcome: Sendable, Hashable {
    /// The fact is in the log.
    case appended(Fact)
    /// The job's tail was not at the expected revision; nothing was written.
    case conflict(expected: UInt64, actual: UInt64)
    /// A fact with the same id was already in the log (a retried append); nothing was written.
    case duplicate(Fact)

    /// The fact, when appended or already present.
    public var fact: Fact? {
        switch self {
        case .appended(let f), .duplicate(let f): return f
        case .conflict: return nil
        }
    }

    public var isConflict: Bool {
        if case .conflict = self { return true }
        return false
    }
}

/// A lease: who holds a job's claim and until when. Renewed by heartbeats without growing the
/// log; only its expiry, judged by a compare-and-append `job.released`, becomes a fact.
public struct Lease: Sendable, Hashable {
    public var worker: String
    /// The job revision of the claim this lease belongs to.
    public var revision: UInt64
    public var expires: Instant
}

/// Access to the log inside one write transaction, on the store's writer thread.
///
/// Everything done through one `LogWriter` is atomic: a request that throws leaves no trace,
/// and does not disturb the other requests that share its transaction and fsync. It is valid only
/// inside the closure that received it.
public struct LogWriter {
    var txn: Transaction
    let dbs: Databases
    var head: Head
    let path: String
    /// The id of the first fact appended by this writer: lets the committer tell, after a lost
    /// connection, whether the transaction committed.
    var firstAppendedID: String?

    /// The position of the last fact.
    public var lastPosition: UInt64 { head.position }

    /// The instant the next fact will carry: now, or the last fact's time if the clock went back.
    public var now: Instant { max(Instant.now(), head.time) }

    var views: LMDBViews { LMDBViews(txn: txn, dbs: dbs) }

    public func job(_ id: String) throws -> JobState? { try views.job(id) }
    public func run(_ id: String) throws -> RunState? { try views.run(id) }
    public func active(type: String) throws -> Int { try views.active(type) }

    public func fact(at position: UInt64) throws -> Fact? {
        guard let b = try txn.get(dbs.facts, Keys.position(position)) else { return nil }
        return try Fact.decodeTrusted(b)
    }

    public func lease(of job: String) throws -> Lease? {
        guard let b = try txn.get(dbs.leases, Array(job.utf8)) else { return nil }
        var r = ByteReader(b)
        return Lease(worker: try r.string(), revision: try r.u64(), expires: Instant(microseconds: try r.i64()))
    }

    public func setLease(_ lease: Lease, of job: String) throws {
        var w = ByteWriter()
        w.string(lease.worker)
        w.u64(lease.revision)
        w.i64(lease.expires.microseconds)
        try txn.put(dbs.leases, Array(job.utf8), w.bytes)
    }

    public func removeLease(of job: String) throws {
        try txn.delete(dbs.leases, Array(job.utf8))
    }

    /// Calls `body` with ready jobs in claim order (priority, then first ready) until it returns
    /// false. `notBefore` is the retry-delay instant, if any.
    public func forEachReady(_ body: (_ job: String, _ type: String, _ notBefore: Instant?) throws -> Bool) throws {
        try txn.forEach(dbs.ready) { _, v in
            let (type, nb, job) = try ReadyEntry.decodeValue(v)
            return try body(job, type, nb == 0 ? nil : Instant(microseconds: nb))
        }
    }

    /// Calls `body` for every lease, until it returns false.
    public func forEachLease(_ body: (_ job: String, _ lease: Lease) throws -> Bool) throws {
        try txn.forEach(dbs.leases) { k, v in
            var r = ByteReader(v)
            let lease = Lease(worker: try r.string(), revision: try r.u64(), expires: Instant(microseconds: try r.i64()))
            return try body(String(decoding: k, as: UTF8.self), lease)
        }
    }

    /// Appends one fact. For facts that advance a job's revision, `expecting` is the revision the
    /// caller saw (0 for a job that does not exist yet), and the append happens only if the job's
    /// tail is still there. For other facts pass nil.
    public mutating func append(_ draft: FactDraft, expecting: UInt64?) throws -> AppendOutcome {
        if let existing = try txn.get(dbs.factIDs, Array(draft.id.utf8)) {
            let position = readBigEndian64(existing)
            guard let fact = try fact(at: position) else {
                throw StoreError(.corrupt, path: path, "fact id \(draft.id) points at missing position \(position)")
            }
            return .duplicate(fact)
        }
        var revision: UInt64? = nil
        if draft.kind.advancesRevision {
            guard let jobID = draft.job else {
                throw StoreError(.invalid, path: path, "\(draft.kind) needs a job id")
            }
            let current = try views.job(jobID)?.revision ?? 0
            guard let expecting else {
                throw StoreError(.invalid, path: path, "\(draft.kind) of '\(jobID)' needs an expected revision")
            }
            if current != expecting { return .conflict(expected: expecting, actual: current) }
            revision = current + 1
        } else if expecting != nil {
            throw StoreError(.invalid, path: path, "\(draft.kind) does not take an expected revision")
        }
        guard case .object = draft.data else {
            throw StoreError(.invalid, path: path, "a fact's data must be a JSON object")
        }
        // The line must parse back: the fact object and its data take two of the parser's levels.
        let depth = draft.data.depth
        if depth > JSONValue.maximumDepth - 2 {
            throw StoreError(.invalid, path: path, "a \(draft.kind) fact's data is nested \(depth) levels deep; the limit is \(JSONValue.maximumDepth - 2)")
        }
        let position = head.position + 1
        let time = now
        let (fact, line) = Fact.make(position: position, time: time, draft: draft, revision: revision, prev: head.hash)
        if line.count > LogStore.maximumFactSize {
            throw StoreError(.invalid, path: path, "a \(draft.kind) fact of \(line.count) bytes exceeds the limit of \(LogStore.maximumFactSize) bytes; keep large payloads outside the log and record a reference")
        }
        var v = views
        try Fold.apply(fact, to: &v)
        try txn.appendFact(dbs.facts, fact, line: line)
        try writeIndexes(of: fact)
        head = Head(position: position, hash: fact.hash, time: time)
        if firstAppendedID == nil { firstAppendedID = fact.id }
        return .appended(fact)
    }

    /// The indexes of one fact: by id, time, job, run, and the run's args.
    func writeIndexes(of fact: Fact) throws {
        let pkey = Keys.position(fact.position)
        try txn.put(dbs.factIDs, Array(fact.id.utf8), pkey, noOverwrite: true)
        try txn.put(dbs.byTime, Keys.time(fact.time, fact.position), [], append: true)
        if let job = fact.job { try txn.put(dbs.byJob, Keys.prefixed(job, fact.position), []) }
        if let run = fact.run {
            try txn.put(dbs.byRun, Keys.prefixed(run, fact.position), [])
            if fact.kind == .runCreated {
                try txn.put(dbs.runArgs, Array(run.utf8), (fact.data["args"] ?? .object([:])).canonicalBytes)
            }
        }
    }

    /// A run's args, as recorded at its creation.
    public func args(ofRun run: String) throws -> JSONValue {
        guard let b = try txn.get(dbs.runArgs, Array(run.utf8)) else { return .object([:]) }
        do {
            return try JSONValue.parse(b)
        } catch {
            throw StoreError(.corrupt, path: path, "the args of run '\(run)' cannot be read: \(error)")
        }
    }

    /// Appends several facts atomically: all of them, or (on the first conflict) none. The
    /// expected revisions are all checked before anything is written (a job may appear more than
    /// once: each later item expects the revision the earlier ones leave).
    public mutating func appendAll(_ items: [(FactDraft, expecting: UInt64?)]) throws -> AppendBatchOutcome {
        var planned: [String: UInt64] = [:]
        for (index, (draft, expecting)) in items.enumerated() {
            guard draft.kind.advancesRevision, let job = draft.job, let expecting else { continue }
            let current: UInt64
            if let p = planned[job] {
                current = p
            } else {
                current = try views.job(job)?.revision ?? 0
            }
            if current != expecting { return .conflict(index: index, expected: expecting, actual: current) }
            planned[job] = current + 1
        }
        // Nothing below returns a conflict; an error thrown part-way fails the whole request,
        // and the writer re-runs the batch without it, so no partial write survives.
        var facts: [Fact] = []
        facts.reserveCapacity(items.count)
        for (draft, expecting) in items {
            switch try append(draft, expecting: expecting) {
            case .appended(let f), .duplicate(let f): facts.append(f)
            case .conflict(let e, let a):
                throw StoreError(.io, path: path, "\(draft.job ?? "?") moved from revision \(e) to \(a) inside one request")
            }
        }
        return .appended(facts)
    }
}


/// The outcome of an atomic multi-fact append.
public enum AppendBatchOutcome: Sendable, Hashable {
    case appended([Fact])
    /// The item at `index` met a different revision; nothing was written.
    case conflict(index: Int, expected: UInt64, actual: UInt64)

    public var facts: [Fact]? {
        if case .appended(let f) = self { return f }
        return nil
    }
}
