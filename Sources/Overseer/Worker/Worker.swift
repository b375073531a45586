import Foundation
import Synchronization

/// How a worker runs.
public struct WorkerConfiguration: Sendable {
    /// The worker's id in the log; unique per process by default (`host-pid-xxxx`).
    public var name: String = WorkerConfiguration.defaultName()
    /// Jobs run at once by this worker.
    public var concurrency: Int = 4
    /// A claim's lease. Heartbeats renew it while the handler runs; when it runs out (the worker
    /// died or was paused), any worker releases the job so it runs again.
    public var lease: Duration = .seconds(30)
    /// How often leases are renewed and expired leases looked for; default lease / 3.
    public var heartbeat: Duration?
    /// How often the store is checked for work committed by other processes.
    public var poll: Duration = .milliseconds(50)
    /// On a graceful stop, how long running jobs may take before they are cancelled and released.
    public var shutdownGrace: Duration = .seconds(30)
    /// Stop by itself when nothing is runnable or running (for its types), now or after a retry delay.
    public var untilIdle: Bool = false
    /// After a timeout cancels a handler, how long to wait for it to end before moving on.
    public var timeoutWait: Duration = .seconds(60)
    /// Which runs this worker works: any (the default), or only some.
    public var runs: RunFilter = .any
    /// Receives what the worker does. The library never prints on its own.
    public var events: (@Sendable (WorkerEvent) -> Void)?

    public init() {}

    public static func defaultName() -> String {
        let host = Author.currentHost.split(separator: ".").first.map(String.init) ?? "host"
        return "\(host)-\(getpid())-\(String(UInt16.random(in: 0...0xFFFF), radix: 16))"
    }

    var heartbeatInterval: Duration { heartbeat ?? lease / 3 }
    var leaseMilliseconds: Int64 {
        let (s, a) = lease.components
        return s * 1000 + a / 1_000_000_000_000_000
    }
}

/// What a worker did, for logs and metrics.
public enum WorkerEvent: Sendable {
    case started(worker: String)
    case claimed(Claim)
    case completed(Claim, AttemptOutcome, CompletionResult)
    /// This worker released jobs whose leases had run out.
    case releasedExpired([Fact])
    /// A job's claim was lost (released, aborted or superseded): its handler was cancelled.
    case claimLost(Claim)
    /// A store operation failed; the worker backs off and carries on.
    case storeError(String)
    case stopping(immediately: Bool)
    case stopped(worker: String)
}

/// A masterless worker: it keeps claiming ready jobs it has handlers for, runs them, and records
/// the outcome. Any number of workers, in any number of processes, can share a store.
///
/// ```swift
/// let worker = Worker(store: store, handlers: handlers)
/// try await worker.run()          // until stop(), or until idle with `untilIdle`
/// ```
public final class Worker: Sendable {
    public let store: LogStore
    public let handlers: Handlers
    public let configuration: WorkerConfiguration
    public var name: String { configuration.name }

    private struct Running {
        var claim: Claim
        var task: Task<Void, Never>?
        var cancelledForShutdown = false
    }

    private struct State {
        var running: [String: Running] = [:]
        var stopping = false
        var immediate = false
        var slots = 0
    }

    private let state = Mutex(State())
    private let wake = CommitSignal()
    private let author: Author
    private let types: Set<String>
    private let limits: [String: Int]

    public init(store: LogStore, handlers: Handlers, configuration: WorkerConfiguration = WorkerConfiguration()) {
        self.store = store
        self.handlers = handlers
        self.configuration = configuration
        self.author = Author(name: configuration.name)
        self.types = handlers.types
        var limits: [String: Int] = [:]
        for (type, o) in handlers.options { if let m = o.maximumConcurrent { limits[type] = m } }
        self.limits = limits
    }

    private func emit(_ e: WorkerEvent) { configuration.events?(e) }

    /// Asks the worker to stop: it claims nothing more, lets running jobs finish within the
    /// shutdown grace, then cancels them and releases their claims. With `immediately`, running
    /// jobs are cancelled and released at once.
    public func stop(immediately: Bool = false) {
        let toCancel: [Task<Void, Never>] = state.withLock { s in
            s.stopping = true
            if immediately { s.immediate = true }
            guard immediately else { return [] }
            var tasks: [Task<Void, Never>] = []
            for (id, r) in s.running {
                s.running[id]?.cancelledForShutdown = true
                if let t = r.task { tasks.append(t) }
            }
            return tasks
        }
        emit(.stopping(immediately: immediately))
        for t in toCancel { t.cancel() }
        wake.notify()
    }

