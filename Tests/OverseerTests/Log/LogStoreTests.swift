import Foundation
import Synchronization
import Testing

@testable import Overseer

@Suite struct LogStoreTests {
    @Test func submitCreatesRunAndJobsInOneAppend() async throws {
        try await withStore { store, _ in
            let outcome = try await store.submit(RunPlan(id: "r1", graph: seedDiamond, args: ["org": 42]))
            guard case .created(_, let facts) = outcome else { Issue.record("expected created"); return }
            #expect(facts.map(\.position) == [1, 2, 3, 4, 5])
            #expect(facts.map(\.kind) == [.runCreated, .jobCreated, .jobCreated, .jobCreated, .jobCreated])
            #expect(facts.dropFirst().map(\.job) == ["r1/start", "r1/result1", "r1/result2", "r1/finish"])
            #expect(facts.dropFirst().allSatisfy { $0.revision == 1 })
            #expect(facts.first?.revision == nil)
            #expect(facts[0].prev == .zero)
            for i in 1..<facts.count { #expect(facts[i].prev == facts[i - 1].hash) }
            let run = try #require(try store.run("r1"))
            #expect(run.total == 4)
            #expect(run.count(.unstarted) == 4)
            #expect(run.status == .running)
            #expect(try store.readyJobs().map(\.job) == ["r1/start"])
            let finish = try #require(try store.job("r1/finish"))
            #expect(finish.parents == ["r1/result1", "r1/result2"])
            #expect(try store.job("r1/start")?.children.sorted() == ["r1/result1", "r1/result2"])
        }
    }

    @Test func resubmissionIsIdempotentButRefusesADifferentPlan() async throws {
        try await withStore { store, _ in
            _ = try await store.submit(RunPlan(id: "r1", graph: seedDiamond, args: ["org": 42]))
            let again = try await store.submit(RunPlan(id: "r1", graph: seedDiamond, args: ["org": 42]))
            #expect(again == .alreadyExists(run: "r1"))
            #expect(try store.lastPosition() == 5)
            await #expect(throws: SubmitError.self) {
                try await store.submit(RunPlan(id: "r1", graph: seedDiamond, args: ["org": 43]))
            }
            do {
                _ = try await store.submit(RunPlan(id: "r1", graph: ["a": []], args: ["org": 42]))
                Issue.record("expected an error")
            } catch let e as SubmitError {
                #expect(e.description == "run 'r1': already exists with a different graph; choose another run id")
            }
            #expect(try store.lastPosition() == 5)
        }
    }

    @Test func invalidGraphsAndRunIDsWriteNothing() async throws {
        try await withStore { store, _ in
            await #expect(throws: GraphError.self) { try await store.submit(RunPlan(id: "r1", graph: ["a": ["b"], "b": ["a"]])) }
            await #expect(throws: GraphError.self) { try await store.submit(RunPlan(id: "a/b", graph: seedDiamond)) }
            await #expect(throws: GraphError.self) { try await store.submit(RunPlan(id: "", graph: seedDiamond)) }
            await #expect(throws: GraphError.self) { try await store.submit(RunPlan(id: "r\u{7}", graph: seedDiamond)) }
            let last = try store.lastPosition()
            #expect(last == 0)
        }
    }

    @Test func claimIsACompareAndAppend() async throws {
        try await withStore { store, _ in
            _ = try await store.submit(RunPlan(id: "r1", graph: seedDiamond))
            let first = try await store.claim("r1/start", worker: "w1")
            #expect(first.fact?.revision == 2)
            #expect(first.fact?.attempt == 1)
            // A second worker that read revision 1 loses.
            let late = try await store.append(
                FactDraft(kind: .jobClaimed, run: "r1", job: "r1/start", author: Author(name: "w2"), attempt: 1, data: ["lease_ms": 1000]),
                expecting: 1)
            #expect(late == .conflict(expected: 1, actual: 2))
            let job = try #require(try store.job("r1/start"))
            #expect(job.status == .started)
            #expect(job.worker == "w1")
            #expect(try store.readyJobs().isEmpty)
            #expect(try store.run("r1")?.count(.started) == 1)
        }
    }

