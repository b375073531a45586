import Foundation
import Overseer
import Synchronization

/// `overseer-bench workers`: no-op handlers on seed-shaped diamond runs (4 jobs each), durable store.
///
/// - workers.throughput.32: jobs finished per second by one worker process with 32 slots.
///   Baseline: raw LMDB records/s in durable commits of 32 puts (the same run), since a claimed
///   and finished job costs at least two appended records; ratio = jobs/s ÷ that.
/// - workers.latency.inprocess / .crossprocess: median time from a parent's `job.finished` to its
///   child's `job.claimed` (from the facts' own times), one run at a time, with one worker
///   process, and with the children's types handled only by a second process (which learns of
///   new facts through inotify, its 50 ms poll as the fallback). p99 lines too. Baseline: none.
/// - workers.claim.1M: claim-and-finish cost per job with 1,000,000 finished jobs in the store,
///   baseline the same with 1,000 (ratio ≤ 1.5 is the target). Measured on stores opened with
///   `unsafeNoSync`, so that fsync (the same for both) does not hide the CPU cost that would grow.
struct WorkersSuite: BenchSuite {
    let name = "workers"

    static let diamond: JobGraph = ["start": [], "result1": ["start"], "result2": ["start"], "finish": ["result1", "result2"]]

    static func noop() -> Handlers {
        ["start": { _ in }, "result1": { _ in }, "result2": { _ in }, "finish": { _ in }]
    }

    func run(_ context: BenchContext) async throws {
        if context.store == .postgres { return try await runPostgres(context) }
        try await throughput(context)
        try await inProcessLatency(context)
        try await crossProcessLatency(context)
        try await claimCost(context)
    }

    func config(_ name: String, concurrency: Int) -> WorkerConfiguration {
        var c = WorkerConfiguration()
        c.name = name
        c.concurrency = concurrency
        c.untilIdle = true
        c.poll = .milliseconds(10)
        return c
    }

    func submitDiamonds(_ store: LogStore, count: Int, prefix: String) throws {
        var i = 0
        while i < count {
            let batch = min(250, count - i)
            let first = i
            try store.writeSync { w in
                for k in first..<(first + batch) { _ = try w.submit(RunPlan(id: "\(prefix)\(k)", graph: WorkersSuite.diamond)) }
            }
            i += batch
        }
    }

    func throughput(_ context: BenchContext) async throws {
        let runs = context.quick ? 250 : 2500
        var rates: [Double] = [], cpu: [Double] = [], noSyncRates: [Double] = []
        var noSync = StoreOptions()
        noSync.durability = .unsafeNoSync
        for rep in 0..<3 {
            for options in [StoreOptions(), noSync] {
                let durable = options.durability != .unsafeNoSync
                let path = context.path("workers-throughput-\(rep)\(durable ? "" : "-nosync")")
                let store = try LogStore(path: path, options: options)
                try submitDiamonds(store, count: runs, prefix: "r")
                let worker = Worker(store: store, handlers: WorkersSuite.noop(), configuration: config("bench", concurrency: 32))
                let cpu0 = ProcessMemory.cpuSeconds
                let (_, seconds) = try await measureAsync { try await worker.run() }
                let cpuSeconds = ProcessMemory.cpuSeconds - cpu0
                let finished = try store.runs().filter { $0.status == .finished }.count * 4
                guard finished == runs * 4 else { throw BenchError("only \(finished) of \(runs * 4) jobs finished") }
                let rate = Double(finished) / seconds
                if durable {
                    rates.append(rate)
                    cpu.append(cpuSeconds / Double(finished) * 1e6)
                } else {
                    noSyncRates.append(rate)
                }
                Progress.say(String(format: "workers.throughput.32%@ rep %d: %.0f jobs/s, CPU %.0f us/job (all threads)",
                                    durable ? "" : " without fsync", rep, rate, cpuSeconds / Double(finished) * 1e6))
                context.remove(path)
            }
        }
        let raw = try RawLMDB(path: context.path("raw-batch32"))
        let records = 32 * (context.quick ? 100 : 400)
        let baseline = Double(records) / (try raw.put(records: records, perCommit: 32))
        // For reference: a claim and a finish of 32 different jobs per commit, as raw LMDB writes
        // (64 record sets over 11 trees, 5 at scattered keys; see the log suite).
        let spread = try RawLMDB(path: context.path("raw-spread-batch64"), databases: 11)
        let sets = 64 * (context.quick ? 50 : 200)
        let spreadRate = Double(sets) / (try spread.putSpread(commits: sets / 64, perCommit: 64, scattered: true))
        let value = Stats.median(rates)
        context.emit(name, "workers.throughput.32", value: value, unit: "jobs/s", baseline: baseline, ratio: value / baseline)
        context.emit(name, "workers.throughput.32.cpu", value: Stats.median(cpu), unit: "us/job")
        context.emit(name, "workers.throughput.32.unsafe_nosync", value: Stats.median(noSyncRates), unit: "jobs/s")
        context.emit(name, "raw.put.batch64.11trees", value: spreadRate, unit: "record sets/s")
        // Two facts a job: the jobs/s that raw LMDB's rate for the same page writes allows.
        context.emit(name, "workers.throughput.32.vs_11trees", value: value, unit: "jobs/s", baseline: spreadRate / 2, ratio: value / (spreadRate / 2))
    }

