import Foundation

/// A pipeline job's command ended badly: a non-zero exit status other than 75 and 76, or a
/// signal. The job fails (and is retried if it has retries left).
public struct ShellJobError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The command that ran.
    public let command: [String]
    /// The exit status, if the command exited.
    public let exitCode: Int32?
    /// The signal that killed the command, if one did.
    public let signal: Int32?
    /// The last 64 KiB of stdout.
    public let stdoutTail: String
    /// The last 64 KiB of stderr.
    public let stderrTail: String
    /// "command exited with status 3: <last stderr line>",
    /// "command killed by signal 9 (SIGKILL)".
    public let description: String

    public init(command: [String], result: ShellResult) {
        self.command = command
        self.exitCode = result.exitCode
        self.signal = result.signal
        self.stdoutTail = result.stdoutTail
        self.stderrTail = result.stderrTail
        self.description = PipelineShell.explain(result)
    }
}

extension Handlers {
    /// One handler per job of `pipeline`, each running the job's command (see ``ShellCommand``)
    /// and mapping how it ended:
    ///
    /// - exit 0: the job finished; its result is
    ///   `{"exit_code": 0, "stdout_tail": "…", "stderr_tail": "…"}` (each tail at most 64 KiB);
    /// - exit 75 (`EX_TEMPFAIL`): a ``Fault``, retried with backoff without using up the retries;
    /// - exit 76: an ``Abort`` of the job and everything downstream;
    /// - any other status, or a signal: a ``ShellJobError``, so the job fails (and is retried
    ///   while it has retries left).
    ///
    /// The command's environment is this process's plus the job's `env`, plus `OVERSEER_RUN`,
    /// `OVERSEER_JOB` (`RUN/TYPE`), `OVERSEER_TYPE`, `OVERSEER_ATTEMPT` (1 for the first) and
    /// `OVERSEER_ARGS` (the run's arguments as canonical JSON); the `OVERSEER_` variables win
    /// over the job's `env`. It runs in the job's `cwd`.
    ///
    /// Options per type: `retries` + 1 attempts with the job's `backoff` (default 1 s, ×2, at
    /// most 300 s; jitter 0.5), `timeout`, and `max_concurrent`. When the attempt is cancelled
    /// (timeout, shutdown, lost claim) the command's process group gets SIGTERM, then SIGKILL
    /// after `killGrace`.
    ///
    /// The commands run are the ones in `pipeline`, not the copies recorded at submission by
    /// ``RunPlan/from(pipeline:id:args:priority:)`` (those are for audit, with secrets redacted).
    public init(pipeline: Pipeline, killGrace: Duration = .seconds(5)) {
        var handlers: [String: Handler] = [:]
        var options: [String: JobOptions] = [:]
        for (type, job) in pipeline.jobs {
            handlers[type] = PipelineShell.handler(for: job, killGrace: killGrace)
            options[type] = PipelineShell.options(for: job)
        }
        self.init(handlers, options: options)
    }
}

extension RunPlan {
    /// The plan for a run of `pipeline`: its graph, `name` = the pipeline's name, each job's
    /// `priority`, and per type an audit record of how the job is run, kept on its `job.created`
    /// fact:
    ///
    /// `{"command": [...], "retries": 2, "timeout": 60, "max_concurrent": 1, "cwd": "...",
    ///   "backoff": {"initial": 1, "max": 300, "multiplier": 2}, "env": {"MODE": "fast", "API_TOKEN": "<redacted>"}}`
    ///
    /// (`timeout`, `max_concurrent`, `cwd`, `backoff` and `env` only when set). The value of an
    /// `env` variable whose name contains PASSWORD, PASSWD, SECRET, TOKEN or KEY (in any case)
    /// is recorded as `<redacted>`.
    public static func from(
        pipeline: Pipeline, id: String = RunPlan.generateID(), args: JSONValue = .object([:]), priority: Int = 0
    ) -> RunPlan {
        var priorities: [String: Int] = [:]
        var options: [String: JSONValue] = [:]
        for (type, job) in pipeline.jobs {
            priorities[type] = job.priority
            options[type] = PipelineShell.auditRecord(job)
        }
        return RunPlan(
            id: id, graph: pipeline.graph, args: args, name: pipeline.name, priority: priority,
            typePriorities: priorities, options: options)
    }
}

