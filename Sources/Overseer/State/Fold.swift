/// Where a fold keeps its views. Two implementations: the LMDB databases of a store (updated in
/// the same write transaction as the facts) and ``MemoryViews`` (for as-of queries, replay and
/// `verify()`). Both run the same ``Fold``, so the views are one pure function of the facts.
protocol FoldTarget {
    mutating func job(_ id: String) throws -> JobState?
    mutating func putJob(_ job: JobState) throws
    mutating func run(_ id: String) throws -> RunState?
    mutating func putRun(_ run: RunState) throws
    mutating func insertReady(_ entry: ReadyEntry) throws
    mutating func removeReady(_ entry: ReadyEntry) throws
    /// Live claims of a job type, across all runs.
    mutating func active(_ type: String) throws -> Int
    mutating func setActive(_ type: String, _ count: Int) throws
    /// Parents of a job that have not finished yet (kept apart from the job's record, so a job
    /// waiting for many parents is not rewritten each time one of them finishes).
    mutating func unfinishedParents(_ job: String) throws -> Int
    mutating func setUnfinishedParents(_ job: String, _ count: Int) throws
    /// ``job(_:)`` for a job the fold then puts back, unless it throws. A target may hand the
    /// record over instead of a copy (and keep nothing until the put), so the fold must not read
    /// that job again before putting it; after a throw such a target is not used again.
    mutating func takeJob(_ id: String) throws -> JobState?
    /// ``run(_:)`` on the same terms as ``takeJob(_:)``.
    mutating func takeRun(_ id: String) throws -> RunState?
}

extension FoldTarget {
    mutating func takeJob(_ id: String) throws -> JobState? { try job(id) }
    mutating func takeRun(_ id: String) throws -> RunState? { try run(id) }
}

/// A fact that cannot follow the facts before it (a broken transition). The store refuses to
/// append it; `verify()` reports it as a violation.
public struct FoldError: Error, Sendable, Equatable, CustomStringConvertible {
    public let position: UInt64
    public let message: String
    public var description: String { "position \(position): \(message)" }
}

/// The members of a fact's `data` that the fold (and verify) read.
enum FactDataKey: String {
    case name, priority, result, error, type, parents, options, args
    case leaseMilliseconds = "lease_ms"
    case notBefore = "not_before"
}

/// The kinds this version writes, as an enum: the fold tells kinds apart by this rather than by
/// comparing strings, several times a fact.
enum KnownKind: UInt8, Sendable {
    case other = 0, runCreated, runAborted, jobCreated, jobClaimed, jobFinished, jobFailed, jobReleased
    case jobAborted, jobRetried, jobRejected, workerStarted, workerStopped

    /// The kind equal to `kind` (as strings compare), or `.other`.
    init(_ kind: FactKind) {
        switch kind {
        case .runCreated: self = .runCreated
        case .runAborted: self = .runAborted
        case .jobCreated: self = .jobCreated
        case .jobClaimed: self = .jobClaimed
        case .jobFinished: self = .jobFinished
        case .jobFailed: self = .jobFailed
        case .jobReleased: self = .jobReleased
        case .jobAborted: self = .jobAborted
        case .jobRetried: self = .jobRetried
        case .jobRejected: self = .jobRejected
        case .workerStarted: self = .workerStarted
        case .workerStopped: self = .workerStopped
        default: self = .other
        }
    }

    var factKind: FactKind? {
        switch self {
        case .other: nil
        case .runCreated: .runCreated
        case .runAborted: .runAborted
        case .jobCreated: .jobCreated
        case .jobClaimed: .jobClaimed
        case .jobFinished: .jobFinished
        case .jobFailed: .jobFailed
        case .jobReleased: .jobReleased
        case .jobAborted: .jobAborted
        case .jobRetried: .jobRetried
        case .jobRejected: .jobRejected
        case .workerStarted: .workerStarted
        case .workerStopped: .workerStopped
        }
    }
}

