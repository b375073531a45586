import Foundation
import Synchronization
import Testing

@testable import Overseer

/// A thread-safe list for handlers to record into.
final class Recorder: Sendable {
    private let items = Mutex<[String]>([])
    func add(_ s: String) { items.withLock { $0.append(s) } }
    var all: [String] { items.withLock { $0 } }
}

/// Tracks the largest number of handlers running at once.
final class Gauge: Sendable {
    private let state = Mutex<(now: Int, peak: Int)>((0, 0))
    func enter() { state.withLock { $0.now += 1; $0.peak = max($0.peak, $0.now) } }
    func leave() { state.withLock { $0.now -= 1 } }
    var peak: Int { state.withLock { $0.peak } }
}

struct Report: Codable, Sendable, Equatable { var org: Int }

func fastConfig(_ name: String = "w1", concurrency: Int = 4) -> WorkerConfiguration {
    var c = WorkerConfiguration()
    c.name = name
    c.concurrency = concurrency
    // A long lease: on a starved machine a short one could expire under a live handler and turn
    // an ordinary test into a lease-expiry one. Tests about expiry set their own.
    c.lease = .seconds(30)
    c.poll = .milliseconds(20)
    return c
}

@Suite struct WorkerTests {
    @Test func theSeedExampleRunsInOrder() async throws {
        try await withStore { store, _ in
            let order = Recorder()
            let handlers: Handlers = [
                "start": { job in order.add("start") },
                "result1": { job in order.add("result1") },
                "result2": { job in order.add("result2") },
                "finish": { job in
                    let report = try job.args(as: Report.self)
                    order.add(report == Report(org: 42) ? "finish" : "finish with wrong args")
                },
            ]
            let overseer = Overseer(log: store)
            let snapshot = try await overseer.run(seedDiamond, handlers: handlers, run: "nightly-2026-12-03", args: Report(org: 42), configuration: fastConfig())
            #expect(snapshot.run.status == .finished)
            #expect(snapshot.jobs.allSatisfy { $0.status == .finished && $0.attempt == 1 })
            let o = order.all
            #expect(o.count == 4)
            #expect(o.first == "start")
            #expect(o.last == "finish")
            #expect(Set(o[1...2]) == ["result1", "result2"])
            let kinds = try store.facts(after: 0).map(\.kind)
            #expect(kinds.first == .runCreated)
            #expect(kinds.contains(.workerStarted))
            #expect(kinds.last == .workerStopped)
            #expect(kinds.filter { $0 == .jobFinished }.count == 4)
        }
    }

