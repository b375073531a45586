import Foundation
import Testing

@testable import Overseer


/// A seed from `OVERSEER_SEED` (to replay a failure), else `fallback`.
func overseerTestSeed(_ fallback: UInt64) -> UInt64 {
    if let s = ProcessInfo.processInfo.environment["OVERSEER_SEED"], let v = UInt64(s) { return v }
    return fallback
}

// MARK: - The independent model

/// What a job should look like, kept by plain bookkeeping (no Fold, no MemoryViews).
struct LogModelJob: Equatable {
    var id: String
    var run: String
    var type: String
    var parents: [String]
    var children: [String] = []
    var priority: Int
    var createdPosition: UInt64
    var status: JobStatus = .unstarted
    var revision: UInt64 = 1
    var attempt = 0
    var attemptBase = 0
    var rejected = 0
    var worker: String?
    var notBefore: Instant?
    var readySince: UInt64?
    var position: UInt64
}

struct LogModelRun: Equatable {
    var id: String
    var jobs: [String]  // creation order
    var createdPosition: UInt64
    var position: UInt64
    var abortedByOperator = false
}

struct LogModel {
    var jobs: [String: LogModelJob] = [:]
    var runs: [String: LogModelRun] = [:]
    var runOrder: [String] = []

    /// Readiness from scratch after every fact: unstarted with every parent finished. A job keeps
    /// the position at which it last became ready while it stays ready.
    mutating func refreshReadiness(at position: UInt64) {
        for id in jobs.keys {
            var j = jobs[id]!
            let ready = j.status == .unstarted && j.parents.allSatisfy { jobs[$0]!.status == .finished }
            if ready {
                if j.readySince == nil { j.readySince = position }
            } else {
                j.readySince = nil
            }
            jobs[id] = j
        }
    }

    func counts(_ run: String) -> [JobStatus: Int] {
        var c: [JobStatus: Int] = [:]
        for id in runs[run]!.jobs { c[jobs[id]!.status, default: 0] += 1 }
        return c
    }

    func readyCount(_ run: String) -> Int { runs[run]!.jobs.filter { jobs[$0]!.readySince != nil }.count }

    /// finished when all finished; otherwise, when no job is started and nothing of the run is
    /// ready (delayed ones included): aborted if an operator aborted the run or no job failed,
    /// else failed; otherwise running.
    func status(_ runID: String) -> RunStatus {
        let run = runs[runID]!
        let js = run.jobs.map { jobs[$0]! }
        if js.allSatisfy({ $0.status == .finished }) { return .finished }
        if !js.contains(where: { $0.status == .started }) && !js.contains(where: { $0.readySince != nil }) {
            return run.abortedByOperator || !js.contains(where: { $0.status == .failed }) ? .aborted : .failed
        }
        return .running
    }

    /// Claim order: higher priority first, then first ready, then job id (bytes).
    var readyOrder: [(job: String, notBefore: Instant?)] {
        jobs.values.filter { $0.readySince != nil }
            .sorted { a, b in
                if a.priority != b.priority { return a.priority > b.priority }
                if a.readySince! != b.readySince! { return a.readySince! < b.readySince! }
                return Array(a.id.utf8).lexicographicallyPrecedes(Array(b.id.utf8))
            }
            .map { ($0.id, $0.notBefore) }
    }

    func descendants(of id: String) -> [String] {
        var seen: Set<String> = []
        var stack = jobs[id]!.children
        while let c = stack.popLast() {
            if seen.insert(c).inserted { stack.append(contentsOf: jobs[c]!.children) }
        }
        return seen.sorted { jobs[$0]!.createdPosition < jobs[$1]!.createdPosition }
    }

    // Transitions. Each takes the position the store gave the fact.

    mutating func createRun(_ id: String, graph: [String: [String]], priorities: [String: Int], facts: [Fact]) {
        runs[id] = LogModelRun(id: id, jobs: [], createdPosition: facts[0].position, position: facts[0].position)
        runOrder.append(id)
        for f in facts.dropFirst() {
            let type = String(f.job!.dropFirst(id.count + 1))
            let parents = graph[type]!.map { "\(id)/\($0)" }
            jobs[f.job!] = LogModelJob(
                id: f.job!, run: id, type: type, parents: parents, priority: priorities[type]!,
                createdPosition: f.position, position: f.position)
            for p in parents { jobs[p]!.children.append(f.job!) }
            runs[id]!.jobs.append(f.job!)
            runs[id]!.position = f.position
            refreshReadiness(at: f.position)
        }
    }