    public var isStopping: Bool { state.withLock { $0.stopping } }

    /// Runs until ``stop(immediately:)`` (or, with `untilIdle`, until there is nothing to do).
    /// Records `worker.started` and `worker.stopped`. Never throws because a handler failed.
    public func run() async throws {
        let started = FactDraft(kind: .workerStarted, author: author, data: [
            "host": .string(Author.currentHost), "pid": .int(Int64(getpid())),
            "types": .array(types.sorted().map { .string($0) }), "concurrency": .int(Int64(configuration.concurrency)),
        ])
        _ = try await store.append(started, expecting: nil)
        emit(.started(worker: name))
        let heartbeat = Task { await heartbeatLoop() }
        var stopReason = "stopped"
        await withTaskGroup(of: Void.self) { slots in
            var errorBackoff = 0.0
            while true {
                let (stopping, free) = state.withLock { s in (s.stopping, configuration.concurrency - s.slots) }
                if stopping { break }
                var claimed: [Claim] = []
                if free > 0 {
                    do {
                        if try store.hasClaimable(types: types, runs: configuration.runs) {
                            let (author, types, limits, lease, runs) = (self.author, self.types, self.limits, configuration.leaseMilliseconds, configuration.runs)
                            claimed = try await store.write { w in
                                try w.claimNext(worker: author, types: types, limits: limits, runs: runs, count: free, leaseMilliseconds: lease)
                            }
                        }
                        errorBackoff = 0
                    } catch {
                        emit(.storeError("claim: \(error)"))
                        errorBackoff = min(5, max(0.05, errorBackoff * 2))
                        try? await Task.sleep(for: .seconds(errorBackoff))
                        continue
                    }
                }
                for claim in claimed {
                    state.withLock { $0.slots += 1 }
                    slots.addTask { await self.slot(first: claim) }
                }
                if claimed.isEmpty {
                    if configuration.untilIdle, state.withLock({ $0.slots == 0 }) {
                        do {
                            if try !store.hasWork(types: types, runs: configuration.runs) {
                                stopReason = "idle"
                                break
                            }
                        } catch {
                            emit(.storeError("idle check: \(error)"))
                        }
                    }
                    // Wait for a commit here (a finished parent, a new run), a freed slot, or the poll.
                    // Wait for whichever comes first: a commit in this process (a finished parent, a
                    // new run), a freed slot, or the poll interval (commits by other processes).
                    let (poll, store, wake) = (configuration.poll, self.store, self.wake)
                    if free <= 0 {
                        // Every slot is busy: only a freed slot matters, not the commits.
                        await wake.wait(timeout: poll)
                        continue
                    }
                    let seen = (try? store.lastPosition()) ?? 0
                    await withTaskGroup(of: Void.self) { waits in
                        waits.addTask { try? await store.waitForAppend(after: seen, timeout: poll) }
                        waits.addTask { await wake.wait(timeout: poll) }
                        await waits.next()
                        waits.cancelAll()
                    }
                }
            }
            // Stopping: running jobs get the grace period, then are cancelled and released.
            let immediate = state.withLock { $0.immediate }
            if !immediate, state.withLock({ $0.slots > 0 }) {
                let grace = configuration.shutdownGrace
                let timer = Task {
                    do { try await Task.sleep(for: grace) } catch { return }
                    self.stop(immediately: true)
                }
                await slots.waitForAll()
                timer.cancel()
            } else {
                await slots.waitForAll()
            }
        }
        heartbeat.cancel()
        _ = await heartbeat.value
        let stopped = FactDraft(kind: .workerStopped, author: author, reason: stopReason)
        _ = try await store.append(stopped, expecting: nil)
        emit(.stopped(worker: name))
    }

    /// One slot: runs a claim, records its outcome and, in the same write, claims the next job.
    private func slot(first: Claim) async {
        var current: Claim? = first
        while let claim = current {
            emit(.claimed(claim))
            let outcome = await attempt(claim)
            current = await record(claim, outcome)
        }
        state.withLock { $0.slots -= 1 }
        wake.notify()
    }

