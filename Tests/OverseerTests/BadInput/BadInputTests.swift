import Foundation
import Testing

@testable import Overseer

// The bad-input suite (issue 7): hostile or broken inputs across the library API, pipeline files,
// CLI arguments, store files and exports, collected in one place. Each one must get a clear error
// or correct handling, and nothing may be lost: after each, the store still verifies and holds
// exactly what it held before (or the file is byte-for-byte unchanged).
//
// Inputs, numbered as in docs/reliability.md:
//   graphs and names (library) ........ B01-B14
//   sizes and shapes ................... B15-B20
//   facts and operator actions ......... B21-B30 (B25a-b, B28a-f)
//   pipeline files ..................... B31-B44 (B42a-c)
//   CLI arguments ...................... B45-B56 (B48a-b, B54a-c)
//   store files ........................ B57-B64
//   exports ............................ B65-B74
//   found by the torture harness ....... B75-B76

// MARK: - Helpers

/// Where the log stands: its length and head hash. Equal marks mean nothing was written.
struct StoreMark: Equatable, CustomStringConvertible {
    let position: UInt64
    let head: String
    init(_ store: LogStore) throws {
        position = try store.lastPosition()
        head = try store.headHash().hex
    }
    var description: String { "@\(position) \(head.prefix(12))" }
}

/// Checks that `store` holds exactly what `mark` says, and still verifies.
func expectUntouched(_ store: LogStore, _ mark: StoreMark, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        let now = try StoreMark(store)
        #expect(now == mark, "\(what): the store changed (\(mark) → \(now))", sourceLocation: sourceLocation)
        let report = try store.verify()
        #expect(report.ok, "\(what): the store no longer verifies: \(report)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("\(what): the store cannot be read afterwards: \(error)", sourceLocation: sourceLocation)
    }
}

/// A store with one finished diamond run, so that refusals have history to preserve.
func seededStore(_ path: String) async throws -> LogStore {
    var options = StoreOptions()
    options.durability = .unsafeNoSync
    let store = try LogStore(path: path, options: options)
    _ = try await store.submit(RunPlan(id: "base", graph: seedDiamond))
    for type in ["start", "result1", "result2", "finish"] {
        try await store.claim("base/\(type)")
        try await store.settle("base/\(type)", .jobFinished)
    }
    return store
}

func unsyncedOptions() -> StoreOptions {
    var o = StoreOptions()
    o.durability = .unsafeNoSync
    return o
}