    /// Latencies parent finish → child claim, from the log.
    static func latencies(_ store: LogStore, runs: [String]) throws -> [Double] {
        var out: [Double] = []
        for run in runs {
            let facts = try store.history(ofRun: run)
            var finished: [String: Instant] = [:]
            var claimed: [String: Instant] = [:]
            for f in facts {
                guard let job = f.job else { continue }
                if f.kind == .jobFinished { finished[job] = f.time }
                if f.kind == .jobClaimed, claimed[job] == nil { claimed[job] = f.time }
            }
            for (child, parents) in [("result1", ["start"]), ("result2", ["start"]), ("finish", ["result1", "result2"])] {
                guard let c = claimed["\(run)/\(child)"] else { continue }
                let p = parents.compactMap { finished["\(run)/\($0)"] }.max()
                if let p { out.append(Double(c.microseconds - p.microseconds) / 1000) }
            }
        }
        return out.sorted()
    }

    func emitLatency(_ context: BenchContext, _ label: String, _ xs: [Double]) throws {
        guard !xs.isEmpty else { throw BenchError("\(label): no latencies measured") }
        context.emit(name, "workers.latency.\(label)", value: Stats.median(xs), unit: "ms")
        context.emit(name, "workers.latency.\(label).p99", value: xs[min(xs.count - 1, Int(Double(xs.count) * 0.99))], unit: "ms")
    }

    /// One run at a time, so the figure is the hand-off itself, not time spent queued behind
    /// other ready jobs (which FIFO order would add under load).
    func inProcessLatency(_ context: BenchContext) async throws {
        let path = context.path("workers-latency")
        let store = try LogStore(path: path)
        let runs = context.quick ? 50 : 300
        for k in 0..<runs {
            _ = try store.submitSync(RunPlan(id: "l\(k)", graph: WorkersSuite.diamond))
            let worker = Worker(store: store, handlers: WorkersSuite.noop(), configuration: config("bench", concurrency: 4))
            try await worker.run()
        }
        try emitLatency(context, "inprocess", try WorkersSuite.latencies(store, runs: (0..<runs).map { "l\($0)" }))
        context.remove(path)
    }

    /// The parents' types run in this process; the children's only in a second process (this
    /// binary's hidden `_worker` mode), which notices them by polling the store.
    func crossProcessLatency(_ context: BenchContext) async throws {
        let path = context.path("workers-cross")
        try emitLatency(context, "crossprocess", try await crossProcessLatencies(context, location: path))
        context.remove(path)
    }

