import Foundation
import Overseer

/// `overseer-bench log --store postgres`: the two durable append workloads of the log suite on
/// the PostgreSQL store and on the LMDB store, alternating within each repetition.
///
/// - append.single.lmdb / .postgres: one appender, sequential durable `store.append` calls
///   (claims and finishes of pre-submitted diamonds). The postgres line's baseline is the LMDB one.
/// - append.concurrent.64.lmdb / .postgres: 64 tasks appending at once (group commit).
///
/// Each store is fresh (a new LMDB directory, a new schema). Repetition 0 is a warm-up.
extension LogSuite {
    func runPostgres(_ c: BenchContext, _ s: Sizes) async throws {
        let pg = try c.requirePostgres()
        let lmdbPath = c.path("append-lmdb")
        let schema = try pg.makeSchema("append")
        defer {
            c.remove(lmdbPath)
            pg.dropSchema(schema.name)
        }
        let stores: [(String, LogStore)] = [("lmdb", try LogStore(path: lmdbPath)), ("postgres", try LogStore.postgres(schema.url))]
        let n = s.concurrentAppenders
        let singleRuns = s.singleFacts / 8
        let concurrentRuns = n * s.runsPerAppender
        let perRep = singleRuns + concurrentRuns
        var runs: [String: [String]] = [:]
        for (kind, store) in stores {
            runs[kind] = try submitRuns(store, prefix: "cmp", count: perRep * (s.repetitions + 1))
        }
        var single: [String: [Double]] = [:], concurrent: [String: [Double]] = [:]
        for rep in 0...s.repetitions {
            var line: [String] = []
            for (kind, store) in stores {
                let ids = runs[kind]!
                let base = rep * perRep
                let steps = ids[base..<(base + singleRuns)].flatMap { Workload.diamondJobs($0, worker: 0) }
                let (_, t1) = try await measureAsync { try await LogSuite.appendAll(store, steps) }
                let first = base + singleRuns
                let scripts: [[Step]] = (0..<n).map { a in
                    ids[(first + a * s.runsPerAppender)..<(first + (a + 1) * s.runsPerAppender)].flatMap { Workload.diamondJobs($0, worker: a) }
                }
                let total = scripts.reduce(0) { $0 + $1.count }
                let (_, t2) = try await measureAsync {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for script in scripts { group.addTask { try await LogSuite.appendAll(store, script) } }
                        try await group.waitForAll()
                    }
                }
                let r1 = Double(steps.count) / t1, r2 = Double(total) / t2
                line.append(String(format: "%@ single %.0f facts/s (%.0f us/append), %d concurrent %.0f facts/s", kind, r1, t1 / Double(steps.count) * 1e6, n, r2))
                if rep > 0 {
                    single[kind, default: []].append(r1)
                    concurrent[kind, default: []].append(r2)
                }
            }
            Progress.say("append \(rep == 0 ? "warm-up" : "rep \(rep)"): " + line.joined(separator: "; "))
        }
        for (label, rates) in [("append.single", single), ("append.concurrent.\(n)", concurrent)] {
            let lmdb = Stats.median(rates["lmdb"]!), postgres = Stats.median(rates["postgres"]!)
            emit(c, "\(label).lmdb", lmdb, "facts/s")
            emit(c, "\(label).postgres", postgres, "facts/s", baseline: lmdb, ratio: postgres / lmdb)
        }
    }
}
