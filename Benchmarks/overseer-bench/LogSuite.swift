import Foundation
import Overseer

/// The `log` suite: append throughput (one appender, 64 concurrent appenders), as-of cost against
/// log size, and verify throughput and memory. Every throughput is compared with raw LMDB
/// measured in this run, in the same temp directory, with the same durability (fsync per commit).
struct LogSuite: BenchSuite {
    let name = "log"

    struct Sizes {
        var repetitions = 5
        var singleFacts = 1000          // sequential durable appends per repetition
        var concurrentAppenders = 64
        var runsPerAppender = 12        // 8 facts each: 64 x 96 = 6144 facts per repetition
        var rawBatch100Records = 20_000
        var rawBatch1000Records = 100_000
        var smallLog = 10_000
        var largeLog = 1_000_000
        var asofSamples = 25            // medians over samples of
        var asofCallsPerSample = 20     // calls each
        var verifyRepetitions = 2

        static let full = Sizes()
        static let quick = Sizes(
            repetitions: 3, singleFacts: 120, concurrentAppenders: 64, runsPerAppender: 2,
            rawBatch100Records: 5000, rawBatch1000Records: 20_000, smallLog: 10_000, largeLog: 100_000,
            asofSamples: 15, asofCallsPerSample: 10, verifyRepetitions: 1)
    }

    func run(_ context: BenchContext) async throws {
        let sizes = context.quick ? Sizes.quick : Sizes.full
        if let only = context.verifyOnly {
            try verifyOnly(context, sizes, only)
            return
        }
        if context.store == .postgres { return try await runPostgres(context, sizes) }
        try await appendSingle(context, sizes)
        try await appendConcurrent(context, sizes)
        try await appendWithoutFsync(context, sizes)
        if context.appendOnly { return }
        try history(context, sizes)
    }

    func emit(_ c: BenchContext, _ name: String, _ value: Double, _ unit: String, baseline: Double? = nil, ratio: Double? = nil) {
        c.emit(self.name, name, value: value, unit: unit, baseline: baseline, ratio: ratio)
    }

    /// Pre-submits `count` diamond runs (durable writes of 500 runs each, not timed).
    func submitRuns(_ store: LogStore, prefix: String, count: Int) throws -> [String] {
        let ids = (0..<count).map { "\(prefix)-\($0)" }
        for chunk in stride(from: 0, to: ids.count, by: 500) {
            let plans = ids[chunk..<min(chunk + 500, ids.count)].map { Workload.plan($0, graph: Workload.diamond) }
            try store.writeSync { w in
                for p in plans { _ = try w.submit(p) }
            }
        }
        return ids
    }

    static func appendAll(_ store: LogStore, _ steps: [Step]) async throws {
        for step in steps {
            guard case .append(let draft, let expecting) = step else { continue }
            let outcome = try await store.append(draft, expecting: expecting)
            guard case .appended = outcome else { throw BenchError("append gave \(outcome)") }
        }
    }

    // MARK: append.single

    private func appendSingle(_ c: BenchContext, _ s: Sizes) async throws {
        let rawPath = c.path("raw-single"), storePath = c.path("append-single"), spreadPath = c.path("raw-spread")
        defer { c.remove(rawPath); c.remove(storePath); c.remove(spreadPath) }
        let raw = try RawLMDB(path: rawPath)
        // A fact's commit touches about 11 trees (the log, 5 indexes, 5 views): the same count in
        // raw LMDB, for reference (not the issue's baseline).
        let spread = try RawLMDB(path: spreadPath, databases: 11)
        let store = try LogStore(path: storePath)
        let runsPerRep = s.singleFacts / 8
        // Repetition 0 is a warm-up (file growth, page cache) and is not counted.
        let runs = try submitRuns(store, prefix: "single", count: runsPerRep * (s.repetitions + 1))
        var rawRates: [Double] = [], rates: [Double] = [], spreadRates: [Double] = []
        for rep in 0...s.repetitions {
            let rawRate = Double(s.singleFacts) / (try raw.put(records: s.singleFacts, perCommit: 1))
            let spreadRate = Double(s.singleFacts) / (try spread.putSpread(commits: s.singleFacts))
            let steps = runs[(rep * runsPerRep)..<((rep + 1) * runsPerRep)].flatMap { Workload.diamondJobs($0, worker: 0) }
            let (_, seconds) = try await measureAsync { try await LogSuite.appendAll(store, steps) }
            let rate = Double(steps.count) / seconds
            Progress.say(String(format: "append.single %@: raw %.0f commits/s, raw over 11 trees %.0f commits/s, overseer %.0f facts/s (%.0f us/append), ratio %.3f",
                                rep == 0 ? "warm-up" : "rep \(rep)", rawRate, spreadRate, rate, seconds / Double(steps.count) * 1e6, rate / rawRate))
            if rep > 0 {
                rawRates.append(rawRate)
                rates.append(rate)
                spreadRates.append(spreadRate)
            }
        }
        let rawRate = Stats.median(rawRates), rate = Stats.median(rates), spreadRate = Stats.median(spreadRates)
        emit(c, "raw.put.single", rawRate, "commits/s")
        emit(c, "raw.put.single.11trees", spreadRate, "commits/s", baseline: rawRate, ratio: spreadRate / rawRate)
        emit(c, "append.single", rate, "facts/s", baseline: rawRate, ratio: rate / rawRate)
        emit(c, "append.single.vs_11trees", rate, "facts/s", baseline: spreadRate, ratio: rate / spreadRate)
    }

