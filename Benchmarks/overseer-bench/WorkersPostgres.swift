import Foundation
import Overseer
import OverseerPostgres

/// `overseer-bench workers --store postgres`: the PostgreSQL store against the LMDB store, in
/// the same run, on this machine.
///
/// - workers.processes.N.lmdb / .postgres (N = 1, 2, 4): jobs finished per second by N worker
///   processes (`_worker`, 8 slots each, no-op handlers) sharing one store: an LMDB directory on
///   this host, or one PostgreSQL server. Diamond runs are submitted up front; the clock starts
///   when every process has opened the store and ends at the last `job.finished` fact. The
///   postgres line has baseline = the LMDB figure for the same N, ratio = postgres / lmdb.
/// - workers.latency.crossprocess.lmdb / .postgres (and .p99): parent's finish to child's claim,
///   with the children's types handled only by another process (as in the LMDB suite). The
///   postgres lines have the LMDB figures as baselines.
/// - workers.postgres.roundtrips.1slot / .8slots: statements sent to the server per job (each
///   one round trip: the store sends one statement per PQexec), counted in the server's log with
///   `log_statement = all`, for one process with 1 and with 8 slots. Throwaway server only (it
///   needs the superuser); the breakdown goes to stderr.
///
/// Every measurement gets a fresh store: a new schema, or a new LMDB directory.
extension WorkersSuite {
    static let processCounts = [1, 2, 4]
    static let slotsPerProcess = 8

    func runPostgres(_ context: BenchContext) async throws {
        let pg = try context.requirePostgres()
        try await processThroughput(context, pg)
        try await crossProcessLatencyComparison(context, pg)
        if pg.superuser != nil {
            try await roundTrips(context, pg)
        } else {
            Progress.say("workers.postgres.roundtrips: skipped (needs the throwaway server's superuser; run without --url)")
        }
    }

    /// Runs `body` on a fresh store of `kind` (its location: a path or URL), then deletes it.
    func withFreshStore<T>(
        _ context: BenchContext, _ kind: BenchStoreKind, _ tag: String, _ body: (String) async throws -> T
    ) async throws -> T {
        switch kind {
        case .lmdb:
            let path = context.path(tag)
            defer { context.remove(path) }
            return try await body(path)
        case .postgres:
            let pg = try context.requirePostgres()
            let schema = try pg.makeSchema(tag)
            defer { pg.dropSchema(schema.name) }
            return try await body(schema.url)
        }
    }

    // MARK: jobs/s with 1, 2 and 4 processes

    func processThroughput(_ context: BenchContext, _ pg: BenchPostgres) async throws {
        let runs = context.quick ? 100 : 1000
        var rates: [BenchStoreKind: [Int: [Double]]] = [:]
        for rep in 0..<3 {
            for n in WorkersSuite.processCounts {
                // LMDB and PostgreSQL alternate, so a burst of outside load hits both.
                var pair: [BenchStoreKind: Double] = [:]
                for kind in [BenchStoreKind.lmdb, .postgres] {
                    let rate = try await withFreshStore(context, kind, "procs\(n)-\(kind)-\(rep)") { location in
                        try await processRate(location, processes: n, runs: runs)
                    }
                    rates[kind, default: [:]][n, default: []].append(rate)
                    pair[kind] = rate
                }
                Progress.say(String(format: "workers.processes.%d rep %d: lmdb %.0f jobs/s, postgres %.0f jobs/s, ratio %.3f (load %@)",
                                    n, rep, pair[.lmdb]!, pair[.postgres]!, pair[.postgres]! / pair[.lmdb]!, loadAverage()))
            }
        }
        for n in WorkersSuite.processCounts {
            let lmdb = Stats.median(rates[.lmdb]![n]!), postgres = Stats.median(rates[.postgres]![n]!)
            context.emit(name, "workers.processes.\(n).lmdb", value: lmdb, unit: "jobs/s")
            context.emit(name, "workers.processes.\(n).postgres", value: postgres, unit: "jobs/s", baseline: lmdb, ratio: postgres / lmdb)
        }
    }