    private mutating func step(_ id: String, _ p: UInt64, _ change: (inout LogModelJob) -> Void) {
        var j = jobs[id]!
        change(&j)
        j.revision += 1
        j.position = p
        jobs[id] = j
        runs[j.run]!.position = p
        refreshReadiness(at: p)
    }

    mutating func claim(_ id: String, worker: String, at p: UInt64) {
        step(id, p) {
            $0.status = .started
            $0.attempt += 1
            $0.worker = worker
            $0.notBefore = nil
        }
    }
    mutating func finish(_ id: String, at p: UInt64) { step(id, p) { $0.status = .finished } }
    mutating func fail(_ id: String, at p: UInt64) { step(id, p) { $0.status = .failed } }
    mutating func release(_ id: String, notBefore: Instant?, at p: UInt64) {
        step(id, p) {
            $0.status = .unstarted
            $0.notBefore = notBefore
        }
    }
    mutating func abort(_ id: String, at p: UInt64) { step(id, p) { $0.status = .aborted } }
    mutating func retry(_ id: String, at p: UInt64) {
        step(id, p) {
            $0.status = .unstarted
            $0.attemptBase = $0.attempt
            $0.notBefore = nil
        }
    }
    mutating func reject(_ id: String, at p: UInt64) {
        jobs[id]!.rejected += 1
        jobs[id]!.position = p
        runs[jobs[id]!.run]!.position = p
    }
    mutating func abortRun(_ id: String, at p: UInt64) {
        runs[id]!.abortedByOperator = true
        runs[id]!.position = p
    }
}

// MARK: - Comparing the store with the model

func modelDifferences(job s: JobState?, model m: LogModelJob) -> [String] {
    guard let s else { return ["job \(m.id): missing in the store"] }
    var d: [String] = []
    func check<T: Equatable>(_ name: String, _ a: T, _ b: T) {
        if a != b { d.append("job \(m.id): \(name) is \(a), model says \(b)") }
    }
    check("status", s.status, m.status)
    check("revision", s.revision, m.revision)
    check("attempt", s.attempt, m.attempt)
    check("attemptBase", s.attemptBase, m.attemptBase)
    check("rejected", s.rejected, m.rejected)
    check("worker", s.worker, m.worker)
    check("notBefore", s.notBefore, m.notBefore)
    check("readySince", s.readySince, m.readySince)
    check("position", s.position, m.position)
    check("priority", s.priority, m.priority)
    check("type", s.type, m.type)
    check("parents", s.parents.sorted(), m.parents.sorted())
    check("children", s.children.sorted(), m.children.sorted())
    check("createdPosition", s.createdPosition, m.createdPosition)
    check("endedAt set", s.endedAt != nil, m.status.isTerminal)
    return d
}

func modelDifferences(run s: RunState?, model: LogModel, _ id: String) -> [String] {
    guard let s else { return ["run \(id): missing in the store"] }
    let m = model.runs[id]!
    var d: [String] = []
    func check<T: Equatable>(_ name: String, _ a: T, _ b: T) {
        if a != b { d.append("run \(id): \(name) is \(a), model says \(b)") }
    }
    check("status", s.status, model.status(id))
    check("total", s.total, m.jobs.count)
    check("counts", s.counts.filter { $0.value != 0 }, model.counts(id))
    check("ready", s.ready, model.readyCount(id))
    check("abortedByOperator", s.abortedByOperator, m.abortedByOperator)
    check("position", s.position, m.position)
    check("createdPosition", s.createdPosition, m.createdPosition)
    check("endedAt set", s.endedAt != nil, model.status(id) != .running)
    return d
}

