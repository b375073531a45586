import Foundation

/// A store's figures, for a metrics system: what `overseer metrics` prints in the Prometheus text
/// format (``prometheusText``), as values.
///
/// Everything comes from one read transaction: the job and run views for the current counts, and
/// one pass over the facts, in order, for the counters and durations. So the figures are
/// consistent with each other and with ``position``.
public struct StoreMetrics: Sendable, Hashable {
    /// A cumulative-style histogram (Prometheus semantics: `le` upper bounds, plus +Inf).
    public struct Histogram: Sendable, Hashable {
        /// Claim-to-finish bounds in seconds: 10 ms to one hour.
        public static let defaultBounds: [Double] = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600]

        /// Upper bounds, ascending (the implicit last bucket is +Inf).
        public let bounds: [Double]
        /// Observations per bucket, not cumulative: `bounds.count + 1` entries, the last for
        /// values above every bound.
        public internal(set) var bucketCounts: [Int]
        public internal(set) var count: Int = 0
        public internal(set) var sum: Double = 0

        public init(bounds: [Double] = Histogram.defaultBounds) {
            self.bounds = bounds
            self.bucketCounts = [Int](repeating: 0, count: bounds.count + 1)
        }

        mutating func observe(_ value: Double) {
            let i = bounds.firstIndex { value <= $0 } ?? bounds.count
            bucketCounts[i] += 1
            count += 1
            sum += value
        }

        /// Observations at or below each bound, then the total (the `+Inf` bucket).
        public var cumulativeCounts: [Int] {
            var running = 0
            return bucketCounts.map { running += $0; return running }
        }
    }

    /// The figures of one job type, across all runs.
    public struct TypeMetrics: Sendable, Hashable {
        /// Jobs of this type now, by status (from the views).
        public internal(set) var jobs: [JobStatus: Int] = [:]
        /// Attempts started: `job.claimed` facts.
        public internal(set) var attempts = 0
        /// Attempts after the first of their job (claims with attempt > 1): automatic retries
        /// after a failure, fault, timeout, lease expiry or shutdown, and runs after an operator
        /// retry.
        public internal(set) var retries = 0
        /// `job.released` facts by reason (`error`, `fault`, `timeout`, `lease_expired`, `shutdown`).
        public internal(set) var releases: [String: Int] = [:]
        /// Claims whose lease ran out (`job.released` with reason `lease_expired`).
        public internal(set) var leaseExpiries = 0
        /// Late results refused by fencing: `job.rejected` facts.
        public internal(set) var rejectedResults = 0
        /// Attempts that ended in `job.finished`, `job.failed` (no retry left), `job.aborted`.
        public internal(set) var finished = 0
        public internal(set) var failed = 0
        public internal(set) var aborted = 0
        /// Operator retries: `job.retried` facts.
        public internal(set) var operatorRetries = 0
        /// Seconds from `job.claimed` to `job.finished`, for every attempt that finished.
        public internal(set) var claimToFinish = Histogram()

        public func count(_ status: JobStatus) -> Int { jobs[status] ?? 0 }
    }

    /// Facts appended so far: the position of the last fact.
    public let position: UInt64
    /// The time of the last fact.
    public let lastFactTime: Instant?
    /// Bytes of the data file in use.
    public let storeSizeBytes: Int
    /// Facts by kind (`job.claimed`, ...).
    public let factsByKind: [String: Int]
    /// Runs by their current status.
    public let runs: [RunStatus: Int]
    /// By job type.
    public let types: [String: TypeMetrics]

    /// The figures in the Prometheus text exposition format (version 0.0.4), as for
    /// node_exporter's textfile collector.
    public var prometheusText: String {
        var out = PrometheusWriter()
        let sortedTypes = types.keys.sorted()
        out.family("overseer_facts_appended_total", "counter", "Facts appended to the log (the position of the last fact).")
        out.sample("overseer_facts_appended_total", [], Double(position))
        out.family("overseer_facts_total", "counter", "Facts in the log, by kind.")
        for kind in (Set(FactKind.all.map(\.rawValue)).union(factsByKind.keys)).sorted() {
            out.sample("overseer_facts_total", [("kind", kind)], Double(factsByKind[kind] ?? 0))
        }
        out.family("overseer_last_fact_timestamp_seconds", "gauge", "Unix time of the last fact (0 for an empty log).")
        out.sample("overseer_last_fact_timestamp_seconds", [], lastFactTime.map { Double($0.microseconds) / 1e6 } ?? 0)
        out.family("overseer_store_size_bytes", "gauge", "Bytes of the store's data file in use.")
        out.sample("overseer_store_size_bytes", [], Double(storeSizeBytes))
        out.family("overseer_runs", "gauge", "Runs by current status.")
        for s in RunStatus.allCases { out.sample("overseer_runs", [("status", s.rawValue)], Double(runs[s] ?? 0)) }
        out.family("overseer_jobs", "gauge", "Jobs by type and current status.")
        for t in sortedTypes {
            for s in JobStatus.allCases { out.sample("overseer_jobs", [("type", t), ("status", s.rawValue)], Double(types[t]!.count(s))) }
        }
        func counter(_ name: String, _ help: String, _ value: (TypeMetrics) -> Int) {
            out.family(name, "counter", help)
            for t in sortedTypes { out.sample(name, [("type", t)], Double(value(types[t]!))) }
        }
        counter("overseer_job_attempts_total", "Attempts started (job.claimed facts).", \.attempts)
        counter("overseer_job_retries_total", "Attempts after a job's first (claims with attempt > 1).", \.retries)
        counter("overseer_job_lease_expiries_total", "Claims released because their lease ran out.", \.leaseExpiries)
        counter("overseer_job_rejected_results_total", "Late results refused because the claim was superseded (job.rejected).", \.rejectedResults)
        counter("overseer_job_finished_total", "Attempts that finished (job.finished).", \.finished)
        counter("overseer_job_failed_total", "Jobs that failed with no retry left (job.failed).", \.failed)
        counter("overseer_job_aborted_total", "Jobs aborted (job.aborted).", \.aborted)
        counter("overseer_job_operator_retries_total", "Failed or aborted jobs made runnable again by an operator (job.retried).", \.operatorRetries)
        out.family("overseer_job_releases_total", "counter", "Attempts that went back to unstarted (job.released), by reason.")
        for t in sortedTypes {
            for (reason, n) in types[t]!.releases.sorted(by: { $0.key < $1.key }) {
                out.sample("overseer_job_releases_total", [("type", t), ("reason", reason)], Double(n))
            }
        }
        out.family("overseer_job_claim_to_finish_seconds", "histogram", "Seconds from job.claimed to job.finished, per finished attempt.")
        for t in sortedTypes {
            let h = types[t]!.claimToFinish
            for (bound, n) in zip(h.bounds.map(PrometheusWriter.number) + ["+Inf"], h.cumulativeCounts) {
                out.sample("overseer_job_claim_to_finish_seconds_bucket", [("type", t), ("le", bound)], Double(n))
            }
            out.sample("overseer_job_claim_to_finish_seconds_sum", [("type", t)], h.sum)
            out.sample("overseer_job_claim_to_finish_seconds_count", [("type", t)], Double(h.count))
        }
        return out.text
    }
}

