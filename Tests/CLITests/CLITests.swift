import Foundation
import Overseer
import Testing

/// A pipeline whose jobs append their type to `order.txt`, to prove their order.
func orderPipeline(_ box: Sandbox, extra: String = "") -> String {
    let file = box.path + "/order.txt"
    let cmd = { (t: String) in "[\"sh\", \"-c\", \"echo \(t) >> \(file)\"]" }
    return box.write("pipeline.json", """
        { "name": "nightly",
          "jobs": {
            "start":   { "command": \(cmd("start")) },
            "result1": { "after": ["start"], "command": \(cmd("result1")) },
            "result2": { "after": ["start"], "command": \(cmd("result2")) },
            "finish":  { "after": ["result1", "result2"], "command": \(cmd("finish")) }\(extra)
          } }
        """)
}

func json(_ text: String) throws -> JSONValue { try JSONValue.parse(text.trimmingCharacters(in: .whitespacesAndNewlines)) }

@Suite struct CLITests {
    @Test func versionAndHelp() throws {
        let box = Sandbox()
        let v = try box.run(["--version"], db: false)
        #expect(v.status == 0)
        #expect(v.stdout == "overseer 0.1.0\n")
        let h = try box.run(["--help"], db: false)
        #expect(h.status == 0)
        #expect(h.stdout.hasPrefix("overseer 0.1.0 — durable DAG pipelines on an append-only log\n\nUsage: overseer COMMAND [ARGS] [OPTIONS]\n"))
        for c in ["demo", "run", "submit", "worker", "status", "history", "replay", "export", "verify", "retry", "abort", "graph"] {
            #expect(h.stdout.contains("\n  \(c) "), "help lists \(c)")
        }
        let sh = try box.run(["status", "--help"], db: false)
        #expect(sh.status == 0)
        #expect(sh.stdout.hasPrefix("Usage: overseer status [RUN] [OPTIONS]\n"))
        #expect(sh.stdout.contains("--as-of TIME|@N"))
    }

    @Test func usageErrorsExitTwoWithAClearMessage() throws {
        let box = Sandbox()
        let unknown = try box.run(["stauts"], db: false)
        #expect(unknown.status == 2)
        #expect(unknown.stderr == "overseer: unknown command 'stauts' (did you mean 'status'?). Run 'overseer --help' for the list.\n")
        let badOption = try box.run(["status", "--jsno"])
        #expect(badOption.status == 2)
        #expect(badOption.stderr.hasPrefix("overseer status: unknown option '--jsno' for 'status' (did you mean '--json'?)\n"))
        let missing = try box.run(["history"])
        #expect(missing.status == 2)
        #expect(missing.stderr.hasPrefix("overseer history: give exactly one of --job ID or --run ID\n"))
        let badTime = try box.run(["status", "r1", "--as-of", "yesterday"])
        #expect(badTime.status == 2)
        #expect(badTime.stderr.contains("--as-of must be an RFC 3339 time"))
        let noArg = try box.run(["run"])
        #expect(noArg.status == 2)
        #expect(noArg.stderr.hasPrefix("overseer run: 'run' needs PIPELINE\n"))
        #expect(!noArg.stderr.contains("Fatal"))
    }

    @Test func theDemoRunsEndToEnd() throws {
        let box = Sandbox()
        let r = try box.run(["demo"], db: false)
        #expect(r.status == 0, "\(r.stderr)")
        for expected in ["handler: start", "handler: finish (2000 rows in all)", "Timeline", "job.claimed", "run demo: finished — 4 jobs: 4 finished", "verify: ok", "Where to look next"] {
            #expect(r.stdout.contains(expected), "demo output lacks '\(expected)'")
        }
        let lines = r.stdout.split(separator: "\n").map(String.init)
        let s = lines.firstIndex { $0.contains("handler: start") }!
        let f = lines.firstIndex { $0.contains("handler: finish") }!
        #expect(s < f)
    }

