import Foundation
import Overseer
import OverseerPostgres
import Testing

/// The store contract: every test here runs unchanged over the embedded LMDB store and over
/// PostgreSQL (a real server, started by `make test`; see docs/postgres.md).
@Suite("Store contract", .serialized)
struct StoreContractTests {
    static let kinds = TestStores.kinds

    @Test(arguments: kinds)
    func positionsAreDenseChainedAndTimesNeverDecrease(kind: StoreKind) async throws {
        try await TestStores.with(kind) { store in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for t in 0..<8 {
                    group.addTask {
                        for i in 0..<10 {
                            let d = FactDraft(kind: .workerStarted, author: Author(name: "w\(t)"), reason: "n\(i)")
                            let outcome = try await store.append(d, expecting: nil)
                            #expect(outcome.fact != nil)
                        }
                    }
                }
                try await group.waitForAll()
            }
            let facts = try store.facts(after: 0)
            #expect(facts.map(\.position) == Array(1...80))
            #expect(try store.lastPosition() == 80)
            var prev = Digest.zero
            var time = Instant(microseconds: Int64.min)
            for f in facts {
                #expect(f.prev == prev)
                #expect(f.time >= time)
                prev = f.hash
                time = f.time
            }
            #expect(try store.headHash() == prev)
        }
    }

    @Test(arguments: kinds)
    func compareAndAppendHasExactlyOneWinner(kind: StoreKind) async throws {
        try await TestStores.with(kind) { store in
            let run = try await store.submit(RunPlan(id: "race", graph: ["a": [], "b": []], args: .object([:])))
            #expect(run.run == "race")
            let outcomes = try await withThrowingTaskGroup(of: AppendOutcome.self) { group in
                for w in 0..<16 {
                    group.addTask {
                        let claim = FactDraft(kind: .jobClaimed, run: "race", job: "race/a", author: Author(name: "w\(w)"), attempt: 1, data: ["lease_ms": 60_000])
                        return try await store.append(claim, expecting: 1)
                    }
                }
                return try await group.reduce(into: [AppendOutcome]()) { $0.append($1) }
            }
            #expect(outcomes.filter { if case .appended = $0 { true } else { false } }.count == 1)
            #expect(outcomes.filter { $0 == .conflict(expected: 1, actual: 2) }.count == 15)
            let job = try #require(try store.job("race/a"))
            #expect(job.status == .started && job.revision == 2)
        }
    }

    @Test(arguments: kinds)
    func aFailedRequestDoesNotFailItsBatch(kind: StoreKind) async throws {
        try await TestStores.with(kind) { store in
            struct Refused: Error {}
            let results = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<24 {
                    group.addTask {
                        do {
                            try await store.write { w in
                                _ = try w.append(FactDraft(kind: .workerStarted, author: Author(name: "w\(i)")), expecting: nil)
                                if i % 3 == 0 { throw Refused() }
                            }
                            return true
                        } catch is Refused {
                            return false
                        }
                    }
                }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(results.filter { $0 }.count == 16)
            let facts = try store.facts(after: 0)
            #expect(facts.count == 16)
            #expect(facts.map(\.position) == Array(1...16))
            #expect(Set(facts.compactMap(\.worker)).count == 16)
        }
    }

    @Test(arguments: kinds)
    func appendingAKnownFactIDIsANoOp(kind: StoreKind) async throws {
        try await TestStores.with(kind) { store in
            let d = FactDraft(kind: .workerStarted, author: Author(name: "w"))
            let first = try await store.append(d, expecting: nil)
            let again = try await store.append(d, expecting: nil)
            guard case .appended(let a) = first, case .duplicate(let b) = again else {
                Issue.record("got \(first), \(again)")
                return
            }
            #expect(a == b)
            #expect(try store.lastPosition() == 1)
        }
    }

    @Test(arguments: kinds)
    func queriesAndTimeTravel(kind: StoreKind) async throws {
        try await TestStores.with(kind) { store in
            let overseer = Overseer(log: store)
            let handlers: Handlers = ["start": { _ in }, "result1": { _ in }, "result2": { _ in }, "finish": { _ in }]
            let snapshot = try await overseer.run(TestStores.diamond, handlers: handlers, run: "d1", args: ["org": 42])
            #expect(snapshot.run.status == .finished)
            #expect(snapshot.jobs.allSatisfy { $0.status == .finished })
            let all = try store.facts(after: 0)
            #expect(try store.history(ofRun: "d1").map(\.position) == all.filter { $0.run == "d1" }.map(\.position))
            #expect(try store.history(ofJob: "d1/finish").allSatisfy { $0.job == "d1/finish" })
            #expect(try store.history(ofJob: "d1/finish").count >= 3)
            #expect(try store.facts(after: 3).first?.position == 4)
            let range = all[2].time...all[all.count - 2].time
            #expect(try store.facts(in: range).map(\.position) == all.filter { range.contains($0.time) }.map(\.position))
            // As of every position, the run's state equals a fold of the prefix.
            for p in stride(from: UInt64(1), through: UInt64(all.count), by: 1) {
                var model = MemoryViews()
                for f in all.prefix(Int(p)) { try model.apply(f) }
                let asOf = try store.run("d1", asOf: .position(p))
                #expect(asOf?.run == model.runs["d1"], "position \(p)")
                #expect(try store.job("d1/finish", asOf: .position(p)) == model.jobs["d1/finish"], "position \(p)")
            }
            let steps = try store.replay(run: "d1")
            #expect(steps.count == all.filter { $0.run == "d1" }.count)
        }
    }

    @Test(arguments: kinds)
    func failureRetryAndAbortCascade(kind: StoreKind) async throws {
        try await TestStores.with(kind) { store in
            struct Boom: Error {}
            let overseer = Overseer(log: store)
            let failing: Handlers = ["start": { _ in }, "result1": { _ in throw Boom() }, "result2": { _ in }, "finish": { _ in }]
            let first = try await overseer.run(TestStores.diamond, handlers: failing, run: "f1", args: ["x": 1])
            #expect(first.run.status == .failed)
            #expect(first.job(type: "result1")?.status == .failed)
            #expect(first.job(type: "finish")?.status == .unstarted)
            #expect(first.blockers(of: "f1/finish") == ["f1/result1"])
            _ = try await overseer.retry(job: "f1/result1", reason: "fixed")
            let ok: Handlers = ["start": { _ in }, "result1": { _ in }, "result2": { _ in }, "finish": { _ in }]
            let second = try await overseer.work(run: "f1", handlers: ok)
            #expect(second.run.status == .finished)

            _ = try await overseer.submit(TestStores.diamond, run: "a1", handlers: ok)
            _ = try await overseer.abort(job: "a1/start", reason: "no")
            let aborted = try #require(try store.snapshot(ofRun: "a1"))
            #expect(aborted.jobs.allSatisfy { $0.status == .aborted })
        }
    }

    @Test(arguments: kinds)
    func followDeliversNewFactsInOrder(kind: StoreKind) async throws {
        try await TestStores.with(kind) { store in
            let reader = Task {
                var seen: [UInt64] = []
                for try await fact in store.follow(after: 0) {
                    seen.append(fact.position)
                    if seen.count == 5 { break }
                }
                return seen
            }
            for i in 0..<5 {
                _ = try await store.append(FactDraft(kind: .workerStarted, author: Author(name: "w\(i)")), expecting: nil)
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(try await reader.value == [1, 2, 3, 4, 5])
        }
    }

    @Test(arguments: kinds)
    func exportVerifiesAndCopiesToTheOtherStore(kind: StoreKind) async throws {
        try await TestStores.with(kind) { store in
            let overseer = Overseer(log: store)
            let handlers: Handlers = ["start": { _ in }, "result1": { _ in }, "result2": { _ in }, "finish": { _ in }]
            _ = try await overseer.run(TestStores.diamond, handlers: handlers, run: "e1", args: ["y": "z"])
            let dir = FileManager.default.temporaryDirectory.path + "/contract-export-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let file = dir + "/log.jsonl"
            let count = try store.export(to: file)
            let report = try ExportFile.verify(path: file)
            #expect(report.ok && report.facts == count)
            #expect(report.headHash == (try store.headHash()))
            // Copy to the other kind of store, and back to this kind: the same log each time.
            let other: StoreKind = kind == .lmdb ? .postgres : .lmdb
            guard TestStores.available(other) else { return }
            try await TestStores.with(other) { copy in
                let r = try copy.copy(from: store)
                #expect(r.facts == count && r.verify.ok)
                #expect(try copy.headHash() == (try store.headHash()))
                #expect(try copy.snapshot(ofRun: "e1") == (try store.snapshot(ofRun: "e1")))
                let file2 = dir + "/copy.jsonl"
                try copy.export(to: file2)
                #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == (try Data(contentsOf: URL(fileURLWithPath: file2))))
            }
        }
    }

    @Test(arguments: kinds)
    func importRefusesANonEmptyStoreAndCopyRefusesToo(kind: StoreKind) async throws {
        try await TestStores.with(kind) { store in
            _ = try await store.append(FactDraft(kind: .workerStarted, author: Author(name: "w")), expecting: nil)
            try await TestStores.with(kind) { other in
                _ = try await other.append(FactDraft(kind: .workerStarted, author: Author(name: "v")), expecting: nil)
                #expect(throws: StoreError.self) { try other.copy(from: store) }
                #expect(try other.lastPosition() == 1)
            }
        }
    }
}
