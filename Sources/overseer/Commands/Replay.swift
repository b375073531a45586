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
        _ = try ArgumentParser.point(args, "from")
        _ = try ArgumentParser.point(args, "to")
        let store = try StoreLocation.open(args, create: false)
        let id = args.positionals[0]
        let from = try ArgumentParser.point(args, "from").map { p -> UInt64 in
            if case .position(let n) = p { return n }
            return try store.position(of: p) + 1
        } ?? 1
        let to = try ArgumentParser.point(args, "to").map { try store.position(of: $0) } ?? UInt64.max
        guard try store.run(id) != nil else { throw InputError(message: "no run '\(id)' in \(store.path)") }
        guard from <= to else { throw UsageError(message: "--from is after --to", command: "replay") }
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
