import Foundation
import OverseerTestSupport
import Testing

@testable import Overseer

@Suite(.serialized) struct ProcessTests {
    @Test func theProbeIsBuilt() {
        #expect(FileManager.default.isExecutableFile(atPath: ProbeProcess.executable.path), "no probe at \(ProbeProcess.executable.path)")
    }

    @Test func compareAndAppendRaceAcrossProcesses() async throws {
        try await withStore("race") { store, path in
            var graph: [String: [String]] = [:]
            for i in 0..<200 { graph["j\(i)"] = [] }
            _ = try await store.submit(RunPlan(id: "race", graph: JobGraph(graph)))
            #expect(try store.readyJobs().count == 200)

            let results = try await runOffPool { () -> [(lines: [String], stderr: String, reason: Process.TerminationReason, status: Int32)] in
                let go = path + ".go"
                let probes = try (0..<4).map { _ in try ProbeProcess(["claim-race", path, "race", "200", "4", go]) }
                // Start the race only when all four have opened the store.
                for p in probes where !p.waitForLines(1, timeout: 60) {
                    Issue.record("a probe did not get ready: \(p.stderrText)")
                }
                _ = FileManager.default.createFile(atPath: go, contents: Data())
                defer { try? FileManager.default.removeItem(atPath: go) }
                return probes.map { p in
                    let (reason, status) = p.waitForExit()
                    return (p.lines, p.stderrText, reason, status)
                }
            }
            var winners: [String: [String]] = [:]
            for r in results {
                guard r.reason == .exit && r.status == 0 else {
                    Issue.record("a probe ended with \(r.reason) \(r.status): \(r.stderr.split(separator: "\n").first ?? "")")
                    return
                }
                for line in r.lines where line != "ready" {
                    let parts = line.split(separator: " ").map(String.init)
                    guard parts.count == 3, parts[0] == "won" else {
                        Issue.record("unexpected probe output: \(line)")
                        continue
                    }
                    winners[parts[1], default: []].append(parts[2])
                }
            }
            let jobs = (0..<200).map { "race/j\($0)" }
            #expect(winners.keys.sorted() == jobs.sorted(), "jobs without a winner: \(Set(jobs).subtracting(winners.keys).sorted().prefix(5))")
            #expect(winners.values.filter { $0.count != 1 }.isEmpty, "jobs with several winners: \(winners.filter { $0.value.count != 1 }.prefix(5))")
            // The race was real: winners came from more than one process.
            let processes = Set(winners.values.flatMap { $0 }.map { $0.split(separator: "-").prefix(2).joined(separator: "-") })
            #expect(processes.count >= 2, "winners came from \(processes)")

            var wrong: [String] = []
            for id in jobs {
                let claims = try store.history(ofJob: id).filter { $0.kind == .jobClaimed }
                if claims.count != 1 { wrong.append("\(id) has \(claims.count) claims") }
                if claims.first?.worker != winners[id]?.first { wrong.append("\(id): the log's claimant \(claims.first?.worker ?? "-") is not the printed winner \(winners[id] ?? [])") }
                let state = try #require(try store.job(id))
                if !(state.status == .started && state.revision == 2 && state.attempt == 1) { wrong.append("\(id): \(state.status) rev \(state.revision) attempt \(state.attempt)") }
            }
            #expect(wrong.isEmpty, "\(wrong.prefix(10).joined(separator: "\n"))")
            let run = try #require(try store.run("race"))
            #expect(run.count(.started) == 200)
            #expect(run.ready == 0)
            #expect(try store.readyJobs().isEmpty)
            #expect(try store.lastPosition() == 401)
            let report = try store.verify()
            #expect(report.ok, "\(report)")
        }
    }

    /// A waiter in this process is woken by another process's commit through the change watcher,
    /// not by its timeout, although the watcher sleeps while nobody waits and disregards this
    /// process's own commits. Checked on the last of 150 stores open at once: one inotify
    /// instance serves them all (Linux allows a user only 128 in all by default).
    @Test func anotherProcessCommitWakesAWaiter() async throws {
        let dir = TempDirectory("watch")
        defer { dir.cleanup() }
        var stores: [LogStore] = []
        for i in 0..<150 { stores.append(try LogStore(path: dir.path + "/s\(i)")) }
        #expect(stores.allSatisfy { $0.core.watch != nil }, "\(stores.filter { $0.core.watch == nil }.count) of 150 stores have no change watch")
        let store = stores[149], path = dir.path + "/s149"
        _ = try await store.append(FactDraft(kind: .workerStarted, author: Author(name: "test")), expecting: nil)
        // Own commits wake the waiters directly.
        let ownWait = Task { await store.core.commits.wait(timeout: .seconds(120)) }
        try await Task.sleep(for: .milliseconds(50))
        _ = try await store.append(FactDraft(kind: .workerStarted, author: Author(name: "test")), expecting: nil)
        #expect(await ownWait.value, "an own commit did not wake the waiter")
        for round in 0..<3 {
            let before = try store.lastPosition()
            let waiter = Task { await store.core.commits.wait(timeout: .seconds(120)) }
            let child = try ProbeProcess(["append-loop", path])
            let woken = await waiter.value
            let acked = try await runOffPool { child.waitForLines(1, timeout: 30) }
            kill(child.pid, SIGKILL)
            _ = child.waitForExit()
            #expect(acked, "round \(round): the child acknowledged no append: \(child.stderrText)")
            #expect(woken, "round \(round): the waiter ran into its timeout instead of seeing the other process's commit")
            #expect(try store.lastPosition() > before)
        }
        #expect(try store.verify().ok)
    }