    /// Runs the handler for one attempt, with the timeout, and maps how it ended.
    private func attempt(_ claim: Claim) async -> AttemptOutcome {
        guard let handler = handlers.chain(for: claim.type) else {
            return .failed(error: ["type": "MissingHandler", "message": .string("no handler for job type '\(claim.type)'")], reason: "error", retryAfter: nil)
        }
        let options = handlers.options(for: claim.type)
        let box = ResultBox()
        let job = Job(
            id: claim.job, run: claim.run, type: claim.type, attempt: claim.attempt, worker: name,
            arguments: claim.args, parentResults: claim.parentResults, options: claim.options, resultBox: box)
        let race = Race()
        let task = Task {
            do {
                try await handler(job)
                race.finish(.returned)
            } catch {
                race.finish(.threw(error))
            }
        }
        let shutdownBeforeStart = state.withLock { s -> Bool in
            s.running[claim.job] = Running(claim: claim, task: task, cancelledForShutdown: s.immediate)
            return s.immediate
        }
        if shutdownBeforeStart { task.cancel() }
        var timer: Task<Void, Never>?
        if let timeout = options.timeout {
            timer = Task {
                do { try await Task.sleep(for: timeout) } catch { return }
                race.finish(.timedOut)
                task.cancel()
            }
        }
        let end = await race.value()
        timer?.cancel()
        if case .timedOut = end {
            // The handler was cancelled; wait for it to actually end (a shell command gets SIGTERM,
            // then SIGKILL after its grace), so a retry never overlaps it and `run()` does not
            // return while it still runs. Its lease keeps being renewed meanwhile. A Swift handler
            // that ignores cancellation is given up on after `timeoutWait`.
            let limit = configuration.timeoutWait
            await withTaskGroup(of: Void.self) { wait in
                wait.addTask { await task.value }
                wait.addTask { try? await Task.sleep(for: limit) }
                await wait.next()
                wait.cancelAll()
            }
        }
        let forShutdown = state.withLock { s -> Bool in
            let r = s.running.removeValue(forKey: claim.job)
            return r?.cancelledForShutdown ?? false
        }
        let policy = options.retry
        // This attempt is failure number `failures + 1`, or fault number `faults + 1`.
        func retryAfter(count: Int, limit: Int) -> Double? {
            count < limit ? policy.delay(afterAttempt: count) : nil
        }
        let failure = claim.failures + 1
        let fault = claim.faults + 1
        switch end {
        case .returned:
            return .finished(result: box.get())
        case .timedOut:
            let error: JSONValue = ["type": "Timeout", "message": .string("the attempt took longer than \(options.timeout!)")]
            return .failed(error: error, reason: "timeout", retryAfter: retryAfter(count: failure, limit: policy.maximumAttempts))
        case .threw(let error):
            if forShutdown, error is CancellationError { return .shutdown }
            if forShutdown, Task.isCancelled { return .shutdown }
            if let a = error as? Abort { return .aborted(reason: a.reason, error: Worker.describe(error)) }
            if error is Fault {
                if let after = retryAfter(count: fault, limit: policy.maximumFaults) { return .fault(error: Worker.describe(error), retryAfter: after) }
                return .failed(error: Worker.describe(error), reason: "faults", retryAfter: nil)
            }
            if forShutdown { return .shutdown }
            return .failed(error: Worker.describe(error), reason: "error", retryAfter: retryAfter(count: failure, limit: policy.maximumAttempts))
        }
    }

    /// An error as recorded in a fact: its type and message, the message capped at 4 KiB.
    static func describe(_ error: any Error) -> JSONValue {
        var message = String(describing: error)
        if message.utf8.count > 4096 { message = String(decoding: message.utf8.prefix(4096), as: UTF8.self) + "…" }
        return ["type": .string(String(reflecting: type(of: error))), "message": .string(message)]
    }

    /// Records the outcome (retrying store errors with backoff) and claims the slot's next job.
    private func record(_ claim: Claim, _ outcome: AttemptOutcome) async -> Claim? {
        var backoff = 0.05
        let (author, types, limits, lease, runs) = (self.author, self.types, self.limits, configuration.leaseMilliseconds, configuration.runs)
        while true {
            let claimNext = !state.withLock { $0.stopping }
            do {
                let (result, next) = try await store.write { w -> (CompletionResult, Claim?) in
                    let result = try w.complete(claim, outcome: outcome, worker: author)
                    guard claimNext else { return (result, nil) }
                    let next = try w.claimNext(worker: author, types: types, limits: limits, runs: runs, count: 1, leaseMilliseconds: lease)
                    return (result, next.first)
                }
                emit(.completed(claim, outcome, result))
                return next
            } catch {
                emit(.storeError("recording \(claim.job): \(error)"))
                if state.withLock({ $0.immediate }) && backoff > 1 { return nil }  // the lease will expire
                try? await Task.sleep(for: .seconds(backoff))
                backoff = min(5, backoff * 2)
            }
        }
    }