    /// Jobs/s of `processes` worker processes on the store at `location`, over `runs` diamonds
    /// submitted beforehand.
    func processRate(_ location: String, processes: Int, runs: Int) async throws -> Double {
        let store = try BenchStore.open(location)
        try submitDiamonds(store, count: runs, prefix: "p")
        let before = try store.lastPosition()
        let children = try (0..<processes).map { i in
            try WorkerProcess(
                location: location, types: "start,result1,result2,finish", poll: 10,
                concurrency: WorkersSuite.slotsPerProcess, untilIdle: true, name: "proc\(i)")
        }
        defer { for c in children { c.terminate() } }
        for c in children { try c.waitReady() }
        let go = Instant.now()
        for c in children { c.go() }
        for c in children { try c.wait() }
        let finishes = try store.facts(after: before).filter { $0.kind == .jobFinished }
        guard finishes.count == runs * 4, let last = finishes.map(\.time).max() else {
            throw BenchError("\(finishes.count) of \(runs * 4) jobs finished")
        }
        var perProcess: [String: Int] = [:]
        for f in finishes { perProcess[f.worker ?? "?", default: 0] += 1 }
        let seconds = Double(last.microseconds - go.microseconds) / 1e6
        Progress.say(String(format: "  %@ %d process(es): %d jobs in %.2f s (%@)",
                            BenchStore.isPostgres(location) ? "postgres" : "lmdb", processes, finishes.count, seconds,
                            perProcess.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))
        return Double(finishes.count) / seconds
    }

    // MARK: cross-process latency

    func crossProcessLatencyComparison(_ context: BenchContext, _ pg: BenchPostgres) async throws {
        let lmdb = try await withFreshStore(context, .lmdb, "cross-lmdb") { try await crossProcessLatencies(context, location: $0) }
        let postgres = try await withFreshStore(context, .postgres, "cross") { try await crossProcessLatencies(context, location: $0) }
        guard !lmdb.isEmpty, !postgres.isEmpty else { throw BenchError("no cross-process latencies measured") }
        func p99(_ xs: [Double]) -> Double { xs[min(xs.count - 1, Int(Double(xs.count) * 0.99))] }
        let (lm, lp, pm, pp) = (Stats.median(lmdb), p99(lmdb), Stats.median(postgres), p99(postgres))
        context.emit(name, "workers.latency.crossprocess.lmdb", value: lm, unit: "ms")
        context.emit(name, "workers.latency.crossprocess.lmdb.p99", value: lp, unit: "ms")
        context.emit(name, "workers.latency.crossprocess.postgres", value: pm, unit: "ms", baseline: lm, ratio: pm / lm)
        context.emit(name, "workers.latency.crossprocess.postgres.p99", value: pp, unit: "ms", baseline: lp, ratio: pp / lp)
    }

    // MARK: round trips per job

    func roundTrips(_ context: BenchContext, _ pg: BenchPostgres) async throws {
        let runs = context.quick ? 25 : 100
        for slots in [1, WorkersSuite.slotsPerProcess] {
            let count = try await withFreshStore(context, .postgres, "rt\(slots)") { url in
                try await countStatements(pg, url: url, runs: runs, slots: slots)
            }
            let jobs = Double(runs * 4)
            var lines = [String(format: "workers.postgres.roundtrips.%d: %d statements for %d jobs (%.1f per job), %d write and %d read transactions (%.2f and %.2f per job)",
                                slots, count.total, runs * 4, Double(count.total) / jobs, count.writes, count.reads,
                                Double(count.writes) / jobs, Double(count.reads) / jobs)]
            for (what, n) in count.byKind.sorted(by: { $0.value > $1.value }) {
                lines.append(String(format: "  %7.2f per job  %@", Double(n) / jobs, what))
            }
            Progress.say(lines.joined(separator: "\n"))
            context.emit(name, "workers.postgres.roundtrips.\(slots == 1 ? "1slot" : "\(slots)slots")", value: Double(count.total) / jobs, unit: "round trips/job")
        }
    }

    struct StatementCount {
        var total = 0
        var writes = 0
        var reads = 0
        var byKind: [String: Int] = [:]
    }