/// The pieces of ``Handlers/init(pipeline:killGrace:)``, separately testable.
enum PipelineShell {
    /// Exit status for a transient failure (`EX_TEMPFAIL` from sysexits.h): a ``Fault``.
    static let faultStatus: Int32 = 75
    /// Exit status that aborts the job and its descendants.
    static let abortStatus: Int32 = 76

    static let redacted = "<redacted>"
    static let secretMarkers = ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY"]

    static func isSecret(_ name: String) -> Bool {
        let upper = name.uppercased()
        return secretMarkers.contains { upper.contains($0) }
    }

    static func options(for job: PipelineJob) -> JobOptions {
        let backoff = job.backoff ?? Backoff()
        let retry = RetryPolicy(
            maximumAttempts: job.retries + 1, initialDelay: backoff.initial, multiplier: backoff.multiplier,
            maximumDelay: backoff.max, jitter: 0.5)
        return JobOptions(retry: retry, timeout: job.timeout.map { .seconds($0) }, maximumConcurrent: job.maxConcurrent)
    }

    /// The command of `pipelineJob` for one attempt of `job`.
    static func command(for pipelineJob: PipelineJob, job: Job) -> ShellCommand {
        var environment = pipelineJob.env
        environment["OVERSEER_RUN"] = job.run
        environment["OVERSEER_JOB"] = job.id
        environment["OVERSEER_TYPE"] = job.type
        environment["OVERSEER_ATTEMPT"] = String(job.attempt)
        environment["OVERSEER_ARGS"] = job.arguments.canonicalString
        return ShellCommand(pipelineJob.command, environment: environment, cwd: pipelineJob.cwd)
    }

    static func handler(for pipelineJob: PipelineJob, killGrace: Duration) -> Handler {
        { job in
            let command = command(for: pipelineJob, job: job)
            let result = try await command.run(killGrace: killGrace)
            if result.cancelled { throw CancellationError() }
            try settle(result, command: command.argv, job: job)
        }
    }

    /// Maps how the command ended to the handler's outcome (see ``Handlers/init(pipeline:killGrace:)``).
    static func settle(_ result: ShellResult, command: [String], job: Job) throws {
        switch result.exitCode {
        case 0:
            job.setResult(json: [
                "exit_code": 0,
                "stdout_tail": .string(TailBuffer.cap(result.stdoutTail, bytes: ShellCommand.tailLimit)),
                "stderr_tail": .string(TailBuffer.cap(result.stderrTail, bytes: ShellCommand.tailLimit)),
            ])
        case faultStatus?:
            throw Fault(explain(result, note: " (temporary failure)"))
        case abortStatus?:
            throw Abort(explain(result))
        default:
            throw ShellJobError(command: command, result: result)
        }
    }

    /// "command exited with status 3: <last stderr line>".
    static func explain(_ result: ShellResult, note: String = "") -> String {
        let line = result.lastStderrLine
        return "command \(result.statusDescription)\(note)" + (line.isEmpty ? "" : ": \(line)")
    }

    static func auditRecord(_ job: PipelineJob) -> JSONValue {
        var record: [String: JSONValue] = [
            "command": .array(job.command.map { .string($0) }),
            "retries": .int(Int64(job.retries)),
        ]
        if let timeout = job.timeout { record["timeout"] = .double(timeout) }
        if let limit = job.maxConcurrent { record["max_concurrent"] = .int(Int64(limit)) }
        if let cwd = job.cwd { record["cwd"] = .string(cwd) }
        if let backoff = job.backoff {
            record["backoff"] = [
                "initial": .double(backoff.initial), "max": .double(backoff.max),
                "multiplier": .double(backoff.multiplier),
            ]
        }
        if !job.env.isEmpty {
            var env: [String: JSONValue] = [:]
            for (key, value) in job.env { env[key] = .string(isSecret(key) ? redacted : value) }
            record["env"] = .object(env)
        }
        return .object(record)
    }
}