    /// Parent finish → child claim across processes on the store at `location` (an LMDB path or
    /// a PostgreSQL URL), sorted, in ms.
    func crossProcessLatencies(_ context: BenchContext, location: String) async throws -> [Double] {
        let store = try BenchStore.open(location)
        let runs = context.quick ? 30 : 200
        let child = try WorkerProcess(location: location, types: "result1,result2,finish", poll: 50, concurrency: 4)
        defer { child.terminate() }
        try child.waitReady()
        child.go()
        // Submit one run at a time, so each measurement sees an idle other process.
        let handlers: Handlers = ["start": { _ in }]
        for k in 0..<runs {
            _ = try store.submitSync(RunPlan(id: "x\(k)", graph: WorkersSuite.diamond))
            let w = Worker(store: store, handlers: handlers, configuration: config("parent", concurrency: 1))
            try await w.run()
            while true {
                let seen = try store.lastPosition()
                if try store.run("x\(k)")?.status != .running { break }
                try await store.waitForAppend(after: seen, timeout: .milliseconds(20))
            }
        }
        child.terminate()
        return try WorkersSuite.latencies(store, runs: (0..<runs).map { "x\($0)" })
    }

    /// Fills a store with `finished` finished jobs (runs of 1,000 independent jobs), unsafeNoSync.
    func fill(_ path: String, finished: Int) throws -> LogStore {
        var options = StoreOptions()
        options.durability = .unsafeNoSync
        let store = try LogStore(path: path, options: options)
        var graph: [String: [String]] = [:]
        for i in 0..<1000 { graph["j\(i)"] = [] }
        let jg = JobGraph(graph)
        let author = Author(name: "filler")
        for r in 0..<(finished / 1000) {
            try store.writeSync { w in
                _ = try w.submit(RunPlan(id: "fill\(r)", graph: jg))
                let claims = try w.claimNext(worker: author, types: nil, count: 1000, leaseMilliseconds: 60_000)
                for c in claims { _ = try w.complete(c, outcome: .finished(result: nil), worker: author) }
            }
        }
        return store
    }

    /// Claim-and-finish cycles, one job per write, on `store`; returns µs per job.
    func cycleCost(_ store: LogStore, jobs: Int, tag: String) throws -> Double {
        var graph: [String: [String]] = [:]
        for i in 0..<jobs { graph["c\(i)"] = [] }
        _ = try store.submitSync(RunPlan(id: "probe-\(tag)", graph: JobGraph(graph)))
        let author = Author(name: "probe")
        let (_, seconds) = try measure {
            for _ in 0..<jobs {
                try store.writeSync { w in
                    for c in try w.claimNext(worker: author, types: nil, count: 1, leaseMilliseconds: 60_000) {
                        _ = try w.complete(c, outcome: .finished(result: nil), worker: author)
                    }
                }
            }
        }
        return seconds / Double(jobs) * 1e6
    }

    func claimCost(_ context: BenchContext) async throws {
        let big = context.quick ? 50_000 : 1_000_000
        let small = 1_000
        let probe = context.quick ? 500 : 2_000
        let smallStore = try fill(context.path("claim-small"), finished: small)
        let fillStart = ContinuousClock.now
        let bigStore = try fill(context.path("claim-big"), finished: big)
        Progress.say("filled \(big) finished jobs in \(Format.seconds(ContinuousClock.now - fillStart))")
        var smallCosts: [Double] = []
        var bigCosts: [Double] = []
        for rep in 0..<3 {
            smallCosts.append(try cycleCost(smallStore, jobs: probe, tag: "s\(rep)"))
            bigCosts.append(try cycleCost(bigStore, jobs: probe, tag: "b\(rep)"))
        }
        let s = Stats.median(smallCosts)
        let b = Stats.median(bigCosts)
        context.emit(name, "workers.claim.\(Format.count(small))", value: s, unit: "us/job")
        context.emit(name, "workers.claim.\(Format.count(big))", value: b, unit: "us/job", baseline: s, ratio: b / s)
        context.remove(context.path("claim-small"))
        context.remove(context.path("claim-big"))
    }
}

/// The hidden `_worker STORE TYPES POLL_MS [--concurrency N] [--until-idle] [--name NAME]` mode:
/// a no-op worker for the given types on STORE (an LMDB path or a PostgreSQL URL; `-` reads it
/// from OVERSEER_BENCH_STORE, which keeps a URL's password out of `ps`). It opens the
/// store, prints `ready` on stdout and waits for a line on stdin before it starts, so that the
/// parent times only the work. It runs until SIGTERM or, with `--until-idle`, until nothing of
/// its types is ready or running anywhere. Used by the cross-process measurements.
enum HiddenWorker {
    static let usage = "usage: overseer-bench _worker STORE TYPES POLL_MS [--concurrency N] [--until-idle] [--name NAME]"