    /// Renews this worker's leases, cancels handlers whose claims were lost, and releases
    /// expired leases of any worker (every worker is also a monitor).
    private func heartbeatLoop() async {
        let interval = configuration.heartbeatInterval
        var beats = 0
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            beats += 1
            if beats % 20 == 0 {
                // Reader slots of processes that died mid-read would otherwise stay taken.
                do { try store.clearStaleReaders() } catch { emit(.storeError("clearing stale readers: \(error)")) }
            }
            let claims = state.withLock { s in s.running.values.map(\.claim) }
            let (name, author, lease) = (self.name, self.author, configuration.leaseMilliseconds)
            do {
                let (lost, released) = try await store.write { w -> ([Claim], [Fact]) in
                    let lost = try w.renewLeases(claims, worker: name, leaseMilliseconds: lease)
                    let released = try w.releaseExpired(by: author)
                    return (lost, released)
                }
                if !released.isEmpty { emit(.releasedExpired(released)) }
                for claim in lost {
                    let task = state.withLock { $0.running[claim.job]?.task }
                    if let task {
                        emit(.claimLost(claim))
                        task.cancel()
                    }
                }
            } catch {
                emit(.storeError("heartbeat: \(error)"))
            }
        }
    }
}

/// The first of: the handler returned, threw, or the timeout fired.
private final class Race: Sendable {
    enum End: @unchecked Sendable {
        // @unchecked: `any Error` values thrown by handlers are passed along once, never shared.
        case returned
        case threw(any Error)
        case timedOut
    }
    private let state = Mutex<(end: End?, waiter: CheckedContinuation<End, Never>?)>((nil, nil))

    func finish(_ end: End) {
        let waiter = state.withLock { s -> CheckedContinuation<End, Never>? in
            guard s.end == nil else { return nil }
            s.end = end
            let w = s.waiter
            s.waiter = nil
            return w
        }
        waiter?.resume(returning: end)
    }

    func value() async -> End {
        await withCheckedContinuation { c in
            let ready = state.withLock { s -> End? in
                if let e = s.end { return e }
                s.waiter = c
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }
}

extension LogStore {
    /// Whether some ready job of these types (and runs) is claimable now: a cheap read, no write.
    public func hasClaimable(types: Set<String>, runs: RunFilter = .any) throws -> Bool {
        let now = Instant.now()
        return try read { txn in
            let views = LMDBViews(txn: txn, dbs: dbs)
            var filter = RunFilterCheck(runs)
            var found = false
            var scanned = 0
            try txn.forEach(dbs.ready) { _, v in
                scanned += 1
                let (type, nb, job) = try ReadyEntry.decodeValue(v)
                if types.contains(type) && (nb == 0 || nb <= now.microseconds),
                    try filter.accepts(job: job, lookup: { try views.run($0) })
                {
                    found = true
                    return false
                }
                return scanned < 10_000
            }
            return found
        }
    }

    /// Whether anything of these types (and runs) is ready, now or after a retry delay, or
    /// running anywhere.
    public func hasWork(types: Set<String>, runs: RunFilter = .any) throws -> Bool {
        try read { txn in
            let views = LMDBViews(txn: txn, dbs: dbs)
            var filter = RunFilterCheck(runs)
            if runs == .any {
                for t in types where try views.active(t) > 0 { return true }
            } else {
                // Live claims are exactly the leases: look at their jobs.
                var running = false
                try txn.forEach(dbs.leases) { k, _ in
                    let job = String(decoding: k, as: UTF8.self)
                    if let state = try views.job(job), state.status == .started, types.contains(state.type),
                        try filter.accepts(job: job, lookup: { try views.run($0) })
                    {
                        running = true
                        return false
                    }
                    return true
                }
                if running { return true }
            }
            var found = false
            try txn.forEach(dbs.ready) { _, v in
                let (type, _, job) = try ReadyEntry.decodeValue(v)
                if types.contains(type), try filter.accepts(job: job, lookup: { try views.run($0) }) {
                    found = true
                    return false
                }
                return true
            }
            return found
        }
    }
}
