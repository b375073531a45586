import Foundation
import Overseer
import OverseerPostgres
import OverseerTestSupport
import Testing

/// Many hosts against one PostgreSQL server (docs/postgres.md, "Many hosts"): two network
/// namespaces joined by a veth pair stand for two hosts, the server runs on host A, and the real
/// `overseer` CLI works one pipeline from both. Host B is then cut off (its link goes down) in the
/// middle of the run; later, on the same hosts, B is cut off while it holds the log's lock. Where
/// namespaces cannot be made, both hosts run on loopback and the cut is a SIGSTOP of B's process
/// instead (MultiHostSupport.swift); OVERSEER_TEST_NO_NETNS=1 forces that.
///
/// The test starts a server of its own inside host A, so it does not need the shared test server;
/// it runs whenever the other PostgreSQL tests run (TestStores.postgresRequired).
@Suite(.serialized)
struct MultiHostTests {
    static var enabled: Bool { TestStores.available(.postgres) || TestStores.postgresRequired }

    static let lease = 6.0
    static let workJobs = 8

    /// start → work_0 … work_7 (each sleeps 4 s) → finish.
    static func fanOutPipeline(in dir: String) throws -> String {
        var jobs = [#""start": { "command": ["sh", "-c", "echo start"] }"#]
        for i in 0..<workJobs {
            jobs.append(#""work_\#(i)": { "after": ["start"], "command": ["sh", "-c", "sleep 4; echo work_\#(i) done"] }"#)
        }
        let all = (0..<workJobs).map { "\"work_\($0)\"" }.joined(separator: ", ")
        jobs.append(#""finish": { "after": [\#(all)], "command": ["sh", "-c", "echo finish"] }"#)
        let path = dir + "/fanout.json"
        try "{ \"name\": \"fanout\", \"jobs\": { \(jobs.joined(separator: ",\n  ")) } }\n".write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static var jobIDs: [String] {
        ["mh/start", "mh/finish"] + (0..<workJobs).map { "mh/work_\($0)" }
    }

    // MARK: A host cut off mid-run

    /// What the cut-off scenario saw, checked by the test on its own task.
    struct CutOffOutcome: Sendable {
        var mode = ""
        /// The run's facts, as `overseer history --run` prints them.
        var facts: [Fact] = []
        /// worker.started and worker.stopped (they belong to no run).
        var workerFacts: [Fact] = []
        var allPositions: [UInt64] = []
        var cutPosition: UInt64 = 0
        var heldByBAtCut: Set<String> = []
        var statusJSON = ""
        var verify: ToolResult?
        var workerExits: [String: (byItself: Bool, status: Int32)] = [:]
        var problems: [String] = []
        var timeline = ""
        var logs = ""
    }

    /// Both scenarios share one pair of hosts and one server: making them (initdb above all) is
    /// the heaviest part, and the test suite runs beside timing-sensitive tests on two cores.
    @Test func aHostCutOffFinishesNoJobTwiceAndStallsNoOtherHost() async throws {
        guard Self.enabled else {
            print("note: \(noPostgres); the multi-host test is left out")
            return
        }
        let (cutOff, lock) = try await runOffPool { () -> (CutOffOutcome, LockOutcome) in
            let hosts = try TwoHosts()
            defer { hosts.destroy() }
            let cutOff = try Self.cutOffMidRun(hosts)
            return (cutOff, try Self.cutOffInsideAWrite(hosts))
        }
        check(cutOff)
        for p in lock.problems { Issue.record("\(p) (mode: \(lock.mode))") }
        #expect(lock.submit?.status == 0, "submit: \(lock.submit?.stderr ?? "")")
        #expect(lock.verify?.status == 0, "verify: \(lock.verify.map { $0.stdout + $0.stderr } ?? "")")
    }

    /// A host cut off mid-run: its jobs are finished once, on the other host.
    func check(_ o: CutOffOutcome) {
        let context = "mode: \(o.mode)\n\(o.timeline)\n\(o.logs)"
        for p in o.problems { Issue.record("\(p)\n\(context)") }
        guard o.problems.isEmpty else { return }

        // Every job finished exactly once.
        for job in Self.jobIDs {
            let finished = o.facts.filter { $0.job == job && $0.kind == .jobFinished }
            #expect(finished.count == 1, "\(job) finished \(finished.count) times\n\(context)")
        }
        let status = (try? JSONValue.parse(o.statusJSON)) ?? .null
        #expect(status["run"]?["status"]?.stringValue == "finished", "\(o.statusJSON)")
        #expect(status["run"]?["counts"]?["finished"]?.intValue == Int64(Self.jobIDs.count), "\(o.statusJSON)")

        // B held work when it was cut off; A released each of those jobs after its lease and
        // finished it, and B's late result for it was rejected.
        #expect(!o.heldByBAtCut.isEmpty, "host B held no claim when it was cut off\n\(context)")
        for job in o.heldByBAtCut.sorted() {
            let released = o.facts.filter {
                $0.job == job && $0.kind == .jobReleased && $0.reason == "lease_expired" && $0.position > o.cutPosition
            }
            #expect(released.count == 1, "\(job): \(released.count) lease releases after the cut\n\(context)")
            #expect(released.allSatisfy { $0.worker == "host-a" && $0.data["expired_worker"]?.stringValue == "host-b" }, "\(job): \(released)")
            #expect(o.facts.first { $0.job == job && $0.kind == .jobFinished }?.worker == "host-a", "\(job) not finished by host A\n\(context)")
            let rejected = o.facts.filter { $0.job == job && $0.kind == .jobRejected && $0.worker == "host-b" }
            #expect(rejected.count == 1, "\(job): \(rejected.count) rejected results from host B\n\(context)")
            #expect(rejected.allSatisfy { $0.reason == "superseded" && $0.revision == nil && $0.position > o.cutPosition })
        }
        // After the cut, host B only ever had results rejected, and stopped.
        let lateFromB = o.facts.filter { $0.worker == "host-b" && $0.position > o.cutPosition }
        #expect(lateFromB.allSatisfy { $0.kind == .jobRejected }, "host B after the cut: \(lateFromB)")
        let stops = o.workerFacts.filter { $0.kind == .workerStopped }.compactMap(\.worker).sorted()
        #expect(stops == ["host-a", "host-b"], "worker.stopped facts: \(stops)")
        // The log is whole: dense positions, and the CLI's verify passes.
        #expect(!o.allPositions.isEmpty && o.allPositions.enumerated().allSatisfy { $0.element == UInt64($0.offset + 1) }, "positions are not dense")
        #expect(o.verify?.status == 0 && o.verify?.stdout.contains(": ok:") == true, "verify: \(o.verify.map { $0.stdout + $0.stderr } ?? "not run")")
        for (name, exit) in o.workerExits.sorted(by: { $0.key < $1.key }) {
            #expect(exit.byItself && exit.status == 0, "worker \(name) did not stop cleanly on SIGTERM: \(exit)\n\(context)")
        }
    }

    static func cutOffMidRun(_ hosts: TwoHosts) throws -> CutOffOutcome {
        var o = CutOffOutcome()
        o.mode = hosts.mode
        let timeline = Timeline()
        var workers: [HostProcess] = []
        defer { for w in workers { w.forceKill() } }

        let pipeline = try fanOutPipeline(in: hosts.workDir)
        let migrate = try hosts.overseer(on: .a, ["migrate"])
        guard migrate.status == 0 else {
            o.problems.append("migrate on host A failed: \(migrate.stderr)")
            return o
        }
        let reader = try FactReader(url: hosts.socketURL)
        let lease = String(Int(lease))
        for (host, name) in [(TwoHosts.Host.a, "host-a"), (.b, "host-b")] {
            workers.append(try HostProcess(
                hosts.argv(on: host, [overseerCLI, "worker", pipeline, "--db", hosts.url, "--name", name,
                    "--lease", lease, "--concurrency", "4", "--grace", "5"]),
                name: name))
        }
        let (a, b) = (workers[0], workers[1])
        func logs() -> String { workers.map { "--- \($0.name):\n\($0.logText)" }.joined(separator: "\n") }

        // Both workers are up before the run exists, so both get work.
        let up = try eventually(60) {
            Set(try reader.refresh().filter { $0.kind == .workerStarted }.compactMap(\.worker)) == ["host-a", "host-b"]
        }
        guard up else {
            o.problems.append("the workers did not both start")
            o.logs = logs()
            return o
        }
        let submit = try hosts.overseer(on: .a, ["submit", pipeline, "--run", "mh"])
        guard submit.status == 0 else {
            o.problems.append("submit failed: \(submit.stderr)")
            return o
        }
        timeline.add("run mh submitted from host A")

        // Once every work job is claimed (A and B hold four each: four slots apiece), cut B off.
        let claimed = try eventually(60) {
            let facts = try reader.refresh()
            let work = Set(facts.filter { $0.kind == .jobClaimed && ($0.job ?? "").contains("/work_") }.compactMap(\.job))
            return work.count == workJobs && Self.heldByB(facts, upTo: reader.head).contains { $0.contains("/work_") }
        }
        guard claimed else {
            o.problems.append("the work jobs were not all claimed, or host B claimed none")
            o.logs = logs()
            return o
        }
        let connectionsBefore = hosts.usesNamespaces ? hosts.establishedConnections(of: b) : 0
        let cutTime = Date()
        try hosts.cutOffB(b)
        var healed = false
        defer { if !healed { try? hosts.healB(b) } }
        timeline.add(hosts.usesNamespaces ? "CUT: host B's veth link down (\(connectionsBefore) TCP connections open to the server)" : "CUT: host B's worker stopped (SIGSTOP)", at: cutTime)
        // A commit already on its way from B lands within moments; nothing of B's after that.
        Thread.sleep(forTimeInterval: 0.5)
        try reader.refresh()
        o.cutPosition = reader.head

        // Host A releases B's jobs once their leases run out, and finishes the run.
        var connections = connectionsBefore
        func watchConnections() {
            guard hosts.usesNamespaces else { return }
            let now = hosts.establishedConnections(of: b)
            if now != connections {
                timeline.add("host B's kernel: \(now) of its connections to the server left (was \(connections))")
                connections = now
            }
        }
        let finished = try eventually(90, every: 0.1) {
            watchConnections()
            return try reader.refresh().contains { $0.job == "mh/finish" && $0.kind == .jobFinished }
        }
        guard finished else {
            o.problems.append("the run did not finish on host A while host B was cut off")
            o.timeline = timeline.render(from: cutTime)
            o.logs = logs()
            return o
        }
        // B's commands end on their own (its worker cannot tell they were superseded), and B's
        // connections die of their timeouts: after the heal, B must reconnect, not carry on.
        let settled = eventually(60, every: 0.1) {
            watchConnections()
            return !b.hasLiveChildren && (!hosts.usesNamespaces || connections == 0)
        }
        if !settled {
            o.problems.append("host B still runs commands, or still has connections open, a minute after the run finished")
        }
        let healTime = Date()
        try hosts.healB(b)
        healed = true
        timeline.add(hosts.usesNamespaces ? "HEAL: host B's link up" : "HEAL: host B's worker continued (SIGCONT)", at: healTime)

        // B's late results must all come back rejected.
        let heldByB = Self.heldByB(reader.facts, upTo: o.cutPosition)
        o.heldByBAtCut = heldByB
        let rejectedAll = try eventually(90) {
            let rejected = Set(try reader.refresh().filter { $0.kind == .jobRejected && $0.worker == "host-b" }.compactMap(\.job))
            return heldByB.isSubset(of: rejected)
        }
        if !rejectedAll {
            o.problems.append("host B's late results were not all recorded as rejected within 90 s of the heal")
        }
        // Both workers drain and stop.
        o.workerExits["host-b"] = b.terminate(timeout: 30)
        o.workerExits["host-a"] = a.terminate(timeout: 30)

        // What the CLI says, from host A.
        let history = try hosts.overseer(on: .a, ["history", "--run", "mh", "--json"])
        o.facts = try history.stdout.split(separator: "\n").map { try Fact.decode(line: Array($0.utf8)) }
        o.statusJSON = try hosts.overseer(on: .a, ["status", "mh", "--json"]).stdout
        o.verify = try hosts.overseer(on: .a, ["verify"], timeout: 120)
        o.allPositions = try reader.refresh().map(\.position)
        o.workerFacts = reader.facts.filter { $0.kind == .workerStarted || $0.kind == .workerStopped }

        // The timeline, for the test's output and docs/postgres.md.
        for f in reader.facts where f.position > o.cutPosition || f.worker == "host-b" {
            switch f.kind {
            case .jobClaimed where f.worker == "host-b":
                timeline.add(f, "host B claimed \(f.job!) (lease \(Int(Self.lease)) s)")
            case .jobReleased where f.reason == "lease_expired":
                if let at = f.data["lease_expired_at"]?.stringValue.flatMap(Instant.init(rfc3339:)) {
                    timeline.add("lease of \(f.job!) (\(f.data["expired_worker"]?.stringValue ?? "?")) ran out", at: Date(timeIntervalSince1970: Double(at.microseconds) / 1e6))
                }
                timeline.add(f, "\(f.worker ?? "?") released \(f.job!)")
            case .jobClaimed where f.position > o.cutPosition:
                timeline.add(f, "\(f.worker ?? "?") claimed \(f.job!) (attempt \(f.attempt ?? 0))")
            case .jobFinished where f.position > o.cutPosition:
                timeline.add(f, "\(f.worker ?? "?") finished \(f.job!)")
            case .jobRejected:
                timeline.add(f, "\(f.worker ?? "?"): late result for \(f.job!) rejected (\(f.data["outcome"]?.stringValue ?? "?"))")
            case .workerStopped:
                timeline.add(f, "\(f.worker ?? "?") stopped")
            default:
                break
            }
        }
        for line in b.log where line.time > cutTime && line.text.contains("store error") {
            timeline.add("host B logged: \(line.text.prefix(160))", at: line.time)
        }
        o.timeline = timeline.render(from: cutTime)
        o.logs = logs()
        FileHandle.standardError.write(Data("""

            multi-host scenario (\(o.mode)), times from the cut:
            \(o.timeline)
            heal came \(String(format: "%.1f", healTime.timeIntervalSince(cutTime))) s after the cut

            """.utf8))
        return o
    }

    /// The jobs host B had claimed and not yet ended at position `cut`.
    static func heldByB(_ facts: [Fact], upTo cut: UInt64) -> Set<String> {
        var held: Set<String> = []
        for f in facts where f.position <= cut {
            guard let job = f.job, f.kind.advancesRevision else { continue }
            if f.kind == .jobClaimed && f.worker == "host-b" { held.insert(job) } else { held.remove(job) }
        }
        return held
    }

    // MARK: A host cut off inside a write

    struct LockOutcome: Sendable {
        var mode = ""
        var submit: ToolResult?
        var verify: ToolResult?
        var problems: [String] = []
    }

    /// Host B stops between two statements of a write transaction, holding the log's lock (its
    /// link goes down, or on loopback it is stopped). Host A's next write must still go through
    /// once the server gives up on B's session, not wait for the operating system's keepalive
    /// (two hours).
    static func cutOffInsideAWrite(_ hosts: TwoHosts) throws -> LockOutcome {
        var o = LockOutcome(mode: hosts.mode)
        let pipeline = try fanOutPipeline(in: hosts.workDir)
        let holder = try HostProcess(hosts.argv(on: .b, [overseerProbe, "hold-write-lock", hosts.url]), name: "holder")
        defer { holder.forceKill() }
        guard eventually(60, { holder.stdoutLines.contains("locked") }) else {
            o.problems.append("the probe on host B did not take the lock: \(holder.logText)")
            return o
        }
        try hosts.cutOffB(holder)
        defer { try? hosts.healB(holder) }
        let submit = try hosts.overseer(on: .a, ["submit", pipeline, "--run", "after-cut"], timeout: 90)
        o.submit = submit
        FileHandle.standardError.write(Data(String(
            format: "multi-host (%@): host A's submit waited %.1f s for the lock held by cut-off host B\n", hosts.mode, submit.seconds).utf8))
        if submit.timedOut { o.problems.append("host A's submit was still waiting for the log's lock after 90 s") }
        try hosts.healB(holder)
        holder.forceKill()
        o.verify = try hosts.overseer(on: .a, ["verify"])
        return o
    }
}
