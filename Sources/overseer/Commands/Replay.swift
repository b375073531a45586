import Foundation
import Overseer

/// `overseer replay RUN [--from ...] [--to ...]`
enum ReplayCommand {
    static let spec = CommandSpec(
        name: "replay", summary: "Step through a run's facts, printing the folded state after each.",
        positionals: ["RUN"],
        options: [
            StoreLocation.option,
            OptionSpec(name: "from", value: "TIME|@N", help: "Start at this time or log position (inclusive)."),
            OptionSpec(name: "to", value: "TIME|@N", help: "Stop at this time or log position (inclusive)."),
        ],
        details: "The fold starts at the run's first fact, so each state is exact even when --from is later.",
        run: run)

    static func run(_ args: ParsedArguments) async throws -> Int32 {
        let fromPoint = try ArgumentParser.point(args, "from")
        let toPoint = try ArgumentParser.point(args, "to")
        let store = try StoreLocation.open(args, create: false)
        let id = args.positionals[0]
        let from: UInt64
        switch fromPoint {
        case .position(let n)?: from = n
        // Inclusive: the first fact at or after the instant.
        case .time(let t)?: from = try store.position(atOrBefore: Instant(microseconds: t.microseconds - 1)) + 1
        case nil: from = 1
        }
        let to = try toPoint.map { try store.position(of: $0) } ?? UInt64.max
        guard try store.run(id) != nil else { throw InputError(message: "no run '\(id)' in \(store.path)") }
        if fromPoint != nil, toPoint != nil, from > to {
            throw UsageError(message: "--from is after --to", command: "replay")
        }
        if from > to {
            Console.out("no facts of run '\(id)' in that range")
            return 0
        }
        let steps = try store.replay(run: id, positions: from...to)
        for step in steps {
            Console.out(Format.fact(step.fact))
            var state: [String] = []
            if let j = step.job {
                var s = "job \(j.type): \(j.status.rawValue), revision \(j.revision), attempt \(j.attempt)"
                if let nb = j.notBefore, j.status == .unstarted { s += ", not before \(nb.rfc3339)" }
                state.append(s)
            }
            if let r = step.run { state.append("run: \(r.status.rawValue), \(Format.counts(r)), \(r.ready) ready") }
            Console.out("    → " + state.joined(separator: "; "))
        }
        if steps.isEmpty { Console.out("no facts of run '\(id)' in that range") }
        return 0
    }
}
