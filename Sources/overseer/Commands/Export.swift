import Foundation
import Overseer

/// `overseer export [--run ID] [--since ...] [--until ...] [--output FILE]`
enum ExportCommand {
    static let spec = CommandSpec(
        name: "export", summary: "Write the log (or part of it) as JSON Lines, tamper-evident.",
        positionals: [],
        options: [
            StoreLocation.option,
            OptionSpec(name: "run", value: "ID", help: "Only this run's facts."),
            OptionSpec(name: "since", value: "TIME|@N", help: "Only facts after this time or position."),
            OptionSpec(name: "until", value: "TIME|@N", help: "Only facts up to this time or position."),
            OptionSpec(name: "output", value: "FILE", help: "Write to FILE (created 0600, replaced atomically) instead of stdout."),
        ],
        details: "Each line is one fact exactly as stored: position, time, id, kind, run, job, revision, worker,\nhost, pid, attempt, reason, data, prev, hash. 'overseer verify FILE' checks it offline.",
        run: run)

    static func run(_ args: ParsedArguments) async throws -> Int32 {
        let filter = ExportFilter(run: args.value("run"), since: try ArgumentParser.point(args, "since"), until: try ArgumentParser.point(args, "until"))
        let store = try StoreLocation.open(args, create: false)
        if let run = filter.run, try store.run(run) == nil { throw InputError(message: "no run '\(run)' in \(store.path)") }
        let count = try store.export(to: args.value("output"), filter: filter)
        if let out = args.value("output") {
            Console.error("exported \(count) facts to \(out)")
            if !filter.isEverything {
                Console.error("this is a partial export: check it with 'overseer verify --partial \(out)'")
            }
        }
        return 0
    }
}
