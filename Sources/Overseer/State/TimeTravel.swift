/// A point in the log's history: a position, or a wall-clock instant.
public enum LogPoint: Sendable, Hashable, CustomStringConvertible {
    /// Just after the fact at this position (0: before the first fact).
    case position(UInt64)
    /// Just after the last fact committed at or before this instant.
    case time(Instant)

    public var description: String {
        switch self {
        case .position(let p): return "@\(p)"
        case .time(let t): return t.rfc3339
        }
    }

    /// Parses `@N` (a position) or an RFC 3339 time. Nil for anything else.
    public init?(parsing text: String) {
        if text.hasPrefix("@") {
            guard let p = UInt64(text.dropFirst()) else { return nil }
            self = .position(p)
        } else if let t = Instant(rfc3339: text) {
            self = .time(t)
        } else {
            return nil
        }
    }
}

/// One run as it was at some position: its summary and its jobs.
public struct RunSnapshot: Sendable, Hashable {
    /// The last log position this snapshot includes.
    public let position: UInt64
    public let run: RunState
    /// In creation order (parents before children).
    public let jobs: [JobState]
    private let index: [String: Int]

    public init(position: UInt64, run: RunState, jobs: [JobState]) {
        self.position = position
        self.run = run
        self.jobs = jobs
        var index: [String: Int] = [:]
        index.reserveCapacity(jobs.count)
        for (i, j) in jobs.enumerated() { index[j.id] = i }
        self.index = index
    }

    public static func == (a: RunSnapshot, b: RunSnapshot) -> Bool {
        a.position == b.position && a.run == b.run && a.jobs == b.jobs
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(position)
        hasher.combine(run)
        hasher.combine(jobs)
    }

    public func job(type: String) -> JobState? { index["\(run.id)/\(type)"].map { jobs[$0] } }

    public func job(id: String) -> JobState? { index[id].map { jobs[$0] } }

    /// For an unstarted job that can no longer run: the failed or aborted ancestors that hold it,
    /// nearest first. Empty when the job is not blocked.
    public func blockers(of jobID: String) -> [String] {
        guard let job = self.job(id: jobID), job.status == .unstarted else { return [] }
        var found: [String] = []
        var seen: Set<String> = [jobID]
        var frontier = job.parents
        while !frontier.isEmpty {
            var next: [String] = []
            for id in frontier where seen.insert(id).inserted {
                guard let p = self.job(id: id) else { continue }
                if p.status == .failed || p.status == .aborted {
                    found.append(id)
                } else if p.status != .finished {
                    next.append(contentsOf: p.parents)
                }
            }
            frontier = next
        }
        return found
    }
}

/// Every run and job as they were at some position.
public struct LogSnapshot: Sendable {
    public let position: UInt64
    public let views: MemoryViews

    public var runs: [RunState] { views.runs.values.sorted { ($0.createdPosition, $0.id) < ($1.createdPosition, $1.id) } }

    public func run(_ id: String) -> RunSnapshot? {
        guard let run = views.runs[id] else { return nil }
        let jobs = views.jobs.values.filter { $0.run == id }.sorted { $0.createdPosition < $1.createdPosition }
        return RunSnapshot(position: position, run: run, jobs: jobs)
    }

    public func job(_ id: String) -> JobState? { views.jobs[id] }
}

/// One step of a replay: a fact, and the state of its job and run right after it.
public struct ReplayStep: Sendable {
    public let fact: Fact
    public let job: JobState?
    public let run: RunState?
}

extension LogStore {
    /// Resolves a point to a position.
    public func position(of point: LogPoint) throws -> UInt64 {
        switch point {
        case .position(let p): return min(p, try lastPosition())
        case .time(let t): return try position(atOrBefore: t)
        }
    }

    /// One run as of a point. Folds only that run's facts (through the per-run index), so the
    /// cost does not grow with the rest of the log.
    public func run(_ id: String, asOf point: LogPoint) throws -> RunSnapshot? {
        let p = try position(of: point)
        let facts = try history(ofRun: id, through: p)
        guard !facts.isEmpty else { return nil }
        var views = MemoryViews()
        for f in facts { try views.apply(f) }
        guard let run = views.runs[id] else { return nil }
        let jobs = views.jobs.values.sorted { $0.createdPosition < $1.createdPosition }
        return RunSnapshot(position: p, run: run, jobs: jobs)
    }

    /// One job as of a point (its run is folded, since readiness depends on the parents).
    public func job(_ id: String, asOf point: LogPoint) throws -> JobState? {
        guard let runID = try job(id)?.run ?? id.split(separator: "/").first.map(String.init) else { return nil }
        return try run(runID, asOf: point)?.jobs.first { $0.id == id }
    }

    /// Everything as of a point: a fold of the log's prefix.
    public func state(asOf point: LogPoint) throws -> LogSnapshot {
        let p = try position(of: point)
        var views = MemoryViews()
        if p > 0 {
            try forEachFact(in: 1...p) { f in
                try views.apply(f)
                return true
            }
        }
        return LogSnapshot(position: p, views: views)
    }

    /// Steps through a run's facts in `positions`, with the folded state after each. The fold
    /// starts at the run's first fact, so the states are exact even when the range starts later.
    public func replay(run id: String, positions: ClosedRange<UInt64> = 1...UInt64.max) throws -> [ReplayStep] {
        var views = MemoryViews()
        var steps: [ReplayStep] = []
        for f in try history(ofRun: id, through: positions.upperBound) {
            try views.apply(f)
            if positions.contains(f.position) {
                steps.append(ReplayStep(fact: f, job: f.job.flatMap { views.jobs[$0] }, run: views.runs[id]))
            }
        }
        return steps
    }

    /// A run's current snapshot (from the live views).
    public func snapshot(ofRun id: String) throws -> RunSnapshot? {
        try read { txn in
            let views = LMDBViews(txn: txn, dbs: dbs)
            guard let run = try views.run(id) else { return nil }
            var jobs: [JobState] = []
            try txn.forEach(dbs.jobs, from: Array(id.utf8) + [UInt8(ascii: "/")], to: Array(id.utf8) + [UInt8(ascii: "0")]) { _, v in
                jobs.append(try JobState(decoding: v))
                return true
            }
            jobs.sort { $0.createdPosition < $1.createdPosition }
            return RunSnapshot(position: try core.head(txn).position, run: run, jobs: jobs)
        }
    }
}