/// What the fold reads of a fact. ``Fact`` answers from its decoded `data` value; `verify()`
/// answers straight from a line's canonical bytes, without building that value.
protocol FoldFact {
    var position: UInt64 { get }
    var time: Instant { get }
    var kind: FactKind { get }
    /// `KnownKind(kind)`.
    var knownKind: KnownKind { get }
    var run: String? { get }
    var job: String? { get }
    var revision: UInt64? { get }
    var worker: String? { get }
    var attempt: Int? { get }
    var reason: String? { get }
    /// `data[key]?.stringValue`.
    func dataString(_ key: FactDataKey) -> String?
    /// `data[key]?.intValue`.
    func dataInteger(_ key: FactDataKey) -> Int64?
    /// `data[key]?.canonicalBytes`.
    func dataCanonicalBytes(_ key: FactDataKey) -> [UInt8]?
    /// `data[key]?.arrayValue` with each element's `stringValue`; empty when it is not an array.
    func dataStringList(_ key: FactDataKey) -> [String?]
}

extension Fact: FoldFact {
    var knownKind: KnownKind { KnownKind(kind) }
    func dataString(_ key: FactDataKey) -> String? { data[key.rawValue]?.stringValue }
    func dataInteger(_ key: FactDataKey) -> Int64? { data[key.rawValue]?.intValue }
    func dataCanonicalBytes(_ key: FactDataKey) -> [UInt8]? { data[key.rawValue]?.canonicalBytes }
    func dataStringList(_ key: FactDataKey) -> [String?] { (data[key.rawValue]?.arrayValue ?? []).map(\.stringValue) }
}

