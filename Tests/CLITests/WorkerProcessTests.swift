import Foundation
import Overseer
import Testing

/// Real worker processes sharing one store: SIGKILL, SIGSTOP past the lease, SIGTERM drain.
@Suite(.serialized) struct WorkerProcessTests {
    /// Jobs that each sleep, then append their type to `done.txt`.
    func sleepyPipeline(_ box: Sandbox, jobs: Int, seconds: Double) -> String {
        var entries: [String] = []
        for i in 0..<jobs {
            entries.append("\"j\(i)\": { \"command\": [\"sh\", \"-c\", \"sleep \(seconds); echo j\(i) >> \(box.path)/done.txt\"] }")
        }
        return box.write("sleepy.json", "{ \"name\": \"sleepy\", \"jobs\": { \(entries.joined(separator: ", ")) } }")
    }

    func facts(_ box: Sandbox) throws -> [Fact] {
        let r = try box.run(["history", "--run", "s", "--json"])
        return try r.stdout.split(separator: "\n").map { try Fact.decode(line: Array($0.utf8)) }
    }

    @Test func aKilledWorkersJobsAreReleasedAndFinishedByAnother() throws {
        let box = Sandbox("kill")
        // Jobs long enough that A is still inside its first three when the kill arrives, even on
        // a loaded machine where noticing its claims takes a while.
        let pipeline = sleepyPipeline(box, jobs: 6, seconds: 3)
        #expect(try box.run(["submit", pipeline, "--run", "s"]).status == 0)
        let a = try box.start(["worker", pipeline, "--name", "A", "--lease", "1", "--concurrency", "3"], name: "A")
        // Wait until A holds claims, then kill it without warning.
        #expect(try waitUntil(20) { try facts(box).contains { $0.kind == .jobClaimed && $0.worker == "A" } })
        kill(a.processIdentifier, SIGKILL)
        a.waitUntilExit()
        let b = try box.run(["worker", pipeline, "--name", "B", "--lease", "1", "--until-idle", "--concurrency", "3"])
        #expect(b.status == 0, "\(b.stderr)")
        let all = try facts(box)
        for i in 0..<6 {
            let job = "s/j\(i)"
            #expect(all.filter { $0.job == job && $0.kind == .jobFinished }.count == 1, "\(job) finished exactly once")
        }
        #expect(all.contains { $0.kind == .jobReleased && $0.reason == "lease_expired" && $0.data["expired_worker"] == "A" })
        #expect(try box.run(["verify"]).status == 0)
    }

    @Test func aPausedWorkersLateResultIsRejected() throws {
        let box = Sandbox("stop")
        // Long enough that A is still running it when the SIGSTOP arrives, even on a loaded machine.
        let pipeline = sleepyPipeline(box, jobs: 1, seconds: 5)
        #expect(try box.run(["submit", pipeline, "--run", "s"]).status == 0)
        let a = try box.start(["worker", pipeline, "--name", "A", "--lease", "1"], name: "A")
        #expect(try waitUntil(20) { try facts(box).contains { $0.kind == .jobClaimed && $0.worker == "A" } })
        kill(a.processIdentifier, SIGSTOP)
        // Past A's lease, B releases the job and runs it to the end.
        let b = try box.run(["worker", pipeline, "--name", "B", "--lease", "1", "--until-idle"])
        #expect(b.status == 0, "\(b.stderr)")
        kill(a.processIdentifier, SIGCONT)
        // A's command finishes too; its result must be refused.
        #expect(try waitUntil(40) { try facts(box).contains { $0.kind == .jobRejected && $0.worker == "A" } })
        kill(a.processIdentifier, SIGTERM)
        a.waitUntilExit()
        let all = try facts(box)
        #expect(all.filter { $0.kind == .jobFinished }.count == 1)
        #expect(all.first { $0.kind == .jobFinished }?.worker == "B")
        let rejected = try #require(all.first { $0.kind == .jobRejected })
        #expect(rejected.reason == "superseded")
        #expect(rejected.revision == nil)
        #expect(try box.run(["verify"]).status == 0)
    }

    @Test func sigtermDrainsRunningJobsThenExits() throws {
        let box = Sandbox("term")
        // Long enough that the first job is still running when the SIGTERM arrives on a loaded
        // machine (noticing the claim takes a CLI process of its own).
        let pipeline = sleepyPipeline(box, jobs: 3, seconds: 4)
        #expect(try box.run(["submit", pipeline, "--run", "s"]).status == 0)
        let a = try box.start(["worker", pipeline, "--name", "A", "--concurrency", "1"], name: "A")
        #expect(try waitUntil(20) { try facts(box).contains { $0.kind == .jobClaimed && $0.worker == "A" } })
        kill(a.processIdentifier, SIGTERM)
        a.waitUntilExit()
        #expect(a.terminationStatus == 0)
        let all = try facts(box)
        // The running job finished; nothing else was claimed after the signal.
        #expect(all.filter { $0.kind == .jobFinished }.count == 1)
        #expect(all.filter { $0.kind == .jobClaimed }.count == 1)
        let status = try json(try box.run(["status", "s", "--json"]).stdout)
        #expect(status["run"]?["counts"]?["unstarted"] == 2)
        let history = try box.run(["history", "--run", "s"])
        #expect(history.status == 0)
        let stderr = box.read("A.err")
        #expect(stderr.contains("stopping (draining)"))
        #expect(stderr.contains("stopped"))
    }

    @Test func twoWorkerProcessesShareTheWorkAndOneDies() throws {
        let box = Sandbox("share")
        let pipeline = sleepyPipeline(box, jobs: 8, seconds: 0.3)
        #expect(try box.run(["submit", pipeline, "--run", "s"]).status == 0)
        let a = try box.start(["worker", pipeline, "--name", "A", "--lease", "1", "--until-idle", "--concurrency", "2"], name: "A")
        let b = try box.start(["worker", pipeline, "--name", "B", "--lease", "1", "--until-idle", "--concurrency", "2"], name: "B")
        #expect(try waitUntil(20) { try facts(box).contains { $0.kind == .jobFinished } })
        kill(b.processIdentifier, SIGKILL)
        b.waitUntilExit()
        a.waitUntilExit()
        #expect(a.terminationStatus == 0)
        let all = try facts(box)
        for i in 0..<8 {
            #expect(all.filter { $0.job == "s/j\(i)" && $0.kind == .jobFinished }.count == 1, "s/j\(i)")
        }
        #expect(Set(all.filter { $0.kind == .jobClaimed }.compactMap(\.worker)) == ["A", "B"])
        let done = box.read("done.txt").split(separator: "\n")
        #expect(done.count >= 8)
        #expect(try box.run(["verify"]).status == 0)
    }
}
