import Foundation
import Overseer

/// `overseer history (--job ID | --run ID) [--json]`
enum HistoryCommand {
    static let spec = CommandSpec(
        name: "history", summary: "Print every fact about one job or one run, in log order.",
        positionals: [],
        options: [
            StoreLocation.option,
            OptionSpec(name: "job", value: "ID", help: "A job id (RUN/TYPE)."),
            OptionSpec(name: "run", value: "ID", help: "A run id."),
            OptionSpec(name: "json", value: nil, help: "Print the facts as JSON Lines, exactly as stored and exported."),
        ],
        details: "",
        run: run)

    static func run(_ args: ParsedArguments) async throws -> Int32 {
        let job = args.value("job")
        let run = args.value("run")
        guard (job == nil) != (run == nil) else {
            throw UsageError(message: "give exactly one of --job ID or --run ID", command: "history")
        }
        let store = try StoreLocation.open(args, create: false)
        let facts = try job.map { try store.history(ofJob: $0) } ?? store.history(ofRun: run!)
        if facts.isEmpty {
            throw InputError(message: job.map { "no job '\($0)' in \(store.path)" } ?? "no run '\(run!)' in \(store.path)")
        }
        for f in facts {
            Console.out(args.flag("json") ? String(decoding: f.line, as: UTF8.self) : Format.fact(f))
        }
        return 0
    }
}