    @Test func illegalTransitionsAreRefusedAndLeaveNoTrace() async throws {
        try await withStore { store, _ in
            _ = try await store.submit(RunPlan(id: "r1", graph: seedDiamond))
            // A claim before the parent finished.
            await #expect(throws: FoldError.self) { try await store.claim("r1/result1") }
            // Finishing a job that is not started.
            await #expect(throws: FoldError.self) {
                try await store.append(FactDraft(kind: .jobFinished, run: "r1", job: "r1/start", attempt: 0), expecting: 1)
            }
            // An unknown job.
            await #expect(throws: FoldError.self) {
                try await store.append(FactDraft(kind: .jobAborted, run: "r1", job: "r1/nope"), expecting: 0)
            }
            #expect(try store.lastPosition() == 5)
        }
    }

    @Test func aRetriedAppendWithTheSameIDIsANoOp() async throws {
        try await withStore { store, _ in
            let draft = FactDraft(kind: .workerStarted, author: Author(name: "w1"), data: ["host": "h"])
            let a = try await store.append(draft, expecting: nil)
            let b = try await store.append(draft, expecting: nil)
            #expect(a.fact != nil)
            #expect(b == .duplicate(a.fact!))
            #expect(try store.lastPosition() == 1)
        }
    }

    @Test func finishingAParentMakesChildrenReadyInOrder() async throws {
        try await withStore { store, _ in
            _ = try await store.submit(RunPlan(id: "r1", graph: seedDiamond))
            try await store.claim("r1/start")
            try await store.settle("r1/start", .jobFinished, data: ["result": ["rows": 10]])
            #expect(try store.readyJobs().map(\.job) == ["r1/result1", "r1/result2"])
            #expect(try store.job("r1/start")?.result == ["rows": 10])
            try await store.claim("r1/result2")
            try await store.settle("r1/result2", .jobFinished)
            #expect(try store.readyJobs().map(\.job) == ["r1/result1"])
            try await store.claim("r1/result1")
            try await store.settle("r1/result1", .jobFinished)
            #expect(try store.readyJobs().map(\.job) == ["r1/finish"])
            try await store.claim("r1/finish")
            try await store.settle("r1/finish", .jobFinished)
            let run = try #require(try store.run("r1"))
            #expect(run.status == .finished)
            #expect(run.count(.finished) == 4)
            #expect(run.endedAt != nil)
        }
    }

    @Test func aFailedJobBlocksItsDescendantsAndFailsTheRun() async throws {
        try await withStore { store, _ in
            _ = try await store.submit(RunPlan(id: "r1", graph: seedDiamond))
            try await store.claim("r1/start")
            try await store.settle("r1/start", .jobFinished)
            try await store.claim("r1/result1")
            try await store.settle("r1/result1", .jobFailed, reason: "error", data: ["error": ["message": "boom"]])
            #expect(try store.run("r1")?.status == .running)  // result2 can still run
            try await store.claim("r1/result2")
            try await store.settle("r1/result2", .jobFinished)
            let snapshot = try #require(try store.snapshot(ofRun: "r1"))
            #expect(snapshot.run.status == .failed)
            #expect(snapshot.blockers(of: "r1/finish") == ["r1/result1"])
            #expect(snapshot.job(type: "result1")?.error == ["message": "boom"])
            // An operator retry makes the run progress again.
            _ = try await store.append(FactDraft(kind: .jobRetried, run: "r1", job: "r1/result1", author: .operator("alice"), reason: "fixed"), expecting: try store.job("r1/result1")!.revision)
            #expect(try store.run("r1")?.status == .running)
            #expect(try store.readyJobs().map(\.job) == ["r1/result1"])
            let retried = try #require(try store.job("r1/result1"))
            #expect(retried.attemptBase == 1)
            #expect(retried.attemptsInBudget == 0)
        }
    }

    @Test func releasedJobsCarryTheirRetryDelay() async throws {
        try await withStore { store, _ in
            _ = try await store.submit(RunPlan(id: "r1", graph: ["a": []]))
            try await store.claim("r1/a")
            let later = Instant.now().adding(seconds: 30)
            try await store.settle("r1/a", .jobReleased, reason: "fault", data: ["not_before": .string(later.rfc3339)])
            let ready = try store.readyJobs()
            #expect(ready.count == 1)
            #expect(ready[0].notBefore == later)
            #expect(try store.job("r1/a")?.status == .unstarted)
            #expect(try store.run("r1")?.status == .running)
        }
    }

    @Test func historyAndIndexes() async throws {
        try await withStore { store, _ in
            _ = try await store.submit(RunPlan(id: "r1", graph: seedDiamond))
            _ = try await store.submit(RunPlan(id: "r2", graph: ["x": []]))
            try await store.claim("r1/start")
            _ = try await store.append(FactDraft(kind: .jobRejected, run: "r1", job: "r1/start", author: Author(name: "w9"), attempt: 1, reason: "superseded"), expecting: nil)
            try await store.settle("r1/start", .jobFinished)
            let h = try store.history(ofJob: "r1/start")
            #expect(h.map(\.kind) == [.jobCreated, .jobClaimed, .jobRejected, .jobFinished])
            #expect(h.map(\.revision) == [1, 2, nil, 3])
            #expect(try store.job("r1/start")?.rejected == 1)
            #expect(try store.history(ofRun: "r2").map(\.kind) == [.runCreated, .jobCreated])
            #expect(try store.history(ofRun: "r1").count == 8)
            #expect(try store.facts(after: 7).map(\.position) == [8, 9, 10])
            #expect(try store.facts(after: 0, limit: 2).map(\.position) == [1, 2])
            let all = try store.facts(after: 0)
            let t = all[6].time
            #expect(try store.position(atOrBefore: t) >= 7)
            #expect(try store.position(atOrBefore: Instant(microseconds: 0)) == 0)
            #expect(try store.facts(in: all[0].time...all[9].time).count == 10)
        }
    }

    @Test func asOfAnswersMatchARefoldOfThePrefix() async throws {
        try await withStore { store, _ in
            _ = try await store.submit(RunPlan(id: "r1", graph: seedDiamond))
            _ = try await store.submit(RunPlan(id: "r2", graph: seedDiamond))
            for run in ["r1", "r2"] {
                for type in ["start", "result1", "result2", "finish"] {
                    try await store.claim("\(run)/\(type)")
                    try await store.settle("\(run)/\(type)", .jobFinished)
                }
            }
            let last = try store.lastPosition()
            for p in 0...last {
                let all = try store.state(asOf: .position(p))
                for run in ["r1", "r2"] {
                    let fromIndex = try store.run(run, asOf: .position(p))
                    #expect(fromIndex == all.run(run), "run \(run) at @\(p)")
                }
            }
            let mid = try #require(try store.run("r1", asOf: .position(11)))
            #expect(mid.job(type: "start")?.status == .started)
            #expect(mid.job(type: "finish")?.status == .unstarted)
            // By time: the instant of fact 8 includes fact 8.
            let t8 = try #require(try store.fact(at: 8)).time
            #expect(try store.position(of: .time(t8)) >= 8)
            #expect(try store.run("r1", asOf: .time(Instant(microseconds: 0))) == nil)
        }
    }

    @Test func replayStepsThroughARun() async throws {
        try await withStore { store, _ in
            _ = try await store.submit(RunPlan(id: "r1", graph: ["a": [], "b": ["a"]]))
            try await store.claim("r1/a")
            try await store.settle("r1/a", .jobFinished)
            let steps = try store.replay(run: "r1")
            #expect(steps.map(\.fact.kind) == [.runCreated, .jobCreated, .jobCreated, .jobClaimed, .jobFinished])
            #expect(steps[3].job?.status == .started)
            #expect(steps[4].job?.status == .finished)
            let tail = try store.replay(run: "r1", positions: 4...5)
            #expect(tail.map(\.fact.position) == [4, 5])
            #expect(tail[0].run?.count(.started) == 1)
        }
    }

    @Test func concurrentAppendsShareCommitsAndStayDense() async throws {
        try await withStore { store, _ in
            let facts = try await withThrowingTaskGroup(of: Fact.self) { group in
                for i in 0..<64 {
                    group.addTask {
                        try await store.append(FactDraft(kind: .workerStarted, author: Author(name: "w\(i)")), expecting: nil).fact!
                    }
                }
                var out: [Fact] = []
                for try await f in group { out.append(f) }
                return out
            }
            #expect(facts.map(\.position).sorted() == Array(1...64))
            let stored = try store.facts(after: 0)
            for i in 1..<stored.count { #expect(stored[i].prev == stored[i - 1].hash) }
        }
    }

    @Test func oneFailedRequestDoesNotFailItsBatch() async throws {
        try await withStore { store, _ in
            _ = try await store.submit(RunPlan(id: "r1", graph: ["a": []]))
            // Many concurrent claims of one job: exactly one wins, the rest conflict or are refused.
            let outcomes = await withTaskGroup(of: Bool.self) { group in
                for i in 0..<32 {
                    group.addTask {
                        let r = try? await store.append(
                            FactDraft(kind: .jobClaimed, run: "r1", job: "r1/a", author: Author(name: "w\(i)"), attempt: 1, data: ["lease_ms": 1000]),
                            expecting: 1)
                        if case .appended = r { return true }
                        return false
                    }
                    group.addTask {
                        (try? await store.append(FactDraft(kind: .workerStarted, author: Author(name: "x\(i)")), expecting: nil).fact) != nil
                    }
                }
                var wins = 0
                for await ok in group where ok { wins += 1 }
                return wins
            }
            #expect(outcomes == 33)  // one claim + 32 worker facts
            #expect(try store.history(ofJob: "r1/a").filter { $0.kind == .jobClaimed }.count == 1)
        }
    }

    @Test func followYieldsExistingThenNewFacts() async throws {
        try await withStore { store, _ in
            _ = try await store.append(FactDraft(kind: .workerStarted, author: Author(name: "a")), expecting: nil)
            let stream = store.follow(after: 0, poll: .milliseconds(20))
            let reader = Task { () -> [UInt64] in
                var seen: [UInt64] = []
                for try await f in stream {
                    seen.append(f.position)
                    if seen.count == 3 { break }
                }
                return seen
            }
            _ = try await store.append(FactDraft(kind: .workerStarted, author: Author(name: "b")), expecting: nil)
            _ = try await store.append(FactDraft(kind: .workerStopped, author: Author(name: "b")), expecting: nil)
            #expect(try await reader.value == [1, 2, 3])
        }
    }

    @Test func theMapGrowsOnItsOwn() async throws {
        var options = StoreOptions()
        options.initialMapSize = 256 << 10
        try await withStore(options: options) { store, path in
            let blob = String(repeating: "x", count: 2000)
            for chunk in 0..<20 {
                _ = try await withThrowingTaskGroup(of: Void.self) { group in
                    for i in 0..<50 {
                        group.addTask {
                            _ = try await store.append(FactDraft(kind: .workerStarted, author: Author(name: "w\(chunk)-\(i)"), data: ["pad": .string(blob)]), expecting: nil)
                        }
                    }
                    try await group.waitForAll()
                }
            }
            #expect(try store.lastPosition() == 1000)
            #expect(try store.sizeInBytes() > 256 << 10)
        }
    }

    /// Reading the store's meta pages outside a transaction (the change watcher's last
    /// transaction id, the size) while the writer grows the map: a resize unmaps the map, so
    /// these reads must hold resizes off, or they fault.
    @Test func storeInfoCanBeReadWhileTheMapGrows() async throws {
        var options = StoreOptions()
        options.initialMapSize = 256 << 10
        try await withStore(options: options) { store, path in
            guard case .lmdb(let env) = store.core.engine else {
                Issue.record("not an LMDB store")
                return
            }
            let flags = ReaderFlags()
            let done = DispatchGroup()
            for _ in 0..<2 {
                done.enter()
                Thread.detachNewThread {
                    while !flags.stop.load(ordering: .relaxed) {
                        _ = env.lastTransactionID
                        _ = try? env.usedBytes()
                        flags.reads.add(1, ordering: .relaxed)
                    }
                    done.leave()
                }
            }
            let blob = String(repeating: "x", count: 4000)
            for chunk in 0..<40 {
                _ = try await withThrowingTaskGroup(of: Void.self) { group in
                    for i in 0..<25 {
                        group.addTask {
                            _ = try await store.append(FactDraft(kind: .workerStarted, author: Author(name: "w\(chunk)-\(i)"), data: ["pad": .string(blob)]), expecting: nil)
                        }
                    }
                    try await group.waitForAll()
                }
            }
            flags.stop.store(true, ordering: .relaxed)
            _ = try await runOffPool { done.wait() }
            #expect(try store.lastPosition() == 1000)
            #expect(env.mapSize >= 4 << 20, "the map did not grow: \(env.mapSize)")
            #expect(flags.reads.load(ordering: .relaxed) > 0)
        }
    }

    @Test func oversizedFactsAreRefused() async throws {
        try await withStore { store, _ in
            let big = String(repeating: "y", count: LogStore.maximumFactSize)
            do {
                _ = try await store.append(FactDraft(kind: .workerStarted, author: Author(name: "w"), data: ["pad": .string(big)]), expecting: nil)
                Issue.record("expected an error")
            } catch let e as StoreError {
                #expect(e.code == .invalid)
                #expect(e.message.contains("exceeds the limit"))
            }
            #expect(try store.lastPosition() == 0)
        }
    }

    @Test func storeFilesAreOwnerOnly() async throws {
        try await withStore { store, path in
            _ = try await store.append(FactDraft(kind: .workerStarted, author: Author(name: "w")), expecting: nil)
            for file in ["", "/data.mdb", "/lock.mdb"] {
                let attrs = try FileManager.default.attributesOfItem(atPath: path + file)
                let mode = (attrs[.posixPermissions] as! NSNumber).intValue & 0o777
                #expect(mode == (file.isEmpty ? 0o700 : 0o600), "\(file) has mode \(String(mode, radix: 8))")
            }
        }
    }

    @Test func aSecondInstanceInTheSameProcessSharesTheEnvironment() async throws {
        try await withStore { store, path in
            let other = try LogStore(path: path)
            _ = try await other.append(FactDraft(kind: .workerStarted, author: Author(name: "w")), expecting: nil)
            #expect(try store.lastPosition() == 1)
            #expect(other.core === store.core)
        }
    }

    @Test func aWideFanInBecomesReadyWhenItsLastParentFinishes() async throws {
        var options = StoreOptions()
        options.durability = .unsafeNoSync
        try await withStore(options: options) { store, _ in
            let width = 3000
            var parents: [String: [String]] = [:]
            for i in 0..<width { parents["p\(i)"] = [] }
            parents["join"] = (0..<width).map { "p\($0)" }
            _ = try await store.submit(RunPlan(id: "fan", graph: JobGraph(parents)))
            #expect(try store.readyJobs().count == width)
            let worker = Author(name: "w")
            var done = 0
            while done < width {
                done += try await store.write { w -> Int in
                    let claims = try w.claimNext(worker: worker, types: nil, count: 500, leaseMilliseconds: 60_000)
                    for c in claims { _ = try w.complete(c, outcome: .finished(result: nil), worker: worker) }
                    return claims.count
                }
                if done < width { #expect(try store.readyJobs().map(\.job) != ["fan/join"]) }
            }
            #expect(try store.readyJobs().map(\.job) == ["fan/join"])
            #expect(try store.job("fan/join")?.parents.count == width)
        }
    }
}

/// Shared by the reader threads of ``LogStoreTests/storeInfoCanBeReadWhileTheMapGrows()``.
private final class ReaderFlags: Sendable {
    let stop = Atomic<Bool>(false)
    let reads = Atomic<Int>(0)
}