/// The fold: applies one fact to the views, checking that the transition is legal.
enum Fold {
    static func apply<F: FoldFact, T: FoldTarget>(_ fact: F, to views: inout T) throws {
        func fail(_ message: String) -> FoldError { FoldError(position: fact.position, message: message) }
        let known = fact.knownKind
        switch known {
        case .runCreated:
            guard let runID = fact.run else { throw fail("run.created without a run") }
            if try views.run(runID) != nil { throw fail("run '\(runID)' already exists") }
            try views.putRun(RunState(
                id: runID, status: .running, createdAt: fact.time, createdPosition: fact.position, endedAt: nil,
                name: fact.dataString(.name), priority: Int(fact.dataInteger(.priority) ?? 0),
                total: 0, counts: [:], ready: 0, abortedByOperator: false, abortReason: nil,
                position: fact.position))
            return
        case .runAborted:
            guard let runID = fact.run, var run = try views.takeRun(runID) else { throw fail("run.aborted of an unknown run") }
            run.abortedByOperator = true
            run.abortReason = fact.reason
            run.position = fact.position
            updateStatus(&run, at: fact.time)
            try views.putRun(run)
            return
        case .workerStarted, .workerStopped:
            guard fact.worker != nil else { throw fail("\(fact.kind) without a worker") }
            return
        default:
            break
        }
        // Here the kind is a job kind or none this version knows.
        guard known != .other || fact.kind.rawValue.hasPrefix("job.") else { throw fail("unknown fact kind '\(fact.kind)'") }
        guard let jobID = fact.job else { throw fail("\(fact.kind) without a job") }
        guard let runID = fact.run else { throw fail("\(fact.kind) without a run") }

        if known == .jobCreated {
            try create(fact, job: jobID, run: runID, in: &views)
            return
        }
        guard var job = try views.takeJob(jobID) else { throw fail("\(fact.kind) of unknown job '\(jobID)'") }
        guard job.run == runID else { throw fail("job '\(jobID)' belongs to run '\(job.run)', not '\(runID)'") }
        if known == .jobRejected {
            guard fact.revision == nil else { throw fail("job.rejected must not carry a revision") }
            job.rejected += 1
            job.position = fact.position
            try views.putJob(job)
            if var run = try views.takeRun(runID) {
                run.position = fact.position
                try views.putRun(run)
            }
            return
        }
        guard let revision = fact.revision, revision == job.revision + 1 else {
            throw fail("\(fact.kind) of '\(jobID)' at revision \(fact.revision.map(String.init) ?? "none"), expected \(job.revision + 1)")
        }
        let before = job.status
        switch known {
        case .jobClaimed:
            guard job.status == .unstarted else { throw fail("claim of '\(jobID)' while \(job.status)") }
            if try views.unfinishedParents(jobID) > 0 {
                let waiting = try job.parents.first { try views.job($0)?.status != .finished } ?? "?"
                throw fail("claim of '\(jobID)' before its parent '\(waiting)' finished")
            }
            guard let attempt = fact.attempt, attempt == job.attempt + 1 else {
                throw fail("claim of '\(jobID)' with attempt \(fact.attempt.map(String.init) ?? "none"), expected \(job.attempt + 1)")
            }
            guard let worker = fact.worker else { throw fail("claim of '\(jobID)' without a worker") }
            job.status = .started
            job.attempt = attempt
            job.worker = worker
            job.claimedAt = fact.time
            job.leaseMilliseconds = fact.dataInteger(.leaseMilliseconds) ?? 0
            if job.firstStartedAt == nil { job.firstStartedAt = fact.time }
            job.endedAt = nil
            job.notBefore = nil
        case .jobFinished, .jobFailed:
            guard job.status == .started else { throw fail("\(fact.kind) of '\(jobID)' while \(job.status)") }
            guard fact.attempt == job.attempt else { throw fail("\(fact.kind) of '\(jobID)' for attempt \(fact.attempt.map(String.init) ?? "none"), current is \(job.attempt)") }
            job.status = known == .jobFinished ? .finished : .failed
            job.endedAt = fact.time
            job.faults = 0
            job.expiries = 0
            if known == .jobFinished {
                job.resultJSON = fact.dataCanonicalBytes(.result)
                job.errorJSON = nil
            } else {
                job.failures += 1
                job.errorJSON = fact.dataCanonicalBytes(.error) ?? Fold.nullBytes
            }
        case .jobReleased:
            guard job.status == .started else { throw fail("release of '\(jobID)' while \(job.status)") }
            job.status = .unstarted
            job.claimedAt = nil
            if let nb = fact.dataString(.notBefore) {
                guard let t = Instant(rfc3339: nb) else { throw fail("release of '\(jobID)' with invalid not_before") }
                job.notBefore = t
            } else {
                job.notBefore = nil
            }
            if let e = fact.dataCanonicalBytes(.error) { job.errorJSON = e }
            switch fact.reason {
            case "error", "timeout":
                job.failures += 1
                job.faults = 0
                job.expiries = 0
            case "fault":
                job.faults += 1
                job.expiries = 0
            case "lease_expired":
                job.expiries += 1
            default:
                break
            }
        case .jobAborted:
            guard job.status != .finished, job.status != .aborted else { throw fail("abort of '\(jobID)' while \(job.status)") }
            job.status = .aborted
            job.endedAt = fact.time
            job.claimedAt = nil
        case .jobRetried:
            guard job.status == .failed || job.status == .aborted else { throw fail("retry of '\(jobID)' while \(job.status)") }
            job.status = .unstarted
            job.attemptBase = job.attempt
            job.failures = 0
            job.faults = 0
            job.expiries = 0
            job.endedAt = nil
            job.notBefore = nil
            job.error = nil
        default:
            throw fail("unknown fact kind '\(fact.kind)'")
        }
        job.revision = revision
        job.position = fact.position
        job.reason = fact.reason

        if before == .started, job.status != .started {
            try views.setActive(job.type, max(0, try views.active(job.type) - 1))
        } else if before != .started, job.status == .started {
            try views.setActive(job.type, try views.active(job.type) + 1)
        }
        guard var run = try views.takeRun(runID) else { throw fail("job '\(jobID)' of unknown run '\(runID)'") }
        run.counts[before, default: 0] -= 1
        run.counts[job.status, default: 0] += 1
        if run.counts[before] == 0 { run.counts[before] = nil }
        try refreshReadiness(&job, run: &run, at: fact.position, in: &views)
        try views.putJob(job)
        // A finished parent may make its children ready.
        if job.status == .finished {
            for childID in job.children {
                let waiting = try views.unfinishedParents(childID) - 1
                guard waiting >= 0 else { throw fail("child '\(childID)' of '\(jobID)' counts no unfinished parent") }
                try views.setUnfinishedParents(childID, waiting)
                guard waiting == 0 else { continue }
                guard var child = try views.job(childID) else { throw fail("child '\(childID)' of '\(jobID)' is missing") }
                if try refreshReadiness(&child, run: &run, at: fact.position, in: &views) {
                    try views.putJob(child)
                }
            }
        }
        run.position = fact.position
        updateStatus(&run, at: fact.time)
        try views.putRun(run)
    }