    @Test func aPipelineRunsInDependencyOrder() throws {
        let box = Sandbox()
        let pipeline = orderPipeline(box)
        let r = try box.run(["run", pipeline, "--run", "n1", "--args", "{\"org\": 42}"])
        #expect(r.status == 0, "\(r.stderr)")
        let order = box.read("order.txt").split(separator: "\n").map(String.init)
        #expect(order.count == 4)
        #expect(order.first == "start")
        #expect(order.last == "finish")
        #expect(Set(order[1...2]) == ["result1", "result2"])
        let status = try box.run(["status", "n1", "--json"])
        #expect(status.status == 0)
        let value = try json(status.stdout)
        #expect(value["run"]?["status"] == "finished")
        #expect(value["run"]?["counts"]?["finished"] == 4)
        let jobs = try #require(value["jobs"]?.arrayValue)
        #expect(jobs.map { $0["type"]?.stringValue ?? "" } == ["start", "result1", "result2", "finish"])
        for j in jobs {
            #expect(Set(j.objectValue!.keys) == ["id", "type", "status", "attempts", "worker", "started", "ended", "error", "reason", "blocked_by"])
            #expect(j["attempts"] == 1)
        }
        // Resubmitting the same run is a no-op; a different args is an error.
        let again = try box.run(["submit", pipeline, "--run", "n1", "--args", "{\"org\": 42}"])
        #expect(again.status == 0)
        #expect(again.stdout == "n1\n")
        let different = try box.run(["submit", pipeline, "--run", "n1", "--args", "{\"org\": 7}"])
        #expect(different.status == 2)
        #expect(different.stderr.contains("already exists with a different args"))
    }

    @Test func exitCodesMeanFinishedFaultAbortAndFailed() throws {
        let box = Sandbox()
        let counter = box.path + "/count"
        let pipeline = box.write("codes.json", """
            { "name": "codes", "jobs": {
                "flaky": { "command": ["sh", "-c", "n=$(cat \(counter) 2>/dev/null || echo 0); echo $((n+1)) > \(counter); [ $n -ge 2 ] || exit 75"], "backoff": 0.05 },
                "bad":   { "after": ["flaky"], "command": ["sh", "-c", "echo oops >&2; exit 3"], "retries": 1, "backoff": 0.05 },
                "never": { "after": ["bad"], "command": ["true"] },
                "stop":  { "after": ["flaky"], "command": ["sh", "-c", "exit 76"] },
                "below": { "after": ["stop"], "command": ["true"] }
            } }
            """)
        let r = try box.run(["run", pipeline, "--run", "c1"])
        #expect(r.status == 1)
        let value = try json(try box.run(["status", "c1", "--json"]).stdout)
        func job(_ t: String) -> JSONValue? { value["jobs"]?.arrayValue?.first { $0["type"]?.stringValue == t } }
        #expect(job("flaky")?["status"] == "finished")
        #expect(job("flaky")?["attempts"] == 3)
        #expect(job("bad")?["status"] == "failed")
        #expect(job("bad")?["attempts"] == 2)
        #expect(job("bad")?["error"]?.stringValue?.contains("exited with status 3") == true)
        #expect(job("never")?["status"] == "unstarted")
        #expect(job("never")?["blocked_by"] == ["c1/bad"])
        #expect(job("stop")?["status"] == "aborted")
        #expect(job("below")?["status"] == "aborted")
        #expect(value["run"]?["status"] == "failed")
        let history = try box.run(["history", "--job", "c1/flaky"])
        #expect(history.stdout.components(separatedBy: "(fault)").count - 1 == 2)
    }

    @Test func aTimeoutFailsTheJob() throws {
        let box = Sandbox()
        let pipeline = box.write("slow.json", """
            { "name": "slow", "jobs": { "sleepy": { "command": ["sleep", "30"], "timeout": 0.5 } } }
            """)
        let r = try box.run(["run", pipeline, "--run", "s1"])
        #expect(r.status == 1)
        let value = try json(try box.run(["status", "s1", "--json"]).stdout)
        let job = value["jobs"]?.arrayValue?.first
        #expect(job?["status"] == "failed")
        #expect(job?["reason"] == "timeout")
    }

    @Test func statusAsOfTheMiddleOfARun() throws {
        let box = Sandbox()
        let pipeline = orderPipeline(box)
        #expect(try box.run(["run", pipeline, "--run", "m1"]).status == 0)
        let history = try box.run(["history", "--run", "m1", "--json"])
        let facts = try history.stdout.split(separator: "\n").map { try Fact.decode(line: Array($0.utf8)) }
        let firstFinish = try #require(facts.first { $0.kind == .jobFinished })
        let at = try box.run(["status", "m1", "--as-of", "@\(firstFinish.position)", "--json"])
        #expect(at.status == 0, "\(at.stderr)")
        let v = try json(at.stdout)
        func status(_ t: String) -> JSONValue? { v["jobs"]?.arrayValue?.first { $0["type"]?.stringValue == t }?["status"] }
        #expect(status("start") == "finished")
        #expect(status("finish") == "unstarted")
        #expect(v["run"]?["status"] == "running")
        // The same by time.
        let byTime = try box.run(["status", "m1", "--as-of", firstFinish.time.rfc3339, "--json"])
        #expect(try json(byTime.stdout)["jobs"]?.arrayValue?.first?["status"] == "finished")
        // Before the run existed.
        let before = try box.run(["status", "m1", "--as-of", "@1"])
        #expect(before.status == 0)
        let never = try box.run(["status", "m1", "--as-of", "2000-01-01T00:00:00Z"])
        #expect(never.status == 2)
        #expect(never.stderr.contains("did not exist yet"))
    }

