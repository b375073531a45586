import Foundation

@testable import Overseer

// The store verification as it was before it was made fast (commit 63fe3ab): one fact at a time,
// each line decoded and re-encoded by `Fact.decode`, folded into `MemoryViews`, every index
// compared through order-independent digests. Kept here, unoptimised, as the oracle that
// `LogStore.verify()` must agree with on every store, intact or tampered with: the same
// violations, in the same order, with the same messages, and the same counts.

/// Checks fact lines one by one, as `ChainChecker` did.
struct ReferenceChainChecker {
    var previous: (position: UInt64, hash: Digest, time: Instant)?
    var report = VerifyReport()

    mutating func check(_ bytes: some Collection<UInt8>) -> Fact? {
        let fact: Fact
        do {
            fact = try Fact.decode(line: bytes)
        } catch {
            report.add(Violation(kind: error.isHashMismatch ? .hashChain : .format, position: error.position, line: nil, message: error.message))
            if let value = try? JSONValue.parse(bytes), let p = value["position"]?.intValue, p >= 1,
                let h = value["hash"]?.stringValue.flatMap(Digest.init(hex:)),
                let t = value["time"]?.stringValue.flatMap(Instant.init(rfc3339:))
            {
                if previous == nil { report.firstPosition = UInt64(p) }
                previous = (UInt64(p), h, t)
                report.lastPosition = UInt64(p)
            }
            return nil
        }
        report.facts += 1
        if let prev = previous {
            if fact.position == prev.position + 1 {
                if fact.prev != prev.hash {
                    report.add(Violation(kind: .hashChain, position: fact.position, line: nil, message: "prev \(fact.prev.hex) does not match the hash of position \(prev.position) (\(prev.hash.hex))"))
                }
            } else {
                report.add(Violation(kind: .density, position: fact.position, line: nil, message: "position \(fact.position) follows position \(prev.position)"))
            }
            if fact.time < prev.time {
                report.add(Violation(kind: .time, position: fact.position, line: nil, message: "time \(fact.time) is earlier than \(prev.time) at position \(prev.position)"))
            }
        } else {
            report.firstPosition = fact.position
            if fact.position == 1 {
                if fact.prev != .zero {
                    report.add(Violation(kind: .hashChain, position: 1, line: nil, message: "the first fact's prev must be all zeros"))
                }
            } else {
                report.add(Violation(kind: .density, position: fact.position, line: nil, message: "the log starts at position \(fact.position), not 1"))
            }
        }
        previous = (fact.position, fact.hash, fact.time)
        report.lastPosition = fact.position
        report.headHash = fact.hash
        return fact
    }
}

struct ReferenceKeySetDigest: Equatable {
    var count = 0
    var sum: UInt64 = 0

    mutating func add(_ bytes: some Sequence<UInt8>) {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        h ^= h >> 33
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        count += 1
        sum = sum &+ h
    }
}

