import Foundation
import Overseer
import Synchronization

struct TortureConfig {
    var seed: UInt64 = 1
    var minutes: Double = 1
    var workers = 3
    var storeDir: String?
    var diskFull = false
    var points = 1000
    var flips = 200
    var keep = false
    var fullHold = 6.0
    var verbose = false
}

/// One worker process slot: killed and restarted, stopped and continued.
final class WorkerSlot {
    let index: Int
    var generation = 0
    var process: Process?
    var name = ""
    var leaseMilliseconds = 1500
    var stoppedUntil: Date?
    /// Set when the harness killed or terminated it on purpose.
    var expectedEnd = false

    init(index: Int) { self.index = index }
    var isAlive: Bool { process?.isRunning ?? false }
}

/// Sends SIGCONT to paused workers when their pause ends, on its own thread: the harness's main
/// loop may itself be waiting for the store's write lock, which a paused worker can hold.
final class Resumer: Sendable {
    private let pending = Mutex<[(pid: pid_t, at: Date)]>([])

    init() {
        Thread.detachNewThread { [self] in
            while true {
                let now = Date()
                let due = self.pending.withLock { list -> [pid_t] in
                    let due = list.filter { $0.at <= now }.map(\.pid)
                    list.removeAll { $0.at <= now }
                    return due
                }
                for pid in due { kill(pid, SIGCONT) }
                usleep(20_000)
            }
        }
    }

    func resume(_ pid: pid_t, at: Date) { pending.withLock { $0.append((pid, at)) } }

    func resumeAll() {
        let all = pending.withLock { list -> [pid_t] in
            defer { list.removeAll() }
            return list.map(\.pid)
        }
        for pid in all { kill(pid, SIGCONT) }
    }
}

/// Runs the torture: worker processes on one store, faults at random moments, then the checker.
final class Orchestrator {
    let config: TortureConfig
    let workDir: String
    let storeDir: String
    let selfPath: String
    var rng: TortureRNG
    var faults: [String: Int] = [:]
    var violations: [String] = []
    var notes: [String] = []
    var slots: [WorkerSlot] = []
    var journals: [String] = []
    let ownJournal: Journal
    var store: LogStore?
    var nextRun = 0
    var mounted = false
    var diskState = "off"  // off, filling, full, freed
    var fullSince: Date?
    var fillPad = 96 << 10
    var fullHold = 6.0
    var freedAt: Date?
    var freedAtPosition: UInt64 = 0
    let started = Date()
    let resumer = Resumer()

    init(_ config: TortureConfig) {
        self.config = config
        rng = TortureRNG.stream(config.seed, "faults")
        fullHold = config.fullHold
        let base = FileManager.default.temporaryDirectory.path
        workDir = base + "/overseer-torture-\(config.seed)-\(getpid())"
        storeDir = config.storeDir ?? (workDir + "/store")
        try? FileManager.default.createDirectory(atPath: workDir + "/journals", withIntermediateDirectories: true)
        let own = workDir + "/journals/harness.log"
        ownJournal = Journal(path: own)
        journals.append(own)
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        selfPath = n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    }

    func log(_ s: String) {
        let t = String(format: "%6.1f", Date().timeIntervalSince(started))
        FileHandle.standardError.write(Data("[\(t)s] \(s)\n".utf8))
    }

    func count(_ fault: String, _ n: Int = 1) { faults[fault, default: 0] += n }

    // MARK: Entry