func modelDifferences(store: LogStore, model: LogModel) throws -> [String] {
    var d: [String] = []
    for id in model.jobs.keys.sorted() {
        d += modelDifferences(job: try store.job(id), model: model.jobs[id]!)
    }
    for id in model.runOrder {
        d += modelDifferences(run: try store.run(id), model: model, id)
        let jobs = try store.jobs(inRun: id).map(\.id)
        if jobs != model.runs[id]!.jobs { d.append("run \(id): jobs \(jobs), model says \(model.runs[id]!.jobs)") }
    }
    let ready = try store.readyJobs()
    let want = model.readyOrder
    if ready.map(\.job) != want.map(\.job) || ready.map(\.notBefore) != want.map(\.notBefore) {
        d.append("ready set \(ready.map { "\($0.job)@\($0.notBefore?.description ?? "-")" }), model says \(want.map { "\($0.job)@\($0.notBefore?.description ?? "-")" })")
    }
    for r in ready where r.type != model.jobs[r.job]?.type {
        d.append("ready entry \(r.job) has type \(r.type)")
    }
    if try store.runs().map(\.id) != model.runOrder { d.append("runs \(try store.runs().map(\.id)), model says \(model.runOrder)") }
    return d
}

func modelDifferences(snapshot: RunSnapshot?, model: LogModel, run id: String, at p: UInt64) -> [String] {
    guard model.runs[id] != nil else {
        return snapshot == nil ? [] : ["@\(p): run \(id) should not exist yet"]
    }
    guard let snapshot else { return ["@\(p): run \(id) is missing"] }
    var d = modelDifferences(run: snapshot.run, model: model, id).map { "@\(p): \($0)" }
    if snapshot.jobs.map(\.id) != model.runs[id]!.jobs {
        d.append("@\(p): run \(id) jobs \(snapshot.jobs.map(\.id)), model says \(model.runs[id]!.jobs)")
    }
    for j in snapshot.jobs {
        guard let m = model.jobs[j.id] else { continue }
        d += modelDifferences(job: j, model: m).map { "@\(p): \($0)" }
    }
    return d
}

// MARK: - Random graphs

/// 1–12 types shaped as a chain, diamond, fan-out, fan-in or random DAG, with shuffled names.
func randomModelGraph(_ rng: inout SplitMixRNG) -> [String: [String]] {
    let n = rng.int(1...12)
    let names = rng.shuffle((0..<n).map { "t\($0)" })
    var parents: [Int: [Int]] = [:]
    for i in 0..<n { parents[i] = [] }
    switch rng.int(0...4) {
    case 0:  // chain
        for i in 1..<max(n, 1) { parents[i] = [i - 1] }
    case 1:  // diamond: a root, a middle layer, a sink
        if n >= 3 {
            for i in 1..<(n - 1) { parents[i] = [0] }
            parents[n - 1] = Array(1..<(n - 1))
        } else if n == 2 {
            parents[1] = [0]
        }
    case 2:  // fan-out
        for i in 1..<max(n, 1) { parents[i] = [0] }
    case 3:  // fan-in
        if n > 1 { parents[n - 1] = Array(0..<(n - 1)) }
    default:  // random DAG over earlier nodes
        for i in 1..<max(n, 1) {
            parents[i] = (0..<i).filter { _ in rng.chance(30) }
        }
    }
    var graph: [String: [String]] = [:]
    for (i, ps) in parents { graph[names[i]] = ps.map { names[$0] } }
    return graph
}

// MARK: - The test

@Suite struct ModelTests {
    @Test func splitMixMatchesTheReference() {
        var r = SplitMixRNG(seed: 0)
        #expect(r.next() == 0xE220_A839_7B1D_CDAF)
        #expect(r.next() == 0x6E78_9E6A_A1B9_65F4)
        var a = SplitMixRNG(seed: 7)
        var b = SplitMixRNG(seed: 7)
        #expect((0..<100).map { _ in a.int(3...9) } == (0..<100).map { _ in b.int(3...9) })
    }

    static let seeds: [UInt64] = (0..<20).map { overseerTestSeed(0x0DD5_EED0) &+ UInt64($0) &* 0x1_0001 }

    @Test(arguments: seeds)
    func storeViewsMatchAnIndependentModel(seed: UInt64) async throws {
        var options = StoreOptions()
        options.durability = .unsafeNoSync  // semantics are the same; the model needs thousands of commits
        try await withStore("model", options: options) { store, _ in
            var machine = LogModelMachine(store: store, seed: seed)
            try await machine.run(operations: 300)
        }
    }
}