    // MARK: append.concurrent.64

    private func appendConcurrent(_ c: BenchContext, _ s: Sizes) async throws {
        let raw100 = c.path("raw-batch100"), raw1000 = c.path("raw-batch1000"), storePath = c.path("append-concurrent")
        let rawSpread = c.path("raw-spread-batch"), rawPair = c.path("raw-pair-batch")
        defer { c.remove(raw100); c.remove(raw1000); c.remove(storePath); c.remove(rawSpread); c.remove(rawPair) }
        let r100 = try RawLMDB(path: raw100)
        let r1000 = try RawLMDB(path: raw1000)
        // For reference (not the issue's baseline): the page writes of `n` facts of different jobs
        // in one commit, as raw LMDB: n record sets over 11 trees, 5 of them at scattered keys.
        let spread = try RawLMDB(path: rawSpread, databases: 11)
        // The least any design with a per-job view in the fact's transaction writes: the log
        // (ascending keys) and one view (scattered keys), n record sets per commit.
        let pair = try RawLMDB(path: rawPair, databases: 2)
        let store = try LogStore(path: storePath)
        let n = s.concurrentAppenders
        // Repetition 0 is a warm-up and is not counted.
        let runs = try submitRuns(store, prefix: "conc", count: n * s.runsPerAppender * (s.repetitions + 1))
        var rates100: [Double] = [], rates1000: [Double] = [], rates: [Double] = [], spreadRates: [Double] = [], pairRates: [Double] = []
        for rep in 0...s.repetitions {
            let rate100 = Double(s.rawBatch100Records) / (try r100.put(records: s.rawBatch100Records, perCommit: 100))
            let rate1000 = Double(s.rawBatch1000Records) / (try r1000.put(records: s.rawBatch1000Records, perCommit: 1000))
            let spreadCommits = max(s.rawBatch100Records / n, 1)
            let spreadRate = Double(spreadCommits * n) / (try spread.putSpread(commits: spreadCommits, perCommit: n, scattered: true))
            let pairRate = Double(spreadCommits * n) / (try pair.putSpread(commits: spreadCommits, perCommit: n, scattered: true))
            // Appender a owns runs [base + a*runsPerAppender, ...): its jobs, claimed and finished in order.
            let base = rep * n * s.runsPerAppender
            let scripts: [[Step]] = (0..<n).map { a in
                runs[(base + a * s.runsPerAppender)..<(base + (a + 1) * s.runsPerAppender)].flatMap { Workload.diamondJobs($0, worker: a) }
            }
            let total = scripts.reduce(0) { $0 + $1.count }
            let (_, seconds) = try await measureAsync {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for script in scripts {
                        group.addTask { try await LogSuite.appendAll(store, script) }
                    }
                    try await group.waitForAll()
                }
            }
            let rate = Double(total) / seconds
            Progress.say(String(format: "append.concurrent.%d %@: raw batch100 %.0f rec/s, batch1000 %.0f rec/s, batch%d over 11 trees %.0f sets/s, over 2 trees %.0f sets/s, overseer %.0f facts/s (%d facts in %.2f s), ratio %.3f",
                                n, rep == 0 ? "warm-up" : "rep \(rep)", rate100, rate1000, n, spreadRate, pairRate, rate, total, seconds, rate / rate100))
            if rep > 0 {
                rates100.append(rate100)
                rates1000.append(rate1000)
                rates.append(rate)
                spreadRates.append(spreadRate)
                pairRates.append(pairRate)
            }
        }
        let b100 = Stats.median(rates100), b1000 = Stats.median(rates1000), rate = Stats.median(rates)
        let spreadRate = Stats.median(spreadRates)
        emit(c, "raw.put.batch100", b100, "records/s")
        emit(c, "raw.put.batch1000", b1000, "records/s")
        emit(c, "raw.put.batch\(n).11trees", spreadRate, "record sets/s", baseline: b100, ratio: spreadRate / b100)
        let pairRate = Stats.median(pairRates)
        emit(c, "raw.put.batch\(n).2trees", pairRate, "record sets/s", baseline: b100, ratio: pairRate / b100)
        emit(c, "append.concurrent.\(n)", rate, "facts/s", baseline: b100, ratio: rate / b100)
        emit(c, "append.concurrent.\(n).vs_11trees", rate, "facts/s", baseline: spreadRate, ratio: rate / spreadRate)
    }

    // MARK: diagnostics: the same appends without fsync

    /// The two append workloads on an `.unsafeNoSync` store: what the append path costs apart
    /// from the disk flush (thread hand-off, fold, encoding, page writes). No baseline.
    private func appendWithoutFsync(_ c: BenchContext, _ s: Sizes) async throws {
        let storePath = c.path("append-nosync")
        defer { c.remove(storePath) }
        var options = StoreOptions()
        options.durability = .unsafeNoSync
        let store = try LogStore(path: storePath, options: options)
        let n = s.concurrentAppenders
        let singleRuns = s.singleFacts / 8
        let perRep = singleRuns + n * s.runsPerAppender
        let runs = try submitRuns(store, prefix: "nosync", count: perRep * (s.repetitions + 1))
        var single: [Double] = [], concurrent: [Double] = []
        for rep in 0...s.repetitions {
            var next = rep * perRep
            let steps = runs[next..<(next + singleRuns)].flatMap { Workload.diamondJobs($0, worker: 0) }
            next += singleRuns
            let cpu0 = ProcessMemory.cpuSeconds
            let (_, t1) = try await measureAsync { try await LogSuite.appendAll(store, steps) }
            let cpu1 = ProcessMemory.cpuSeconds
            let scripts: [[Step]] = (0..<n).map { a in
                runs[(next + a * s.runsPerAppender)..<(next + (a + 1) * s.runsPerAppender)].flatMap { Workload.diamondJobs($0, worker: a) }
            }
            let total = scripts.reduce(0) { $0 + $1.count }
            let (_, t2) = try await measureAsync {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for script in scripts { group.addTask { try await LogSuite.appendAll(store, script) } }
                    try await group.waitForAll()
                }
            }
            let cpu2 = ProcessMemory.cpuSeconds
            Progress.say(String(format: "no fsync %@: single %.0f facts/s (%.0f us/append, CPU %.0f us/append), %d concurrent %.0f facts/s (CPU %.1f us/fact)",
                                rep == 0 ? "warm-up" : "rep \(rep)", Double(steps.count) / t1, t1 / Double(steps.count) * 1e6,
                                (cpu1 - cpu0) / Double(steps.count) * 1e6, n, Double(total) / t2, (cpu2 - cpu1) / Double(total) * 1e6))
            if rep > 0 {
                single.append(Double(steps.count) / t1)
                concurrent.append(Double(total) / t2)
            }
        }
        emit(c, "append.single.unsafe_nosync", Stats.median(single), "facts/s")
        emit(c, "append.concurrent.\(n).unsafe_nosync", Stats.median(concurrent), "facts/s")
    }

    // MARK: as-of and verify

    /// Fills `store` the same way every time: diamonds, with the 33-fact fan run "target"
    /// interleaved in the second half of the first `size` facts. Returns the runs made.
    private static func fillSmall(_ store: LogStore, to size: Int) throws -> Int {
        var made = try Workload.fill(store, to: size / 2, runPrefix: "run")
        made += try Workload.fill(store, to: size, runPrefix: "run", firstRun: made,
                                  extra: [Workload.fanRun("target")], extraFacts: Workload.factsPerFan)
        return made
    }

    private func history(_ c: BenchContext, _ s: Sizes) throws {
        let smallPath = c.path("history-small"), largePath = c.path("history-large")
        defer { c.remove(smallPath); c.remove(largePath) }
        var options = StoreOptions()
        options.durability = .unsafeNoSync   // for the fills only; everything measured here reads
        options.initialMapSize = 4 << 30

        // Two stores built by the same deterministic script: the small one stops at `smallLog`
        // facts, the large one goes on to `largeLog`. The target run has the same positions in
        // both, so the as-of query folds the very same facts; only the log around it differs.
        let small = try LogStore(path: smallPath, options: options)
        _ = try LogSuite.fillSmall(small, to: s.smallLog)
        var large: LogStore! = try LogStore(path: largePath, options: options)
        var made = try LogSuite.fillSmall(large, to: s.smallLog)
        let point = try small.lastPosition()
        guard try large.lastPosition() == point,
              let snap = try small.run("target", asOf: .position(point)), snap.jobs.count == 10, snap.run.status == .finished,
              let other = try large.run("target", asOf: .position(point)), other.jobs.count == 10, other.run.status == .finished,
              other.run.createdPosition == snap.run.createdPosition, other.run.position == snap.run.position
        else { throw BenchError("the target run did not come out the same and finished in both stores") }
        Progress.say("small log: \(point) facts; target run: \(try small.history(ofRun: "target").count) facts, positions \(snap.run.createdPosition)...\(snap.run.position)")

        let clock = ContinuousClock()
        let fillStart = clock.now
        var lastReport = 0
        made += try Workload.fill(large, to: s.largeLog, runPrefix: "run", firstRun: made) { have in
            if have - lastReport >= s.largeLog / 10 {
                lastReport = have
                Progress.say(String(format: "fill: %d facts, %.1f s", have, (clock.now - fillStart).seconds))
            }
        }
        let total = try large.lastPosition()
        let filled = Double(total - point), fillSeconds = (clock.now - fillStart).seconds
        Progress.say(String(format: "large log: %d facts (%d runs), filled %.0f facts in %.1f s; data file %.0f MB",
                            total, made + 1, filled, fillSeconds, Double(try large.sizeInBytes()) / 1e6))
        emit(c, "fill.unsafe_nosync", filled / fillSeconds, "facts/s")

        // As-of: samples alternate between the two stores, so load from elsewhere hits both alike.
        let (tSmall, tLarge) = asOfPair(small, large, "target", point, s)
        let smallName = Format.count(s.smallLog), largeName = Format.count(s.largeLog)
        Progress.say(String(format: "asof at %d facts: median %.1f us; at %d facts: median %.1f us", point, tSmall * 1e6, total, tLarge * 1e6))
        emit(c, "asof.run.\(smallName)", tSmall * 1e6, "us")
        emit(c, "asof.run.\(largeName)", tLarge * 1e6, "us", baseline: tSmall * 1e6, ratio: tLarge / tSmall)

        // verify, on the large store closed and opened again (durable, as `overseer verify` in a
        // new process would open it). The first pass maps data.mdb's pages in, so its VmHWM growth
        // includes that file-backed, reclaimable map; RssAnon growth is heap and stacks alone.
        // Later passes run with the map already resident.
        large = nil
        try measureVerify(c, path: largePath, total: total, repetitions: s.verifyRepetitions)
    }

    /// Opens the store at `path` (durable, as `overseer verify` in a new process would) and runs
    /// `verify()` `repetitions` times; emits the median rate and the first pass's memory growth.
    private func measureVerify(_ c: BenchContext, path: String, total: UInt64, repetitions: Int) throws {
        let store = try LogStore(path: path)
        guard try store.lastPosition() == total else { throw BenchError("the reopened store lost facts") }
        var rates: [Double] = []
        for rep in 0..<repetitions {
            let peakReset = ProcessMemory.resetPeak()
            let rss0 = ProcessMemory.rss, anon0 = ProcessMemory.anon, file0 = ProcessMemory.file
            let sampler = MemorySampler()
            let cpu0 = ProcessMemory.cpuSeconds
            let (report, seconds) = try measure { try store.verify() }
            let cpu = ProcessMemory.cpuSeconds - cpu0
            let peaks = sampler.stop()
            let hwm = ProcessMemory.hwm
            guard report.ok, UInt64(report.facts) == total else { throw BenchError("verify: \(report)") }
            rates.append(Double(report.facts) / seconds)
            Progress.say(String(format: "verify rep %d: %d facts in %.2f s = %.0f facts/s (CPU %.2f s, %.2f us/fact); RSS %.0f MB before, VmHWM %.0f MB after (peak reset %@); peak RssAnon +%.1f MB, peak RssFile +%.1f MB; load %@",
                                rep + 1, report.facts, seconds, rates.last!, cpu, cpu / Double(max(1, report.facts)) * 1e6, Double(rss0) / 1e6, Double(hwm) / 1e6,
                                peakReset ? "ok" : "refused", Double(peaks.anon - anon0) / 1e6, Double(peaks.file - file0) / 1e6, loadAverage()))
            if rep == 0 {
                emit(c, "verify.rss_growth", Double(max(hwm, peaks.rss) - rss0) / 1_048_576.0, "MB")
                emit(c, "verify.anon_growth", Double(max(0, peaks.anon - anon0)) / 1_048_576.0, "MB")
            }
        }
        emit(c, "verify", Stats.median(rates), "facts/s")
    }

    /// `log --only verify`: fills a store like the large as-of store (or reuses, and if need be
    /// extends, the one at `--store`), then measures verify alone.
    private func verifyOnly(_ c: BenchContext, _ s: Sizes, _ only: VerifyOnly) throws {
        let target = only.facts ?? s.largeLog
        let path = only.store ?? c.path("verify-only")
        defer { if only.store == nil { c.remove(path) } }
        var options = StoreOptions()
        options.durability = .unsafeNoSync   // for the fill only; verify reopens it durable
        options.initialMapSize = 4 << 30
        var store: LogStore! = try LogStore(path: path, options: options)
        var have = Int(try store.lastPosition())
        if have < target {
            let clock = ContinuousClock()
            let start = clock.now
            // Run names continue after the runs already there (13 facts each, 33 for the fan run).
            var made = have == 0 ? 0 : try store.runs().count
            if have == 0 {
                made = try LogSuite.fillSmall(store, to: min(target, s.smallLog))
            }
            var lastReport = have
            try Workload.fill(store, to: target, runPrefix: "run", firstRun: made) { n in
                if n - lastReport >= max(target / 10, 1) {
                    lastReport = n
                    Progress.say(String(format: "fill: %d facts, %.1f s", n, (clock.now - start).seconds))
                }
            }
            have = Int(try store.lastPosition())
            Progress.say(String(format: "filled to %d facts in %.1f s", have, (clock.now - start).seconds))
        }
        Progress.say(String(format: "verify store %@: %d facts, data file %.0f MB", path, have, Double(try store.sizeInBytes()) / 1e6))
        store = nil
        try measureVerify(c, path: path, total: UInt64(have), repetitions: only.repetitions ?? 3)
    }

    /// Median seconds of one `run(id, asOf: .position(p))` on each store, after a warm-up;
    /// samples alternate between the stores.
    private func asOfPair(_ a: LogStore, _ b: LogStore, _ id: String, _ p: UInt64, _ s: Sizes) -> (Double, Double) {
        for _ in 0..<50 {
            _ = try! a.run(id, asOf: .position(p))
            _ = try! b.run(id, asOf: .position(p))
        }
        var sa: [Double] = [], sb: [Double] = []
        for _ in 0..<s.asofSamples {
            sa.append(asOfSample(a, id, p, s))
            sb.append(asOfSample(b, id, p, s))
        }
        return (Stats.median(sa), Stats.median(sb))
    }

    private func asOfSample(_ store: LogStore, _ id: String, _ p: UInt64, _ s: Sizes) -> Double {
        let (_, t) = measure {
            for _ in 0..<s.asofCallsPerSample { _ = try! store.run(id, asOf: .position(p)) }
        }
        return t / Double(s.asofCallsPerSample)
    }
}