    func run() async -> Int32 {
        log("seed \(config.seed): \(config.minutes) min, \(config.workers) workers, work dir \(workDir)\(config.diskFull ? ", disk full on tmpfs" : "")")
        if config.diskFull {
            guard geteuid() == 0 else {
                log("--disk-full needs root (it mounts a tmpfs)")
                return 2
            }
            try? FileManager.default.createDirectory(atPath: storeDir, withIntermediateDirectories: true)
            guard shell(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", storeDir]) == 0 else {
                log("cannot mount a tmpfs on \(storeDir) (exit 77: skipped)")
                try? FileManager.default.removeItem(atPath: workDir)
                return 77
            }
            mounted = true
            diskState = "filling"
        }
        defer { if mounted { unmount() } }
        let quiescent: Bool
        do {
            let store = try openTortureStore(storeDir)
            self.store = store
            // Three runs to start with, then the workers.
            for _ in 0..<3 { await submitRun(pad: 0) }
            for i in 0..<config.workers {
                let slot = WorkerSlot(index: i)
                slots.append(slot)
                start(slot)
            }
            await faultPhase()
            quiescent = await drain()
            stopWorkers()
            let report = try store.verify()
            if !report.ok { violations.append("store.verify() after the run: \(report)") }
        } catch {
            violations.append("the harness failed: \(error)")
            stopWorkers()
            store = nil
            return finish(nil, quiescent: false)
        }
        let result = check(quiescent: quiescent)
        store = nil
        if mounted { unmount() }
        return finish(result, quiescent: quiescent)
    }

    // MARK: Processes

