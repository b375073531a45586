import Foundation
import Overseer
import OverseerPostgres
import OverseerTestSupport
import Testing

/// Real processes against a real server: claim races across processes, a server killed and
/// restarted under a writer, and the schema's refusals. The restart test runs a private server
/// of its own, so it never disturbs the shared one.
@Suite(.serialized)
struct PostgresProcessTests {
    @Test func compareAndAppendRaceAcrossProcesses() async throws {
        guard TestStores.available(.postgres) else {
            if TestStores.postgresRequired { Issue.record("OVERSEER_TEST_POSTGRES is not set") }
            return
        }
        let schema = try TestStores.makeSchema()
        defer { TestStores.dropSchema(schema) }
        let url = try TestStores.url(schema: schema)
        var graph: [String: [String]] = [:]
        for i in 0..<120 { graph["j\(i)"] = [] }
        do {
            let store = try LogStore.postgres(url)
            _ = try await store.submit(RunPlan(id: "race", graph: JobGraph(graph)))
        }
        let go = FileManager.default.temporaryDirectory.path + "/pg-race-\(UUID().uuidString.prefix(8)).go"
        defer { try? FileManager.default.removeItem(atPath: go) }
        let results = try await runOffPool { () -> [(lines: [String], stderr: String, reason: Process.TerminationReason, status: Int32)] in
            let probes = try (0..<4).map { _ in try ProbeProcess(["claim-race", url, "race", "120", "4", go]) }
            for p in probes where !p.waitForLines(1, timeout: 60) {
                Issue.record("a probe did not get ready: \(p.stderrText)")
            }
            _ = FileManager.default.createFile(atPath: go, contents: Data())
            return probes.map { p in
                let (reason, status) = p.waitForExit()
                return (p.lines, p.stderrText, reason, status)
            }
        }
        var winners: [String: [String]] = [:]
        for r in results {
            #expect(r.reason == .exit && r.status == 0, "probe: \(r.stderr)")
            for line in r.lines.dropFirst() {
                let parts = line.split(separator: " ")
                if parts.count == 3, parts[0] == "won" { winners[String(parts[1]), default: []].append(String(parts[2])) }
            }
        }
        #expect(winners.count == 120, "every job claimed once")
        #expect(winners.values.allSatisfy { $0.count == 1 }, "a job with two winners: \(winners.filter { $0.value.count > 1 })")
        let store = try LogStore.postgres(url)
        let report = try store.verify()
        #expect(report.ok, "\(report)")
        #expect(try store.jobs(inRun: "race").allSatisfy { $0.status == .started && $0.revision == 2 })
    }

    @Test func aServerKilledMidRunLosesNoAcknowledgedFact() async throws {
        guard TestStores.available(.postgres) || TestStores.postgresRequired else { return }
        let server = try PrivatePGServer()
        defer { server.destroy() }
        let url = server.url
        _ = try PostgresSchema.migrate(url: url)
        let outcome = try await runOffPool { () -> (acked: [(UInt64, String)], before: Int, stderr: String) in
            let child = try ProbeProcess(["append-loop", url])
            _ = child.waitForLines(200, timeout: 60)
            let before = child.lines.count
            try server.kill()
            Thread.sleep(forTimeInterval: 1.5)
            try server.restart()
            // The writer reconnects and carries on.
            _ = child.waitForLines(before + 200, timeout: 90)
            kill(child.pid, SIGKILL)
            _ = child.waitForExit()
            let acked = child.lines.compactMap { line -> (UInt64, String)? in
                let parts = line.split(separator: " ")
                guard parts.count == 3, parts[0] == "ack", let p = UInt64(parts[1]) else { return nil }
                return (p, String(parts[2]))
            }
            return (acked, before, child.stderrText)
        }
        #expect(outcome.acked.count >= outcome.before + 200, "the writer did not carry on after the restart: \(outcome.stderr)")
        let store = try LogStore.postgres(url)
        let report = try store.verify()
        #expect(report.ok, "\(report)")
        for (position, id) in outcome.acked {
            let fact = try store.fact(at: position)
            #expect(fact?.id == id, "acknowledged fact \(id) at \(position) missing")
        }
        // Every fact id is stored once: a commit whose outcome was unknown was not repeated.
        let ids = try store.facts(after: 0).map(\.id)
        #expect(Set(ids).count == ids.count)
    }

