import Foundation
import Testing

@testable import Overseer

#if canImport(Glibc)
    import Glibc
#endif

/// A job for calling a pipeline handler directly; the box holds what it records.
private func makeJob(type: String = "step", run: String = "run-1", attempt: Int = 1, args: JSONValue = [:]) -> (Job, ResultBox) {
    let box = ResultBox()
    let job = Job(
        id: "\(run)/\(type)", run: run, type: type, attempt: attempt, worker: "w-test", arguments: args,
        parentResults: [:], options: .null, resultBox: box)
    return (job, box)
}

/// Runs the handler a pipeline would build for `pipelineJob`.
private func runHandler(_ pipelineJob: PipelineJob, job: Job, killGrace: Duration = .seconds(5)) async throws {
    let handler = PipelineShell.handler(for: pipelineJob, killGrace: killGrace)
    try await handler(job)
}

/// Whether `pid` is a live process (a zombie, waiting for its parent to reap it, counts as gone).
private func isAlive(_ pid: Int32) -> Bool {
    guard kill(pid, 0) == 0 else { return false }
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return true }
    let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
    return state != "Z" && state != "X"
}

/// Polls until `file` has `lines` non-empty lines (or 60 s pass, generous for a loaded machine); returns them.
private func waitForLines(_ file: String, _ lines: Int) async throws -> [String] {
    let clock = ContinuousClock()
    let start = clock.now
    while clock.now - start < .seconds(60) {
        if let text = try? String(contentsOfFile: file, encoding: .utf8) {
            let found = text.split(separator: "\n").map(String.init)
            if found.count >= lines { return found }
        }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("timed out waiting for \(lines) lines in \(file)")
    return []
}

@Suite struct ShellCommandTests {
    // MARK: ShellCommand

    @Test func exitZeroCapturesStdoutAndStderr() async throws {
        let result = try await ShellCommand(["sh", "-c", "echo hello; echo oops >&2"]).run()
        #expect(result.exitCode == 0)
        #expect(result.signal == nil)
        #expect(result.succeeded)
        #expect(result.stdoutTail == "hello\n")
        #expect(result.stderrTail == "oops\n")
        #expect(!result.cancelled && !result.timedOut && !result.killedAfterGrace)
        #expect(result.pid > 0)
    }

    @Test func stdinIsDevNull() async throws {
        let result = try await ShellCommand(["sh", "-c", "cat; echo done"]).run()
        #expect(result.stdoutTail == "done\n")
    }

    @Test func nonZeroExitAndSignalAreReported() async throws {
        let three = try await ShellCommand(["sh", "-c", "exit 3"]).run()
        #expect(three.exitCode == 3)
        #expect(three.statusDescription == "exited with status 3")
        let killed = try await ShellCommand(["sh", "-c", "kill -9 $$"]).run()
        #expect(killed.exitCode == nil)
        #expect(killed.signal == SIGKILL)
        #expect(killed.statusDescription == "killed by signal 9 (SIGKILL)")
    }

    @Test func onlyTheLast64KiBOfEachStreamIsKept() async throws {
        // About 1.3 MB on each stream, written at the same time: both pipes must be drained.
        let count = 200_000
        let result = try await ShellCommand(["sh", "-c", "seq 1 \(count) >&2 & seq 1 \(count); wait"]).run()
        let full = Array((1...count).map { "\($0)\n" }.joined().utf8)
        #expect(full.count > 1 << 20)
        let expected = String(decoding: full.suffix(ShellCommand.tailLimit), as: UTF8.self)
        #expect(result.exitCode == 0)
        #expect(result.stdoutBytes == full.count)
        #expect(result.stderrBytes == full.count)
        #expect(result.stdoutTail.utf8.count == ShellCommand.tailLimit)
        #expect(result.stdoutTail == expected)
        #expect(result.stderrTail == expected)
        #expect(result.stdoutTruncated && result.stderrTruncated)
    }

    @Test func tailsAreCutAtACharacterBoundary() {
        var buffer = TailBuffer(limit: 7)
        let text = Array("ééééééé".utf8)  // 14 bytes
        text.withUnsafeBytes { buffer.append($0) }
        #expect(buffer.total == 14)
        #expect(buffer.string == "ééé")  // the 7-byte tail starts inside an é
        #expect(TailBuffer.cap(String(repeating: "\u{FFFD}", count: 10), bytes: 7) == "\u{FFFD}\u{FFFD}")
        var small = TailBuffer(limit: 4)
        for chunk in ["ab", "cd", "ef", "gh", "ij"] { Array(chunk.utf8).withUnsafeBytes { small.append($0) } }
        #expect(small.string == "ghij")
        #expect(small.total == 10)
    }

    @Test func environmentIsTheParentsPlusTheGivenVariables() async throws {
        let command = ShellCommand(
            ["sh", "-c", #"printf '%s|%s|%s' "$GREETING" "$HOME_SEEN" "${PATH:+has-path}""#],
            environment: ["GREETING": "hi there", "HOME_SEEN": ProcessInfo.processInfo.environment["HOME"] ?? "?"])
        let result = try await command.run()
        #expect(result.stdoutTail == "hi there|\(ProcessInfo.processInfo.environment["HOME"] ?? "?")|has-path")
        // The child's own PATH is used to find the program.
        let missing = ShellCommand(["sh", "-c", "true"], environment: ["PATH": "/nonexistent-dir"])
        await #expect(throws: ShellError.self) { try await missing.run() }
    }

    @Test func cwdIsHonouredAndRelativeProgramsResolveAgainstIt() async throws {
        let dir = TempDirectory("shell-cwd")
        defer { dir.cleanup() }
        let real = URL(fileURLWithPath: dir.path).resolvingSymlinksInPath().path
        let pwd = try await ShellCommand(["pwd", "-P"], cwd: dir.path).run()
        #expect(pwd.stdoutTail == real + "\n")

        let script = dir.path + "/hello.sh"
        try "#!/bin/sh\necho \"hello from $(basename \"$PWD\")\"\n".write(toFile: script, atomically: true, encoding: .utf8)
        #expect(chmod(script, 0o755) == 0)
        let hello = try await ShellCommand(["./hello.sh"], cwd: dir.path).run()
        #expect(hello.exitCode == 0)
        #expect(hello.stdoutTail == "hello from \(URL(fileURLWithPath: dir.path).lastPathComponent)\n")
    }

    @Test func spawnFailuresAreClearErrors() async throws {
        let dir = TempDirectory("shell-spawn")
        defer { dir.cleanup() }
        do {
            _ = try await ShellCommand(["overseer-no-such-program-xyz", "a"]).run()
            Issue.record("expected an error")
        } catch let error as ShellError {
            #expect(error.code == .notFound)
            #expect(error.errno == ENOENT)
            #expect(error.description.contains("'overseer-no-such-program-xyz'"))
            #expect(error.description.contains("No such file or directory"))
        }
        do {
            _ = try await ShellCommand([dir.path + "/missing"]).run()
            Issue.record("expected an error")
        } catch let error as ShellError {
            #expect(error.code == .notFound)
            #expect(error.description.contains("missing"))
            #expect(error.description.contains("No such file or directory"))
        }
        let plain = dir.path + "/plain.sh"
        try "#!/bin/sh\necho hi\n".write(toFile: plain, atomically: true, encoding: .utf8)
        #expect(chmod(plain, 0o644) == 0)
        do {
            _ = try await ShellCommand([plain]).run()
            Issue.record("expected an error")
        } catch let error as ShellError {
            #expect(error.code == .notExecutable)
            #expect(error.description.contains("plain.sh"))
            #expect(error.description.contains("Permission denied"))
        }
        do {
            _ = try await ShellCommand(["true"], cwd: dir.path + "/no-such-dir").run()
            Issue.record("expected an error")
        } catch let error as ShellError {
            #expect(error.code == .badDirectory)
            #expect(error.description.contains("no-such-dir"))
            #expect(error.description.contains("No such file or directory"))
        }
        await #expect(throws: ShellError.self) { try await ShellCommand([]).run() }
        await #expect(throws: ShellError.self) { try await ShellCommand(["echo", "a\u{0}b"]).run() }
        await #expect(throws: ShellError.self) { try await ShellCommand(["true"], environment: ["A=B": "c"]).run() }
    }

    @Test func cancellationTerminatesTheWholeProcessGroup() async throws {
        let dir = TempDirectory("shell-cancel")
        defer { dir.cleanup() }
        let pids = dir.path + "/pids"
        // Two background children and the shell itself, which waits for them.
        let script = "sleep 60 & echo $! >> \"$PIDS\"; sleep 60 & echo $! >> \"$PIDS\"; echo $$ >> \"$PIDS\"; wait"
        let command = ShellCommand(["sh", "-c", script], environment: ["PIDS": pids])
        let task = Task { try await command.run(killGrace: .seconds(5)) }
        let lines = try await waitForLines(pids, 3)
        let recorded = lines.compactMap { Int32($0) }
        try #require(recorded.count == 3)
        #expect(recorded.allSatisfy(isAlive))
        task.cancel()
        let result = try await task.value
        // SIGTERM was enough: everything ended (the output pipes closed) within the grace, so no
        // SIGKILL was needed.
        #expect(result.cancelled)
        #expect(result.signal == SIGTERM)
        #expect(!result.killedAfterGrace)
        #expect(result.pid == recorded[2])
        for pid in recorded { #expect(!isAlive(pid), "pid \(pid) still running") }
    }

    @Test func aCommandIgnoringSIGTERMIsKilledAfterTheGrace() async throws {
        let dir = TempDirectory("shell-trap")
        defer { dir.cleanup() }
        let pids = dir.path + "/pids"
        let script = "trap '' TERM; sleep 60 & echo $! >> \"$PIDS\"; echo $$ >> \"$PIDS\"; wait"
        let command = ShellCommand(["sh", "-c", script], environment: ["PIDS": pids])
        let task = Task { try await command.run(killGrace: .milliseconds(300)) }
        let recorded = try await waitForLines(pids, 2).compactMap { Int32($0) }
        try #require(recorded.count == 2)
        task.cancel()
        let result = try await task.value
        #expect(result.cancelled)
        #expect(result.killedAfterGrace)
        #expect(result.signal == SIGKILL)
        for pid in recorded { #expect(!isAlive(pid), "pid \(pid) still running") }
    }

    @Test func aTimeoutTerminatesTheCommand() async throws {
        let result = try await ShellCommand(["sleep", "30"]).run(timeout: .milliseconds(200), killGrace: .seconds(2))
        #expect(result.timedOut)
        #expect(!result.cancelled)
        #expect(result.signal == SIGTERM)
    }

    @Test func anAlreadyCancelledTaskStartsNothing() async throws {
        let dir = TempDirectory("shell-precancel")
        defer { dir.cleanup() }
        let marker = dir.path + "/ran"
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await ShellCommand(["touch", marker]).run()
        }
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(!FileManager.default.fileExists(atPath: marker))
    }

    @Test func backgroundChildrenDoNotHoldUpTheResult() async throws {
        // The shell exits at once; its child keeps the output pipes open for 30 s.
        let result = try await ShellCommand(["sh", "-c", "sleep 30 & echo $!"]).run()
        #expect(result.exitCode == 0)
        // The result came back while the background child was still running: it did not wait.
        let child = try #require(Int32(result.stdoutTail.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(kill(child, 0) == 0, "the background child had already ended")
        _ = kill(child, SIGKILL)
    }

    @Test func shellMetacharactersArriveVerbatim() async throws {
        let tag = UUID().uuidString.prefix(8)
        let pwned = ["/tmp/pwned-\(tag)", "/tmp/pwned-\(tag)-2", "/tmp/pwned-\(tag)-3"]
        let evil = "$(touch \(pwned[0])); touch \(pwned[1]) `touch \(pwned[2])` 'single' \"double\" \\ | & > < *\nsecond line\t$HOME ${PATH}"
        let direct = try await ShellCommand(["printf", "%s", evil]).run()
        #expect(direct.exitCode == 0)
        #expect(direct.stdoutTail == evil)

        // Through the pipeline handler: as an argv element, as an env value, and in OVERSEER_ARGS.
        let args: JSONValue = ["evil": .string(evil), "list": [.string(evil), 1]]
        let (job, box) = makeJob(args: args)
        let argvJob = PipelineJob(command: ["printf", "%s", evil])
        try await runHandler(argvJob, job: job)
        #expect(box.get()?["stdout_tail"]?.stringValue == evil)

        let (job2, box2) = makeJob(args: args)
        try await runHandler(PipelineJob(command: ["printenv", "OVERSEER_ARGS"]), job: job2)
        #expect(box2.get()?["stdout_tail"]?.stringValue == args.canonicalString + "\n")
        let decoded = try JSONValue.parse(box2.get()?["stdout_tail"]?.stringValue ?? "")
        #expect(decoded == args)

        let (job3, box3) = makeJob(args: args)
        try await runHandler(PipelineJob(command: ["sh", "-c", #"printf %s "$EVIL""#], env: ["EVIL": evil]), job: job3)
        #expect(box3.get()?["stdout_tail"]?.stringValue == evil)

        for path in pwned { #expect(!FileManager.default.fileExists(atPath: path), "\(path) was created") }
    }

    // MARK: Pipeline handlers

    @Test func exitZeroFinishesWithTheTailsAsResult() async throws {
        let (job, box) = makeJob()
        try await runHandler(PipelineJob(command: ["sh", "-c", "echo out; echo err >&2"]), job: job)
        #expect(box.get() == ["exit_code": 0, "stdout_tail": "out\n", "stderr_tail": "err\n"])
    }

    @Test func exitThreeIsAShellJobError() async throws {
        let (job, box) = makeJob()
        do {
            try await runHandler(PipelineJob(command: ["sh", "-c", "echo partial; echo first >&2; echo 'last words' >&2; exit 3"]), job: job)
            Issue.record("expected an error")
        } catch let error as ShellJobError {
            #expect(error.exitCode == 3)
            #expect(error.signal == nil)
            #expect(error.stdoutTail == "partial\n")
            #expect(error.stderrTail == "first\nlast words\n")
            #expect(error.description == "command exited with status 3: last words")
            #expect(error.command == ["sh", "-c", "echo partial; echo first >&2; echo 'last words' >&2; exit 3"])
        }
        #expect(box.get() == nil)
    }

    @Test func exit75IsAFault() async throws {
        let (job, _) = makeJob()
        do {
            try await runHandler(PipelineJob(command: ["sh", "-c", "echo 'database busy' >&2; exit 75"]), job: job)
            Issue.record("expected a fault")
        } catch let fault as Fault {
            #expect(fault.reason.contains("exited with status 75"))
            #expect(fault.reason.hasSuffix(": database busy"))
        }
    }

    @Test func exit76IsAnAbort() async throws {
        let (job, _) = makeJob()
        do {
            try await runHandler(PipelineJob(command: ["sh", "-c", "echo 'input is corrupt' >&2; exit 76"]), job: job)
            Issue.record("expected an abort")
        } catch let abort as Abort {
            #expect(abort.reason == "command exited with status 76: input is corrupt")
        }
    }

    @Test func deathBySignalIsAShellJobError() async throws {
        let (job, _) = makeJob()
        do {
            try await runHandler(PipelineJob(command: ["sh", "-c", "kill -9 $$"]), job: job)
            Issue.record("expected an error")
        } catch let error as ShellJobError {
            #expect(error.exitCode == nil)
            #expect(error.signal == 9)
            #expect(error.description == "command killed by signal 9 (SIGKILL)")
        }
    }

    @Test func overseerVariablesAndTheJobsEnvAreSet() async throws {
        let args: JSONValue = ["org": 42, "name": "acme"]
        let (job, box) = makeJob(type: "result1", run: "nightly-7", attempt: 3, args: args)
        let script = #"printf '%s\n' "$OVERSEER_RUN" "$OVERSEER_JOB" "$OVERSEER_TYPE" "$OVERSEER_ATTEMPT" "$OVERSEER_ARGS" "$MODE" "${PATH:+path}""#
        try await runHandler(PipelineJob(command: ["sh", "-c", script], env: ["MODE": "fast", "OVERSEER_TYPE": "spoofed"]), job: job)
        let lines = box.get()?["stdout_tail"]?.stringValue?.split(separator: "\n").map(String.init)
        #expect(lines == ["nightly-7", "nightly-7/result1", "result1", "3", #"{"name":"acme","org":42}"#, "fast", "path"])
    }

    @Test func jobCwdIsUsed() async throws {
        let dir = TempDirectory("shell-jobcwd")
        defer { dir.cleanup() }
        let (job, box) = makeJob()
        try await runHandler(PipelineJob(command: ["pwd", "-P"], cwd: dir.path), job: job)
        let real = URL(fileURLWithPath: dir.path).resolvingSymlinksInPath().path
        #expect(box.get()?["stdout_tail"]?.stringValue == real + "\n")
    }

    @Test func handlerOptionsComeFromThePipeline() throws {
        let pipeline = Pipeline(name: "p", jobs: [
            "a": PipelineJob(command: ["true"]),
            "b": PipelineJob(
                command: ["true"], after: ["a"], retries: 2, backoff: Backoff(initial: 0.5, max: 10, multiplier: 3),
                timeout: 1.5, maxConcurrent: 2),
        ])
        let handlers = Handlers(pipeline: pipeline)
        #expect(handlers.types == ["a", "b"])
        let a = handlers.options(for: "a")
        #expect(a.retry == RetryPolicy(maximumAttempts: 1, initialDelay: 1, multiplier: 2, maximumDelay: 300, jitter: 0.5))
        #expect(a.timeout == nil)
        #expect(a.maximumConcurrent == nil)
        let b = handlers.options(for: "b")
        #expect(b.retry == RetryPolicy(maximumAttempts: 3, initialDelay: 0.5, multiplier: 3, maximumDelay: 10, jitter: 0.5))
        #expect(b.timeout == .milliseconds(1500))
        #expect(b.maximumConcurrent == 2)
    }

    @Test func runPlanRecordsAnAuditOfEachJobWithSecretsRedacted() throws {
        let pipeline = Pipeline(name: "nightly", jobs: [
            "start": PipelineJob(command: ["sh", "-c", "echo start"], priority: 5),
            "load": PipelineJob(
                command: ["./load", "--fast"], after: ["start"], retries: 2, timeout: 60, maxConcurrent: 1,
                env: ["MODE": "fast", "API_KEY": "k-123", "db_password": "hunter2", "GITHUB_TOKEN": "t", "AWS_SECRET": "s"],
                cwd: "/srv"),
        ])
        let plan = RunPlan.from(pipeline: pipeline, id: "nightly-1", args: ["org": 42])
        #expect(plan.id == "nightly-1")
        #expect(plan.name == "nightly")
        #expect(plan.args == ["org": 42])
        #expect(plan.graph == pipeline.graph)
        #expect(plan.typePriorities == ["start": 5, "load": 0])
        #expect(plan.options["start"] == ["command": ["sh", "-c", "echo start"], "retries": 0])
        let load = try #require(plan.options["load"])
        #expect(load["command"] == ["./load", "--fast"])
        #expect(load["retries"] == 2)
        #expect(load["timeout"]?.doubleValue == 60)
        #expect(load["max_concurrent"] == 1)
        #expect(load["cwd"] == "/srv")
        #expect(load["env"] == [
            "MODE": "fast", "API_KEY": "<redacted>", "db_password": "<redacted>", "GITHUB_TOKEN": "<redacted>",
            "AWS_SECRET": "<redacted>",
        ])
        #expect(!load.canonicalString.contains("hunter2"))
    }

    // MARK: Through a worker

    @Test func aDiamondPipelineRunsThroughAWorker() async throws {
        let dir = TempDirectory("shell-e2e")
        defer { dir.cleanup() }
        let out = dir.path + "/order.txt"
        let step = #"["sh", "-c", "echo $OVERSEER_TYPE >> \"$OUT\""]"#
        let json = """
            { "name": "diamond",
              "jobs": {
                "start":   { "command": \(step), "env": { "OUT": "\(out)" } },
                "result1": { "after": ["start"], "command": \(step), "env": { "OUT": "\(out)" } },
                "result2": { "after": ["start"], "command": \(step), "env": { "OUT": "\(out)" } },
                "finish":  { "after": ["result1", "result2"], "command": \(step), "env": { "OUT": "\(out)" }, "retries": 1 }
              } }
            """
        let pipeline = try Pipeline.parse(Array(json.utf8), file: "diamond.json")
        try await withStore("shell-e2e") { store, _ in
            let plan = RunPlan.from(pipeline: pipeline, id: "diamond-1", args: ["org": 42])
            _ = try await store.submit(plan)
            var config = fastConfig()
            config.untilIdle = true
            try await Worker(store: store, handlers: Handlers(pipeline: pipeline), configuration: config).run()

            let run = try #require(try store.run("diamond-1"))
            #expect(run.status == .finished)
            let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map(String.init)
            #expect(lines.count == 4)
            #expect(lines.first == "start")
            #expect(lines.last == "finish")
            #expect(Set(lines.dropFirst().dropLast()) == ["result1", "result2"])
            let snapshot = try #require(try store.snapshot(ofRun: "diamond-1"))
            let finish = try #require(snapshot.job(type: "finish"))
            #expect(finish.result == ["exit_code": 0, "stdout_tail": "", "stderr_tail": ""])
            #expect(finish.options["command"] == ["sh", "-c", #"echo $OVERSEER_TYPE >> "$OUT""#])
            #expect(finish.options["retries"] == 1)
        }
    }

    @Test func aPipelineTimeoutFailsTheJobQuickly() async throws {
        let json = #"{ "name": "slow", "jobs": { "slow": { "command": ["sleep", "30"], "timeout": 0.3 } } }"#
        let pipeline = try Pipeline.parse(Array(json.utf8), file: "slow.json")
        try await withStore("shell-timeout") { store, _ in
            _ = try await store.submit(RunPlan.from(pipeline: pipeline, id: "slow-1"))
            var config = fastConfig()
            config.untilIdle = true
            try await Worker(store: store, handlers: Handlers(pipeline: pipeline, killGrace: .seconds(1)), configuration: config).run()
            let run = try #require(try store.run("slow-1"))
            #expect(run.status == .failed)
            let job = try #require(try store.snapshot(ofRun: "slow-1")?.job(type: "slow"))
            #expect(job.status == .failed)
            #expect(job.reason == "timeout")
        }
    }
}
