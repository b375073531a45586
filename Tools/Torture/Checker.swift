import Foundation
import Overseer
import Synchronization

// The checker is written independently of the library's fold: it parses the exported JSON Lines
// with JSONSerialization, recomputes the hash chain itself (SHA-256 through `Digest.sha256`), and
// keeps its own bookkeeping of jobs and runs from docs/log-format.md. It uses the library only to
// compare against `state(asOf:)` and to run `ExportFile.verify` on the export and on tampered copies.

struct CheckerInput {
    var exportPath: String
    var journals: [String]
    /// Per job type: live claims allowed at once (from the seed's type table).
    var limits: [String: Int]
    /// The library's store, for `state(asOf:)` (nil: no as-of comparison).
    var store: LogStore?
    var points: Int
    var flips: Int
    var seed: UInt64
    /// Whether the system was quiescent when exported (then every job must have ended).
    var quiescent: Bool
}

struct CheckerResult {
    var facts = 0
    var acks = 0
    var journalsRead = 0
    var storeErrorsSeen = 0
    var runs = 0
    var jobs = 0
    var asOfPoints = 0
    var flipsTried = 0
    var flipsDetected = 0
    var kinds: [String: Int] = [:]
    var releases: [String: Int] = [:]
    var finalStatus: [String: Int] = [:]
    var runStatus: [String: Int] = [:]
    var blocked = 0
    var maxLiveByType: [String: Int] = [:]
    var violations: [String] = []
    var violationCount = 0
    var seconds: [String: Double] = [:]

    mutating func violation(_ s: String) {
        violationCount += 1
        if violations.count < 200 { violations.append(s) }
    }
}

private struct CJob {
    let id: String
    let run: String
    let type: String
    let parents: [String]
    var children: [String] = []
    var status = "unstarted"
    var revision = 1
    var attempt = 0
    var claimWorker: String?
    var claimAttempt = 0
    var claimPosition = 0
    /// Position of the abort that ended it (cleared by an operator retry).
    var abortedAt: Int?
}

private struct CRun {
    let id: String
    var jobs: [String] = []
    var abortedByOperator = false
    var graph: [String: [String]] = [:]
}

/// A cascade whose reach is checked once its consecutive facts end.
private enum PendingGroup {
    case job(root: String, position: Int)
    case run(id: String, position: Int)
}

struct Checker {
    let input: CheckerInput
    var result = CheckerResult()
    private var jobs: [String: CJob] = [:]
    private var runs: [String: CRun] = [:]
    private var runOrder: [String] = []
    private var liveByType: [String: Int] = [:]
    private var pending: PendingGroup?
    /// The checker's own state at as-of points not yet compared with the library.
    private var batch: [Projection] = []

    init(_ input: CheckerInput) { self.input = input }

    mutating func run() -> CheckerResult {
        let lines: [[UInt8]]
        do {
            lines = try Checker.readLines(input.exportPath)
        } catch {
            result.violation("export: cannot read \(input.exportPath): \(error)")
            return result
        }
        result.facts = lines.count
        let acks = readJournals()
        var t = Date()
        checkLog(lines, acks: acks)
        result.seconds["log"] = Date().timeIntervalSince(t)
        t = Date()
        checkExportFile(expectedFacts: lines.count)
        result.seconds["export"] = Date().timeIntervalSince(t)
        return result
    }

    // MARK: Reading