    @Test func sigkillNeverLosesAnAcknowledgedAppend() async throws {
        let seed = overseerTestSeed(UInt64.random(in: 0...UInt64.max))
        let dir = TempDirectory("crash")
        defer { dir.cleanup() }
        let path = dir.path + "/db.lmdb"
        let failures = try await runOffPool { () -> [String] in
            var rng = SplitMixRNG(seed: seed)
            var failures: [String] = []
            var acked: [UInt64: String] = [:]
            for round in 0..<15 {
                let tag = "seed \(seed) (OVERSEER_SEED), round \(round)"
                let child = try ProbeProcess(["append-loop", path])
                guard child.waitForLines(1, timeout: 30) else {
                    kill(child.pid, SIGKILL)
                    _ = child.waitForExit()
                    failures.append("\(tag): no acknowledged append within 30 s; stderr: \(child.stderrText)")
                    break
                }
                usleep(UInt32(rng.int(50...300)) * 1000)
                kill(child.pid, SIGKILL)
                let (reason, status) = child.waitForExit()
                if reason != .uncaughtSignal || status != SIGKILL {
                    failures.append("\(tag): the child ended with \(reason) \(status) instead of SIGKILL: \(child.stderrText)")
                }
                var fresh = 0
                for line in child.lines {
                    let parts = line.split(separator: " ")
                    guard parts.count == 3, parts[0] == "ack", let p = UInt64(parts[1]) else {
                        failures.append("\(tag): unexpected output \(line)")
                        continue
                    }
                    if let old = acked[p] { failures.append("\(tag): position \(p) acknowledged twice (\(old), \(parts[2]))") }
                    acked[p] = String(parts[2])
                    fresh += 1
                }
                if fresh == 0 { failures.append("\(tag): no acks") }
                // Open the store after the crash, as a restarted process would.
                do {
                    let store = try LogStore(path: path)
                    let report = try store.verify()
                    if !report.ok { failures.append("\(tag): verify: \(report)") }
                    var stored: [UInt64: String] = [:]
                    for f in try store.facts(after: 0) { stored[f.position] = f.id }
                    for (p, id) in acked where stored[p] != id {
                        failures.append("\(tag): acknowledged position \(p) holds \(stored[p] ?? "nothing"), not \(id)")
                    }
                    // One append at most may have committed after the last ack was printed.
                    let maxAck = acked.keys.max() ?? 0
                    let last = try store.lastPosition()
                    if last != maxAck && last != maxAck + 1 {
                        failures.append("\(tag): the log ends at \(last), the last ack was \(maxAck)")
                    }
                } catch {
                    failures.append("\(tag): the store cannot be used after the crash: \(error)")
                    break
                }
                if failures.count > 20 { break }
            }
            return failures
        }
        #expect(failures.isEmpty, "\(failures.prefix(20).joined(separator: "\n"))")
    }
}

@Suite struct ReopenTests {
    /// An existing store opened again (by this process after closing it, or by another process)
    /// must be as usable as a new one: readable, verifiable and writable.
    @Test func aClosedStoreReopensInTheSameProcess() async throws {
        let dir = TempDirectory("reopen")
        defer { dir.cleanup() }
        let path = dir.path + "/db.lmdb"
        try makeFilledStore(path, runs: 1)  // created, filled (13 facts) and closed
        let store = try LogStore(path: path)
        #expect(try store.lastPosition() == 13)
        #expect(try store.run("r0")?.status == .finished)
        #expect(try store.job("r0/finish")?.status == .finished)
        let report = try store.verify()
        #expect(report.ok, "\(report)")
        let outcome = try await store.append(FactDraft(kind: .workerStarted, author: Author(name: "w")), expecting: nil)
        #expect(outcome.fact?.position == 14)
    }

    @Test func anExistingStoreOpensInAnotherProcess() async throws {
        let dir = TempDirectory("reopen")
        defer { dir.cleanup() }
        let path = dir.path + "/db.lmdb"
        try makeFilledStore(path, runs: 1)
        let r = try await runOffPool { try probeOpenStore(path) }
        #expect(r.reason == .exit && r.status == 0, "\(r.stderr)")
        #expect(r.lines.first?.hasPrefix("ok 13 ") == true, "the second process got \(r.lines)")
    }
}