/// Builds Prometheus text exposition lines.
struct PrometheusWriter {
    var text = ""

    mutating func family(_ name: String, _ type: String, _ help: String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Double) {
        text += name
        if !labels.isEmpty {
            text += "{" + labels.map { "\($0.0)=\"\(PrometheusWriter.escape($0.1))\"" }.joined(separator: ",") + "}"
        }
        text += " " + PrometheusWriter.number(value) + "\n"
    }

    /// Label values escape backslash, double quote and newline.
    static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// Integers without a fraction; other values in Swift's shortest round-trip form.
    static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}

extension LogStore {
    /// The store's figures (see ``StoreMetrics``): current jobs and runs from the views, counters
    /// and claim-to-finish durations from one in-order pass over the facts, all in one read
    /// transaction.
    public func metrics() throws -> StoreMetrics {
        let size = try sizeInBytes()
        return try read { txn in
            let head = try core.head(txn)
            var types: [String: StoreMetrics.TypeMetrics] = [:]
            var runs: [RunStatus: Int] = [:]
            try txn.forEach(dbs.runs) { _, v in
                runs[try RunState(decoding: v).status, default: 0] += 1
                return true
            }
            try txn.forEach(dbs.jobs) { _, v in
                let job = try JobState(decoding: v)
                types[job.type, default: .init()].jobs[job.status, default: 0] += 1
                return true
            }
            // Job ids are RUN/TYPE when submitted from a plan; others are remembered explicitly.
            var oddTypes: [String: String] = [:]
            func type(of fact: Fact) -> String? {
                guard let job = fact.job else { return nil }
                if let t = oddTypes[job] { return t }
                if let run = fact.run, job.utf8.count > run.utf8.count, job.hasPrefix(run + "/") {
                    return String(job.dropFirst(run.count + 1))
                }
                return job
            }
            var claims: [String: Instant] = [:]
            var kinds: [String: Int] = [:]
            var lastTime: Instant?
            try txn.forEach(dbs.facts) { _, v in
                let fact = try Fact.decodeTrusted(v)
                kinds[fact.kind.rawValue, default: 0] += 1
                lastTime = fact.time
                if fact.kind == .jobCreated, let job = fact.job, let t = fact.data["type"]?.stringValue {
                    if !(fact.run.map { job == $0 + "/" + t } ?? false) { oddTypes[job] = t }
                    if types[t] == nil { types[t] = .init() }
                    return true
                }
                guard let job = fact.job, let t = type(of: fact) else { return true }
                switch fact.kind {
                case .jobClaimed:
                    types[t, default: .init()].attempts += 1
                    if (fact.attempt ?? 1) > 1 { types[t, default: .init()].retries += 1 }
                    claims[job] = fact.time
                case .jobFinished:
                    types[t, default: .init()].finished += 1
                    if let start = claims.removeValue(forKey: job) {
                        types[t, default: .init()].claimToFinish.observe(Double(fact.time.microseconds - start.microseconds) / 1e6)
                    }
                case .jobFailed:
                    types[t, default: .init()].failed += 1
                    claims[job] = nil
                case .jobReleased:
                    let reason = fact.reason ?? "unknown"
                    types[t, default: .init()].releases[reason, default: 0] += 1
                    if reason == "lease_expired" { types[t, default: .init()].leaseExpiries += 1 }
                    claims[job] = nil
                case .jobAborted:
                    types[t, default: .init()].aborted += 1
                    claims[job] = nil
                case .jobRetried:
                    types[t, default: .init()].operatorRetries += 1
                case .jobRejected:
                    types[t, default: .init()].rejectedResults += 1
                default:
                    break
                }
                return true
            }
            return StoreMetrics(
                position: head.position, lastFactTime: lastTime, storeSizeBytes: size, factsByKind: kinds, runs: runs,
                types: types)
        }
    }
}