    private static func create<F: FoldFact, T: FoldTarget>(_ fact: F, job jobID: String, run runID: String, in views: inout T) throws {
        func fail(_ message: String) -> FoldError { FoldError(position: fact.position, message: message) }
        guard fact.revision == 1 else { throw fail("job.created of '\(jobID)' must be revision 1") }
        if try views.job(jobID) != nil { throw fail("job '\(jobID)' already exists") }
        guard var run = try views.takeRun(runID) else { throw fail("job '\(jobID)' created in unknown run '\(runID)'") }
        guard let type = fact.dataString(.type) else { throw fail("job.created of '\(jobID)' without data.type") }
        var parents: [String] = []
        for p in fact.dataStringList(.parents) {
            guard let id = p else { throw fail("job '\(jobID)' has a parent that is not a string") }
            parents.append(id)
        }
        var unfinished = 0
        for parentID in parents {
            guard var parent = try views.takeJob(parentID), parent.run == runID else {
                throw fail("job '\(jobID)' depends on '\(parentID)', which is not an earlier job of run '\(runID)'")
            }
            if parent.status != .finished { unfinished += 1 }
            parent.children.append(jobID)
            try views.putJob(parent)
        }
        if hasDuplicates(parents) { throw fail("job '\(jobID)' lists a parent twice") }
        try views.setUnfinishedParents(jobID, unfinished)
        var job = JobState(
            id: jobID, run: runID, type: type, parents: parents, children: [],
            priority: Int(fact.dataInteger(.priority) ?? 0), status: .unstarted, revision: 1, attempt: 0,
            attemptBase: 0, worker: nil, createdAt: fact.time, createdPosition: fact.position, claimedAt: nil, leaseMilliseconds: 0,
            firstStartedAt: nil, endedAt: nil, notBefore: nil, readySince: nil, reason: fact.reason, errorJSON: nil,
            resultJSON: nil, optionsJSON: fact.dataCanonicalBytes(.options) ?? Fold.emptyObjectBytes, rejected: 0, position: fact.position,
            failures: 0, faults: 0, expiries: 0)
        run.total += 1
        run.counts[.unstarted, default: 0] += 1
        try refreshReadiness(&job, run: &run, at: fact.position, in: &views)
        try views.putJob(job)
        run.position = fact.position
        updateStatus(&run, at: fact.time)
        try views.putRun(run)
    }

    /// Puts the job into the ready set or takes it out, as its status and parents say. Returns
    /// whether the job changed.
    @discardableResult
    private static func refreshReadiness<T: FoldTarget>(_ job: inout JobState, run: inout RunState, at position: UInt64, in views: inout T) throws -> Bool {
        let ready = try job.status == .unstarted && views.unfinishedParents(job.id) == 0
        var changed = false
        if let since = job.readySince, !ready {
            try views.removeReady(ReadyEntry(priority: job.priority, since: since, job: job.id, type: job.type, notBefore: nil))
            job.readySince = nil
            run.ready -= 1
            changed = true
        }
        if ready, job.readySince == nil {
            job.readySince = position
            try views.insertReady(ReadyEntry(priority: job.priority, since: position, job: job.id, type: job.type, notBefore: job.notBefore))
            run.ready += 1
            changed = true
        }
        return changed
    }

    static let nullBytes = JSONValue.null.canonicalBytes
    static let emptyObjectBytes = JSONValue.object([:]).canonicalBytes

    /// Whether two of the ids are equal (as strings, like a `Set` of them would tell).
    static func hasDuplicates(_ ids: [String]) -> Bool {
        if ids.count > 16 { return Set(ids).count != ids.count }
        for i in ids.indices {
            for j in ids.indices where j > i && ids[i] == ids[j] { return true }
        }
        return false
    }

    static func updateStatus(_ run: inout RunState, at time: Instant) {
        let status: RunStatus
        if run.total > 0, run.count(.finished) == run.total {
            status = .finished
        } else if run.total > 0, run.count(.started) == 0, run.ready == 0 {
            if run.abortedByOperator || run.count(.failed) == 0 {
                status = .aborted
            } else {
                status = .failed
            }
        } else {
            status = .running
        }
        if status != run.status {
            run.status = status
            run.endedAt = status == .running ? nil : time
        }
    }
}
