import Foundation

/// A job a worker has claimed: what its handler needs, and the token that fences its result.
public struct Claim: Sendable, Hashable {
    public let job: String
    public let run: String
    public let type: String
    /// The job's revision right after the claim. The attempt's outcome is a compare-and-append
    /// expecting it, so a result from a claim that was released or superseded is refused.
    public let revision: UInt64
    public let attempt: Int
    /// Attempts since the last operator retry, this one included.
    public let attemptsInBudget: Int
    /// Earlier attempts (since the last operator retry) that ended in an error or a timeout.
    public let failures: Int
    /// Faults in a row just before this attempt.
    public let faults: Int
    public let args: JSONValue
    /// The recorded results of the job's parents, by parent type.
    public let parentResults: [String: JSONValue]
    /// Options recorded on the job at submission.
    public let options: JSONValue
    public let lease: Lease
    /// The `job.claimed` fact's position and id (for audit and acknowledgement journals).
    public let claimPosition: UInt64
    public let claimFactID: String
}

/// Which runs a worker takes jobs from.
public enum RunFilter: Sendable, Hashable {
    /// Any run whose job types the worker handles.
    case any
    /// Only these runs.
    case ids(Set<String>)
    /// Only runs submitted under this name (a pipeline's name), so workers of different pipelines
    /// that share job type names do not run each other's jobs.
    case named(String)

    /// The run id of a job id (`RUN/TYPE`).
    static func run(ofJob job: String) -> String {
        job.firstIndex(of: "/").map { String(job[..<$0]) } ?? job
    }
}

/// Answers ``RunFilter`` questions inside one transaction, remembering run names it looked up.
struct RunFilterCheck {
    let filter: RunFilter
    private var names: [String: String?] = [:]

    init(_ filter: RunFilter) { self.filter = filter }

    mutating func accepts(job: String, lookup: (String) throws -> RunState?) rethrows -> Bool {
        switch filter {
        case .any: return true
        case .ids(let ids): return ids.contains(RunFilter.run(ofJob: job))
        case .named(let name):
            let run = RunFilter.run(ofJob: job)
            if let known = names[run] { return known == name }
            let found = try lookup(run)?.name
            names[run] = found
            return found == name
        }
    }
}

/// How an attempt ended, as the worker saw it.
public enum AttemptOutcome: Sendable, Hashable {
    /// The handler returned; `result` is recorded for the job's children to read.
    case finished(result: JSONValue?)
    /// The handler threw (or timed out: `reason` "timeout"). With `retryAfter` (seconds), the
    /// job goes back to unstarted, claimable that long after the release; without, it fails for good.
    case failed(error: JSONValue, reason: String, retryAfter: Double?)
    /// A transient problem: back to unstarted, claimable `retryAfter` seconds after the release.
    case fault(error: JSONValue, retryAfter: Double)
    /// Abort the job and every transitive descendant.
    case aborted(reason: String, error: JSONValue?)
    /// The worker is shutting down: release the claim so another worker can take it at once.
    case shutdown
}

/// What happened to an attempt's outcome.
public enum CompletionResult: Sendable, Hashable {
    /// The outcome is in the log (the facts written: one, or several for an abort cascade).
    case recorded([Fact])
    /// The claim had been released or superseded: the outcome was recorded as `job.rejected`.
    case rejected(Fact)
}