struct LogModelMachine {
    let store: LogStore
    let seed: UInt64
    var rng: SplitMixRNG
    var model = LogModel()
    var snapshots: [(position: UInt64, model: LogModel)] = [(0, LogModel())]
    var runCounter = 0
    var workerCounter = 0
    /// Operations that actually did something, by name (to see that each kind was exercised).
    var done: [String: Int] = [:]

    init(store: LogStore, seed: UInt64) {
        self.store = store
        self.seed = seed
        self.rng = SplitMixRNG(seed: seed)
    }

    var tag: String { "seed \(seed) (replay with OVERSEER_SEED)" }

    mutating func submitRun() async throws {
        runCounter += 1
        let id = "m\(runCounter)"
        let graph = randomModelGraph(&rng)
        let runPriority = rng.int(-1...1)
        var typePriorities: [String: Int] = [:]
        for t in graph.keys.sorted() where rng.chance(40) { typePriorities[t] = rng.int(-2...2) }
        let outcome = try await store.submit(RunPlan(id: id, graph: JobGraph(graph), priority: runPriority, typePriorities: typePriorities))
        guard case .created(_, let facts) = outcome else {
            Issue.record("\(tag): submit of \(id) did not create")
            return
        }
        #expect(facts.count == graph.count + 1, "\(tag)")
        #expect(facts.map(\.position) == Array((facts[0].position)...(facts[0].position + UInt64(graph.count))), "\(tag)")
        var priorities: [String: Int] = [:]
        for t in graph.keys { priorities[t] = runPriority + (typePriorities[t] ?? 0) }
        model.createRun(id, graph: graph, priorities: priorities, facts: facts)
    }

    func jobs(where predicate: (LogModelJob) -> Bool) -> [LogModelJob] {
        model.jobs.values.filter(predicate).sorted { $0.createdPosition < $1.createdPosition }
    }

    func draft(_ kind: FactKind, _ j: LogModelJob, worker: String? = nil, attempt: Int? = nil, reason: String? = nil, data: JSONValue = .object([:])) -> FactDraft {
        FactDraft(kind: kind, run: j.run, job: j.id, author: Author(name: worker ?? j.worker ?? "operator:model"), attempt: attempt, reason: reason, data: data)
    }

    /// Appends one fact that the model says is legal, checks its outcome and returns its position.
    mutating func appendLegal(_ d: FactDraft, expecting: UInt64?, _ what: String) async throws -> UInt64? {
        let before = try store.lastPosition()
        let outcome = try await store.append(d, expecting: expecting)
        guard case .appended(let f) = outcome else {
            Issue.record("\(tag): \(what): expected appended, got \(outcome)")
            return nil
        }
        #expect(f.position == before + 1, "\(tag): \(what)")
        #expect(f.kind == d.kind, "\(tag): \(what)")
        #expect(f.revision == expecting.map { $0 + 1 }, "\(tag): \(what): revision")
        return f.position
    }

    /// Appends a fact the model says is illegal: it must throw a FoldError and write nothing.
    mutating func appendIllegal(_ d: FactDraft, expecting: UInt64?, _ what: String) async throws {
        let before = try store.lastPosition()
        do {
            let outcome = try await store.append(d, expecting: expecting)
            Issue.record("\(tag): \(what): expected a FoldError, got \(outcome)")
        } catch is FoldError {
        }
        #expect(try store.lastPosition() == before, "\(tag): \(what) wrote something")
    }

    mutating func count(_ name: String) { done[name, default: 0] += 1 }