    /// One `_worker` process with `slots` slots works `runs` diamonds while the server logs every
    /// statement of the overseer role's new sessions; returns what that process sent.
    func countStatements(_ pg: BenchPostgres, url: String, runs: Int, slots: Int) async throws -> StatementCount {
        guard let logPath = pg.logPath else { throw BenchError("no server log") }
        let store = try BenchStore.open(url)
        try submitDiamonds(store, count: runs, prefix: "rt")
        // Only sessions that start after this log their statements: the child's, not ours. Kept
        // on until the child ends, since it may open more connections (its read pool grows).
        try pg.asSuperuser("ALTER ROLE overseer SET log_statement = 'all'")
        defer { try? pg.asSuperuser("ALTER ROLE overseer RESET log_statement") }
        let child = try WorkerProcess(location: url, types: "start,result1,result2,finish", poll: 10, concurrency: slots, untilIdle: true, name: "rt")
        defer { child.terminate() }
        try child.waitReady()
        // What the child sent while opening the store and warming up is already in the log.
        let offset = (try? FileManager.default.attributesOfItem(atPath: logPath)[.size] as? Int) ?? 0
        child.go()
        try child.wait()
        let finished = try store.runs().filter { $0.status == .finished }.count
        guard finished == runs else { throw BenchError("\(finished) of \(runs) runs finished") }
        // The server writes its log asynchronously from many backends; give it a moment.
        try await Task.sleep(for: .milliseconds(200))
        guard let handle = FileHandle(forReadingAtPath: logPath) else { throw BenchError("cannot read \(logPath)") }
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        let text = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
        return WorkersSuite.classify(text)
    }

    /// Counts the statements in a server log written with `log_statement = all`. Point reads
    /// are split by key space (from the DETAIL line with their parameters).
    static func classify(_ log: String) -> StatementCount {
        var count = StatementCount()
        var pendingGet: [String: Bool] = [:]  // backend pid -> its last statement was a kv get
        for line in log.split(separator: "\n") {
            guard let bracket = line.firstIndex(of: "["), let close = line[bracket...].firstIndex(of: "]") else { continue }
            let pid = String(line[line.index(after: bracket)..<close])
            if let r = line.range(of: "arameters: "), line.contains("DETAIL:"), pendingGet[pid] == true {
                pendingGet[pid] = false
                let params = line[r.upperBound...]
                var space = "?"
                if let eq = params.range(of: "$1 = '") {
                    let digits = params[eq.upperBound...].prefix { $0.isNumber }
                    if let n = Int(digits), n < StoreLayout.spaces.count { space = StoreLayout.spaces[n] }
                }
                count.byKind["get kv (point read)", default: 0] -= 1
                count.byKind["get kv: \(space)", default: 0] += 1
                continue
            }
            let sql: Substring
            if let r = line.range(of: "LOG:  statement: ") {
                sql = line[r.upperBound...]
            } else if let r = line.range(of: "LOG:  execute "), let colon = line[r.upperBound...].range(of: ": ") {
                sql = line[colon.upperBound...]
            } else {
                continue
            }
            count.total += 1
            pendingGet[pid] = false
            let kind: String
            if sql.hasPrefix("BEGIN ISOLATION LEVEL READ COMMITTED") {
                kind = sql.contains("FOR UPDATE") ? "BEGIN + lock head (write)" : "BEGIN (write)"
                count.writes += 1
            } else if sql.hasPrefix("BEGIN") {
                kind = "BEGIN (read)"
                count.reads += 1
            } else if sql.hasPrefix("COMMIT") {
                kind = "COMMIT"
            } else if sql.hasPrefix("ROLLBACK") {
                kind = "ROLLBACK"
            } else if sql.contains("FOR UPDATE") {
                kind = "lock head (SELECT ... FOR UPDATE)"
            } else if sql.hasPrefix("SELECT v FROM overseer_kv WHERE space = $1 AND k = $2") {
                kind = "get kv (point read)"
                pendingGet[pid] = true
            } else if sql.hasPrefix("SELECT line FROM overseer_facts WHERE position = $1") {
                kind = "get fact"
            } else if sql.hasPrefix("SELECT k, v FROM overseer_kv") {
                kind = "scan kv (range)"
            } else if sql.hasPrefix("SELECT position, line FROM overseer_facts") {
                kind = "scan facts (range)"
            } else if sql.hasPrefix("WITH w0 AS (") {
                kind = "flush (deletes, upserts and facts in one statement)"
            } else if sql.hasPrefix("INSERT INTO overseer_facts") {
                kind = "insert facts"
            } else if sql.hasPrefix("INSERT INTO overseer_kv") {
                kind = "upsert kv"
            } else if sql.hasPrefix("DELETE FROM overseer_kv") {
                kind = "delete kv"
            } else if sql.contains("pg_notify") {
                kind = sql.contains("COMMIT") ? "pg_notify + COMMIT" : "pg_notify"
            } else if sql.hasPrefix("LISTEN") {
                kind = "LISTEN"
            } else {
                kind = "other: " + sql.prefix(60)
            }
            count.byKind[kind, default: 0] += 1
        }
        count.byKind = count.byKind.filter { $0.value != 0 }
        return count
    }
}
