/// The status of a job, exactly Overseer's five.
public enum JobStatus: String, Sendable, Hashable, Codable, CaseIterable {
    case unstarted, started, finished, failed, aborted

    public var isTerminal: Bool { self == .finished || self == .failed || self == .aborted }
}

/// The status of a run, derived from its jobs.
public enum RunStatus: String, Sendable, Hashable, Codable, CaseIterable {
    /// Some job is running, ready, or waiting for a retry delay.
    case running
    /// Every job finished.
    case finished
    /// Nothing more can progress, and a job failed.
    case failed
    /// Nothing more can progress, and the run or one of its jobs was aborted.
    case aborted
}

/// One job's current state: a view folded from its facts.
public struct JobState: Sendable, Hashable {
    /// `RUN/TYPE`.
    public var id: String
    public var run: String
    public var type: String
    /// Job ids this job waits for.
    public var parents: [String]
    /// Job ids that wait for this job.
    public var children: [String]
    /// Higher runs first among ready jobs.
    public var priority: Int
    public var status: JobStatus
    /// The revision of this job's latest fact; a compare-and-append expects it.
    public var revision: UInt64
    /// Claims so far (the current or last attempt's number).
    public var attempt: Int
    /// `attempt` when an operator last retried the job; a retry policy counts attempts after it.
    public var attemptBase: Int
    /// The worker holding (or that last held) the claim.
    public var worker: String?
    public var createdAt: Instant
    /// Position of the `job.created` fact.
    public var createdPosition: UInt64
    public var claimedAt: Instant?
    /// The lease the current claim was granted, in milliseconds.
    public var leaseMilliseconds: Int64
    public var firstStartedAt: Instant?
    public var endedAt: Instant?
    /// A released job is not claimable before this instant (retry backoff).
    public var notBefore: Instant?
    /// The position at which the job last became ready, while it is in the ready set.
    public var readySince: UInt64?
    /// The reason of the latest fact that carried one.
    public var reason: String?
    // The JSON-valued fields are kept as canonical bytes: a job's record is read and rewritten by
    // every fact about it, and parsing them each time cost more than the rest of the fold.
    var errorJSON: [UInt8]?
    var resultJSON: [UInt8]?
    var optionsJSON: [UInt8]

    /// The latest recorded error (from `job.failed` or `job.released`).
    public var error: JSONValue? {
        get { errorJSON.map(JobState.parseStored) }
        set { errorJSON = newValue?.canonicalBytes }
    }
    /// The finished attempt's result.
    public var result: JSONValue? {
        get { resultJSON.map(JobState.parseStored) }
        set { resultJSON = newValue?.canonicalBytes }
    }
    /// Per-job options recorded at creation (timeout, retry policy, limit, command...).
    public var options: JSONValue {
        get { JobState.parseStored(optionsJSON) }
        set { optionsJSON = newValue.canonicalBytes }
    }

    /// Bytes this library wrote with `canonicalBytes`; they always parse.
    static func parseStored(_ bytes: [UInt8]) -> JSONValue {
        do { return try JSONValue.parse(bytes) } catch { return .null }
    }
    /// Late results refused so far.
    public var rejected: Int
    /// Position of this job's latest fact (rejections included).
    public var position: UInt64

    /// Attempts since the last operator retry (every kind of ending counted).
    public var attemptsInBudget: Int { attempt - attemptBase }
    /// Attempts since the last operator retry that ended in an error or a timeout: what a retry
    /// policy's `maximumAttempts` limits.
    public var failures: Int
    /// Faults in a row (a transient problem reported by the handler); other endings reset it.
    public var faults: Int
    /// Lease expiries in a row (the worker died or stalled); they back off the next claim.
    public var expiries: Int

    /// The instant the current claim's lease, as granted by the claim, runs out.
    public var claimLeaseExpiry: Instant? {
        guard status == .started, let claimedAt else { return nil }
        return claimedAt.adding(milliseconds: leaseMilliseconds)
    }
}

/// One run's summary: a view folded from its facts.
public struct RunState: Sendable, Hashable {
    public var id: String
    public var status: RunStatus
    public var createdAt: Instant
    /// Position of the `run.created` fact (which holds the graph and args).
    public var createdPosition: UInt64
    public var endedAt: Instant?
    /// The pipeline's name, when it came from one.
    public var name: String?
    public var priority: Int
    public var total: Int
    public var counts: [JobStatus: Int]
    /// Jobs in the ready set (including those waiting out a retry delay).
    public var ready: Int
    public var abortedByOperator: Bool
    public var abortReason: String?
    /// Position of this run's latest fact.
    public var position: UInt64

    public func count(_ status: JobStatus) -> Int { counts[status] ?? 0 }
}

/// An entry of the ready set. Order: priority (high first), then the position at which the job
/// became ready (first ready, first served), then job id.
struct ReadyEntry: Sendable, Hashable {
    var priority: Int
    var since: UInt64
    var job: String
    var type: String
    var notBefore: Instant?

    var key: [UInt8] {
        var k = [UInt8]()
        k.reserveCapacity(12 + job.utf8.count)
        // Descending priority: larger priorities get smaller keys.
        let p = UInt32(truncatingIfNeeded: Int64(Int32.max) - Int64(priority))
        k.appendBigEndian(p)
        k.appendBigEndian(since)
        k.append(contentsOf: job.utf8)
        return k
    }
}