    static func run(_ arguments: [String]) async -> Never {
        // A parent that ignores SIGINT/SIGTERM (to clean up) must not pass that on.
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
        var args = arguments
        var c = WorkerConfiguration()
        c.name = "child-\(getpid())"
        c.concurrency = 4
        var untilIdle = false
        var rest: [String] = []
        var i = 0
        while i < args.count {
            switch args[i] {
            case "--concurrency" where i + 1 < args.count:
                guard let n = Int(args[i + 1]), n > 0 else { fail(usage) }
                c.concurrency = n
                i += 1
            case "--name" where i + 1 < args.count:
                c.name = args[i + 1]
                i += 1
            case "--until-idle":
                untilIdle = true
            default:
                rest.append(args[i])
            }
            i += 1
        }
        args = rest
        guard args.count == 3, let poll = Int(args[2]) else { fail(usage) }
        c.poll = .milliseconds(Int64(poll))
        c.untilIdle = untilIdle
        do {
            let location = args[0] == "-" ? ProcessInfo.processInfo.environment["OVERSEER_BENCH_STORE"] ?? "" : args[0]
            let store = try BenchStore.open(location)
            // Warm up: the read pool and the writer's connection (for PostgreSQL).
            _ = try store.lastPosition()
            try store.writeSync { _ in }
            var handlers = Handlers()
            for t in args[1].split(separator: ",") { handlers.on(String(t)) { _ in } }
            FileHandle.standardOutput.write(Data("ready\n".utf8))
            guard readLine() != nil else { exit(0) }  // the parent went away
            if untilIdle {
                try await Worker(store: store, handlers: handlers, configuration: c).run()
            } else {
                try await Overseer(log: store).work(handlers, configuration: c)
            }
            exit(0)
        } catch {
            fail("_worker: \(error)")
        }
    }

    static func fail(_ message: String) -> Never {
        Progress.say(message)
        exit(2)
    }
}

/// A `_worker` child process: started, then told to go once it has opened the store.
final class WorkerProcess {
    let process = Process()
    private let input = Pipe()
    private let output = Pipe()

    /// The children still running, so that an interrupted bench can stop them too.
    private static let live = Mutex<Set<Int32>>([])

    /// SIGTERM to every child not yet waited for.
    static func terminateAll() {
        for pid in live.withLock({ $0 }) { kill(pid, SIGTERM) }
    }

    init(location: String, types: String, poll: Int, concurrency: Int, untilIdle: Bool = false, name: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        var arguments = ["_worker", "-", types, String(poll), "--concurrency", String(concurrency)]
        if untilIdle { arguments.append("--until-idle") }
        if let name { arguments += ["--name", name] }
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["OVERSEER_BENCH_STORE"] = location
        process.environment = environment
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let pid = process.processIdentifier
        WorkerProcess.live.withLock { _ = $0.insert(pid) }
    }

    /// Blocks until the child has opened its store.
    func waitReady() throws {
        var seen = Data()
        while !seen.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { throw BenchError("a _worker process ended before it was ready (status \(status))") }
            seen.append(chunk)
        }
        guard String(decoding: seen, as: UTF8.self).hasPrefix("ready") else {
            throw BenchError("a _worker process said \(String(decoding: seen, as: UTF8.self))")
        }
    }

    func go() { input.fileHandleForWriting.write(Data("go\n".utf8)) }

    /// Waits for the child to exit; throws unless it exited with status 0.
    func wait() throws {
        process.waitUntilExit()
        forget()
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            throw BenchError("a _worker process failed (status \(process.terminationStatus))")
        }
    }

    private var status: String { process.isRunning ? "running" : String(process.terminationStatus) }

    /// SIGTERM, then waits for the exit.
    func terminate() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        forget()
    }

    private func forget() {
        let pid = process.processIdentifier
        _ = WorkerProcess.live.withLock { $0.remove(pid) }
    }
}