    @Test func missingHandlersAreRefusedBeforeAnythingIsWritten() async throws {
        try await withStore { store, _ in
            let overseer = Overseer(log: store)
            let handlers: Handlers = ["start": { _ in }]
            await #expect(throws: GraphError.self) {
                try await overseer.submit(seedDiamond, run: "r", handlers: handlers)
            }
            let last = try store.lastPosition()
            #expect(last == 0)
        }
    }

    @Test func childrenReadTheirParentsResults() async throws {
        try await withStore { store, _ in
            let seen = Recorder()
            let handlers: Handlers = [
                "extract": { job in try job.setResult(["rows": 12]) },
                "load": { job in
                    let r: [String: Int]? = try job.result(of: "extract")
                    seen.add("\(r?["rows"] ?? -1)")
                },
            ]
            let snapshot = try await Overseer(log: store).run(["extract": [], "load": ["extract"]], handlers: handlers, args: Report(org: 1), configuration: fastConfig())
            #expect(snapshot.run.status == .finished)
            #expect(seen.all == ["12"])
            #expect(snapshot.job(type: "extract")?.result == ["rows": 12])
        }
    }

    @Test func aThrownErrorFailsTheJobAndBlocksDescendants() async throws {
        try await withStore { store, _ in
            struct Boom: Error, CustomStringConvertible { var description: String { "boom" } }
            let handlers: Handlers = [
                "start": { _ in }, "result1": { _ in throw Boom() }, "result2": { _ in }, "finish": { _ in },
            ]
            let snapshot = try await Overseer(log: store).run(seedDiamond, handlers: handlers, args: Report(org: 1), configuration: fastConfig())
            #expect(snapshot.run.status == .failed)
            let r1 = try #require(snapshot.job(type: "result1"))
            #expect(r1.status == .failed)
            #expect(r1.error?["message"] == "boom")
            #expect(r1.reason == "error")
            #expect(snapshot.job(type: "result2")?.status == .finished)
            #expect(snapshot.job(type: "finish")?.status == .unstarted)
            #expect(snapshot.blockers(of: snapshot.job(type: "finish")!.id) == [r1.id])
        }
    }

    @Test func anAbortReachesEveryDescendant() async throws {
        try await withStore { store, _ in
            let graph: JobGraph = ["a": [], "b": ["a"], "c": ["b"], "d": ["c"], "side": []]
            let handlers: Handlers = [
                "a": { _ in throw Abort("bad input") }, "b": { _ in }, "c": { _ in }, "d": { _ in }, "side": { _ in },
            ]
            let snapshot = try await Overseer(log: store).run(graph, handlers: handlers, args: Report(org: 1), configuration: fastConfig())
            #expect(snapshot.run.status == .aborted)
            for t in ["a", "b", "c", "d"] { #expect(snapshot.job(type: t)?.status == .aborted, "\(t)") }
            #expect(snapshot.job(type: "side")?.status == .finished)
            let aborts = try store.history(ofRun: snapshot.run.id).filter { $0.kind == .jobAborted }
            #expect(aborts.count == 4)
            #expect(aborts.dropFirst().allSatisfy { $0.data["cause"]?.stringValue == "\(snapshot.run.id)/a" })
        }
    }

    @Test func aFaultIsRetriedAfterABackoff() async throws {
        try await withStore { store, _ in
            let calls = Recorder()
            var handlers: Handlers = [:]
            handlers.on("flaky", options: JobOptions(retry: RetryPolicy(maximumAttempts: 1, initialDelay: 0.05, multiplier: 2, maximumDelay: 1, jitter: 0))) { job in
                calls.add("\(job.attempt)")
                if job.attempt < 3 { throw Fault("database unavailable") }
            }
            let snapshot = try await Overseer(log: store).run(["flaky": []], handlers: handlers, args: Report(org: 1), configuration: fastConfig())
            #expect(snapshot.run.status == .finished)
            #expect(calls.all == ["1", "2", "3"])
            let h = try store.history(ofJob: "\(snapshot.run.id)/flaky")
            let releases = h.filter { $0.kind == .jobReleased }
            #expect(releases.count == 2)
            #expect(releases.allSatisfy { $0.reason == "fault" })
            // The retry waited at least its backoff: claim 2 is no earlier than release 1's not_before.
            let notBefore = Instant(rfc3339: releases[0].data["not_before"]!.stringValue!)!
            let claim2 = h.filter { $0.kind == .jobClaimed }[1]
            #expect(claim2.time >= notBefore)
            #expect(notBefore.microseconds - releases[0].time.microseconds >= 49_000)
        }
    }

    @Test func retriesAreExhaustedThenTheJobFails() async throws {
        try await withStore { store, _ in
            var handlers: Handlers = [:]
            handlers.on("bad", options: JobOptions(retry: .exponential(maximumAttempts: 3, initialDelay: 0.02, maximumDelay: 0.05, jitter: 0))) { _ in
                throw CocoaError(.fileNoSuchFile)
            }
            let snapshot = try await Overseer(log: store).run(["bad": []], handlers: handlers, args: Report(org: 1), configuration: fastConfig())
            #expect(snapshot.run.status == .failed)
            let job = try #require(snapshot.job(type: "bad"))
            #expect(job.attempt == 3)
            let h = try store.history(ofJob: job.id)
            #expect(h.filter { $0.kind == .jobClaimed }.map(\.attempt) == [1, 2, 3])
            #expect(h.filter { $0.kind == .jobReleased }.count == 2)
            #expect(h.last?.kind == .jobFailed)
            #expect(h.last?.attempt == 3)
        }
    }

    @Test func aTimeoutCancelsTheHandlerAndFailsTheAttempt() async throws {
        try await withStore { store, _ in
            let cancelled = Recorder()
            var handlers: Handlers = [:]
            handlers.on("slow", options: JobOptions(timeout: .milliseconds(200))) { _ in
                do {
                    try await Task.sleep(for: .seconds(30))
                } catch {
                    cancelled.add("cancelled")
                    throw error
                }
            }
            let snapshot = try await Overseer(log: store).run(["slow": []], handlers: handlers, args: Report(org: 1), configuration: fastConfig())
            let job = try #require(snapshot.job(type: "slow"))
            #expect(job.status == .failed)
            #expect(job.reason == "timeout")
            #expect(job.error?["type"] == "Timeout")
            // The worker waits for a timed-out handler to end, so it has been cancelled by now.
            #expect(cancelled.all == ["cancelled"])
        }
    }

    @Test func perTypeLimitsHoldAcrossWorkers() async throws {
        try await withStore { store, _ in
            let gauge = Gauge()
            var handlers: Handlers = [:]
            handlers.on("x", options: JobOptions(maximumConcurrent: 2)) { _ in
                gauge.enter()
                try await Task.sleep(for: .milliseconds(30))
                gauge.leave()
            }
            handlers.on("y") { _ in }
            let overseer = Overseer(log: store)
            for i in 0..<12 { try await overseer.submit(["x": [], "y": []], run: "r\(i)") }
            var c1 = fastConfig("w1", concurrency: 6)
            c1.untilIdle = true
            var c2 = fastConfig("w2", concurrency: 6)
            c2.untilIdle = true
            let w1 = Worker(store: store, handlers: handlers, configuration: c1)
            let w2 = Worker(store: store, handlers: handlers, configuration: c2)
            async let a: Void = w1.run()
            async let b: Void = w2.run()
            _ = try await (a, b)
            #expect(gauge.peak <= 2)
            #expect(gauge.peak >= 1)
            for i in 0..<12 { #expect(try store.run("r\(i)")?.status == .finished) }
        }
    }

    @Test func higherPriorityRunsGoFirst() async throws {
        try await withStore { store, _ in
            let order = Recorder()
            let handlers: Handlers = ["job": { job in order.add(job.run) }]
            let overseer = Overseer(log: store)
            try await overseer.submit(["job": []], run: "low", priority: 0)
            try await overseer.submit(["job": []], run: "high", priority: 10)
            try await overseer.submit(["job": []], run: "low2", priority: 0)
            try await overseer.submit(["job": []], run: "mid", priority: 5)
            var c = fastConfig(concurrency: 1)
            c.untilIdle = true
            try await Worker(store: store, handlers: handlers, configuration: c).run()
            #expect(order.all == ["high", "mid", "low", "low2"])
        }
    }

    @Test func operatorRetryAndAbort() async throws {
        try await withStore { store, _ in
            let fail = Mutex(true)
            let handlers: Handlers = [
                "a": { _ in if fail.withLock({ $0 }) { throw Abort("not yet") } },
                "b": { _ in },
            ]
            let overseer = Overseer(log: store)
            var c = fastConfig()
            c.untilIdle = true
            _ = try await overseer.submit(["a": [], "b": ["a"]], run: "r1", handlers: handlers)
            try await Worker(store: store, handlers: handlers, configuration: c).run()
            #expect(try store.run("r1")?.status == .aborted)
            #expect(try store.job("r1/b")?.status == .aborted)
            fail.withLock { $0 = false }
            let retried = try await overseer.retry(job: "r1/a", reason: "fixed upstream", by: .operator("alice"))
            #expect(retried.map(\.job) == ["r1/a", "r1/b"])
            #expect(retried.allSatisfy { $0.worker == "operator:alice" && $0.reason == "fixed upstream" })
            try await Worker(store: store, handlers: handlers, configuration: c).run()
            #expect(try store.run("r1")?.status == .finished)
            // Abort a whole run before it starts.
            _ = try await overseer.submit(["a": [], "b": ["a"]], run: "r2", handlers: handlers)
            let aborted = try await overseer.abort(run: "r2", reason: "not needed", by: .operator("bob"))
            #expect(aborted.map(\.kind) == [.runAborted, .jobAborted, .jobAborted])
            #expect(try store.run("r2")?.status == .aborted)
            await #expect(throws: StoreError.self) { try await overseer.abort(run: "r2", reason: "again") }
        }
    }

    @Test func abortingARunCancelsRunningHandlersWithinAHeartbeat() async throws {
        try await withStore { store, _ in
            let cancelled = Recorder()
            let handlers: Handlers = ["long": { _ in
                do { try await Task.sleep(for: .seconds(30)) } catch {
                    cancelled.add("yes")
                    throw error
                }
            }]
            let overseer = Overseer(log: store)
            try await overseer.submit(["long": []], run: "r1")
            var c = fastConfig()
            c.lease = .milliseconds(600)
            c.untilIdle = true
            let worker = Worker(store: store, handlers: handlers, configuration: c)
            let running = Task { try await worker.run() }
            while try store.job("r1/long")?.status != .started { try await Task.sleep(for: .milliseconds(10)) }
            try await overseer.abort(run: "r1", reason: "stop it")
            try await running.value
            #expect(cancelled.all == ["yes"])
            let h = try store.history(ofJob: "r1/long")
            #expect(h.map(\.kind) == [.jobCreated, .jobClaimed, .jobAborted, .jobRejected])
        }
    }

    @Test func anExpiredLeaseIsReleasedAndTheLateResultRejected() async throws {
        try await withStore { store, _ in
            try await Overseer(log: store).submit(["a": []], run: "r1")
            // A "ghost" worker claims with a short lease, then goes silent.
            let ghost = Author(name: "ghost")
            let claims = try await store.write { w in try w.claimNext(worker: ghost, types: ["a"], count: 1, leaseMilliseconds: 100) }
            let claim = try #require(claims.first)
            try await Task.sleep(for: .milliseconds(150))
            // A live worker, as monitor, releases it and runs it.
            let ran = Recorder()
            var c = fastConfig()
            c.heartbeat = .milliseconds(50)
            c.untilIdle = true
            try await Worker(store: store, handlers: ["a": { job in ran.add(job.worker) }], configuration: c).run()
            #expect(ran.all == ["w1"])
            // The ghost wakes up and reports success: refused.
            let late = try await store.write { w in try w.complete(claim, outcome: .finished(result: nil), worker: ghost) }
            guard case .rejected(let fact) = late else { Issue.record("expected a rejection"); return }
            #expect(fact.kind == .jobRejected)
            #expect(fact.revision == nil)
            let h = try store.history(ofJob: "r1/a")
            #expect(h.map(\.kind) == [.jobCreated, .jobClaimed, .jobReleased, .jobClaimed, .jobFinished, .jobRejected])
            #expect(h[2].reason == "lease_expired")
            #expect(h[2].worker == "w1")
            #expect(h.filter { $0.kind == .jobFinished }.count == 1)
        }
    }

    @Test func aGracefulStopLetsRunningJobsFinish() async throws {
        try await withStore { store, _ in
            try await Overseer(log: store).submit(["a": [], "b": ["a"]], run: "r1")
            let handlers: Handlers = ["a": { _ in try await Task.sleep(for: .milliseconds(300)) }, "b": { _ in }]
            let worker = Worker(store: store, handlers: handlers, configuration: fastConfig())
            let running = Task { try await worker.run() }
            while try store.job("r1/a")?.status != .started { try await Task.sleep(for: .milliseconds(10)) }
            worker.stop()
            try await running.value
            #expect(try store.job("r1/a")?.status == .finished)
            #expect(try store.job("r1/b")?.status == .unstarted)  // no new claims after stop
        }
    }

    @Test func anImmediateStopReleasesClaimsForOthers() async throws {
        try await withStore { store, _ in
            try await Overseer(log: store).submit(["a": []], run: "r1")
            let handlers: Handlers = ["a": { _ in try await Task.sleep(for: .seconds(30)) }]
            let worker = Worker(store: store, handlers: handlers, configuration: fastConfig())
            let running = Task { try await worker.run() }
            while try store.job("r1/a")?.status != .started { try await Task.sleep(for: .milliseconds(10)) }
            worker.stop(immediately: true)
            try await running.value
            let job = try #require(try store.job("r1/a"))
            #expect(job.status == .unstarted)
            #expect(job.reason == "shutdown")
            #expect(job.notBefore == nil)
            #expect(try store.readyJobs().map(\.job) == ["r1/a"])
        }
    }

    @Test func middlewareComposesOutermostFirst() async throws {
        try await withStore { store, _ in
            let trace = Recorder()
            var handlers: Handlers = ["a": { job in trace.add("handler") }]
            handlers.use { job, next in
                trace.add("outer>")
                try await next(job)
                trace.add("<outer")
            }
            handlers.use { job, next in
                trace.add("inner>")
                try await next(job)
                trace.add("<inner")
            }
            _ = try await Overseer(log: store).run(["a": []], handlers: handlers, args: Report(org: 1), configuration: fastConfig())
            #expect(trace.all == ["outer>", "inner>", "handler", "<inner", "<outer"])
        }
    }

    @Test func faultsDoNotUseUpTheRetryBudget() async throws {
        try await withStore { store, _ in
            let calls = Recorder()
            var handlers = Handlers()
            // One retry for errors; the first two attempts fault, the third errors, the fourth succeeds.
            handlers.on("j", options: JobOptions(retry: RetryPolicy(maximumAttempts: 2, initialDelay: 0.01, jitter: 0))) { job in
                calls.add("\(job.attempt)")
                if job.attempt <= 2 { throw Fault("busy") }
                if job.attempt == 3 { throw CocoaError(.fileReadUnknown) }
            }
            let snapshot = try await Overseer(log: store).run(["j": []], handlers: handlers, args: Report(org: 1), configuration: fastConfig())
            #expect(snapshot.run.status == .finished)
            #expect(calls.all == ["1", "2", "3", "4"])
            let job = try #require(snapshot.job(type: "j"))
            #expect(job.failures == 1)
            #expect(job.faults == 0)
            #expect(job.reason == nil)
        }
    }

    @Test func aWorkerFilteredByRunNameLeavesOtherPipelinesAlone() async throws {
        try await withStore { store, _ in
            let overseer = Overseer(log: store)
            _ = try await store.submit(RunPlan(id: "mine", graph: ["a": []], name: "etl"))
            _ = try await store.submit(RunPlan(id: "theirs", graph: ["a": []], name: "reports"))
            let ran = Recorder()
            var c = fastConfig()
            c.untilIdle = true
            c.runs = .named("etl")
            try await Worker(store: store, handlers: ["a": { job in ran.add(job.run) }], configuration: c).run()
            #expect(ran.all == ["mine"])
            #expect(try store.job("theirs/a")?.status == .unstarted)
            _ = overseer
        }
    }
}