extension LogWriter {
    /// Claims up to `count` ready jobs for `worker`, in ready order (priority, then first
    /// ready), skipping types the worker has no handler for, jobs waiting out a retry delay and
    /// types at their concurrency limit. Each claim is a compare-and-append on the job's
    /// revision inside this write transaction, so two workers can never claim the same job.
    public mutating func claimNext(
        worker: Author, types: Set<String>?, limits: [String: Int] = [:], runs: RunFilter = .any, count: Int,
        leaseMilliseconds: Int64, scanLimit: Int = 10_000
    ) throws -> [Claim] {
        guard count > 0, let workerName = worker.name else { return [] }
        let now = self.now
        var picked: [(job: String, type: String)] = []
        var activeCounts: [String: Int] = [:]
        var scanned = 0
        var filter = RunFilterCheck(runs)
        try forEachReady { job, type, notBefore in
            scanned += 1
            if scanned > scanLimit { return false }
            if let types, !types.contains(type) { return true }
            if let nb = notBefore, nb > now { return true }
            if try !filter.accepts(job: job, lookup: { try self.run($0) }) { return true }
            if let limit = limits[type] {
                let active = try activeCounts[type] ?? self.active(type: type)
                if active >= limit { return true }
                activeCounts[type] = active + 1
            }
            picked.append((job, type))
            return picked.count < count
        }
        var claims: [Claim] = []
        for (jobID, _) in picked {
            guard let state = try job(jobID), state.status == .unstarted else { continue }
            let draft = FactDraft(
                kind: .jobClaimed, run: state.run, job: jobID, author: worker, attempt: state.attempt + 1,
                data: ["lease_ms": .int(leaseMilliseconds)])
            guard case .appended(let fact) = try append(draft, expecting: state.revision) else { continue }
            let lease = Lease(worker: workerName, revision: fact.revision!, expires: fact.time.adding(milliseconds: leaseMilliseconds))
            try setLease(lease, of: jobID)
            claims.append(try makeClaim(jobID, revision: fact.revision!, lease: lease, fact: fact))
        }
        return claims
    }

    func makeClaim(_ jobID: String, revision: UInt64, lease: Lease, fact claimFact: Fact) throws -> Claim {
        guard let state = try job(jobID), let run = try run(state.run) else {
            throw StoreError(.corrupt, path: path, "claimed job '\(jobID)' or its run is missing")
        }
        let args = try self.args(ofRun: run.id)
        var parentResults: [String: JSONValue] = [:]
        for parentID in state.parents {
            if let parent = try job(parentID), let result = parent.result { parentResults[parent.type] = result }
        }
        return Claim(
            job: jobID, run: state.run, type: state.type, revision: revision, attempt: state.attempt,
            attemptsInBudget: state.attemptsInBudget, failures: state.failures, faults: state.faults, args: args, parentResults: parentResults, options: state.options,
            lease: lease, claimPosition: claimFact.position, claimFactID: claimFact.id)
    }

    /// Records an attempt's outcome with a compare-and-append on the claim's revision. A claim
    /// that was released or superseded meanwhile gets a `job.rejected` fact instead: a late
    /// result never finishes a job twice.
    public mutating func complete(_ claim: Claim, outcome: AttemptOutcome, worker: Author) throws -> CompletionResult {
        guard let state = try job(claim.job) else {
            throw StoreError(.invalid, path: path, "unknown job '\(claim.job)'")
        }
        if state.revision != claim.revision || state.status != .started || state.worker != worker.name {
            var data: [String: JSONValue] = [
                "outcome": .string(outcome.kindName), "claim_revision": .int(Int64(claim.revision)),
                "current_revision": .int(Int64(state.revision)), "current_status": .string(state.status.rawValue),
            ]
            if case .finished(let result?) = outcome { data["result"] = result }
            let draft = FactDraft(kind: .jobRejected, run: claim.run, job: claim.job, author: worker, attempt: claim.attempt, reason: "superseded", data: .object(data))
            guard let fact = try append(draft, expecting: nil).fact else {
                throw StoreError(.io, path: path, "could not record the rejected result of '\(claim.job)'")
            }
            return .rejected(fact)
        }
        try removeLease(of: claim.job)
        let base = FactDraft(kind: .jobFinished, run: claim.run, job: claim.job, author: worker, attempt: claim.attempt)
        var draft = base
        switch outcome {
        case .finished(let result):
            draft.kind = .jobFinished
            if let result { draft.data = ["result": result] }
        case .failed(let error, let reason, let retryAfter):
            draft.reason = reason
            if let retryAfter {
                draft.kind = .jobReleased
                draft.data = ["error": error, "not_before": .string(now.adding(seconds: retryAfter).rfc3339)]
            } else {
                draft.kind = .jobFailed
                draft.data = ["error": error]
            }
        case .fault(let error, let retryAfter):
            draft.kind = .jobReleased
            draft.reason = "fault"
            draft.data = ["error": error, "not_before": .string(now.adding(seconds: retryAfter).rfc3339)]
        case .shutdown:
            draft.kind = .jobReleased
            draft.reason = "shutdown"
        case .aborted(let reason, let error):
            var data: [String: JSONValue] = [:]
            if let error { data["error"] = error }
            draft = FactDraft(kind: .jobAborted, run: claim.run, job: claim.job, author: worker, attempt: claim.attempt, reason: reason, data: .object(data))
            return .recorded(try abortCascade(from: claim.job, first: draft, author: worker, reason: reason))
        }
        switch try append(draft, expecting: claim.revision) {
        case .appended(let f), .duplicate(let f): return .recorded([f])
        case .conflict(_, let actual):
            throw StoreError(.io, path: path, "'\(claim.job)' moved to revision \(actual) inside one transaction")
        }
    }