    static func readLines(_ path: String) throws -> [[UInt8]] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        var lines = Array(data).split(separator: 0x0A, omittingEmptySubsequences: false).map(Array.init)
        if lines.last == [] { lines.removeLast() }
        return lines
    }

    /// Every acknowledged append: position → id (a position acknowledged with two ids is a violation).
    private mutating func readJournals() -> [Int: String] {
        var acks: [Int: String] = [:]
        for path in input.journals {
            guard let data = FileManager.default.contents(atPath: path) else {
                result.violation("journal \(path) cannot be read")
                continue
            }
            result.journalsRead += 1
            var text = String(decoding: data, as: UTF8.self)
            // A process killed mid-write may leave a last line without its newline: not an ack.
            if !text.hasSuffix("\n"), let nl = text.lastIndex(of: "\n") { text = String(text[...nl]) } else if !text.hasSuffix("\n") { text = "" }
            for line in text.split(separator: "\n") {
                if line.hasPrefix("E ") {
                    result.storeErrorsSeen += 1
                    continue
                }
                guard line.hasPrefix("A ") else { continue }
                let parts = line.split(separator: " ")
                guard parts.count == 3, let p = Int(parts[1]) else {
                    result.violation("journal \(path): malformed ack line '\(line)'")
                    continue
                }
                let id = String(parts[2])
                result.acks += 1
                if let other = acks[p], other != id {
                    result.violation("position \(p) acknowledged with two different fact ids: \(other) and \(id) (\(path))")
                }
                acks[p] = id
            }
        }
        return acks
    }

    // MARK: The log

    private mutating func checkLog(_ lines: [[UInt8]], acks: [Int: String]) {
        var prev = String(repeating: "0", count: 64)
        var lastTime = ""
        var ids: [String: Int] = [:]
        var positionsSeen: [Int: String] = [:]
        // The as-of comparison points, sorted.
        var rng = TortureRNG.stream(input.seed, "checker-points")
        var points: Set<Int> = []
        if lines.count <= input.points {
            points = Set(1...max(1, lines.count))
        } else {
            while points.count < input.points { points.insert(rng.int(1...lines.count)) }
        }
        let hashMarker = Array(",\"hash\":\"".utf8)
        for (index, line) in lines.enumerated() {
            let lineNo = index + 1
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
                result.violation("line \(lineNo): not a JSON object")
                continue
            }
            let f = CFact(object)
            // Positions dense from 1.
            if f.position != lineNo {
                result.violation("line \(lineNo): position \(f.position.map(String.init) ?? "missing"), expected \(lineNo) (positions must be dense)")
            }
            let position = f.position ?? lineNo
            positionsSeen[position] = f.id
            // Times never decrease (fixed-width RFC 3339 in UTC sorts as text).
            guard let time = f.time, time.utf8.count == 27, time.hasSuffix("Z") else {
                result.violation("line \(lineNo): time '\(f.time ?? "missing")' is not RFC 3339 UTC with six fractional digits")
                continue
            }
            if time < lastTime { result.violation("line \(lineNo): time \(time) is before the previous fact's \(lastTime)") }
            lastTime = time
            // The hash chain, recomputed from the bytes.
            if let cut = Checker.lastRange(of: hashMarker, in: line) {
                let body = Array(line[..<cut]) + [UInt8(ascii: "}")]
                let computed = Digest.sha256(body).hex
                let tail = Array(",\"hash\":\"\(computed)\"}".utf8)
                if Array(line[cut...]) != tail || f.hash != computed {
                    result.violation("line \(lineNo): hash mismatch (stored \(f.hash ?? "none"), computed \(computed))")
                }
                if f.prev != prev { result.violation("line \(lineNo): prev \(f.prev ?? "none") is not the previous hash \(prev)") }
                prev = f.hash ?? computed
            } else {
                result.violation("line \(lineNo): no hash member")
            }
            guard let id = f.id, let kind = f.kind else {
                result.violation("line \(lineNo): no id or kind")
                continue
            }
            if let first = ids.updateValue(position, forKey: id) { result.violation("line \(lineNo): fact id \(id) repeats position \(first)") }
            result.kinds[kind, default: 0] += 1
            closePending(before: f)
            apply(f, position: position)
            if input.store != nil, points.contains(position) {
                batch.append(projection(at: position))
                if batch.count >= 8 { compareWithLibrary() }
            }
        }
        compareWithLibrary()
        closePending(before: nil)
        // Every acknowledged append is in the log, at its position, with its id.
        for (p, id) in acks.sorted(by: { $0.key < $1.key }) {
            guard let found = positionsSeen[p] else {
                result.violation("acknowledged fact \(id) at position \(p) is missing (the log ends at \(lines.count))")
                continue
            }
            if found != id { result.violation("acknowledged position \(p) holds fact \(found), not the acknowledged \(id)") }
        }
        result.runs = runs.count
        result.jobs = jobs.count
        finalChecks()
    }

    static func lastRange(of needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        var i = hay.count - needle.count
        while i >= 0 {
            if hay[i] == needle[0] && Array(hay[i..<i + needle.count]) == needle { return i }
            i -= 1
        }
        return nil
    }

    // MARK: The fold (own bookkeeping)

    private mutating func apply(_ f: CFact, position p: Int) {
        let kind = f.kind!
        func bad(_ s: String) { result.violation("position \(p) (\(kind) \(f.job ?? f.run ?? "")): \(s)") }
        switch kind {
        case "run.created":
            guard let r = f.run else { return bad("no run") }
            if runs[r] != nil { return bad("run created twice") }
            var run = CRun(id: r)
            if let g = f.data["graph"] as? [String: Any] {
                for (t, ps) in g { run.graph[t] = (ps as? [Any])?.compactMap { $0 as? String } ?? [] }
            } else {
                bad("run.created without a graph")
            }
            runs[r] = run
            runOrder.append(r)
            return
        case "run.aborted":
            guard let r = f.run, runs[r] != nil else { return bad("abort of an unknown run") }
            runs[r]!.abortedByOperator = true
            pending = .run(id: r, position: p)
            return
        case "worker.started", "worker.stopped":
            if f.worker == nil { bad("no worker") }
            return
        default:
            break
        }
        guard kind.hasPrefix("job."), let jobID = f.job, let runID = f.run else { return bad("unknown kind or no job/run") }
        if kind == "job.created" {
            guard f.revision == 1 else { return bad("job.created must be revision 1, is \(f.revision.map(String.init) ?? "null")") }
            guard jobs[jobID] == nil else { return bad("job created twice") }
            guard runs[runID] != nil else { return bad("job of an unknown run") }
            guard let type = f.data["type"] as? String else { return bad("no data.type") }
            let parents = (f.data["parents"] as? [Any])?.compactMap { $0 as? String } ?? []
            if jobID != "\(runID)/\(type)" { bad("job id is not RUN/TYPE") }
            let expected = (runs[runID]!.graph[type] ?? []).map { "\(runID)/\($0)" }.sorted()
            if parents.sorted() != expected { bad("parents \(parents) differ from the run's graph \(expected)") }
            for parent in parents {
                guard jobs[parent]?.run == runID else { bad("parent \(parent) is not an earlier job of the run"); continue }
                jobs[parent]!.children.append(jobID)
            }
            jobs[jobID] = CJob(id: jobID, run: runID, type: type, parents: parents)
            runs[runID]!.jobs.append(jobID)
            return
        }
        guard var job = jobs[jobID] else { return bad("fact about an unknown job") }
        if job.run != runID { return bad("job belongs to run \(job.run)") }
        if kind == "job.rejected" {
            if f.revision != nil { bad("job.rejected carries a revision") }
            // A rejected result comes from a claim that no longer holds.
            let claimRev = f.data["claim_revision"] as? Int
            let current = f.data["current_revision"] as? Int
            if current != job.revision { bad("rejection says current revision \(current.map(String.init) ?? "?"), the log says \(job.revision)") }
            if job.status == "started", job.claimWorker == f.worker, claimRev == job.revision {
                bad("the live claim's own result was rejected")
            }
            return
        }
        guard let rev = f.revision, rev == job.revision + 1 else {
            return bad("revision \(f.revision.map(String.init) ?? "null"), expected \(job.revision + 1)")
        }
        job.revision = rev
        let before = job.status
        switch kind {
        case "job.claimed":
            if job.status != "unstarted" {
                if let at = job.abortedAt, job.status == "aborted" {
                    bad("claim of a job aborted at position \(at) without an operator retry since")
                } else {
                    bad("claim while \(job.status)")
                }
            }
            if let w = job.claimWorker { bad("a second live claim (held by \(w) since position \(job.claimPosition))") }
            for parent in job.parents where jobs[parent]?.status != "finished" {
                bad("claim before parent \(parent) finished (it is \(jobs[parent]?.status ?? "missing"))")
            }
            guard let a = f.attempt, a == job.attempt + 1 else { bad("attempt \(f.attempt.map(String.init) ?? "null"), expected \(job.attempt + 1)"); break }
            guard let w = f.worker else { bad("claim without a worker"); break }
            job.attempt = a
            job.claimWorker = w
            job.claimAttempt = a
            job.claimPosition = p
            job.status = "started"
        case "job.finished", "job.failed":
            if job.status != "started" { bad("outcome while \(job.status)") }
            // Fencing: only the live claim's holder records its outcome.
            if f.worker != job.claimWorker { bad("outcome by \(f.worker ?? "nobody"), but the claim is held by \(job.claimWorker ?? "nobody")") }
            if f.attempt != job.attempt { bad("outcome for attempt \(f.attempt.map(String.init) ?? "null"), current \(job.attempt)") }
            job.status = kind == "job.finished" ? "finished" : "failed"
            job.claimWorker = nil
        case "job.released":
            if job.status != "started" { bad("release while \(job.status)") }
            let reason = f.reason ?? "none"
            result.releases[reason, default: 0] += 1
            if reason == "lease_expired" {
                if (f.data["expired_worker"] as? String) != job.claimWorker { bad("lease release names \(f.data["expired_worker"] ?? "nobody"), the claim is \(job.claimWorker ?? "nobody")'s") }
            } else if f.worker != job.claimWorker {
                bad("release by \(f.worker ?? "nobody"), but the claim is held by \(job.claimWorker ?? "nobody")")
            }
            job.status = "unstarted"
            job.claimWorker = nil
        case "job.aborted":
            if job.status == "finished" || job.status == "aborted" { bad("abort while \(job.status)") }
            job.status = "aborted"
            job.claimWorker = nil
            job.abortedAt = p
            let cause = f.data["cause"] as? String
            if cause == nil {
                // The first fact of an abort (by a handler or an operator): its descendants follow.
                pending = .job(root: jobID, position: p)
            }
        case "job.retried":
            if job.status != "failed" && job.status != "aborted" { bad("retry while \(job.status)") }
            job.status = "unstarted"
            job.abortedAt = nil
        default:
            bad("unknown job fact kind")
        }
        if before == "started" && job.status != "started" { liveByType[job.type, default: 0] -= 1 }
        if before != "started" && job.status == "started" {
            liveByType[job.type, default: 0] += 1
            let live = liveByType[job.type]!
            result.maxLiveByType[job.type] = max(result.maxLiveByType[job.type] ?? 0, live)
            if let limit = input.limits[job.type], live > limit { bad("\(live) live claims of type \(job.type), the limit is \(limit)") }
        }
        jobs[jobID] = job
    }

    /// Ends a pending cascade when `next` does not continue it, and checks its reach.
    private mutating func closePending(before next: CFact?) {
        guard let group = pending else { return }
        if let next, next.kind == "job.aborted" {
            let cause = next.data["cause"] as? String
            switch group {
            case .job(let root, _) where cause == root: return
            case .run(let id, _) where cause == "run" && next.run == id: return
            default: break
            }
        }
        pending = nil
        switch group {
        case .job(let root, let at):
            for d in descendants(of: root) {
                let s = jobs[d]?.status ?? "missing"
                if s != "finished" && s != "aborted" { result.violation("the abort of \(root) at position \(at) did not reach its descendant \(d) (\(s))") }
            }
        case .run(let id, let at):
            for j in runs[id]?.jobs ?? [] {
                let s = jobs[j]!.status
                if s == "unstarted" || s == "started" { result.violation("the abort of run \(id) at position \(at) left \(j) \(s)") }
            }
        }
    }

    private func descendants(of id: String) -> [String] {
        var seen: Set<String> = [id]
        var out: [String] = []
        var frontier = jobs[id]?.children ?? []
        while !frontier.isEmpty {
            var next: [String] = []
            for c in frontier where seen.insert(c).inserted {
                out.append(c)
                next.append(contentsOf: jobs[c]?.children ?? [])
            }
            frontier = next
        }
        return out
    }

    private func runStatus(_ r: CRun) -> String {
        let total = r.jobs.count
        var finished = 0, started = 0, failed = 0, ready = 0
        for id in r.jobs {
            let j = jobs[id]!
            switch j.status {
            case "finished": finished += 1
            case "started": started += 1
            case "failed": failed += 1
            case "unstarted": if j.parents.allSatisfy({ jobs[$0]?.status == "finished" }) { ready += 1 }
            default: break
            }
        }
        if total > 0 && finished == total { return "finished" }
        if total > 0 && started == 0 && ready == 0 { return r.abortedByOperator || failed == 0 ? "aborted" : "failed" }
        return "running"
    }

    /// The failed or aborted ancestors that keep an unstarted job from ever running.
    private func blockers(of id: String) -> [String] {
        var found: [String] = []
        var seen: Set<String> = [id]
        var frontier = jobs[id]?.parents ?? []
        while !frontier.isEmpty {
            var next: [String] = []
            for p in frontier where seen.insert(p).inserted {
                guard let j = jobs[p] else { continue }
                if j.status == "failed" || j.status == "aborted" { found.append(p) } else if j.status != "finished" { next.append(contentsOf: j.parents) }
            }
            frontier = next
        }
        return found
    }

    // MARK: Against the library

    private func projection(at p: Int) -> Projection {
        var j: [String: Projection.JobView] = [:]
        j.reserveCapacity(jobs.count)
        for (id, job) in jobs { j[id] = Projection.JobView(status: job.status, attempt: job.attempt, revision: job.revision) }
        var r: [String: String] = [:]
        for (id, run) in runs { r[id] = runStatus(run) }
        return Projection(position: p, jobs: j, runs: r)
    }

    /// Compares the batched points with `state(asOf:)`, two points at a time (one per core).
    private mutating func compareWithLibrary() {
        guard !batch.isEmpty, let store = input.store else { return }
        let t0 = Date()
        defer { result.seconds["as_of", default: 0] += Date().timeIntervalSince(t0) }
        let points = batch
        batch.removeAll()
        result.asOfPoints += points.count
        let found = Mutex<[Int: String]>([:])
        DispatchQueue.concurrentPerform(iterations: points.count) { i in
            if let problem = Checker.compare(points[i], store: store) { found.withLock { $0[points[i].position] = problem } }
        }
        for (_, problem) in found.withLock({ $0 }).sorted(by: { $0.key < $1.key }) { result.violation(problem) }
    }

    private static func compare(_ mine: Projection, store: LogStore) -> String? {
        let p = mine.position
        let snap: LogSnapshot
        do {
            snap = try store.state(asOf: .position(UInt64(p)))
        } catch {
            return "state(asOf: @\(p)) threw: \(error)"
        }
        var diffs: [String] = []
        if snap.position != UInt64(p) { diffs.append("its position is \(snap.position)") }
        if snap.views.jobs.count != mine.jobs.count { diffs.append("\(snap.views.jobs.count) jobs, the checker has \(mine.jobs.count)") }
        if snap.views.runs.count != mine.runs.count { diffs.append("\(snap.views.runs.count) runs, the checker has \(mine.runs.count)") }
        for (id, j) in mine.jobs {
            guard let l = snap.views.jobs[id] else {
                diffs.append("job \(id) missing")
                continue
            }
            if l.status.rawValue != j.status || l.attempt != j.attempt || l.revision != UInt64(j.revision) {
                diffs.append("job \(id): library \(l.status.rawValue) attempt \(l.attempt) rev \(l.revision), checker \(j.status) attempt \(j.attempt) rev \(j.revision)")
            }
        }
        for (id, status) in mine.runs {
            guard let l = snap.views.runs[id] else {
                diffs.append("run \(id) missing")
                continue
            }
            if l.status.rawValue != status { diffs.append("run \(id): library \(l.status.rawValue), checker \(status)") }
        }
        guard !diffs.isEmpty else { return nil }
        return "state(asOf: @\(p)) differs from the checker's fold: \(diffs.prefix(5).joined(separator: "; "))\(diffs.count > 5 ? " (+\(diffs.count - 5) more)" : "")"
    }

    // MARK: The end

    private mutating func finalChecks() {
        for r in runOrder {
            let s = runStatus(runs[r]!)
            result.runStatus[s, default: 0] += 1
            if input.quiescent && s == "running" { result.violation("run \(r) is still running at quiescence") }
        }
        for (id, j) in jobs.sorted(by: { $0.key < $1.key }) {
            result.finalStatus[j.status, default: 0] += 1
            guard input.quiescent else { continue }
            switch j.status {
            case "finished", "failed", "aborted": break
            case "unstarted":
                if blockers(of: id).isEmpty {
                    result.violation("job \(id) is unstarted at quiescence with no failed or aborted ancestor")
                } else {
                    result.blocked += 1
                }
            default:
                result.violation("job \(id) is \(j.status) at quiescence (claimed by \(j.claimWorker ?? "?") at position \(j.claimPosition))")
            }
        }
    }

    /// The export verifies, and any single flipped byte is detected.
    private mutating func checkExportFile(expectedFacts: Int) {
        do {
            let report = try ExportFile.verify(path: input.exportPath)
            if !report.ok { result.violation("ExportFile.verify of the untouched export: \(report)") }
            if report.facts != expectedFacts { result.violation("ExportFile.verify counted \(report.facts) facts, the file has \(expectedFacts)") }
        } catch {
            result.violation("ExportFile.verify of the untouched export threw: \(error)")
        }
        guard input.flips > 0, let original = FileManager.default.contents(atPath: input.exportPath), !original.isEmpty else { return }
        let bytes = [UInt8](original)
        var rng = TortureRNG.stream(input.seed, "flips")
        let flips = (0..<input.flips).map { _ in (rng.int(0...bytes.count - 1), UInt8(1 << rng.int(0...7))) }
        // Two copies, one per core; each flips one byte at a time, verifies, and puts it back.
        let lanes = 2
        var copies: [String] = []
        for lane in 0..<lanes {
            let copy = input.exportPath + ".flip\(lane)"
            guard FileManager.default.createFile(atPath: copy, contents: original) else {
                result.violation("cannot write \(copy)")
                return
            }
            copies.append(copy)
        }
        defer { for c in copies { unlink(c) } }
        let missed = Mutex<[String]>([])
        let detected = Mutex(0)
        let lanesCopies = copies
        DispatchQueue.concurrentPerform(iterations: lanes) { lane in
            let fd = open(lanesCopies[lane], O_WRONLY)
            defer { close(fd) }
            for k in stride(from: lane, to: flips.count, by: lanes) {
                let (i, mask) = flips[k]
                var flipped = bytes[i] ^ mask
                _ = pwrite(fd, &flipped, 1, off_t(i))
                var seen = false
                do {
                    seen = !(try ExportFile.verify(path: lanesCopies[lane]).ok)
                } catch {
                    seen = true
                }
                if seen {
                    detected.withLock { $0 += 1 }
                } else {
                    missed.withLock { $0.append("flipping byte \(i) of the export (0x\(String(bytes[i], radix: 16)) → 0x\(String(flipped, radix: 16))) is not detected") }
                }
                var back = bytes[i]
                _ = pwrite(fd, &back, 1, off_t(i))
            }
        }
        result.flipsTried += flips.count
        result.flipsDetected += detected.withLock { $0 }
        for m in missed.withLock({ $0 }) { result.violation(m) }
    }
}

/// The checker's own view at one position, to compare with `state(asOf:)`.
private struct Projection: Sendable {
    struct JobView: Sendable {
        let status: String
        let attempt: Int
        let revision: Int
    }
    let position: Int
    let jobs: [String: JobView]
    let runs: [String: String]
}

/// One exported fact as parsed by JSONSerialization.
private struct CFact {
    let position: Int?
    let time: String?
    let id: String?
    let kind: String?
    let run: String?
    let job: String?
    let revision: Int?
    let worker: String?
    let attempt: Int?
    let reason: String?
    let data: [String: Any]
    let prev: String?
    let hash: String?

    init(_ o: [String: Any]) {
        func int(_ k: String) -> Int? { o[k] as? Int }
        position = int("position")
        time = o["time"] as? String
        id = o["id"] as? String
        kind = o["kind"] as? String
        run = o["run"] as? String
        job = o["job"] as? String
        revision = int("revision")
        worker = o["worker"] as? String
        attempt = int("attempt")
        reason = o["reason"] as? String
        data = o["data"] as? [String: Any] ?? [:]
        prev = o["prev"] as? String
        hash = o["hash"] as? String
    }
}