    /// One random operation; returns false when the chosen kind had nothing to act on.
    mutating func step() async throws -> Bool {
        let roll = rng.int(0...99)
        switch roll {
        case 0..<3:
            guard model.runs.count < 5 else { return false }
            try await submitRun()
            count("submit")
        case 3..<33:
            guard let j = rng.pick(jobs { $0.readySince != nil }) else { return false }
            workerCounter += 1
            let w = "w\(workerCounter)"
            let d = draft(.jobClaimed, j, worker: w, attempt: j.attempt + 1, data: ["lease_ms": 60000])
            guard let p = try await appendLegal(d, expecting: j.revision, "claim \(j.id)") else { return true }
            model.claim(j.id, worker: w, at: p)
            count("claim")
        case 33..<48:
            guard let j = rng.pick(jobs { $0.status == .started }) else { return false }
            let d = draft(.jobFinished, j, attempt: j.attempt, data: ["result": ["n": .int(Int64(rng.int(0...9)))]])
            guard let p = try await appendLegal(d, expecting: j.revision, "finish \(j.id)") else { return true }
            model.finish(j.id, at: p)
            count("finish")
        case 48..<54:
            guard let j = rng.pick(jobs { $0.status == .started }) else { return false }
            let d = draft(.jobFailed, j, attempt: j.attempt, reason: "error", data: ["error": ["message": "boom"]])
            guard let p = try await appendLegal(d, expecting: j.revision, "fail \(j.id)") else { return true }
            model.fail(j.id, at: p)
            count("fail")
        case 54..<62:
            guard let j = rng.pick(jobs { $0.status == .started }) else { return false }
            let nb: Instant? = rng.chance(50) ? Instant(microseconds: 1_900_000_000_000_000 + Int64(rng.int(0...1_000_000_000))) : nil
            let d = draft(.jobReleased, j, attempt: j.attempt, reason: "fault", data: nb.map { ["not_before": .string($0.rfc3339)] } ?? [:])
            guard let p = try await appendLegal(d, expecting: j.revision, "release \(j.id)") else { return true }
            model.release(j.id, notBefore: nb, at: p)
            count(nb == nil ? "release" : "release-delayed")
        case 62..<67:
            try await abortCascade()
        case 67..<73:
            guard let j = rng.pick(jobs { $0.status == .failed || $0.status == .aborted }) else { return false }
            let d = draft(.jobRetried, j, worker: "operator:model", reason: "retry")
            guard let p = try await appendLegal(d, expecting: j.revision, "retry \(j.id)") else { return true }
            model.retry(j.id, at: p)
            count("retry")
        case 73..<77:
            guard let j = rng.pick(jobs { _ in true }) else { return false }
            let d = draft(.jobRejected, j, worker: "late", attempt: j.attempt, reason: "superseded")
            guard let p = try await appendLegal(d, expecting: nil, "reject \(j.id)") else { return true }
            model.reject(j.id, at: p)
            count("reject")
        case 77..<80:
            try await abortRun()
        case 80..<86:
            // A claim of a job that is not ready: refused, nothing written.
            guard let j = rng.pick(jobs { $0.readySince == nil }) else { return false }
            try await appendIllegal(draft(.jobClaimed, j, worker: "w-illegal", attempt: j.attempt + 1), expecting: j.revision, "claim of non-ready \(j.id) (\(j.status))")
            count("illegal-claim")
        case 86..<90:
            // A finish or release of a job that is not started, or for the wrong attempt.
            guard let j = rng.pick(jobs { _ in true }) else { return false }
            if j.status == .started {
                try await appendIllegal(draft(.jobFinished, j, attempt: j.attempt - 1), expecting: j.revision, "finish of \(j.id) for an old attempt")
            } else {
                try await appendIllegal(draft(rng.chance(50) ? .jobFinished : .jobReleased, j, attempt: j.attempt), expecting: j.revision, "outcome of \(j.id) while \(j.status)")
            }
            count("illegal-outcome")
        case 90..<95:
            // A stale compare-and-append: a conflict, nothing written.
            guard let j = rng.pick(jobs { $0.readySince != nil }) else { return false }
            let stale = rng.chance(50) ? j.revision - 1 : j.revision + 1
            let before = try store.lastPosition()
            let outcome = try await store.append(draft(.jobClaimed, j, worker: "w-stale", attempt: j.attempt + 1), expecting: stale)
            #expect(outcome == .conflict(expected: stale, actual: j.revision), "\(tag): stale claim of \(j.id)")
            #expect(try store.lastPosition() == before, "\(tag)")
            count("stale")
        default:
            // A retried append (same fact id) is a no-op.
            guard let j = rng.pick(jobs { _ in true }) else { return false }
            let d = draft(.jobRejected, j, worker: "late", attempt: j.attempt, reason: "superseded")
            guard let p = try await appendLegal(d, expecting: nil, "reject \(j.id)") else { return true }
            model.reject(j.id, at: p)
            let again = try await store.append(d, expecting: nil)
            #expect(again.fact?.position == p && !again.isConflict, "\(tag): duplicate append of \(d.id) gave \(again)")
            if case .appended = again { Issue.record("\(tag): a duplicate id was appended again") }
            #expect(try store.lastPosition() == p, "\(tag)")
            count("duplicate")
        }
        return true
    }

