import Foundation
import Overseer

/// Shared by `run`, `submit` and `worker`: a pipeline file and its run plan.
enum PipelineInput {
    static func plan(_ args: ParsedArguments, _ pipeline: Pipeline) throws -> RunPlan {
        let jsonArgs = try ArgumentParser.jsonArguments(args)
        let id = args.value("run") ?? RunPlan.generateID()
        try RunPlan.validateRunID(id)
        return RunPlan.from(pipeline: pipeline, id: id, args: jsonArgs)
    }
}

/// `overseer run PIPELINE [--args JSON] [--run ID] [--workers N]`
enum RunCommand {
    static let spec = CommandSpec(
        name: "run", summary: "Submit a run of a pipeline file and work it to completion here.",
        positionals: ["PIPELINE"],
        options: [
            StoreLocation.option,
            OptionSpec(name: "args", value: "JSON", help: "Run arguments, a JSON object (in $OVERSEER_ARGS of every command)."),
            OptionSpec(name: "run", value: "ID", help: "The run id (default: a new time-ordered id)."),
            OptionSpec(name: "workers", value: "N", help: "Jobs run at once (default 4)."),
        ],
        details: "Exits 0 only if every job finished, 1 if the run failed or was aborted. Other workers\n('overseer worker') sharing the store help with the same run.",
        run: run)

    static func run(_ args: ParsedArguments) async throws -> Int32 {
        let pipeline = try Pipeline.load(path: args.positionals[0])
        let workers = try ArgumentParser.integer(args, "workers", default: 4, range: 1...1024)
        let plan = try PipelineInput.plan(args, pipeline)
        let store = try StoreLocation.open(args, create: true, patient: true)
        let outcome = try await store.submit(plan, author: .operator())
        if case .alreadyExists = outcome { Console.error("run \(plan.id) already exists; working it") }
        var config = WorkerConfiguration()
        config.concurrency = workers
        config.events = Progress.printer(runID: plan.id, total: pipeline.jobs.count)
        let snapshot = try await Overseer(log: store).work(run: plan.id, handlers: Handlers(pipeline: pipeline), configuration: config)
        Progress.end()
        Console.out(Format.runReport(snapshot, position: nil))
        return snapshot.run.status == .finished ? 0 : 1
    }
}

/// `overseer submit PIPELINE [--args JSON] [--run ID]`
enum SubmitCommand {
    static let spec = CommandSpec(
        name: "submit", summary: "Submit a run of a pipeline file (workers run it); print its id.",
        positionals: ["PIPELINE"],
        options: [
            StoreLocation.option,
            OptionSpec(name: "args", value: "JSON", help: "Run arguments, a JSON object."),
            OptionSpec(name: "run", value: "ID", help: "The run id (default: a new time-ordered id)."),
        ],
        details: "Submitting the same run id again with the same pipeline and args does nothing.",
        run: run)

    static func run(_ args: ParsedArguments) async throws -> Int32 {
        let pipeline = try Pipeline.load(path: args.positionals[0])
        let plan = try PipelineInput.plan(args, pipeline)
        let store = try StoreLocation.open(args, create: true)
        _ = try await store.submit(plan, author: .operator())
        Console.out(plan.id)
        return 0
    }
}

/// `overseer worker PIPELINE [--concurrency N] [--until-idle] [--lease SECONDS] [--name NAME]`
enum WorkerCommand {
    static let spec = CommandSpec(
        name: "worker", summary: "Work any run of a pipeline's job types until stopped.",
        positionals: ["PIPELINE"],
        options: [
            StoreLocation.option,
            OptionSpec(name: "concurrency", value: "N", help: "Jobs run at once (default 4)."),
            OptionSpec(name: "until-idle", value: nil, help: "Exit when nothing of these types is runnable or running."),
            OptionSpec(name: "lease", value: "SECONDS", help: "Claim lease, renewed by heartbeats (default 30)."),
            OptionSpec(name: "name", value: "NAME", help: "The worker's name in the log (default host-pid-xxxx)."),
            OptionSpec(name: "grace", value: "SECONDS", help: "On SIGTERM, how long running jobs may take (default 30)."),
        ],
        details: "SIGTERM or SIGINT drains: no new claims, running jobs get the grace period, then are cancelled\nand released for other workers. A second signal stops at once.",
        run: run)

    static func run(_ args: ParsedArguments) async throws -> Int32 {
        let pipeline = try Pipeline.load(path: args.positionals[0])
        var config = WorkerConfiguration()
        config.concurrency = try ArgumentParser.integer(args, "concurrency", default: 4, range: 1...1024)
        config.untilIdle = args.flag("until-idle")
        if let lease = try ArgumentParser.seconds(args, "lease") { config.lease = lease }
        if let grace = try ArgumentParser.seconds(args, "grace") { config.shutdownGrace = grace }
        if let name = args.value("name") {
            guard !name.isEmpty, !name.contains("\n") else { throw UsageError(message: "--name must be a non-empty single line", command: "worker") }
            config.name = name
        }
        config.events = Progress.logger(worker: config.name)
        // Only runs of this pipeline: another pipeline may use the same job type names.
        config.runs = .named(pipeline.name)
        let store = try StoreLocation.open(args, create: true, patient: true)
        try await Overseer(log: store).work(Handlers(pipeline: pipeline), configuration: config)
        return 0
    }
}