extension LogStore {
    /// The verification of commit 63fe3ab.
    func referenceVerify() throws -> VerifyReport {
        try read { txn in
            let dbs = self.dbs
            let views = LMDBViews(txn: txn, dbs: dbs)
            var checker = ReferenceChainChecker()
            var memory = MemoryViews()
            var lastOfRun: [UInt64: [String]] = [:]
            try txn.forEach(dbs.runs) { _, v in
                let run = try RunState(decoding: v)
                lastOfRun[run.position, default: []].append(run.id)
                return true
            }
            var expected = (byJob: ReferenceKeySetDigest(), byRun: ReferenceKeySetDigest(), byTime: ReferenceKeySetDigest(), ids: ReferenceKeySetDigest(), args: ReferenceKeySetDigest())
            var expectedReady = 0
            var expectedWaiting = 0
            var foldBroken = false
            var last: UInt64 = 0
            try txn.forEach(dbs.facts) { k, v in
                let position = readBigEndian64(k)
                guard let fact = checker.check(UnsafeRawBufferPointer(v)) else {
                    foldBroken = true
                    return true
                }
                if fact.position != position {
                    checker.report.add(Violation(kind: .index, position: position, line: nil, message: "stored under position \(position) but says \(fact.position)"))
                }
                last = position
                expected.byTime.add(Keys.time(fact.time, fact.position))
                expected.ids.add(Array(fact.id.utf8))
                if let j = fact.job { expected.byJob.add(Keys.prefixed(j, fact.position)) }
                if let r = fact.run {
                    expected.byRun.add(Keys.prefixed(r, fact.position))
                    if fact.kind == .runCreated {
                        expected.args.add(Array(r.utf8) + [0] + (fact.data["args"] ?? .object([:])).canonicalBytes)
                    }
                }
                if !foldBroken {
                    do {
                        try memory.apply(fact)
                    } catch {
                        checker.report.add(Violation(kind: .transition, position: fact.position, line: nil, message: "\(error)"))
                        foldBroken = true
                    }
                }
                if !foldBroken, let done = lastOfRun.removeValue(forKey: fact.position) {
                    for runID in done {
                        expectedReady += try referenceCompareRun(runID, memory: &memory, views: views, txn: txn, report: &checker.report, expectedWaiting: &expectedWaiting)
                    }
                }
                return checker.report.violations.count < 100
            }
            var report = checker.report
            if !foldBroken {
                for (_, ids) in lastOfRun.sorted(by: { $0.key < $1.key }) {
                    for id in ids {
                        report.add(Violation(kind: .view, position: nil, line: nil, message: "run '\(id)': the stored summary's last position matches no fact of the run"))
                    }
                }
                for id in memory.runs.keys.sorted() {
                    report.add(Violation(kind: .view, position: nil, line: nil, message: "run '\(id)': the stored summary's last position is wrong or missing"))
                }
                let storedJobs = try txn.count(dbs.jobs)
                if storedJobs != report.jobs {
                    report.add(Violation(kind: .view, position: nil, line: nil, message: "the jobs view holds \(storedJobs) jobs, the facts make \(report.jobs)"))
                }
                let storedWaiting = try txn.count(dbs.waiting)
                if storedWaiting != expectedWaiting {
                    report.add(Violation(kind: .view, position: nil, line: nil, message: "the waiting view holds \(storedWaiting) entries, the facts make \(expectedWaiting)"))
                }
                let storedReady = try txn.count(dbs.ready)
                if storedReady != expectedReady {
                    report.add(Violation(kind: .view, position: nil, line: nil, message: "the ready set holds \(storedReady) entries, the facts make \(expectedReady)"))
                }
                var storedActive: [String: Int] = [:]
                try txn.forEach(dbs.active) { k, v in
                    storedActive[String(decoding: k, as: UTF8.self)] = Int(readBigEndian64(v))
                    return true
                }
                if storedActive != memory.activeByType {
                    report.add(Violation(kind: .view, position: nil, line: nil, message: "live claims by type: stored \(storedActive.sorted { $0.key < $1.key }), folded \(memory.activeByType.sorted { $0.key < $1.key })"))
                }
            }
            func actual(_ db: Database, withValues: Bool) throws -> ReferenceKeySetDigest {
                var d = ReferenceKeySetDigest()
                try txn.forEach(db) { k, v in
                    d.add(withValues ? Array(k) + [0] + Array(v) : Array(k))
                    return true
                }
                return d
            }
            for (name, db, want, withValues) in [("by_job", dbs.byJob, expected.byJob, false), ("by_run", dbs.byRun, expected.byRun, false), ("by_time", dbs.byTime, expected.byTime, false), ("fact_ids", dbs.factIDs, expected.ids, false), ("run_args", dbs.runArgs, expected.args, true)] {
                let got = try actual(db, withValues: withValues)
                if got != want {
                    report.add(Violation(kind: .index, position: nil, line: nil, message: "index \(name) holds \(got.count) entries that do not match the \(want.count) the facts imply"))
                }
            }
            let head = try core.head(txn)
            if head.position != last || (last > 0 && head.hash != report.headHash) {
                report.add(Violation(kind: .head, position: head.position, line: nil, message: "the recorded head (position \(head.position), \(head.hash.hex)) differs from the last fact (position \(last), \(report.headHash.hex))"))
            }
            return report
        }
    }

    private func referenceCompareRun(_ id: String, memory: inout MemoryViews, views: LMDBViews, txn: Transaction, report: inout VerifyReport, expectedWaiting: inout Int) throws -> Int {
        guard let folded = memory.runs.removeValue(forKey: id) else {
            report.add(Violation(kind: .view, position: nil, line: nil, message: "run '\(id)' is in the runs view but no fact creates it"))
            return 0
        }
        report.runs += 1
        if let stored = try views.run(id) {
            if stored != folded {
                report.add(Violation(kind: .view, position: folded.position, line: nil, message: "run '\(id)': stored summary \(stored) differs from the fold \(folded)"))
            }
        }
        var ready = 0
        for jobID in memory.jobsOfRun.removeValue(forKey: id) ?? [] {
            guard let job = memory.jobs.removeValue(forKey: jobID) else { continue }
            report.jobs += 1
            if let stored = try views.job(jobID) {
                if stored != job {
                    report.add(Violation(kind: .view, position: job.position, line: nil, message: "job '\(jobID)': stored state differs from the fold (status \(stored.status) vs \(job.status), revision \(stored.revision) vs \(job.revision))"))
                }
            } else {
                report.add(Violation(kind: .view, position: job.position, line: nil, message: "job '\(jobID)' is missing from the jobs view"))
            }
            let storedWaiting = try views.unfinishedParents(jobID)
            let foldedWaiting = memory.waiting.removeValue(forKey: jobID) ?? 0
            if storedWaiting != foldedWaiting {
                report.add(Violation(kind: .view, position: job.position, line: nil, message: "job '\(jobID)': \(storedWaiting) unfinished parents stored, the fold counts \(foldedWaiting)"))
            }
            if foldedWaiting > 0 { expectedWaiting += 1 }
            if let since = job.readySince {
                ready += 1
                let entry = ReadyEntry(priority: job.priority, since: since, job: job.id, type: job.type, notBefore: job.notBefore)
                let stored = try txn.getBytes(dbs.ready, entry.key)
                if stored != entry.value {
                    report.add(Violation(kind: .view, position: job.position, line: nil, message: "job '\(jobID)': its ready-set entry is missing or differs"))
                }
                memory.ready.removeValue(forKey: entry.key)
            }
        }
        return ready
    }
}
