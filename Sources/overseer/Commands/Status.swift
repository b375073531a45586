import Foundation
import Overseer

/// `overseer status [RUN] [--as-of TIME|@POSITION] [--json] [--watch]`
enum StatusCommand {
    static let spec = CommandSpec(
        name: "status", summary: "Show runs, or one run's jobs, now or as of a past time or log position.",
        positionals: ["[RUN]"],
        options: [
            StoreLocation.option,
            OptionSpec(name: "as-of", value: "TIME|@N", help: "Show the state as of an RFC 3339 time or log position N."),
            OptionSpec(name: "json", value: nil, help: "Print stable JSON (see docs/cli.md)."),
            OptionSpec(name: "watch", value: nil, help: "Redraw as the run progresses, until it ends (Ctrl-C to stop)."),
        ],
        details: "Without RUN, lists every run. With RUN, lists its jobs: status, attempts, worker, times, and\nfor unstarted jobs what blocks them.",
        run: run)

    static func run(_ args: ParsedArguments) async throws -> Int32 {
        let asOf = try ArgumentParser.point(args, "as-of")
        let store = try StoreLocation.open(args, create: false)
        if args.flag("watch") {
            guard asOf == nil else { throw UsageError(message: "--watch shows the present; it cannot be combined with --as-of", command: "status") }
            guard let run = args.positionals.first else { throw UsageError(message: "--watch needs a RUN", command: "status") }
            return try await watch(store, run: run, json: args.flag("json"))
        }
        guard let runID = args.positionals.first else {
            let runs: [RunState]
            var position: UInt64?
            if let asOf {
                let snapshot = try store.state(asOf: asOf)
                runs = snapshot.runs
                position = snapshot.position
            } else {
                runs = try store.runs()
            }
            if args.flag("json") {
                Console.out(JSONValue.array(runs.map(Format.runJSON)).canonicalString)
            } else if runs.isEmpty {
                Console.out("no runs\(position.map { " as of @\($0)" } ?? "")")
            } else {
                if let position { Console.out("as of @\(position)\n") }
                Console.out(Format.runsTable(runs))
            }
            return 0
        }
        let snapshot: RunSnapshot?
        var position: UInt64?
        if let asOf {
            snapshot = try store.run(runID, asOf: asOf)
            position = try store.position(of: asOf)
        } else {
            snapshot = try store.snapshot(ofRun: runID)
        }
        guard let snapshot else {
            if let position, try store.run(runID) != nil {
                throw InputError(message: "run '\(runID)' did not exist yet at @\(position)")
            }
            throw InputError(message: "no run '\(runID)' in \(store.path)")
        }
        print(snapshot, json: args.flag("json"), position: position)
        return 0
    }

    static func print(_ snapshot: RunSnapshot, json: Bool, position: UInt64?) {
        if json {
            let value: JSONValue = ["run": Format.runJSON(snapshot.run), "jobs": .array(snapshot.jobs.map { Format.jobJSON($0, in: snapshot) })]
            Console.out(value.canonicalString)
        } else {
            Console.out(Format.runReport(snapshot, position: position))
        }
    }

    static func watch(_ store: LogStore, run: String, json: Bool) async throws -> Int32 {
        var last: UInt64 = .max
        let clock = ContinuousClock()
        let start = clock.now
        var firstFinished: Int?
        while true {
            let head = try store.lastPosition()
            guard let snapshot = try store.snapshot(ofRun: run) else { throw InputError(message: "no run '\(run)' in \(store.path)") }
            if head != last {
                if json {
                    print(snapshot, json: true, position: nil)
                } else if Console.isTerminal {
                    let r = snapshot.run
                    let done = r.count(.finished)
                    if firstFinished == nil { firstFinished = done }
                    let elapsed = Double((clock.now - start).components.seconds) + Double((clock.now - start).components.attoseconds) / 1e18
                    let rate = elapsed > 0 ? Double(done - (firstFinished ?? 0)) / elapsed : 0
                    let remaining = r.total - done - r.count(.failed) - r.count(.aborted)
                    let eta = rate > 0 ? String(format: "%.0fs", Double(remaining) / rate) : "?"
                    Console.write("\u{1B}[2K\r\(r.id): \(done)/\(r.total) finished, \(r.count(.started)) running, \(r.count(.failed)) failed — \(String(format: "%.1f", rate)) jobs/s, ETA \(eta)")
                } else {
                    let r = snapshot.run
                    Console.out("\(r.id): \(r.status.rawValue) \(r.count(.finished))/\(r.total) finished, \(r.count(.started)) running, \(r.count(.failed)) failed")
                }
                last = head
            }
            if snapshot.run.status != .running {
                if !json && Console.isTerminal { Console.out("") }
                if !json { Console.out(Format.runReport(snapshot, position: nil)) }
                return snapshot.run.status == .finished ? 0 : 1
            }
            try await store.waitForAppend(after: head, timeout: .milliseconds(250))
        }
    }
}