    /// Aborts a job and every descendant that is not finished, in one atomic batch; sometimes
    /// with one stale item, when the whole batch must be refused.
    mutating func abortCascade() async throws {
        guard let j = rng.pick(jobs { $0.status != .finished && $0.status != .aborted }) else { return }
        let targets = [j.id] + model.descendants(of: j.id).filter {
            let s = model.jobs[$0]!.status
            return s != .finished && s != .aborted
        }
        var items: [(FactDraft, expecting: UInt64?)] = targets.map { id in
            (draft(.jobAborted, model.jobs[id]!, worker: "operator:model", reason: "aborted", data: ["cause": .string(j.id)]), model.jobs[id]!.revision)
        }
        let before = try store.lastPosition()
        if rng.chance(20) {
            let bad = rng.int(0...items.count - 1)
            let actual = items[bad].expecting!
            items[bad].expecting = actual + 3
            let outcome = try await store.append(items)
            #expect(outcome == .conflict(index: bad, expected: actual + 3, actual: actual), "\(tag): stale abort batch")
            #expect(try store.lastPosition() == before, "\(tag): a refused batch wrote something")
            count("abort-conflict")
            return
        }
        let outcome = try await store.append(items)
        guard let facts = outcome.facts, facts.count == items.count else {
            Issue.record("\(tag): abort batch of \(targets): \(outcome)")
            return
        }
        #expect(facts.map(\.position) == Array((before + 1)...(before + UInt64(items.count))), "\(tag)")
        for (id, f) in zip(targets, facts) { model.abort(id, at: f.position) }
        count("abort")
    }

    /// run.aborted, alone or with the abort of every unfinished job of the run in the same batch.
    mutating func abortRun() async throws {
        guard let runID = rng.pick(model.runOrder) else { return }
        var items: [(FactDraft, expecting: UInt64?)] = [(FactDraft(kind: .runAborted, run: runID, author: .operator("model"), reason: "stop"), nil)]
        let targets = rng.chance(50) ? model.runs[runID]!.jobs.filter {
            let s = model.jobs[$0]!.status
            return s != .finished && s != .aborted
        } : []
        for id in targets {
            items.append((draft(.jobAborted, model.jobs[id]!, worker: "operator:model", reason: "run aborted"), model.jobs[id]!.revision))
        }
        let outcome = try await store.append(items)
        guard let facts = outcome.facts, facts.count == items.count else {
            Issue.record("\(tag): run abort of \(runID): \(outcome)")
            return
        }
        model.abortRun(runID, at: facts[0].position)
        for (id, f) in zip(targets, facts.dropFirst()) { model.abort(id, at: f.position) }
        count(targets.isEmpty ? "run-abort" : "run-abort-all")
    }

    mutating func run(operations: Int) async throws {
        try await submitRun()
        try await submitRun()
        var performed = 0
        var tries = 0
        while performed < operations && tries < operations * 20 {
            tries += 1
            guard try await step() else { continue }
            performed += 1
            let diff = try modelDifferences(store: store, model: model)
            if !diff.isEmpty {
                let at = try store.lastPosition()
                Issue.record("\(tag): after operation \(performed) (log position \(at)):\n\(diff.prefix(10).joined(separator: "\n"))")
                return
            }
            let p = try store.lastPosition()
            if snapshots.last?.position != p { snapshots.append((p, model)) }
        }
        #expect(performed == operations, "\(tag): only \(performed) operations could be performed")
        #expect((done["claim"] ?? 0) > 10, "\(tag): too few claims: \(done)")

        // As-of: at 50 random positions (after whole operations), every run compared with the
        // model as it was then.
        for _ in 0..<50 {
            let (p, then) = rng.pick(snapshots)!
            let runID = rng.pick(model.runOrder)!
            let snapshot = try store.run(runID, asOf: .position(p))
            let diff = modelDifferences(snapshot: snapshot, model: then, run: runID, at: p)
            if !diff.isEmpty {
                Issue.record("\(tag): as-of mismatch:\n\(diff.prefix(10).joined(separator: "\n"))")
                return
            }
            #expect(snapshot.map { $0.position } ?? p == p, "\(tag)")
        }
    }
}