    /// Aborts `jobID` (with `first` as its fact) and every transitive descendant that has not
    /// finished, in one atomic step.
    mutating func abortCascade(from jobID: String, first: FactDraft, author: Author, reason: String) throws -> [Fact] {
        guard let root = try job(jobID) else { throw StoreError(.invalid, path: path, "unknown job '\(jobID)'") }
        var items: [(FactDraft, expecting: UInt64?)] = [(first, root.revision)]
        var seen: Set<String> = [jobID]
        var frontier = root.children
        while !frontier.isEmpty {
            var next: [String] = []
            for childID in frontier where seen.insert(childID).inserted {
                guard let child = try job(childID) else { continue }
                next.append(contentsOf: child.children)
                if child.status == .finished || child.status == .aborted { continue }
                if child.status == .started { try removeLease(of: childID) }
                items.append((FactDraft(kind: .jobAborted, run: child.run, job: childID, author: author, attempt: child.attempt > 0 ? child.attempt : nil, reason: reason, data: ["cause": .string(jobID)]), child.revision))
            }
            frontier = next
        }
        switch try appendAll(items) {
        case .appended(let facts): return facts
        case .conflict(let index, let expected, let actual):
            throw StoreError(.io, path: path, "abort of '\(items[index].0.job ?? "?")': revision \(actual), expected \(expected)")
        }
    }

    /// Operator action: aborts one job (unstarted, started or failed) and its descendants.
    public mutating func abortJob(_ jobID: String, author: Author, reason: String) throws -> [Fact] {
        guard let state = try job(jobID) else { throw StoreError(.invalid, path: path, "no job '\(jobID)'") }
        guard state.status != .finished, state.status != .aborted else {
            throw StoreError(.invalid, path: path, "job '\(jobID)' is \(state.status); only unstarted, started or failed jobs can be aborted")
        }
        if state.status == .started { try removeLease(of: jobID) }
        let draft = FactDraft(kind: .jobAborted, run: state.run, job: jobID, author: author, attempt: state.attempt > 0 ? state.attempt : nil, reason: reason)
        return try abortCascade(from: jobID, first: draft, author: author, reason: reason)
    }

    /// Operator action: aborts a run. Unstarted and running jobs are aborted (running handlers
    /// notice at their next heartbeat and are cancelled); finished and failed jobs stay.
    public mutating func abortRun(_ runID: String, author: Author, reason: String) throws -> [Fact] {
        guard let run = try run(runID) else { throw StoreError(.invalid, path: path, "no run '\(runID)'") }
        guard run.status == .running else {
            throw StoreError(.invalid, path: path, "run '\(runID)' is already \(run.status)")
        }
        var items: [(FactDraft, expecting: UInt64?)] = [(FactDraft(kind: .runAborted, run: runID, author: author, reason: reason), nil)]
        try txn.forEach(dbs.jobs, from: Array(runID.utf8) + [UInt8(ascii: "/")], to: Array(runID.utf8) + [UInt8(ascii: "0")]) { _, v in
            let j = try JobState(decoding: v)
            if j.status == .unstarted || j.status == .started {
                items.append((FactDraft(kind: .jobAborted, run: runID, job: j.id, author: author, attempt: j.attempt > 0 ? j.attempt : nil, reason: reason, data: ["cause": .string("run")]), j.revision))
            }
            return true
        }
        for (draft, _) in items where draft.job != nil {
            if try job(draft.job!)?.status == .started { try removeLease(of: draft.job!) }
        }
        switch try appendAll(items) {
        case .appended(let facts): return facts
        case .conflict(let index, _, _):
            throw StoreError(.io, path: path, "abort of run '\(runID)': '\(items[index].0.job ?? "?")' changed meanwhile")
        }
    }

