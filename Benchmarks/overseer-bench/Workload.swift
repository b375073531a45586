import Overseer

/// One write of a scripted run: its submission, or one job fact.
enum Step: Sendable {
    case submit(RunPlan)
    case append(FactDraft, expecting: UInt64?)
}

/// Realistic pipeline traffic: runs submitted, their jobs claimed by workers and finished.
enum Workload {
    /// a -> (b, c) -> d. Submitting makes 5 facts; claiming and finishing every job 8 more.
    static let diamond: JobGraph = ["a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]]
    static let diamondOrder = ["a", "b", "c", "d"]
    static let factsPerDiamond = 13

    /// start -> m1...m8 -> end, with m3's first attempt released (lease expired) and retried:
    /// 11 + 2 + 16 + 2 + 2 = 33 facts. The run that the as-of benchmark folds.
    static let fan: JobGraph = {
        var g: [String: [String]] = ["start": []]
        let middle = (1...8).map { "m\($0)" }
        for m in middle { g[m] = ["start"] }
        g["end"] = middle
        return JobGraph(g)
    }()
    static let factsPerFan = 33

    static func plan(_ run: String, graph: JobGraph) -> RunPlan {
        RunPlan(
            id: run, graph: graph,
            args: ["input": .string("s3://bench-bucket/input/\(run).csv"), "shards": 4],
            name: "bench-pipeline")
    }

    static func author(_ worker: Int) -> Author { Author(name: "worker-\(worker)") }

    static func claim(_ run: String, _ type: String, worker: Int, attempt: Int = 1, expecting: UInt64 = 1) -> Step {
        .append(
            FactDraft(kind: .jobClaimed, run: run, job: "\(run)/\(type)", author: author(worker), attempt: attempt, data: ["lease_ms": 30000]),
            expecting: expecting)
    }

    static func finish(_ run: String, _ type: String, worker: Int, attempt: Int = 1, expecting: UInt64 = 2) -> Step {
        .append(
            FactDraft(kind: .jobFinished, run: run, job: "\(run)/\(type)", author: author(worker), attempt: attempt,
                      data: ["result": ["rows": 1200, "ok": true]]),
            expecting: expecting)
    }

    /// Claims and finishes of every job of a submitted diamond run (8 facts).
    static func diamondJobs(_ run: String, worker: Int) -> [Step] {
        diamondOrder.flatMap { [claim(run, $0, worker: worker), finish(run, $0, worker: worker)] }
    }

    /// A whole diamond run: submit, then every job claimed and finished (13 facts).
    static func diamondRun(_ run: String, worker: Int) -> [Step] {
        [.submit(plan(run, graph: diamond))] + diamondJobs(run, worker: worker)
    }

    /// The fan run (33 facts).
    static func fanRun(_ run: String) -> [Step] {
        var steps: [Step] = [.submit(plan(run, graph: fan)), claim(run, "start", worker: 0), finish(run, "start", worker: 0)]
        for i in 1...8 {
            let w = i % 4
            if i == 3 {
                steps.append(claim(run, "m3", worker: w))
                steps.append(.append(
                    FactDraft(kind: .jobReleased, run: run, job: "\(run)/m3", author: .process, attempt: 1, reason: "lease expired"),
                    expecting: 2))
                steps.append(claim(run, "m3", worker: w + 1, attempt: 2, expecting: 3))
                steps.append(finish(run, "m3", worker: w + 1, attempt: 2, expecting: 4))
            } else {
                steps.append(claim(run, "m\(i)", worker: w))
                steps.append(finish(run, "m\(i)", worker: w))
            }
        }
        steps.append(claim(run, "end", worker: 1))
        steps.append(finish(run, "end", worker: 1))
        return steps
    }

    static func apply(_ step: Step, _ writer: inout LogWriter) throws {
        switch step {
        case .submit(let plan):
            guard case .created = try writer.submit(plan) else { throw BenchError("run \(plan.id) already existed") }
        case .append(let draft, let expecting):
            let outcome = try writer.append(draft, expecting: expecting)
            guard case .appended = outcome else { throw BenchError("append of \(draft.kind) \(draft.job ?? "") gave \(outcome)") }
        }
    }

    /// Runs the scripts interleaved (step i of every script, then step i+1, ...), so each run's
    /// facts are spread over the log as when many runs are in flight.
    static func interleave(_ scripts: [[Step]], _ writer: inout LogWriter) throws {
        var i = 0
        var more = true
        while more {
            more = false
            for s in scripts where i < s.count {
                try apply(s[i], &writer)
                more = true
            }
            i += 1
        }
    }

    /// Appends interleaved diamond runs (plus `extra` scripts in the first write) in writes of about
    /// `factsPerWrite` facts until the log holds at least `total` facts. Returns the runs created.
    @discardableResult
    static func fill(_ store: LogStore, to total: Int, factsPerWrite: Int = 5000, runPrefix: String,
                     firstRun: Int = 0, extra: [[Step]] = [], extraFacts: Int = 0, report: (Int) -> Void = { _ in }) throws -> Int {
        var nextRun = firstRun
        var extra = extra
        var extraFacts = extraFacts
        while true {
            let have = Int(try store.lastPosition())
            if have >= total { break }
            let budget = min(factsPerWrite, total - have) - extraFacts
            let runs = max(1, (budget + factsPerDiamond - 1) / factsPerDiamond)
            var scripts = extra
            for r in nextRun..<(nextRun + runs) {
                scripts.append(diamondRun("\(runPrefix)-\(r)", worker: r % 16))
            }
            nextRun += runs
            extra = []
            extraFacts = 0
            let batch = scripts
            try store.writeSync { w in try interleave(batch, &w) }
            report(Int(try store.lastPosition()))
        }
        return nextRun - firstRun
    }
}