    @Test func workersCarryOnThroughAServerRestart() async throws {
        guard TestStores.available(.postgres) || TestStores.postgresRequired else { return }
        let server = try PrivatePGServer()
        defer { server.destroy() }
        let url = server.url
        let dir = FileManager.default.temporaryDirectory.path + "/pg-restart-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // start → 16 parallel jobs of 0.3 s → finish.
        var jobs = ["\"start\": { \"command\": [\"true\"] }"]
        for i in 0..<16 { jobs.append("\"w\(i)\": { \"after\": [\"start\"], \"command\": [\"sleep\", \"0.3\"] }") }
        jobs.append("\"finish\": { \"after\": [\((0..<16).map { "\"w\($0)\"" }.joined(separator: ", "))], \"command\": [\"true\"] }")
        let pipeline = dir + "/restart.json"
        try "{ \"name\": \"restart\", \"jobs\": { \(jobs.joined(separator: ",\n")) } }".write(toFile: pipeline, atomically: true, encoding: .utf8)
        let cli = productsDirectory().appendingPathComponent("overseer").path
        let submit = try await runOffPool { try PGShell.run(cli, ["submit", pipeline, "--db", url, "--run", "r1"]) }
        #expect(submit.status == 0, "submit: \(submit.stderr)")
        let finishedBeforeKill = try await runOffPool { () -> Int in
            let workers = try (0..<2).map { i in
                try ProbeProcess(executable: cli, ["worker", pipeline, "--db", url, "--lease", "8", "--concurrency", "4", "--name", "w\(i)"])
            }
            defer {
                // Only a worker still running: a pid that has been reaped may belong to another process.
                for w in workers where w.process.isRunning { kill(w.pid, SIGKILL); _ = w.waitForExit() }
            }
            let store = try LogStore.postgres(url, retryWindow: .seconds(60))
            func finished() -> Int { (try? store.jobs(inRun: "r1").filter { $0.status == .finished }.count) ?? 0 }
            let deadline = Date().addingTimeInterval(60)
            while finished() < 4, Date() < deadline { usleep(20_000) }
            let before = finished()
            try server.kill()
            Thread.sleep(forTimeInterval: 2)
            try server.restart()
            let end = Date().addingTimeInterval(120)
            while (try? store.run("r1"))??.status != .finished, Date() < end { usleep(50_000) }
            for w in workers { kill(w.pid, SIGTERM) }
            for w in workers { _ = w.waitForExit() }
            return before
        }
        #expect(finishedBeforeKill < 18, "the server was killed after the run ended; the test proves nothing")
        let store = try LogStore.postgres(url)
        let run = try #require(try store.run("r1"))
        #expect(run.status == .finished)
        let facts = try store.facts(after: 0)
        var finishes: [String: Int] = [:]
        for f in facts where f.kind == .jobFinished { finishes[f.job ?? "", default: 0] += 1 }
        #expect(finishes.count == 18 && finishes.values.allSatisfy { $0 == 1 }, "\(finishes)")
        #expect(Set(facts.map(\.id)).count == facts.count)
        let report = try store.verify()
        #expect(report.ok, "\(report)")
    }

    @Test func aNewerOrForeignSchemaIsRefusedAndLeftUnchanged() async throws {
        guard TestStores.available(.postgres) else { return }
        let schema = try TestStores.makeSchema()
        defer { TestStores.dropSchema(schema) }
        let url = try TestStores.url(schema: schema)
        let c = try PGConnection(withConnectionDefaults(url))
        defer { c.close() }
        // Foreign: tables of our names that Overseer did not make.
        try c.exec("CREATE TABLE overseer_kv (x int)")
        let foreign = #expect(throws: StoreError.self) { _ = try LogStore.postgres(url) }
        #expect(foreign?.code == .notAStore)
        #expect(try c.exec("SELECT to_regclass('overseer_schema') IS NULL").string(0, 0) == "t")
        try c.exec("DROP TABLE overseer_kv")
        // Newer: a schema version this build does not know.
        _ = try PostgresSchema.migrate(url: url)
        try c.exec("INSERT INTO overseer_schema (version) VALUES (99)")
        let newer = #expect(throws: StoreError.self) { _ = try LogStore.postgres(url) }
        #expect(newer?.code == .newerFormat && newer?.message.contains("99") == true)
        #expect(try c.exec("SELECT count(*) FROM overseer_schema").string(0, 0) == "2")
        // Not created when the caller said not to.
        let other = try TestStores.makeSchema()
        defer { TestStores.dropSchema(other) }
        var options = StoreOptions()
        options.createIfMissing = false
        let missing = #expect(throws: StoreError.self) { _ = try LogStore.postgres(try TestStores.url(schema: other), options: options) }
        #expect(missing?.code == .notAStore)
    }

    @Test func theDatabaseItselfEnforcesRevisionsAndVerifyFindsTampering() async throws {
        guard TestStores.available(.postgres) else { return }
        let schema = try TestStores.makeSchema()
        defer { TestStores.dropSchema(schema) }
        let url = try TestStores.url(schema: schema)
        let store = try LogStore.postgres(url)
        _ = try await store.submit(RunPlan(id: "t", graph: ["a": []]))
        _ = try await store.append(FactDraft(kind: .jobClaimed, run: "t", job: "t/a", author: Author(name: "w"), attempt: 1, data: ["lease_ms": 60_000]), expecting: 1)
        let c = try PGConnection(withConnectionDefaults(url))
        defer { c.close() }
        // A second fact at the same (job, revision), written behind the store's back.
        let duplicate = #expect(throws: PGError.self) {
            try c.exec("INSERT INTO overseer_facts (position, id, time_us, kind, run, job, revision, line) SELECT position + 100, id || 'x', time_us, kind, run, job, revision, line FROM overseer_facts WHERE job = 't/a' AND revision = 2")
        }
        #expect(duplicate?.kind == .uniqueViolation)
        // One changed byte in a stored fact: verify names its position.
        #expect(try store.verify().ok)
        let claim = try #require(try store.history(ofJob: "t/a").last)
        let edit = "convert_to(replace(convert_from(line, 'UTF8'), '\"worker\":\"w\"', '\"worker\":\"x\"'), 'UTF8')"
        #expect(try c.exec("UPDATE overseer_facts SET line = \(edit) WHERE position = \(claim.position)").commandTuples == 1)
        let after = try store.verify()
        #expect(!after.ok)
        #expect(after.firstViolation?.position == claim.position, "\(after)")
    }
}


/// Runs a command to its end and collects its output.
enum PGShell {
    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let child = try ProbeProcess(executable: executable, arguments)
        let (_, status) = child.waitForExit()
        return (status, child.lines.joined(separator: "\n"), child.stderrText)
    }
}
