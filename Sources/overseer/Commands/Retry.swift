import Foundation
import Overseer

/// `overseer retry JOB [--reason TEXT]`
enum RetryCommand {
    static let spec = CommandSpec(
        name: "retry", summary: "Make a failed or aborted job runnable again (with its aborted descendants).",
        positionals: ["JOB"],
        options: [StoreLocation.option, OptionSpec(name: "reason", value: "TEXT", help: "Why, for the audit log.")],
        details: "Appends job.retried facts signed operator:$USER. The job gets a fresh retry budget.",
        run: run)

    static func run(_ args: ParsedArguments) async throws -> Int32 {
        let store = try StoreLocation.open(args, create: false)
        let job = args.positionals[0]
        let facts = try await Overseer(log: store).retry(job: job, reason: args.value("reason"))
        for f in facts { Console.out(Format.fact(f)) }
        return 0
    }
}