struct CLIOutcome {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// Runs the built `overseer` binary in `dir` (output through files, so no pipe can fill up).
func runOverseer(_ args: [String], in dir: String, env: [String: String] = [:], timeout: Double = 120) throws -> CLIOutcome {
    let p = Process()
    p.executableURL = productsDirectory().appendingPathComponent("overseer")
    p.arguments = args
    p.currentDirectoryURL = URL(fileURLWithPath: dir)
    var environment = ProcessInfo.processInfo.environment
    environment["NO_COLOR"] = "1"
    environment.removeValue(forKey: "OVERSEER_DB")
    for (k, v) in env { environment[k] = v }
    p.environment = environment
    let tag = UUID().uuidString.prefix(8)
    let outPath = dir + "/.cli-\(tag).out"
    let errPath = dir + "/.cli-\(tag).err"
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    defer {
        unlink(outPath)
        unlink(errPath)
    }
    p.standardOutput = FileHandle(forWritingAtPath: outPath)
    p.standardError = FileHandle(forWritingAtPath: errPath)
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { usleep(5000) }
    if p.isRunning {
        p.terminate()
        Issue.record("overseer \(args) timed out after \(timeout) s")
    }
    p.waitUntilExit()
    let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    return CLIOutcome(status: p.terminationStatus, stdout: out, stderr: err)
}

func writeFile(_ path: String, _ text: String) {
    _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
}

func elapsed<T>(_ body: () async throws -> T) async rethrows -> (T, Double) {
    let start = ContinuousClock.now
    let value = try await body()
    let d = ContinuousClock.now - start
    return (value, Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
}

// MARK: - Graphs and names (library)

@Suite(.serialized) struct BadInputGraphTests {
    /// B01-B13: graphs and ids that must be refused before anything is written, each with its code.
    static let badGraphs: [(String, JobGraph, String?, GraphError.Code)] = [
        ("B01 a cycle", ["a": ["c"], "b": ["a"], "c": ["b"]], nil, .cycle),
        ("B02 a self-dependency", ["a": [], "b": ["b", "a"]], nil, .selfDependency),
        ("B03 an empty graph", JobGraph([:]), nil, .empty),
        ("B04 an unknown parent", ["result2": [], "finish": ["reslt2"]], nil, .unknownParent),
        ("B05 a parent listed twice", ["a": [], "b": ["a", "a"]], nil, .duplicateParent),
        ("B06 a job type given twice", ["a": [], "a": ["x"]], nil, .duplicateType),
        ("B07 a '/' in a name", ["a/b": []], nil, .invalidName),
        ("B08 an empty name", ["": []], nil, .invalidName),
        ("B09 a name of only whitespace", [" \u{3000}\t": []], nil, .invalidName),
        ("B10 control characters in names", ["ok": [], "bell\u{7}": ["ok"], "nul\u{0}": [], "nl\n": [], "del\u{7F}": [], "nel\u{85}": []], nil, .invalidName),
        ("B11 a 201-byte name", [String(repeating: "é", count: 100) + "x": []], nil, .invalidName),
        ("B12 a '/' in the run id", ["a": []], "nightly/2026", .invalidName),
        ("B13 a newline in the run id", ["a": []], "run\nid", .invalidName),
    ]

    @Test(arguments: 0..<BadInputGraphTests.badGraphs.count)
    func badGraphsAreRefusedAndNothingIsWritten(_ index: Int) async throws {
        let (what, graph, runID, code) = BadInputGraphTests.badGraphs[index]
        let dir = TempDirectory("badin")
        defer { dir.cleanup() }
        let store = try await seededStore(dir.path + "/db")
        let mark = try StoreMark(store)
        do {
            _ = try await Overseer(log: store).submit(graph, run: runID ?? "r1", json: ["k": 1])
            Issue.record("\(what): accepted")
        } catch let e as GraphError {
            #expect(e.code == code, "\(what): \(e.code) \(e.message)")
            #expect(!e.message.isEmpty)
            // Names are quoted with control characters escaped, never raw.
            #expect(!e.message.contains("\u{0}") && !e.message.contains("\u{7}"), "\(what): raw control character in \(e.message.debugDescription)")
        } catch {
            Issue.record("\(what): wrong error \(type(of: error)): \(error)")
        }
        // The store layer refuses the same plan on its own (not only the front door).
        if runID == nil, code != .duplicateType {
            do {
                _ = try await store.submit(RunPlan(id: "r2", graph: graph))
                Issue.record("\(what): LogWriter.submit accepted it")
            } catch {
                #expect(error is GraphError, "\(what): \(error)")
            }
        }
        expectUntouched(store, mark, what)
    }

    /// B14: Unicode names (emoji, CJK, right-to-left, combining marks) are fine: they run, and
    /// the log keeps their bytes exactly.
    @Test func unicodeNamesRunAndRoundTrip() async throws {
        let names = ["🚀launch", "日本語", "עברית", "e\u{301}tape", "Ωmega≈"]
        var parents: [String: [String]] = [names[0]: []]
        for i in 1..<names.count { parents[names[i]] = [names[i - 1]] }
        try await withStore("badin", options: unsyncedOptions()) { store, path in
            var handlers = Handlers([String: Handler]())
            for n in names { handlers.on(n) { job in job.setResult(json: ["type": .string(job.type)]) } }
            var config = WorkerConfiguration()
            config.untilIdle = true
            config.lease = .seconds(5)
            let snapshot = try await Overseer(log: store).run(JobGraph(parents), handlers: handlers, run: "ユニコード", args: ["x": 1], configuration: config)
            #expect(snapshot.run.status == .finished)
            for n in names {
                let job = try #require(try store.job("ユニコード/\(n)"))
                #expect(Array(job.type.utf8) == Array(n.utf8), "the type's bytes changed: \(job.type.debugDescription)")
                #expect(job.result == ["type": .string(n)])
            }
            let export = path + ".jsonl"
            try store.export(to: export)
            let report = try ExportFile.verify(path: export)
            #expect(report.ok, "\(report)")
            let text = try String(contentsOfFile: export, encoding: .utf8)
            #expect(text.contains("\"job\":\"ユニコード/e\u{301}tape\""))
        }
    }
}

// MARK: - Sizes and shapes

@Suite(.serialized) struct BadInputSizeTests {
    /// B15: a 10,000-deep chain: submitted, its first jobs claimed and finished in order, then an
    /// abort of the next one cascades to all 9,980 below it in one transaction, and a retry
    /// brings them all back.
    @Test func aTenThousandDeepChain() async throws {
        let depth = 10_000
        var parents: [String: [String]] = [:]
        for i in 0..<depth { parents[String(format: "c%05d", i)] = i == 0 ? [] : [String(format: "c%05d", i - 1)] }
        try await withStore("badin", options: unsyncedOptions()) { store, _ in
            let (_, submitSeconds) = try await elapsed { try await store.submit(RunPlan(id: "deep", graph: JobGraph(parents))) }
            print("B15: submitting a \(depth)-deep chain took \(String(format: "%.2f", submitSeconds)) s")
            #expect(submitSeconds < 60)
            #expect(try store.lastPosition() == UInt64(depth + 1))
            #expect(try store.readyJobs().map(\.job) == ["deep/c00000"])
            let me = Author(name: "w-deep")
            for i in 0..<20 {
                let claims = try await store.write { w in try w.claimNext(worker: me, types: nil, count: 4, leaseMilliseconds: 60_000) }
                #expect(claims.map(\.job) == [String(format: "deep/c%05d", i)], "step \(i): \(claims.map(\.job))")
                guard let claim = claims.first else { break }
                _ = try await store.write { w in try w.complete(claim, outcome: .finished(result: nil), worker: me) }
            }
            let (aborted, abortSeconds) = try await elapsed {
                try await Overseer(log: store).abort(job: "deep/c00020", reason: "too deep")
            }
            print("B15: aborting 9,980 descendants in one transaction took \(String(format: "%.2f", abortSeconds)) s")
            #expect(aborted.count == depth - 20)
            #expect(try store.job(String(format: "deep/c%05d", depth - 1))?.status == .aborted)
            #expect(try store.run("deep")?.status == .aborted)
            let retried = try await Overseer(log: store).retry(job: "deep/c00020")
            #expect(retried.count == depth - 20)
            #expect(try store.readyJobs().map(\.job) == ["deep/c00020"])
            #expect(try store.run("deep")?.status == .running)
        }
    }

    /// B16: 100,000 jobs in one run. The run.created fact holds the whole graph, so this meets
    /// the 1 MiB fact limit: a clear size-limit error, quickly, with nothing written. (If the limit
    /// ever moves, a successful submit must be complete instead.)
    @Test func aHundredThousandJobsInOneRun() async throws {
        var parents: [String: [String]] = [:]
        parents.reserveCapacity(100_000)
        for i in 0..<100_000 { parents[String(format: "j%06d", i)] = i == 0 ? [] : ["j000000"] }
        let dir = TempDirectory("badin")
        defer { dir.cleanup() }
        let store = try await seededStore(dir.path + "/db")
        let mark = try StoreMark(store)
        let (outcome, seconds) = await elapsed { () -> Result<SubmitOutcome, any Error> in
            do { return .success(try await store.submit(RunPlan(id: "wide", graph: JobGraph(parents)))) } catch { return .failure(error) }
        }
        print("B16: submitting 100,000 jobs took \(String(format: "%.2f", seconds)) s: \(outcome)")
        #expect(seconds < 60)
        switch outcome {
        case .failure(let e as StoreError):
            #expect(e.code == .invalid, "\(e)")
            #expect(e.message.contains("exceeds the limit"), "\(e.message)")
            expectUntouched(store, mark, "100,000 jobs")
        case .failure(let e):
            Issue.record("100,000 jobs: unclear error \(type(of: e)): \(e)")
        case .success:
            #expect(try store.run("wide")?.total == 100_000)
            #expect(try store.verify().ok)
        }
    }

    /// B17: a 100 MB args blob: a clear size-limit error, nothing written.
    @Test func aHundredMegabyteArgsBlob() async throws {
        let dir = TempDirectory("badin")
        defer { dir.cleanup() }
        let store = try await seededStore(dir.path + "/db")
        let mark = try StoreMark(store)
        let blob = String(repeating: "A", count: 100 << 20)
        let (error, seconds) = await elapsed { () -> (any Error)? in
            do {
                _ = try await Overseer(log: store).submit(seedDiamond, run: "big", json: ["blob": .string(blob)])
                return nil
            } catch { return error }
        }
        print("B17: refusing a 100 MB args blob took \(String(format: "%.2f", seconds)) s")
        let e = try #require(error as? StoreError, "accepted, or an unclear error: \(String(describing: error))")
        #expect(e.code == .invalid)
        #expect(e.message.contains("exceeds the limit of 1048576 bytes"), "\(e.message)")
        #expect(try store.run("big") == nil)
        expectUntouched(store, mark, "100 MB args")
    }

    /// B18: NaN and infinity are not JSON: args holding them are recorded so that the log stays
    /// valid JSON (as null) and verifies, or refused; never written as text that cannot be parsed.
    @Test func nonFiniteNumbersInArgs() async throws {
        try await withStore("badin", options: unsyncedOptions()) { store, path in
            let args: JSONValue = ["nan": .double(.nan), "inf": .double(.infinity), "neg": .double(-.infinity), "zero": .double(-0.0)]
            do {
                _ = try await store.submit(RunPlan(id: "nan", graph: ["a": []], args: args))
            } catch {
                #expect(error is StoreError, "\(error)")
                return
            }
            try store.export(to: path + ".jsonl")
            #expect(try ExportFile.verify(path: path + ".jsonl").ok)
            let stored = try #require(try store.fact(at: 1))
            #expect(stored.data["args"]?["nan"] == .null)
        }
    }

    /// B19: args nested deeper than the JSON parser accepts (512): refused at append, because
    /// the store could not read the fact back (claims, verify and export would all break).
    @Test func argsNestedDeeperThanTheParserReads() async throws {
        let dir = TempDirectory("badin")
        defer { dir.cleanup() }
        let store = try await seededStore(dir.path + "/db")
        let mark = try StoreMark(store)
        var deep: JSONValue = 1
        for _ in 0..<600 { deep = .array([deep]) }
        do {
            _ = try await store.submit(RunPlan(id: "nested", graph: ["a": []], args: ["deep": deep]))
        } catch let e as StoreError {
            #expect(e.code == .invalid, "\(e)")
            expectUntouched(store, mark, "600-deep args")
            return
        }
        // Accepted: then everything must still work on it.
        let report = try store.verify()
        #expect(report.ok, "a 600-deep args value was accepted, and now the store does not verify: \(report.firstViolation.map(String.init(describing:)) ?? "")")
        let claims = try? await store.write { w in try w.claimNext(worker: Author(name: "w"), types: nil, count: 1, leaseMilliseconds: 1000) }
        #expect(claims?.count == 1, "the job of a run with 600-deep args cannot be claimed")
    }

    /// B20: a 3,000-way fan-in (one job waiting for 3,000 parents) submits and becomes ready
    /// exactly when the last parent finishes.
    @Test func aThreeThousandWayFanIn() async throws {
        var parents: [String: [String]] = ["join": (0..<3000).map { "p\($0)" }]
        for i in 0..<3000 { parents["p\(i)"] = [] }
        try await withStore("badin", options: unsyncedOptions()) { store, _ in
            _ = try await store.submit(RunPlan(id: "fan", graph: JobGraph(parents)))
            let me = Author(name: "w")
            var done = 0
            while done < 3000 {
                let claims = try await store.write { w in try w.claimNext(worker: me, types: nil, count: 500, leaseMilliseconds: 60_000) }
                #expect(!claims.contains { $0.job == "fan/join" }, "join claimed after \(done) parents")
                let batch = claims
                _ = try await store.write { w in for c in batch { _ = try w.complete(c, outcome: .finished(result: nil), worker: me) } }
                done += claims.count
                if claims.isEmpty { break }
            }
            #expect(done == 3000)
            #expect(try store.readyJobs().map(\.job) == ["fan/join"])
        }
    }
}

// MARK: - Facts and operator actions

@Suite struct BadInputFactTests {
    /// B21-B28: raw appends and operator actions the store must refuse, each leaving it untouched.
    @Test func refusedAppendsAndActions() async throws {
        let dir = TempDirectory("badin")
        defer { dir.cleanup() }
        let store = try await seededStore(dir.path + "/db")
        _ = try await store.submit(RunPlan(id: "r", graph: seedDiamond))
        let mark = try StoreMark(store)
        let w = Author(name: "w")
        let start = try #require(try store.job("r/start"))
        let result1 = try #require(try store.job("r/result1"))

        // B21: data that is not a JSON object.
        await #expect(throws: StoreError.self, "B21 non-object data") {
            _ = try await store.append(FactDraft(kind: .workerStarted, author: w, data: [1, 2]), expecting: nil)
        }
        expectUntouched(store, mark, "B21")
        // B22: a stale expected revision is a conflict, not an append.
        let stale = try await store.append(FactDraft(kind: .jobClaimed, run: "r", job: "r/start", author: w, attempt: 1, data: ["lease_ms": 1000]), expecting: start.revision + 5)
        #expect(stale.isConflict, "B22: \(stale)")
        expectUntouched(store, mark, "B22")
        // B23: a claim before the parent finished.
        await #expect(throws: FoldError.self, "B23 claim before parent") {
            _ = try await store.append(FactDraft(kind: .jobClaimed, run: "r", job: "r/result1", author: w, attempt: 1, data: ["lease_ms": 1000]), expecting: result1.revision)
        }
        expectUntouched(store, mark, "B23")
        // B24: an outcome for a job that was never claimed.
        await #expect(throws: FoldError.self, "B24 finish of an unstarted job") {
            _ = try await store.append(FactDraft(kind: .jobFinished, run: "r", job: "r/start", author: w, attempt: 1), expecting: start.revision)
        }
        expectUntouched(store, mark, "B24")
        // B25: an unknown kind, and a job fact for a job that does not exist.
        await #expect(throws: FoldError.self, "B25a unknown kind") {
            _ = try await store.append(FactDraft(kind: "job.exploded", run: "r", job: "r/start", author: w), expecting: start.revision)
        }
        await #expect(throws: FoldError.self, "B25b unknown job") {
            _ = try await store.append(FactDraft(kind: .jobClaimed, run: "r", job: "r/nope", author: w, attempt: 1), expecting: 0)
        }
        expectUntouched(store, mark, "B25")
        // B26: a claim without a worker name.
        await #expect(throws: FoldError.self, "B26 claim without worker") {
            _ = try await store.append(FactDraft(kind: .jobClaimed, run: "r", job: "r/start", author: Author(name: nil), attempt: 1, data: ["lease_ms": 1000]), expecting: start.revision)
        }
        expectUntouched(store, mark, "B26")
        // B27: resubmitting a run id with different args names what differs.
        do {
            _ = try await store.submit(RunPlan(id: "r", graph: seedDiamond, args: ["other": true]))
            Issue.record("B27: a different plan under an existing run id was accepted")
        } catch let e as SubmitError {
            #expect(e.message.contains("different args"), "\(e)")
        }
        // The same plan again is a no-op.
        #expect(try await store.submit(RunPlan(id: "r", graph: seedDiamond)) == .alreadyExists(run: "r"))
        expectUntouched(store, mark, "B27")
        // B28a-f: operator actions on jobs in the wrong state, or that do not exist.
        let overseer = Overseer(log: store)
        let actions: [(String, @Sendable () async throws -> Void)] = [
            ("retry of a finished job", { @Sendable in _ = try await overseer.retry(job: "base/start") }),
            ("abort of a finished job", { @Sendable in _ = try await overseer.abort(job: "base/finish", reason: "x") }),
            ("retry of an unstarted job", { @Sendable in _ = try await overseer.retry(job: "r/start") }),
            ("abort of an unknown run", { @Sendable in _ = try await overseer.abort(run: "nope", reason: "x") }),
            ("abort of a finished run", { @Sendable in _ = try await overseer.abort(run: "base", reason: "x") }),
            ("retry of an unknown job", { @Sendable in _ = try await overseer.retry(job: "r/nope") }),
        ]
        for (what, action) in actions {
            do {
                try await action()
                Issue.record("B28 \(what): accepted")
            } catch let e as StoreError {
                #expect(e.code == .invalid, "B28 \(what): \(e)")
            }
        }
        expectUntouched(store, mark, "B28")
    }

    /// B29: the same fact id twice (a retried append) writes once.
    @Test func aRepeatedFactIDIsANoOp() async throws {
        try await withStore("badin", options: unsyncedOptions()) { store, _ in
            let draft = FactDraft(id: "fixed-id-1", kind: .workerStarted, author: Author(name: "w"))
            let first = try await store.append(draft, expecting: nil)
            var again = draft
            again.data = ["different": true]
            let second = try await store.append(again, expecting: nil)
            guard case .appended(let f) = first, case .duplicate(let g) = second else {
                Issue.record("B29: \(first), \(second)")
                return
            }
            #expect(f == g)
            #expect(try store.lastPosition() == 1)
        }
    }

    /// B30: a write issued from inside a write is refused (it would deadlock the writer thread).
    @Test func aWriteInsideAWrite() async throws {
        try await withStore("badin", options: unsyncedOptions()) { store, _ in
            let inner = try await store.write { _ -> String in
                do {
                    _ = try store.writeSync { w in try w.append(FactDraft(kind: .workerStarted, author: Author(name: "w")), expecting: nil) }
                    return "accepted"
                } catch let e as StoreError {
                    return e.code == .invalid ? "refused" : "\(e)"
                }
            }
            #expect(inner == "refused")
            #expect(try store.lastPosition() == 0)
        }
    }
}