    /// Operator action: makes a failed or aborted job runnable again, with a fresh retry budget.
    /// Its aborted descendants are retried too; blocked ones run once their parents finish.
    public mutating func retryJob(_ jobID: String, author: Author, reason: String?) throws -> [Fact] {
        guard let state = try job(jobID) else { throw StoreError(.invalid, path: path, "no job '\(jobID)'") }
        guard state.status == .failed || state.status == .aborted else {
            throw StoreError(.invalid, path: path, "job '\(jobID)' is \(state.status); only failed or aborted jobs can be retried")
        }
        var items: [(FactDraft, expecting: UInt64?)] = [(FactDraft(kind: .jobRetried, run: state.run, job: jobID, author: author, reason: reason), state.revision)]
        var seen: Set<String> = [jobID]
        var frontier = state.children
        while !frontier.isEmpty {
            var next: [String] = []
            for childID in frontier where seen.insert(childID).inserted {
                guard let child = try job(childID) else { continue }
                next.append(contentsOf: child.children)
                if child.status == .aborted {
                    items.append((FactDraft(kind: .jobRetried, run: child.run, job: childID, author: author, reason: reason, data: ["cause": .string(jobID)]), child.revision))
                }
            }
            frontier = next
        }
        switch try appendAll(items) {
        case .appended(let facts): return facts
        case .conflict(let index, _, _):
            throw StoreError(.io, path: path, "retry of '\(items[index].0.job ?? "?")': it changed meanwhile")
        }
    }

    /// Renews the leases of a worker's live claims. Returns the claims that are no longer the
    /// worker's (released, aborted, superseded): their handlers should be cancelled.
    public mutating func renewLeases(_ claims: [Claim], worker: String, leaseMilliseconds: Int64) throws -> [Claim] {
        let expires = now.adding(milliseconds: leaseMilliseconds)
        var lost: [Claim] = []
        for claim in claims {
            guard let state = try job(claim.job), state.revision == claim.revision, state.status == .started, state.worker == worker else {
                lost.append(claim)
                continue
            }
            try setLease(Lease(worker: worker, revision: claim.revision, expires: expires), of: claim.job)
        }
        return lost
    }

    /// Releases every job whose lease has run out (each a compare-and-append on the claim's
    /// revision, so only one releaser wins). Returns the released facts.
    public mutating func releaseExpired(by author: Author, limit: Int = 1000) throws -> [Fact] {
        let now = self.now
        var expired: [(String, Lease)] = []
        try forEachLease { job, lease in
            if lease.expires < now { expired.append((job, lease)) }
            return expired.count < limit
        }
        var released: [Fact] = []
        for (jobID, lease) in expired {
            guard let state = try job(jobID), state.status == .started, state.revision == lease.revision else {
                try removeLease(of: jobID)  // stale entry: the claim already ended
                continue
            }
            // Repeated expiries back off, so a job that kills its workers cannot spin.
            let streak = state.expiries
            let delay = streak == 0 ? 0 : min(300.0, pow(2.0, Double(streak - 1)))
            var data: [String: JSONValue] = ["expired_worker": .string(lease.worker), "lease_expired_at": .string(lease.expires.rfc3339)]
            if delay > 0 { data["not_before"] = .string(now.adding(seconds: delay).rfc3339) }
            let draft = FactDraft(kind: .jobReleased, run: state.run, job: jobID, author: author, attempt: state.attempt, reason: "lease_expired", data: .object(data))
            if case .appended(let f) = try append(draft, expecting: lease.revision) {
                released.append(f)
                try removeLease(of: jobID)
            }
        }
        return released
    }

    /// The earliest not-before among ready jobs of these types that are still waiting, if any.
    public func nextRetryTime(types: Set<String>?, scanLimit: Int = 10_000) throws -> Instant? {
        var earliest: Instant?
        var scanned = 0
        let now = self.now
        try forEachReady { _, type, notBefore in
            scanned += 1
            if let types, !types.contains(type) { return scanned < scanLimit }
            if let nb = notBefore, nb > now { earliest = min(earliest ?? nb, nb) }
            return scanned < scanLimit
        }
        return earliest
    }
}

extension AttemptOutcome {
    var kindName: String {
        switch self {
        case .finished: "finished"
        case .failed: "failed"
        case .fault: "fault"
        case .aborted: "aborted"
        case .shutdown: "shutdown"
        }
    }
}
