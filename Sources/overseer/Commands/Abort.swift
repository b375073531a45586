import Foundation
import Overseer

/// `overseer abort (--run ID | --job ID) [--reason TEXT]`
enum AbortCommand {
    static let spec = CommandSpec(
        name: "abort", summary: "Abort a run, or one job and everything downstream of it.",
        positionals: [],
        options: [
            StoreLocation.option,
            OptionSpec(name: "run", value: "ID", help: "Abort this run: unstarted and running jobs are aborted."),
            OptionSpec(name: "job", value: "ID", help: "Abort this job and its descendants."),
            OptionSpec(name: "reason", value: "TEXT", help: "Why, for the audit log (default: aborted by operator)."),
        ],
        details: "Running handlers notice at their next heartbeat and are cancelled; their late results are\nrecorded as rejected.",
        run: run)

    static func run(_ args: ParsedArguments) async throws -> Int32 {
        let job = args.value("job")
        let run = args.value("run")
        guard (job == nil) != (run == nil) else { throw UsageError(message: "give exactly one of --run ID or --job ID", command: "abort") }
        let store = try StoreLocation.open(args, create: false)
        let reason = args.value("reason") ?? "aborted by operator"
        let overseer = Overseer(log: store)
        let facts: [Fact]
        if let job {
            facts = try await overseer.abort(job: job, reason: reason)
        } else {
            facts = try await overseer.abort(run: run!, reason: reason)
        }
        for f in facts { Console.out(Format.fact(f)) }
        return 0
    }
}