    @Test func exportVerifyTamperVerify() throws {
        let box = Sandbox()
        #expect(try box.run(["run", orderPipeline(box), "--run", "e1"]).status == 0)
        let export = box.path + "/log.jsonl"
        let e = try box.run(["export", "--output", export])
        #expect(e.status == 0, "\(e.stderr)")
        let ok = try box.run(["verify", export], db: false)
        #expect(ok.status == 0)
        #expect(ok.stdout.contains(": ok: "))
        let store = try box.run(["verify"])
        #expect(store.status == 0, "\(store.stdout)")
        // A second run, then a filtered export of the first: it verifies only as a partial export.
        #expect(try box.run(["run", orderPipeline(box), "--run", "e2"]).status == 0)
        let part = box.path + "/e1.jsonl"
        let pe = try box.run(["export", "--run", "e1", "--since", "@1", "--output", part])
        #expect(pe.stderr.contains("overseer verify --partial"))
        #expect(try box.run(["verify", part], db: false).status == 1)
        let partial = try box.run(["verify", "--partial", part], db: false)
        #expect(partial.status == 0, "\(partial.stdout)")
        #expect(partial.stdout.contains("partial export"))
        // Flip one byte inside a line's data.
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: export)))
        let target = bytes.firstIndex(of: UInt8(ascii: "w"))!
        bytes[target] = UInt8(ascii: "W")
        try Data(bytes).write(to: URL(fileURLWithPath: export))
        let bad = try box.run(["verify", export], db: false)
        #expect(bad.status == 1)
        #expect(bad.stdout.contains("FAILED"))
        #expect(bad.stdout.contains("line "))
    }

    @Test func badInputsGetClearErrors() throws {
        let box = Sandbox()
        let malformed = box.write("bad.json", "{ \"name\": \"x\",\n  \"jobs\": { \"a\": { \"command\": [\"true\"] }, }\n}")
        let m = try box.run(["run", malformed])
        #expect(m.status == 2)
        #expect(m.stderr.contains("bad.json:2:"))
        let cycle = box.write("cycle.json", #"{"name":"c","jobs":{"a":{"after":["b"],"command":["true"]},"b":{"after":["a"],"command":["true"]}}}"#)
        let c = try box.run(["run", cycle])
        #expect(c.status == 2)
        #expect(c.stderr.contains("cycle: a -> b -> a"))
        let unknown = box.write("unknown.json", #"{"name":"u","jobs":{"result2":{"command":["true"]},"finish":{"after":["reslt2"],"command":["true"]}}}"#)
        let u = try box.run(["run", unknown])
        #expect(u.status == 2)
        #expect(u.stderr.contains("job 'finish' depends on unknown job 'reslt2' (did you mean 'result2'?)"))
        let empty = box.write("empty.json", #"{"name":"e","jobs":{"a":{"command":[]}}}"#)
        let ec = try box.run(["run", empty])
        #expect(ec.status == 2)
        #expect(ec.stderr.contains("job 'a'"))
        #expect(ec.stderr.contains("command"))
        let args = try box.run(["submit", orderPipeline(box), "--args", "{not json"])
        #expect(args.status == 2)
        #expect(args.stderr.contains("--args: not valid JSON"))
        let missingFile = try box.run(["run", box.path + "/nope.json"])
        #expect(missingFile.status == 2)
        #expect(missingFile.stderr.contains("nope.json"))
        // A store that does not exist, for a read-only command.
        let noStore = try box.run(["status", "--db", box.path + "/missing.lmdb"], db: false)
        #expect(noStore.status == 3)
        #expect(noStore.stderr.contains("missing.lmdb"))
        // A store path that is a plain file.
        let file = box.write("notastore", "hello")
        let notStore = try box.run(["status", "--db", file], db: false)
        #expect(notStore.status == 3)
        #expect(notStore.stderr.contains("not an Overseer store"))
        // A corrupt data file.
        try FileManager.default.createDirectory(atPath: box.path + "/corrupt.lmdb", withIntermediateDirectories: true)
        var junk = [UInt8](repeating: 0, count: 65536)
        for i in junk.indices { junk[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 7) }
        try Data(junk).write(to: URL(fileURLWithPath: box.path + "/corrupt.lmdb/data.mdb"))
        let corrupt = try box.run(["status", "--db", box.path + "/corrupt.lmdb"], db: false)
        #expect(corrupt.status == 3)
        #expect(!corrupt.stderr.isEmpty)
        // A password in a postgres URL is never printed, whatever goes wrong: a wrong password
        // (against the test server when there is one), a refused connection, a malformed URL.
        let server = ProcessInfo.processInfo.environment["OVERSEER_TEST_POSTGRES"].flatMap { URL(string: $0) }
        let hostPort = server.map { "\($0.host ?? "127.0.0.1"):\($0.port ?? 5432)" } ?? "127.0.0.1:1"
        let pg = try box.run(["status", "--db", "postgres://alice:s3cret@\(hostPort)/overseer"], db: false)
        #expect(pg.status == 3)
        #expect(!pg.stderr.contains("s3cret"))
        #expect(pg.stderr.contains("alice:***@"), "\(pg.stderr)")
        for url in ["postgres://bob:p@ss@\(hostPort)/x", "postgresql://carol@\(hostPort)/x?sslmode=disable&password=hunter2"] {
            let r = try box.run(["status", "--db", url], db: false)
            #expect(r.status == 3)
            #expect(!r.stderr.contains("p@ss") && !r.stderr.contains("hunter2"), "password shown: \(r.stderr)")
        }
    }

    @Test func graphAsDot() throws {
        let box = Sandbox()
        let g = try box.run(["graph", orderPipeline(box)])
        #expect(g.status == 0)
        #expect(g.stdout.hasPrefix("digraph \"nightly\" {\n"))
        #expect(g.stdout.contains("  \"start\" -> \"result1\";\n"))
        #expect(g.stdout.contains("  \"result2\" -> \"finish\";\n"))
    }

    @Test func retryAndAbortFromTheCommandLine() throws {
        let box = Sandbox()
        let flag = box.path + "/ok"
        let pipeline = box.write("p.json", """
            { "name": "p", "jobs": {
                "a": { "command": ["sh", "-c", "[ -e \(flag) ] || exit 1"] },
                "b": { "after": ["a"], "command": ["true"] } } }
            """)
        #expect(try box.run(["run", pipeline, "--run", "p1"]).status == 1)
        #expect(FileManager.default.createFile(atPath: flag, contents: nil))
        let retry = try box.run(["retry", "p1/a", "--reason", "fixed"], env: ["USER": "alice"])
        #expect(retry.status == 0, "\(retry.stderr)")
        #expect(retry.stdout.contains("job.retried  p1/a"))
        #expect(retry.stdout.contains("by operator:alice"))
        let worker = try box.run(["worker", pipeline, "--until-idle"])
        #expect(worker.status == 0, "\(worker.stderr)")
        #expect(try json(try box.run(["status", "p1", "--json"]).stdout)["run"]?["status"] == "finished")
        #expect(try box.run(["submit", pipeline, "--run", "p2"]).status == 0)
        let abort = try box.run(["abort", "--run", "p2", "--reason", "not today"])
        #expect(abort.status == 0)
        #expect(abort.stdout.contains("run.aborted"))
        #expect(try json(try box.run(["status", "p2", "--json"]).stdout)["run"]?["status"] == "aborted")
        let again = try box.run(["abort", "--run", "p2"])
        #expect(again.status == 2)
        #expect(again.stderr.contains("already aborted"))
    }

    @Test func replayPrintsEachFactAndTheStateAfterIt() throws {
        let box = Sandbox()
        #expect(try box.run(["run", orderPipeline(box), "--run", "r1"]).status == 0)
        let r = try box.run(["replay", "r1"])
        #expect(r.status == 0)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines[0].hasPrefix("@1  "))
        #expect(lines[0].contains("run.created  r1"))
        #expect(lines[1].hasPrefix("    → run: running, 0 jobs: none, 0 ready"))
        #expect(lines.last?.contains("run: finished, 4 jobs: 4 finished, 0 ready") == true)
    }
}