    func start(_ slot: WorkerSlot) {
        slot.generation += 1
        slot.name = "w\(slot.index)g\(slot.generation)"
        slot.leaseMilliseconds = rng.int(1000...2000)
        slot.expectedEnd = false
        slot.stoppedUntil = nil
        let journal = workDir + "/journals/\(slot.name).log"
        journals.append(journal)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: selfPath)
        p.arguments = [
            "worker", "--store", storeDir, "--seed", String(config.seed), "--journal", journal, "--name", slot.name,
            "--concurrency", String(rng.int(2...4)), "--lease-ms", String(slot.leaseMilliseconds),
        ]
        let err = workDir + "/\(slot.name).err"
        _ = FileManager.default.createFile(atPath: err, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: err)
        p.standardOutput = FileHandle(forWritingAtPath: err)
        p.standardInput = FileHandle.nullDevice
        do {
            try p.run()
        } catch {
            violations.append("cannot start worker \(slot.name): \(error)")
            return
        }
        slot.process = p
    }

    /// Restarts workers that ended; one that ended without being told to is a finding.
    func reap() {
        for slot in slots {
            guard let p = slot.process, !p.isRunning else { continue }
            if !slot.expectedEnd {
                let err = (try? String(contentsOfFile: workDir + "/\(slot.name).err", encoding: .utf8)) ?? ""
                let tail = err.split(separator: "\n").suffix(5).joined(separator: " | ")
                violations.append("worker \(slot.name) ended by itself (\(p.terminationReason == .uncaughtSignal ? "signal" : "exit") \(p.terminationStatus)): \(tail)")
            }
            start(slot)
        }
    }

    func stopWorkers() {
        for slot in slots where slot.isAlive {
            slot.expectedEnd = true
            kill(slot.process!.processIdentifier, SIGCONT)
            kill(slot.process!.processIdentifier, SIGTERM)
        }
        let deadline = Date().addingTimeInterval(20)
        while slots.contains(where: \.isAlive) && Date() < deadline { usleep(50_000) }
        for slot in slots where slot.isAlive {
            violations.append("worker \(slot.name) did not stop within 20 s of SIGTERM (shutdown grace 2 s); killed")
            kill(slot.process!.processIdentifier, SIGKILL)
            slot.process!.waitUntilExit()
        }
    }

    @discardableResult
    func shell(_ argv: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = argv
        do { try p.run() } catch { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    func unmount() {
        store = nil
        if shell(["umount", storeDir]) != 0 {
            notes.append("umount \(storeDir) failed; unmounting lazily")
            shell(["umount", "-l", storeDir])
        }
        mounted = false
    }

    // MARK: Faults

    func faultPhase() async {
        let end = started.addingTimeInterval(config.minutes * 60)
        let dt = 0.1
        while Date() < end {
            reap()
            let now = Date()
            for slot in slots {
                if let until = slot.stoppedUntil, now >= until { slot.stoppedUntil = nil }  // the resumer sent SIGCONT
            }
            let live = slots.filter { $0.isAlive && $0.stoppedUntil == nil }
            if live.count > 1, rng.chance(0.25 * dt), let victim = rng.pick(live) {
                victim.expectedEnd = true
                kill(victim.process!.processIdentifier, SIGKILL)
                victim.process!.waitUntilExit()
                count("sigkill")
                if config.verbose { log("SIGKILL \(victim.name)") }
                start(victim)
            }
            if live.count > 1, rng.chance(0.15 * dt), let victim = rng.pick(live) {
                kill(victim.process!.processIdentifier, SIGSTOP)
                let pause = Double(victim.leaseMilliseconds) / 1000 + rng.double(0.3, 2.5)
                victim.stoppedUntil = Date().addingTimeInterval(pause)
                resumer.resume(victim.process!.processIdentifier, at: victim.stoppedUntil!)
                count("sigstop")
                if config.verbose { log("SIGSTOP \(victim.name) for \(String(format: "%.1f", pause)) s") }
            }
            await operatorActions(dt)
            await submissions(dt)
            try? await Task.sleep(for: .milliseconds(Int(dt * 1000)))
        }
        resumer.resumeAll()
        for slot in slots { slot.stoppedUntil = nil }
    }

    func runningRuns() -> [RunState] {
        ((try? store!.runs()) ?? []).filter { $0.status == .running }
    }

    func submitRun(pad: Int) async {
        guard let store else { return }
        let spec = pad > 0 ? fillerRun(pad: pad) : Scenario.run(seed: config.seed, index: nextRun)
        let plan = RunPlan(id: spec.id, graph: JobGraph(spec.graph), args: spec.args, name: spec.shape, priority: spec.priority)
        do {
            let outcome = try await store.submit(plan, author: .operator("torture"))
            if case .created(_, let facts) = outcome { ownJournal.ack(facts) }
            nextRun += 1
            count(nextRun > 3 ? "submit_during_run" : "submit_initial")
        } catch let e as StoreError where e.code == .full {
            count("submit_refused_disk_full")
            onFull(e, by: "submit")
        } catch let e as StoreError where mounted && e.code == .io && e.message.contains("Input/output error") {
            count("submit_refused_disk_full")
            // LMDB turns a short write (the file system filled up mid-write) into EIO.
            if diskState == "filling", !notes.contains(where: { $0.hasPrefix("a full disk was reported") }) { notes.append("a full disk was reported as StoreError.io (EIO from LMDB's short write), not .full: \(e.message)") }
            onFull(e, by: "submit")
        } catch {
            violations.append("submit of \(spec.id) failed: \(error)")
            nextRun += 1
        }
    }

    /// A one-job run whose args are `pad` bytes: the disk-full scenario fills the tmpfs with these.
    func fillerRun(pad: Int) -> RunSpec {
        let id = String(format: "f%04d", nextRun)
        let args: JSONValue = ["script": ["t00": ["finish"]], "pad": .string(String(repeating: "z", count: pad))]
        return RunSpec(id: id, shape: "filler", graph: ["t00": []], args: args, priority: 0)
    }

    /// A padded submit failed: go on with smaller ones (then with small appends).
    func onFull(_ e: StoreError, by: String) {
        guard diskState == "filling" else { return }
        if fillPad == 96 << 10 { log("disk full for \(fillPad >> 10) KiB runs (\(by)): \(e.message)") }
        fillPad = fillPad > 4096 ? fillPad / 4 : 0
    }

    func submissions(_ dt: Double) async {
        switch diskState {
        case "filling":
            // Fill the tmpfs (from a tenth of the way in): padded one-job runs, then ever smaller
            // appends, until even a small fact cannot be written.
            if Date().timeIntervalSince(started) > config.minutes * 6 {
                if fillPad > 0 {
                    await submitRun(pad: fillPad)
                } else {
                    do {
                        let f = try await store!.append(FactDraft(kind: .workerStarted, author: Author(name: "torture-filler"), data: ["pad": .string(String(repeating: "f", count: 512))]), expecting: nil)
                        if let fact = f.fact { ownJournal.ack(fact) }
                    } catch let e as StoreError where e.code == .full || e.message.contains("Input/output error") {
                        diskState = "full"
                        fullSince = Date()
                        count("disk_full")
                        log("disk full, even for small appends: \(e.message)")
                    } catch {
                        violations.append("an append on a filling disk failed with \(error)")
                    }
                }
            }
            if Date().timeIntervalSince(started) > config.minutes * 60 * 0.7 {
                violations.append("the disk-full scenario never filled the disk")
                diskState = "off"
            }
        case "full":
            // Full: everything fails cleanly; the log must stay readable and consistent.
            if let since = fullSince, Date().timeIntervalSince(since) > fullHold {
                if let report = try? store!.verify() {
                    if !report.ok { violations.append("store.verify() while the disk is full: \(report)") }
                } else {
                    violations.append("store.verify() threw while the disk is full")
                }
                do {
                    _ = try await store!.append(FactDraft(kind: .workerStarted, author: Author(name: "torture-probe")), expecting: nil)
                    notes.append("an append succeeded while the disk was full (LMDB reused free pages)")
                } catch let e as StoreError where e.code == .full || e.message.contains("Input/output error") {
                    // Reported (EIO: LMDB's short write).
                } catch {
                    violations.append("an append on a full disk failed with \(error), not StoreError.full")
                }
                guard shell(["mount", "-o", "remount,size=64m", storeDir]) == 0 else {
                    violations.append("cannot remount \(storeDir) larger")
                    diskState = "off"
                    return
                }
                diskState = "freed"
                freedAt = Date()
                freedAtPosition = (try? store!.lastPosition()) ?? 0
                count("disk_freed")
                log("disk space freed (remounted at 64 MiB) at position \(freedAtPosition)")
            }
        case "freed":
            if let at = freedAt, Date().timeIntervalSince(at) > 10 {
                let now = (try? store!.lastPosition()) ?? 0
                if now <= freedAtPosition { violations.append("no progress in the 10 s after disk space was freed (log at \(now))") }
                freedAt = nil
            }
        default:
            break
        }
        let running = runningRuns().count
        if running < 2 || (running < 7 && rng.chance(0.5 * dt)) { await submitRun(pad: 0) }
    }

    func operatorActions(_ dt: Double) async {
        guard let store else { return }
        let overseer = Overseer(log: store)
        let op = Author.operator("torture")
        if rng.chance(0.25 * dt), let run = rng.pick(runningRuns()), let snap = try? store.snapshot(ofRun: run.id) {
            let candidates = snap.jobs.filter { $0.status == .unstarted || $0.status == .started || $0.status == .failed }
            if let job = rng.pick(candidates) {
                do {
                    ownJournal.ack(try await overseer.abort(job: job.id, reason: "torture: operator abort", by: op))
                    count("operator_abort_job")
                } catch {
                    count("operator_abort_job_refused")
                }
            }
        }
        if rng.chance(0.05 * dt), let run = rng.pick(runningRuns()) {
            do {
                ownJournal.ack(try await overseer.abort(run: run.id, reason: "torture: operator abort of the run", by: op))
                count("operator_abort_run")
            } catch {
                count("operator_abort_run_refused")
            }
        }
        if rng.chance(0.5 * dt), let runs = try? store.runs(), let run = rng.pick(Array(runs.suffix(12))), let snap = try? store.snapshot(ofRun: run.id) {
            let candidates = snap.jobs.filter { $0.status == .failed || $0.status == .aborted }
            if let job = rng.pick(candidates) {
                do {
                    ownJournal.ack(try await overseer.retry(job: job.id, reason: "torture: operator retry", by: op))
                    count("operator_retry")
                } catch {
                    count("operator_retry_refused")
                }
            }
        }
    }

    // MARK: The end

    /// Lets every worker run until no run is running. Returns whether that happened in time.
    func drain() async -> Bool {
        if mounted, diskState != "freed" {
            if shell(["mount", "-o", "remount,size=64m", storeDir]) != 0 { violations.append("cannot remount \(storeDir) larger") }
            log("disk space freed (remounted at 64 MiB) before draining")
            if diskState == "full" { count("disk_freed") }
            diskState = "freed"
        }
        log("fault phase over (\(faults.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))); draining")
        let deadline = Date().addingTimeInterval(240)
        var lastReport = Date()
        while Date() < deadline {
            reap()
            let running = runningRuns()
            if running.isEmpty {
                log("quiescent: every run has ended")
                return true
            }
            if Date().timeIntervalSince(lastReport) > 15 {
                log("still running: \(running.prefix(6).map(\.id).joined(separator: ", "))\(running.count > 6 ? " …" : "")")
                lastReport = Date()
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
        let running = runningRuns()
        var detail: [String] = []
        for r in running.prefix(3) {
            for j in (try? store!.jobs(inRun: r.id)) ?? [] where j.status == .started || (j.status == .unstarted && j.readySince != nil) {
                detail.append("\(j.id) \(j.status) attempt \(j.attempt) not_before \(j.notBefore?.rfc3339 ?? "-")")
            }
        }
        violations.append("not quiescent 240 s after the faults stopped: \(running.count) runs still running; \(detail.prefix(6).joined(separator: "; "))")
        return false
    }

    func check(quiescent: Bool) -> CheckerResult? {
        guard let store else { return nil }
        let export = workDir + "/export.jsonl"
        do {
            try store.export(to: export)
        } catch {
            violations.append("export failed: \(error)")
            return nil
        }
        log("checking \(export)")
        let t0 = Date()
        let input = CheckerInput(
            exportPath: export, journals: journals, limits: TypeTable.limits(seed: config.seed), store: store,
            points: config.points, flips: config.flips, seed: config.seed, quiescent: quiescent)
        var checker = Checker(input)
        let result = checker.run()
        log("checked in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s (\(result.seconds.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.1f", $0.value)) s" }.joined(separator: ", ")))")
        return result
    }

    func finish(_ result: CheckerResult?, quiescent: Bool) -> Int32 {
        var all = violations
        if let result { all += result.violations }
        let total = violations.count + (result?.violationCount ?? 0)
        func list(_ d: [String: Int]) -> String { d.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") }
        var out: [String] = []
        out.append("overseer-torture summary")
        out.append("  seed \(config.seed), \(config.minutes) min of faults, \(config.workers) workers\(config.diskFull ? ", disk full on an 8 MiB tmpfs" : ""); \(String(format: "%.0f", Date().timeIntervalSince(started))) s in all")
        out.append("  faults injected: \(list(faults))")
        if let r = result {
            out.append("  runs \(r.runs) (\(list(r.runStatus))), jobs \(r.jobs) (\(list(r.finalStatus)); blocked with a named reason \(r.blocked))")
            out.append("  facts checked \(r.facts) (\(list(r.kinds)))")
            out.append("  releases: \(list(r.releases))")
            out.append("  acknowledged appends checked \(r.acks) from \(r.journalsRead) journals; store errors seen by workers \(r.storeErrorsSeen)")
            out.append("  state(asOf:) compared at \(r.asOfPoints) points; flipped bytes detected \(r.flipsDetected)/\(r.flipsTried)")
        }
        out.append("  quiescent at the end: \(quiescent ? "yes" : "NO")")
        for n in notes { out.append("  note: \(n)") }
        out.append("  violations: \(total)")
        for v in all.prefix(40) { out.append("    - \(v)") }
        if total > 0 {
            out.append("REPRODUCE: swift run -c release overseer-torture --seed \(config.seed) --minutes \(config.minutes) --workers \(config.workers)\(config.diskFull ? " --disk-full" : "")")
            out.append("  (work dir kept: \(workDir))")
        }
        // One machine-readable line for scripts and docs.
        var json: [String: Any] = ["seed": config.seed, "minutes": config.minutes, "workers": config.workers, "disk_full": config.diskFull, "faults": faults, "violations": total, "quiescent": quiescent]
        if let r = result {
            json["runs"] = r.runs
            json["jobs"] = r.jobs
            json["facts"] = r.facts
            json["acks"] = r.acks
            json["as_of_points"] = r.asOfPoints
            json["flips_detected"] = r.flipsDetected
            json["flips"] = r.flipsTried
        }
        if let data = try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]) {
            out.append("RESULT " + String(decoding: data, as: UTF8.self))
        }
        FileHandle.standardOutput.write(Data((out.joined(separator: "\n") + "\n").utf8))
        if total == 0 && !config.keep {
            try? FileManager.default.removeItem(atPath: workDir)
        }
        return total == 0 ? 0 : 1
    }
}