// MARK: - Pipeline files

@Suite struct BadInputPipelineTests {
    static let cases: [(String, [UInt8], PipelineError.Code, String)] = [
        ("B31 malformed JSON (trailing comma)", Array("{ \"name\": \"x\",\n  \"jobs\": { \"a\": { \"command\": [\"true\"] }, }\n}".utf8), .malformed, "p.json:2:"),
        ("B32 an unknown field", Array(#"{"name":"x","jobs":{"a":{"comand":["true"]}}}"#.utf8), .unknownField, "did you mean 'command'"),
        ("B33 an empty command", Array(#"{"name":"x","jobs":{"a":{"command":[]}}}"#.utf8), .invalidField, "command"),
        ("B34 retries out of range", Array(#"{"name":"x","jobs":{"a":{"command":["true"],"retries":-1}}}"#.utf8), .invalidField, "retries"),
        ("B35 a negative timeout", Array(#"{"name":"x","jobs":{"a":{"command":["true"],"timeout":-5}}}"#.utf8), .invalidField, "timeout"),
        ("B36 a top-level array", Array(#"[{"name":"x"}]"#.utf8), .invalidField, "top level"),
        ("B37 a NUL byte in the file", Array(#"{"name":"x","jobs":{"a":{"command":["true"]}}}"#.utf8).prefix(10) + [0] + Array(#"{"name":"x","jobs":{"a":{"command":["true"]}}}"#.utf8).dropFirst(10), .malformed, "p.json:1:"),
        ("B38 a duplicate job name", Array(#"{"name":"x","jobs":{"a":{"command":["true"]},"a":{"command":["false"]}}}"#.utf8), .malformed, "duplicate key"),
        ("B39 a control character in a job name", Array(#"{"name":"x","jobs":{"a\u0007":{"command":["true"]}}}"#.utf8), .graph, "control character"),
        ("B40 JSON nested 100,000 deep", Array(#"{"name":"x","jobs":"#.utf8) + [UInt8](repeating: UInt8(ascii: "["), count: 100_000), .malformed, "nesting deeper"),
        ("B41 invalid UTF-8 in a string", Array(#"{"name":"x"#.utf8) + [0xFF, 0xFE] + Array(#"","jobs":{"a":{"command":["true"]}}}"#.utf8), .malformed, "UTF-8"),
        ("B42a a cycle through 'after'", Array(#"{"name":"c","jobs":{"a":{"after":["b"],"command":["true"]},"b":{"after":["a"],"command":["true"]}}}"#.utf8), .graph, "cycle: a -> b -> a"),
        ("B42b a NUL in a command argument", Array(#"{"name":"x","jobs":{"a":{"command":["printf","a\u0000b"]}}}"#.utf8), .invalidField, "NUL"),
        ("B42c an '=' in an env name", Array(#"{"name":"x","jobs":{"a":{"command":["true"],"env":{"A=B":"1"}}}}"#.utf8), .invalidField, "env"),
    ]

    @Test(arguments: 0..<BadInputPipelineTests.cases.count)
    func badPipelineFiles(_ index: Int) throws {
        let (what, bytes, code, phrase) = BadInputPipelineTests.cases[index]
        do {
            let p = try Pipeline.parse(bytes, file: "p.json")
            Issue.record("\(what): accepted as \(p.jobs.keys.sorted())")
        } catch {
            #expect(error.code == code, "\(what): \(error.code): \(error.message)")
            #expect(error.message.hasPrefix("p.json"), "\(what): \(error.message)")
            #expect(error.message.contains(phrase), "\(what): \(error.message)")
        }
    }

    /// B43: a pipeline path that is a directory, and B44: a file over 16 MiB.
    @Test func unreadableAndOversizedPipelineFiles() throws {
        let dir = TempDirectory("badin")
        defer { dir.cleanup() }
        do {
            _ = try Pipeline.load(path: dir.path)
            Issue.record("B43: a directory loaded as a pipeline")
        } catch {
            #expect(error.code == .unreadable)
            #expect(error.message.contains("Is a directory"), "\(error.message)")
        }
        let big = dir.path + "/big.json"
        #expect(FileManager.default.createFile(atPath: big, contents: Data(count: (16 << 20) + 1)))
        do {
            _ = try Pipeline.load(path: big)
            Issue.record("B44: a 16 MiB + 1 file loaded")
        } catch {
            #expect(error.code == .tooLarge)
            #expect(error.message.contains("the limit is 16 MiB"), "\(error.message)")
        }
    }
}

// MARK: - CLI arguments

@Suite(.serialized) struct BadInputCLITests {
    func pipeline(_ dir: String) -> String {
        let path = dir + "/p.json"
        writeFile(path, #"{"name":"p","jobs":{"a":{"command":["true"]}}}"#)
        return path
    }

    /// B45-B54c: each argument error exits 2 with a message naming the problem, and creates no store.
    @Test func usageErrorsWriteNothing() throws {
        let dir = TempDirectory("badin-cli")
        defer { dir.cleanup() }
        let p = pipeline(dir.path)
        let db = dir.path + "/store.lmdb"
        let cases: [(String, [String], String)] = [
            ("B45 unknown command", ["stauts"], "did you mean 'status'?"),
            ("B46 unknown option", ["submit", p, "--db", db, "--jsno"], "unknown option '--jsno'"),
            ("B47 an option given twice", ["submit", p, "--db", db, "--run", "a", "--run", "b"], "given twice"),
            ("B48a --workers 0", ["run", p, "--db", db, "--workers", "0"], "--workers must be a whole number from 1 to 1024"),
            ("B48b --workers abc", ["run", p, "--db", db, "--workers", "abc"], "--workers must be a whole number"),
            ("B49 --args not JSON", ["submit", p, "--db", db, "--args", "{not json"], "--args: not valid JSON"),
            ("B50 --args not an object", ["submit", p, "--db", db, "--args", "[1,2]"], "--args must be a JSON object"),
            ("B51 --args nested 600 deep", ["submit", p, "--db", db, "--args", "{\"x\":" + String(repeating: "[", count: 600) + String(repeating: "]", count: 600) + "}"], "nesting deeper than 512 levels"),
            ("B52 --lease -1", ["worker", p, "--db", db, "--lease", "-1"], "--lease must be a positive number of seconds"),
            ("B53 --as-of garbage", ["status", "--db", db, "--as-of", "yesterday"], "--as-of must be an RFC 3339 time"),
            ("B54a --name with a newline", ["worker", p, "--db", db, "--name", "a\nb"], "--name must be a non-empty single line"),
            ("B54b --db empty", ["submit", p, "--db", ""], "--db is empty"),
            ("B54c a run id with a '/'", ["submit", p, "--db", db, "--run", "a/b"], "must not contain '/'"),
        ]
        for (what, args, phrase) in cases {
            let r = try runOverseer(args, in: dir.path)
            #expect(r.status == 2, "\(what): exit \(r.status), \(r.stderr)")
            #expect(r.stderr.contains(phrase), "\(what): \(r.stderr)")
            #expect(!r.stderr.contains("Fatal error"), "\(what): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: db), "\(what): a store was created")
        }
    }

    /// B55: a store path that is a plain file, or holds random bytes: exit 3, file unchanged.
    @Test func badStorePathsOnTheCommandLine() throws {
        let dir = TempDirectory("badin-cli")
        defer { dir.cleanup() }
        let file = dir.path + "/notes.txt"
        writeFile(file, "hello\n")
        let r = try runOverseer(["status", "--db", file], in: dir.path)
        #expect(r.status == 3)
        #expect(r.stderr.contains("not an Overseer store"), "\(r.stderr)")
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "hello\n")
        let junk = dir.path + "/junk.lmdb"
        try FileManager.default.createDirectory(atPath: junk, withIntermediateDirectories: false)
        var rng = SplitMixRNG(seed: 7)
        let bytes = Data((0..<65536).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        _ = FileManager.default.createFile(atPath: junk + "/data.mdb", contents: bytes)
        let j = try runOverseer(["submit", pipeline(dir.path), "--db", junk], in: dir.path)
        #expect(j.status == 3, "\(j.stderr)")
        #expect(j.stderr.contains("not a valid LMDB file"), "\(j.stderr)")
        #expect(FileManager.default.contents(atPath: junk + "/data.mdb") == bytes)
    }

    /// B56: shell-injection strings in the args, the run id and a command's arguments reach the
    /// command as data only: nothing they spell is executed.
    @Test func shellInjectionIsData() throws {
        let dir = TempDirectory("badin-cli")
        defer { dir.cleanup() }
        let d = dir.path
        let evil = "$(touch \(d)/pwned1); `touch \(d)/pwned2`; touch \(d)/pwned3 | touch \(d)/pwned4 && touch \(d)/pwned5 > \(d)/pwned6 '\" \\ $HOME ${IFS} \n;exit 1"
        let pipeline = d + "/inject.json"
        let argsOut = d + "/args.out"
        let runOut = d + "/run.out"
        writeFile(pipeline, """
            { "name": "inject", "jobs": {
                "quoted": { "command": ["sh", "-c", "printf '%s' \\"$OVERSEER_ARGS\\" > \(argsOut); printf '%s' \\"$OVERSEER_RUN\\" > \(runOut)"] },
                "argv": { "command": ["printf", "%s", "$(touch \(d)/pwned7); `touch \(d)/pwned8` | touch \(d)/pwned9"] } } }
            """)
        let argsJSON = try JSONValue(encoding: ["evil": evil])
        // A run id cannot hold '/', so its commands name files relative to the working directory.
        let runID = "$(touch pwned10);`touch pwned11`|touch pwned12&&x"
        let r = try runOverseer(["run", pipeline, "--db", d + "/store.lmdb", "--args", argsJSON.canonicalString, "--run", runID], in: d)
        #expect(r.status == 0, "exit \(r.status): \(r.stderr)")
        let made = (try FileManager.default.contentsOfDirectory(atPath: d)).filter { $0.hasPrefix("pwned") }
        #expect(made.isEmpty, "an injected command ran: \(made)")
        #expect((try? String(contentsOfFile: argsOut, encoding: .utf8)) == argsJSON.canonicalString)
        #expect((try? String(contentsOfFile: runOut, encoding: .utf8)) == runID)
        let store = try LogStore(path: d + "/store.lmdb")
        let argvJob = try #require(try store.job("\(runID)/argv"))
        #expect(argvJob.result?["stdout_tail"]?.stringValue == "$(touch \(d)/pwned7); `touch \(d)/pwned8` | touch \(d)/pwned9")
        #expect(try store.history(ofRun: runID).first?.data["args"]?["evil"]?.stringValue == evil)
        #expect(try store.verify().ok)
    }
}

// MARK: - Store files

@Suite(.serialized) struct BadInputStoreTests {
    /// B57: a truncated data file (opened in a child process: a read past the end of a mapped
    /// file is a SIGBUS). B58: random bytes. Both: a clear error, the file unchanged.
    @Test func truncatedAndRandomDataFiles() throws {
        let dir = TempDirectory("badin")
        defer { dir.cleanup() }
        let cut = dir.path + "/cut"
        try makeFilledStore(cut)
        let size = try #require(fileSize(cut + "/data.mdb"))
        #expect(truncate(cut + "/data.mdb", off_t(size * 2 / 3)) == 0)
        let before = sha256OfFile(cut + "/data.mdb")
        let r = try probeOpenStore(cut)
        #expect(r.reason == .exit && r.status == 0, "B57: the open crashed: \(r.stderr)")
        #expect(r.lines.first == "error corrupt", "B57: \(r.lines)")
        #expect(sha256OfFile(cut + "/data.mdb") == before)

        let random = dir.path + "/random"
        try FileManager.default.createDirectory(atPath: random, withIntermediateDirectories: false)
        var rng = SplitMixRNG(seed: 58)
        let bytes = Data((0..<(1 << 20)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        _ = FileManager.default.createFile(atPath: random + "/data.mdb", contents: bytes)
        let e = try #require(storeOpenError(random))
        #expect(e.code == .corrupt, "B58: \(e)")
        #expect(FileManager.default.contents(atPath: random + "/data.mdb") == bytes)
    }

    /// B59: a store from a newer format: refused, left untouched.
    @Test func aNewerFormat() throws {
        let dir = TempDirectory("badin")
        defer { dir.cleanup() }
        let path = dir.path + "/db"
        try makeFilledStore(path, runs: 1)
        try rewriteFormatMarker(path, to: "overseer-log 2")
        let before = sha256OfFile(path + "/data.mdb")
        let e = try #require(storeOpenError(path))
        #expect(e.code == .newerFormat)
        #expect(e.message.contains("Upgrade Overseer"), "\(e.message)")
        #expect(sha256OfFile(path + "/data.mdb") == before)
    }

    /// B60: a second process appends to the same store at the same time: both succeed, the
    /// positions stay dense, and every acknowledged append of either is in the log.
    @Test func aConcurrentOpenByASecondProcess() async throws {
        let dir = TempDirectory("badin")
        defer { dir.cleanup() }
        let path = dir.path + "/db"
        let store = try LogStore(path: path)
        let probe = try ProbeProcess(["append-loop", path])
        defer {
            kill(probe.pid, SIGKILL)
            _ = probe.waitForExit()
        }
        #expect(try await runOffPool { probe.waitForLines(5, timeout: 30) }, "the second process did not append: \(probe.stderrText)")
        var mine: [UInt64: String] = [:]
        for i in 0..<200 {
            let f = try #require(try await store.append(FactDraft(kind: .workerStarted, author: Author(name: "in-process"), data: ["i": .int(Int64(i))]), expecting: nil).fact)
            mine[f.position] = f.id
        }
        kill(probe.pid, SIGKILL)
        _ = try await runOffPool { probe.waitForExit() }
        var theirs: [UInt64: String] = [:]
        for line in probe.lines {
            let parts = line.split(separator: " ")
            if parts.count == 3, parts[0] == "ack", let p = UInt64(parts[1]) { theirs[p] = String(parts[2]) }
        }
        #expect(theirs.count >= 5)
        let facts = try store.facts(after: 0)
        #expect(facts.map(\.position) == Array(1...UInt64(facts.count)), "positions are not dense")
        let byPosition = Dictionary(uniqueKeysWithValues: facts.map { ($0.position, $0.id) })
        for (p, id) in mine.merging(theirs, uniquingKeysWith: { a, _ in a }) {
            #expect(byPosition[p] == id, "acknowledged append at \(p) is missing")
        }
        #expect(Set(mine.keys).isDisjoint(with: theirs.keys))
        let interleaved = facts.map { $0.worker == "in-process" }
        #expect(interleaved.contains(true) && interleaved.contains(false))
        #expect(try store.verify().ok)
    }

    /// B61: a read-only directory: a clear `unwritable` error, nothing created or changed.
    @Test func aReadOnlyDirectory() throws {
        let base = "/tmp/overseer-badin-ro-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer {
            _ = chmod(base + "/store", 0o700)
            try? FileManager.default.removeItem(atPath: base)
        }
        let store = base + "/store"
        try makeFilledStore(store, runs: 1)
        let before = sha256OfFile(store + "/data.mdb")
        if geteuid() == 0 {
            _ = chmod(base, 0o755)
            for p in [store, store + "/data.mdb", store + "/lock.mdb"] { #expect(chown(p, 65534, 65534) == 0) }
            #expect(chmod(store, 0o500) == 0)
            let r = try probeOpenStore(store, uid: 65534)
            if r.reason == .exit && r.status == 3 { return }  // no CAP_SETUID here
            #expect(r.lines.first == "error unwritable", "\(r.lines)")
        } else {
            #expect(chmod(store, 0o500) == 0)
            #expect(storeOpenError(store)?.code == .unwritable)
        }
        #expect(sha256OfFile(store + "/data.mdb") == before)
    }

    /// B62: an empty (0-byte) data.mdb next to a lock file, as a crash during creation leaves it:
    /// it opens as a new, empty store, usable and verifying.
    @Test func anEmptyDataFile() async throws {
        let dir = TempDirectory("badin")
        defer { dir.cleanup() }
        let path = dir.path + "/db"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        _ = FileManager.default.createFile(atPath: path + "/data.mdb", contents: Data())
        do {
            let store = try LogStore(path: path)
            #expect(try store.lastPosition() == 0)
            _ = try await store.append(FactDraft(kind: .workerStarted, author: Author(name: "w")), expecting: nil)
            #expect(try store.verify().ok)
        } catch let e as StoreError {
            #expect(e.code == .corrupt || e.code == .notAStore, "\(e)")
        }
    }

    /// B63: a lock file full of garbage: a clear error (or a rebuilt lock file), and the data
    /// file is never changed by the attempt.
    @Test func aGarbageLockFile() throws {
        let dir = TempDirectory("badin")
        defer { dir.cleanup() }
        let path = dir.path + "/db"
        try makeFilledStore(path, runs: 1)
        var rng = SplitMixRNG(seed: 63)
        _ = FileManager.default.createFile(atPath: path + "/lock.mdb", contents: Data((0..<8192).map { _ in UInt8(truncatingIfNeeded: rng.next()) }))
        let before = sha256OfFile(path + "/data.mdb")
        let r = try probeOpenStore(path)
        #expect(r.reason == .exit, "B63: opening with a garbage lock file crashed: \(r.stderr)")
        if let first = r.lines.first, first.hasPrefix("ok") {
            #expect(first.hasPrefix("ok 13 "), "\(r.lines)")
        } else {
            #expect(r.lines.first?.hasPrefix("error ") == true, "\(r.lines)")
        }
        #expect(sha256OfFile(path + "/data.mdb") == before)
    }

    /// B64: data.mdb is a directory: a clear error, nothing created.
    @Test func aDataFileThatIsADirectory() throws {
        let dir = TempDirectory("badin")
        defer { dir.cleanup() }
        let path = dir.path + "/db"
        try FileManager.default.createDirectory(atPath: path + "/data.mdb", withIntermediateDirectories: true)
        let e = try #require(storeOpenError(path))
        #expect(e.path == path)
        #expect(!e.message.isEmpty)
        #expect(Set(directoryListing(path).keys).subtracting(["lock.mdb"]) == ["data.mdb"])
    }
}

// MARK: - Exports

@Suite struct BadInputExportTests {
    /// B65-B67: a reordered, a dropped and a duplicated line are each detected, and refused on import.
    @Test func reorderedDroppedAndDuplicatedLines() async throws {
        let fx = try await makeTamperFixture()
        defer { fx.dir.cleanup() }
        var swapped = fx.lines
        swapped.swapAt(9, 10)
        var dropped = fx.lines
        dropped.remove(at: 9)
        var duplicated = fx.lines
        duplicated.insert(duplicated[9], at: 10)
        try await withStore("badin") { store, _ in
            for (what, lines) in [("B65 reordered", swapped), ("B66 dropped", dropped), ("B67 duplicated", duplicated)] {
                let path = fx.write(lines, name: "\(what.prefix(3)).jsonl")
                let report = try ExportFile.verify(path: path)
                #expect(!report.ok, "\(what): verifies")
                #expect(report.firstViolation?.line == 10 || report.firstViolation?.line == 11, "\(what): \(String(describing: report.firstViolation))")
                expectImportRefused(store, path, what)
            }
        }
    }

    /// B68-B72: an empty file, CRLF line ends, a trailing blank line, random bytes, a line
    /// re-serialized with spaces: each detected with its line, none importable.
    @Test func malformedExportFiles() async throws {
        let fx = try await makeTamperFixture()
        defer { fx.dir.cleanup() }
        let d = fx.dir.path
        var rng = SplitMixRNG(seed: 72)
        let variants: [(String, [UInt8])] = [
            ("B68 an empty file", []),
            ("B69 CRLF line ends", fx.lines.flatMap { $0 + [0x0D, 0x0A] }),
            ("B70 a trailing blank line", fx.lines.flatMap { $0 + [0x0A] } + [0x0A]),
            ("B71 random bytes", (0..<5000).map { _ in UInt8(truncatingIfNeeded: rng.next()) } + [0x0A]),
            ("B72 a line with spaces", fx.lines.enumerated().flatMap { i, l in (i == 3 ? Array(String(decoding: l, as: UTF8.self).replacingOccurrences(of: "\":", with: "\": ").utf8) : l) + [0x0A] }),
        ]
        try await withStore("badin") { store, _ in
            for (what, bytes) in variants {
                let path = d + "/\(what.prefix(3)).jsonl"
                _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
                do {
                    let report = try ExportFile.verify(path: path)
                    #expect(!report.ok, "\(what): verifies")
                } catch {
                    #expect(error is ExportError, "\(what): \(error)")
                }
                expectImportRefused(store, path, what)
            }
        }
    }

    /// B73: importing into a store that already has history, and B74: importing a partial
    /// (filtered) export: both refused, the target store unchanged.
    @Test func refusedImports() async throws {
        let fx = try await makeTamperFixture()
        defer { fx.dir.cleanup() }
        let dir = TempDirectory("badin")
        defer { dir.cleanup() }
        let store = try await seededStore(dir.path + "/db")
        let mark = try StoreMark(store)
        do {
            try store.importLog(from: fx.original)
            Issue.record("B73: imported into a non-empty store")
        } catch let e as StoreError {
            #expect(e.code == .invalid)
            #expect(e.message.contains("needs an empty store"), "\(e.message)")
        }
        expectUntouched(store, mark, "B73")
        let partial = fx.write(Array(fx.lines.dropFirst(2)), name: "partial.jsonl")
        try await withStore("badin") { empty, _ in expectImportRefused(empty, partial, "B74 partial export") }
        // And a missing file and a directory, for verify.
        #expect(throws: ExportError.self) { _ = try ExportFile.verify(path: dir.path + "/missing.jsonl") }
        #expect(throws: ExportError.self) { _ = try ExportFile.verify(path: dir.path) }
    }
}

// MARK: - Found by the torture harness

@Suite(.serialized) struct TortureFindingsTests {
    /// B75: `Overseer.work` installs its SIGTERM/SIGINT handling on each call. A process that
    /// works twice (a supervisor loop, or two `Overseer.run` calls in a row) must still drain
    /// on SIGTERM the second time.
    @Test func sigtermStopsASecondWorkInTheSameProcess() async throws {
        let dir = TempDirectory("badin")
        defer { dir.cleanup() }
        let probe = try ProbeProcess(["work-twice", dir.path + "/db"])
        defer {
            kill(probe.pid, SIGKILL)
            _ = probe.waitForExit()
        }
        #expect(try await runOffPool { probe.waitForLines(1, timeout: 30) }, "the probe did not start: \(probe.stderrText)")
        // Give the second `work` time to install its handling, as a long-running worker would have.
        try await Task.sleep(for: .seconds(1))
        kill(probe.pid, SIGTERM)
        let stopped = try await runOffPool { probe.waitForLines(2, timeout: 15) }
        #expect(stopped && probe.lines.last == "stopped", "SIGTERM did not stop the second Overseer.work of the process within 15 s (output: \(probe.lines))")
    }

    /// B76: a full disk. The store sits on an 8 MiB tmpfs (root only); appends of a few pages
    /// each fill it. The failure must say the disk is full (StoreError.full), leave the store
    /// consistent, and appends must work again once there is space.
    @Test func aFullDiskIsReportedAsFullAndRecovers() async throws {
        guard geteuid() == 0 else { return }
        let dir = TempDirectory("badin-tmpfs")
        defer { dir.cleanup() }
        let mountPoint = dir.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: false)
        func sh(_ args: [String]) -> Int32 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = args
            guard (try? p.run()) != nil else { return -1 }
            p.waitUntilExit()
            return p.terminationStatus
        }
        guard sh(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mountPoint]) == 0 else { return }  // no CAP_SYS_ADMIN
        defer { _ = sh(["umount", "-l", mountPoint]) }
        var failure: StoreError?
        var written = 0
        do {
            let store = try LogStore(path: mountPoint + "/db")
            let pad = String(repeating: "x", count: 30_000)
            for i in 0..<1000 {
                do {
                    _ = try await store.append(FactDraft(kind: .workerStarted, author: Author(name: "w"), data: ["i": .int(Int64(i)), "pad": .string(pad)]), expecting: nil)
                    written += 1
                } catch let e as StoreError {
                    failure = e
                    break
                }
            }
            let e = try #require(failure, "8 MiB never filled")
            #expect(e.code == .full, "a full disk is reported as \(e.code): \(e.message)")
            #expect(try store.lastPosition() == UInt64(written))
            #expect(try store.verify().ok)
            #expect(sh(["mount", "-o", "remount,size=64m", mountPoint]) == 0)
            _ = try await store.append(FactDraft(kind: .workerStarted, author: Author(name: "w"), data: ["after": true]), expecting: nil)
            #expect(try store.lastPosition() == UInt64(written + 1))
            #expect(try store.verify().ok)
        }
    }
}
