import Foundation
import Testing

@testable import Overseer

// Store verification against tampered stores: every kind of violation, detected at the same
// first position, with the same report as the reference verification (ReferenceVerify.swift).

/// A store holding runs in every state, with the fact kinds, payload shapes and characters that
/// take different paths through the decoder: finished, in-flight, failed and retried, aborted,
/// released with a retry delay, a rejected late result, worker facts, non-ASCII text, escapes,
/// doubles and nested values.
func makeVerifyFixture(_ store: LogStore) async throws {
    _ = try await store.append(FactDraft(kind: .workerStarted, author: Author(name: "w1", host: "h\u{e9}st", pid: 4242), data: ["types": ["a", "b"], "concurrency": 4]), expecting: nil)
    _ = try await store.submit(RunPlan(id: "r1", graph: seedDiamond, args: ["input": "s3://bucket/in.csv", "shards": 4], name: "etl", priority: 2))
    _ = try await store.submit(RunPlan(id: "r2", graph: ["a": [], "b": ["a"]], args: ["ratio": 0.25, "text": "caf\u{e9} \u{1F600} \"quoted\"\n\ttab\\", "nested": ["deep": [1, [2, [3, nil, true, false]]]]]))
    _ = try await store.submit(RunPlan(id: "r3", graph: ["x": [], "y": ["x"], "z": ["x"]], options: ["x": ["retry": ["maximum_attempts": 3]]]))
    for type in ["start", "result1"] {
        try await store.claim("r1/\(type)", worker: "w1")
        try await store.settle("r1/\(type)", .jobFinished, data: ["result": ["type": .string(type), "rows": 1200, "ok": true]])
    }
    try await store.claim("r2/a", worker: "w\u{f6}rker")
    try await store.settle("r2/a", .jobFailed, reason: "error", data: ["error": ["message": "boom\u{0}\u{1f}\u{7f}", "code": -1, "at": 1.5e-7]])
    _ = try store.writeSync { w in try w.retryJob("r2/a", author: .operator("alice"), reason: "try again") }
    try await store.claim("r2/a", worker: "w1")
    _ = try await store.append(FactDraft(kind: .jobRejected, run: "r2", job: "r2/a", author: Author(name: "late"), attempt: 1, reason: "superseded"), expecting: nil)
    let later = Instant.now().adding(seconds: 3600)
    try await store.settle("r2/a", .jobReleased, reason: "fault", data: ["not_before": .string(later.rfc3339), "error": "transient"])
    try await store.claim("r3/x", worker: "w2")
    try await store.settle("r3/x", .jobFinished)
    try await store.claim("r3/y", worker: "w2")
    try await store.settle("r3/y", .jobReleased, reason: "lease_expired")
    _ = try store.writeSync { w in try w.abortRun("r3", author: .operator("bob"), reason: "not needed") }
    try await store.claim("r1/result2", worker: "w1")
    _ = try await store.append(FactDraft(kind: .workerStopped, author: Author(name: "w2"), reason: "shutdown"), expecting: nil)
    #expect(try store.verify().ok)
}

/// The facts' lines, by position.
func factLines(_ store: LogStore) throws -> [UInt64: [UInt8]] {
    try store.read { txn in
        var out: [UInt64: [UInt8]] = [:]
        try txn.forEach(store.dbs.facts) { k, v in
            out[readBigEndian64(k)] = Array(v)
            return true
        }
        return out
    }
}

/// Writes straight into the store's databases, past every check.
func tamper(_ store: LogStore, _ body: (Transaction, Databases) throws -> Void) throws {
    guard case .lmdb(let env) = store.core.engine else { throw StoreError(.invalid, path: store.path, "tamper needs an LMDB store") }
    try env.write { txn in try body(txn, store.dbs) }
}

enum LineEdit {
    /// `,"hash":"` + 64 hex digits + `"}`.
    static let tail = 75

    /// The body a line's hash covers (the line without its hash member).
    static func body(_ line: [UInt8]) -> [UInt8] { Array(line.dropLast(tail)) + [UInt8(ascii: "}")] }

    /// `body` with its hash appended, as the store writes it.
    static func line(body: [UInt8]) -> [UInt8] {
        Array(body.dropLast()) + Array(",\"hash\":\"\(Digest.sha256(body).hex)\"}".utf8)
    }

    static func replace(_ bytes: [UInt8], _ old: String, _ new: String) -> [UInt8]? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.contains(old) else { return nil }
        return Array(text.replacingOccurrences(of: old, with: new).utf8)
    }

    /// Sets the `prev` of a body.
    static func settingPrev(_ body: [UInt8], _ prev: String) -> [UInt8] {
        let marker = Array(",\"prev\":\"".utf8)
        var i = body.count - marker.count
        while i >= 0, Array(body[i..<(i + marker.count)]) != marker { i -= 1 }
        precondition(i >= 0, "no prev")
        var b = body
        b.replaceSubrange((i + marker.count)..<(i + marker.count + 64), with: Array(prev.utf8))
        return b
    }

    static func hashHex(_ line: [UInt8]) -> String { String(decoding: line.suffix(66).prefix(64), as: UTF8.self) }
}

/// Rewrites the body of the fact at `position` with `edit`, gives it a hash of its own, and
/// re-chains every later fact (and the head), so that only the edit itself is wrong.
func rewriteFact(_ store: LogStore, at position: UInt64, rechain: Bool = true, _ edit: ([UInt8]) -> [UInt8]?) throws -> Bool {
    let lines = try factLines(store)
    guard let line = lines[position], let newBody = edit(LineEdit.body(line)) else { return false }
    var rewritten: [(UInt64, [UInt8])] = [(position, LineEdit.line(body: newBody))]
    if rechain {
        var prevHash = LineEdit.hashHex(rewritten[0].1)
        var p = position + 1
        while let next = lines[p] {
            let l = LineEdit.line(body: LineEdit.settingPrev(LineEdit.body(next), prevHash))
            rewritten.append((p, l))
            prevHash = LineEdit.hashHex(l)
            p += 1
        }
    }
    try tamper(store) { txn, dbs in
        for (p, l) in rewritten { try txn.put(dbs.facts, Keys.position(p), l) }
        if rechain {
            let head = try store.core.head(txn)
            let last = rewritten.last!.1
            try txn.put(dbs.meta, Keys.head, Head(position: head.position, hash: Digest(hex: LineEdit.hashHex(last))!, time: head.time).encoded)
        }
    }
    return true
}

/// A violation's text with the run summaries' `counts` dictionaries in a fixed order (a
/// dictionary's description lists its members in an order that varies from one to the next).
func normalized(_ v: Violation) -> String {
    var text = v.description
    var out = ""
    while let r = text.range(of: "counts: [") {
        out += text[..<r.upperBound]
        text = String(text[r.upperBound...])
        guard let end = text.firstIndex(of: "]") else { break }
        out += text[..<end].components(separatedBy: ", ").sorted().joined(separator: ", ")
        text = String(text[end...])
    }
    return out + text
}

/// Checks that verify and the reference verification agree on `store`, and returns the report.
@discardableResult
func expectSameVerdict(_ store: LogStore, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> VerifyReport {
    let reference = try store.referenceVerify()
    let report = try store.verify()
    #expect(report.violations.map(normalized) == reference.violations.map(normalized), "\(what): violations differ:\n\(report.violations.map(normalized).joined(separator: "\n"))\nreference:\n\(reference.violations.map(normalized).joined(separator: "\n"))", sourceLocation: sourceLocation)
    #expect(report.violationCount == reference.violationCount, "\(what): violation count \(report.violationCount) vs \(reference.violationCount)", sourceLocation: sourceLocation)
    #expect(report.facts == reference.facts && report.runs == reference.runs && report.jobs == reference.jobs, "\(what): counts \(report.facts)/\(report.runs)/\(report.jobs) vs \(reference.facts)/\(reference.runs)/\(reference.jobs)", sourceLocation: sourceLocation)
    #expect(report.firstPosition == reference.firstPosition && report.lastPosition == reference.lastPosition && report.headHash == reference.headHash && report.partial == reference.partial, "\(what): positions or head differ", sourceLocation: sourceLocation)
    return report
}

/// A fresh fixture store for one tampering.
func withFixture(_ body: (LogStore) throws -> Void) async throws {
    let dir = TempDirectory("tamper")
    defer { dir.cleanup() }
    var options = StoreOptions()
    options.durability = .unsafeNoSync
    let store = try LogStore(path: dir.path + "/db.lmdb", options: options)
    try await makeVerifyFixture(store)
    try body(store)
}

/// A fact's position by kind and job, in the fixture.
func position(_ store: LogStore, _ kind: FactKind, job: String? = nil, run: String? = nil) throws -> UInt64 {
    let lines = try factLines(store)
    for p in lines.keys.sorted() {
        let f = try Fact.decode(line: lines[p]!)
        if f.kind == kind, job == nil || f.job == job, run == nil || f.run == run { return p }
    }
    Issue.record("no \(kind) fact of \(job ?? run ?? "-")")
    return 0
}

@Suite struct VerifyTamperTests {
    @Test func anIntactStoreVerifiesLikeTheReference() async throws {
        try await withFixture { store in
            let report = try expectSameVerdict(store, "intact")
            #expect(report.ok, "\(report)")
            #expect(report.facts == Int(try store.lastPosition()))
            #expect(report.runs == 3 && report.jobs == 9)
            #expect(report.headHash == (try store.headHash()))
        }
    }

    /// A flipped byte anywhere in a line: a format or hash violation at that position.
    @Test(arguments: [0, 1, 5, 12, 30, 60, 100, 150, 200, 260, -120, -80, -76, -75, -74, -70, -40, -3, -2, -1])
    func aFlippedByte(offset: Int) async throws {
        try await withFixture { store in
            let lines = try factLines(store)
            for p in lines.keys.sorted() where p % 3 == 1 || p == UInt64(lines.count) {
                var line = lines[p]!
                let i = offset >= 0 ? offset : line.count + offset
                guard i >= 0, i < line.count else { continue }
                for mask: UInt8 in [0x01, 0x20] {
                    line[i] ^= mask
                    try tamper(store) { txn, dbs in try txn.put(dbs.facts, Keys.position(p), line) }
                    let report = try expectSameVerdict(store, "byte \(i) of position \(p) ^ \(mask)")
                    #expect(!report.ok, "byte \(i) of position \(p) ^ \(mask) went unnoticed")
                    line[i] ^= mask
                    try tamper(store) { txn, dbs in try txn.put(dbs.facts, Keys.position(p), line) }
                }
            }
            #expect(try store.verify().ok)
        }
    }

    /// Lines whose hash matches but whose form is not canonical: each a format violation at its
    /// own position, whatever else is wrong with it.
    @Test(arguments: [
        ("\"lease_ms\":60000", "\"lease_ms\": 60000"),
        ("\"lease_ms\":60000", "\"lease_ms\":60000.0"),
        ("\"lease_ms\":60000", "\"lease_ms\":6e4"),
        ("\"lease_ms\":60000", "\"lease_ms\":060000"),
        ("\"lease_ms\":60000", "\"lease_ms\":-0"),
        ("\"lease_ms\":60000", "\"lease_ms\":60000,\"lease_ms\":60000"),
        ("\"lease_ms\":60000", "\"zz\":1,\"lease_ms\":60000"),
        ("\"lease_ms\":60000", "\"lease_ms\":60000,\"a\":1"),
        ("\"lease_ms\":60000", "\"lease_\\u006ds\":60000"),
        ("\"worker\":\"w1\"", "\"worker\":\"w\\u0031\""),
        ("\"worker\":\"w1\"", "\"worker\":\"w\\/1\""),
        ("\"worker\":\"w1\"", "\"worker\":\"w1\\u000a\""),
        ("\"worker\":\"w1\"", "\"worker\":\"w1\\u001F\""),
        ("\"worker\":\"w1\"", "\"worker\":\"w1\u{7}\""),
        ("\"worker\":\"w1\"", "\"worker\":\"w\u{e9}\""),
        ("\"worker\":\"w1\"", "\"worker\":\"w\\u00e9\""),
        ("\"worker\":\"w1\"", "\"worker\":\"w1\\n\""),
        ("\"attempt\":1", "\"attempt\":01"),
        ("\"attempt\":1", "\"attempt\":1.0"),
        ("\"attempt\":1", "\"attempt\":true"),
        ("\"attempt\":1", "\"attempt\":\"1\""),
        ("\"revision\":2", "\"revision\":0"),
        ("\"revision\":2", "\"revision\":-2"),
        ("\"revision\":2", "\"revision\":null"),
        ("\"reason\":null", "\"reason\":nul"),
        ("\"host\":", "\"hostname\":"),
        ("{\"position\":", "{ \"position\":"),
        ("\"data\":{", "\"data\":[{"),
        ("\"kind\":\"job.claimed\"", "\"kind\":\"job.exploded\""),
        ("\"kind\":\"job.claimed\"", "\"kind\":\"job.finished\""),
        ("\"job\":\"r1/start\"", "\"job\":\"r1/nope\""),
        ("\"job\":\"r1/start\"", "\"job\":null"),
        ("\"run\":\"r1\"", "\"run\":\"r2\""),
        ("Z\",\"id\"", "+00:00\",\"id\""),
        ("Z\",\"id\"", "z\",\"id\""),
        (".", ","),
    ])
    func aRewrittenClaim(old: String, new: String) async throws {
        try await withFixture { store in
            let p = try position(store, .jobClaimed, job: "r1/start")
            let done = try rewriteFact(store, at: p) { LineEdit.replace($0, old, new) }
            #expect(done, "'\(old)' not found in the claim")
            let report = try expectSameVerdict(store, "\(old) → \(new)")
            // 60000.0 is a double in canonical form, and the fold reads it as the integer.
            #expect(!report.ok || new.hasSuffix("60000.0"), "\(old) → \(new) went unnoticed")
        }
    }

    /// The same rewrites in a fact's data: a run's args (with doubles, escapes and non-ASCII
    /// text, which the fast decoder hands to the full one) and a job's result.
    @Test(arguments: [
        ("\"ratio\":0.25", "\"ratio\":0.250"),
        ("\"ratio\":0.25", "\"ratio\":2.5e-1"),
        ("\"ratio\":0.25", "\"ratio\":0.5"),
        ("caf\u{e9}", "cafe\u{301}"),
        ("caf\u{e9}", "caf\\u00e9"),
        ("\\\"quoted\\\"", "\\u0022quoted\\u0022"),
        ("\\n\\t", "\\u000a\\t"),
        ("\\n\\t", "\\n\\u0009"),
        ("\\n\\t", "\\N\\t"),
        ("\u{1F600}", "\\ud83d\\ude00"),
        ("\"nested\":{\"deep\":", "\"nested\":{\"deep\" :"),
        ("[3,null,true,false]", "[3,null,true,false,]"),
        ("[3,null,true,false]", "[3,null,true,false"),
        ("[3,null,true,false]", "[3,null,tru,false]"),
        ("[3,null,true,false]", "[3, null,true,false]"),
    ])
    func aRewrittenRunCreation(old: String, new: String) async throws {
        try await withFixture { store in
            let p = try position(store, .runCreated, run: "r2")
            let done = try rewriteFact(store, at: p) { LineEdit.replace($0, old, new) }
            #expect(done, "'\(old)' not found in r2's run.created")
            let report = try expectSameVerdict(store, "\(old) → \(new)")
            #expect(!report.ok, "\(old) → \(new) went unnoticed")
        }
    }

    /// Invalid UTF-8 and raw control characters inside strings.
    @Test(arguments: [[0xFF], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0x00], [0x1F], [0x0A]] as [[UInt8]])
    func aBadByteInAString(bytes: [UInt8]) async throws {
        for (kind, job, marker) in [(FactKind.jobFinished, "r1/start", "\"type\":\"st"), (.jobClaimed, "r3/x", "\"worker\":\"w")] {
            try await withFixture { store in
                let p = try position(store, kind, job: job)
                let done = try rewriteFact(store, at: p) { body in
                    guard let r = LineEdit.replace(body, marker, marker + "\u{1}") else { return nil }
                    var out: [UInt8] = []
                    for b in r { if b == 1 { out += bytes } else { out.append(b) } }
                    return out
                }
                #expect(done)
                let report = try expectSameVerdict(store, "bytes \(bytes) in \(kind)")
                // The generic decoder cannot tell the position of a line that is not JSON.
                #expect(report.firstViolation?.kind == .format && (report.firstViolation?.position ?? p) == p, "\(String(describing: report.firstViolation))")
            }
        }
    }

    /// Breaks of the state machine, with a sound chain: transition violations.
    @Test func brokenTransitions() async throws {
        let edits: [(FactKind, String, String, String)] = [
            (.jobClaimed, "r1/result1", "\"attempt\":1", "\"attempt\":2"),
            (.jobFinished, "r1/start", "\"attempt\":1", "\"attempt\":7"),
            (.jobFinished, "r1/start", "\"revision\":3", "\"revision\":4"),
            (.jobCreated, "r1/result1", "\"parents\":[\"r1/start\"]", "\"parents\":[\"r1/start\",\"r1/start\"]"),
            (.jobCreated, "r1/result1", "\"parents\":[\"r1/start\"]", "\"parents\":[\"r2/a\"]"),
            (.jobCreated, "r1/result1", "\"parents\":[\"r1/start\"]", "\"parents\":[1]"),
            (.jobCreated, "r1/result1", "\"type\":\"result1\"", "\"type\":7"),
            (.jobReleased, "r2/a", "\"not_before\":\"", "\"not_before\":\"x"),
            (.jobRejected, "r2/a", "\"revision\":null", "\"revision\":9"),
            (.workerStopped, "", "\"worker\":\"w2\"", "\"worker\":null"),
        ]
        for (kind, job, old, new) in edits {
            try await withFixture { store in
                let p = try position(store, kind, job: job.isEmpty ? nil : job)
                let done = try rewriteFact(store, at: p) { LineEdit.replace($0, old, new) }
                #expect(done, "'\(old)' not found in \(kind) of \(job)")
                let report = try expectSameVerdict(store, "\(kind) \(job): \(old) → \(new)")
                #expect(report.firstViolation?.position == p, "\(kind) \(job): \(String(describing: report.firstViolation))")
                #expect(report.violations.contains { $0.kind == .transition && $0.position == p }, "\(kind) \(job): \(report.violations)")
            }
        }
    }

    @Test func aTimeGoingBackwards() async throws {
        try await withFixture { store in
            let p = try position(store, .jobFinished, job: "r1/start")
            let done = try rewriteFact(store, at: p) { body in
                let text = String(decoding: body, as: UTF8.self)
                guard let r = text.range(of: "\"time\":\"") else { return nil }
                let start = r.upperBound
                let end = text.index(start, offsetBy: 27)
                return Array(text.replacingCharacters(in: start..<end, with: "2001-01-01T00:00:00.000000Z").utf8)
            }
            #expect(done)
            let report = try expectSameVerdict(store, "time")
            #expect(report.firstViolation?.kind == .time && report.firstViolation?.position == p, "\(report.violations)")
        }
    }

    @Test func aBrokenChain() async throws {
        try await withFixture { store in
            // A fact rewritten with a hash of its own, the chain not repaired.
            let p = try position(store, .jobFinished, job: "r1/start")
            #expect(try rewriteFact(store, at: p, rechain: false) { LineEdit.replace($0, "\"rows\":1200", "\"rows\":1201") })
            let report = try expectSameVerdict(store, "unchained")
            #expect(report.firstViolation?.kind == .hashChain && report.firstViolation?.position == p + 1, "\(report.violations)")
        }
        try await withFixture { store in
            // The first fact's prev not zero.
            #expect(try rewriteFact(store, at: 1) { LineEdit.settingPrev($0, String(repeating: "1", count: 64)) })
            let report = try expectSameVerdict(store, "first prev")
            #expect(report.firstViolation?.kind == .hashChain && report.firstViolation?.position == 1, "\(report.violations)")
        }
        try await withFixture { store in
            // A stored hash that is not the body's.
            let lines = try factLines(store)
            var line = lines[4]!
            line[line.count - 10] = line[line.count - 10] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
            try tamper(store) { txn, dbs in try txn.put(dbs.facts, Keys.position(4), line) }
            let report = try expectSameVerdict(store, "hash")
            #expect(report.firstViolation?.kind == .hashChain && report.firstViolation?.position == 4, "\(report.violations)")
        }
    }

    @Test func missingMovedAndDuplicatedFacts() async throws {
        try await withFixture { store in
            try tamper(store) { txn, dbs in _ = try txn.delete(dbs.facts, Keys.position(6)) }
            let report = try expectSameVerdict(store, "deleted")
            #expect(report.firstViolation?.kind == .density && report.firstViolation?.position == 7, "\(report.violations)")
        }
        try await withFixture { store in
            let lines = try factLines(store)
            try tamper(store) { txn, dbs in try txn.put(dbs.facts, Keys.position(7), lines[6]!) }
            let report = try expectSameVerdict(store, "duplicated")
            #expect(report.firstViolation?.kind == .density && report.firstViolation?.position == 6, "\(report.violations)")
        }
        try await withFixture { store in
            // Facts 6 and 7 stored under each other's key.
            let lines = try factLines(store)
            try tamper(store) { txn, dbs in
                try txn.put(dbs.facts, Keys.position(6), lines[7]!)
                try txn.put(dbs.facts, Keys.position(7), lines[6]!)
            }
            let report = try expectSameVerdict(store, "swapped")
            #expect(report.firstViolation?.position == 7, "\(report.violations)")
        }
        try await withFixture { store in
            // One more fact after the head, and one before the first.
            let lines = try factLines(store)
            let n = UInt64(lines.count)
            try tamper(store) { txn, dbs in try txn.put(dbs.facts, Keys.position(n + 1), lines[n]!) }
            try expectSameVerdict(store, "extra at the end")
            try tamper(store) { txn, dbs in
                _ = try txn.delete(dbs.facts, Keys.position(n + 1))
                try txn.put(dbs.facts, Keys.position(0), lines[1]!)
            }
            try expectSameVerdict(store, "extra at 0")
            try tamper(store) { txn, dbs in
                _ = try txn.delete(dbs.facts, Keys.position(0))
                _ = try txn.delete(dbs.facts, Keys.position(1))
            }
            let report = try expectSameVerdict(store, "no first fact")
            #expect(report.firstViolation?.kind == .density && report.firstViolation?.position == 2, "\(report.violations)")
        }
    }

    /// Views that differ from the fold: view violations.
    @Test func tamperedViews() async throws {
        typealias Edit = (String, (LogStore, Transaction, Databases) throws -> Void)
        func editJob(_ id: String, _ change: @escaping (inout JobState) -> Void) -> (LogStore, Transaction, Databases) throws -> Void {
            { _, txn, dbs in
                var j = try JobState(decoding: try #require(try txn.get(dbs.jobs, Array(id.utf8))))
                change(&j)
                try txn.put(dbs.jobs, Array(id.utf8), j.encoded)
            }
        }
        func editRun(_ id: String, _ change: @escaping (inout RunState) -> Void) -> (LogStore, Transaction, Databases) throws -> Void {
            { _, txn, dbs in
                var r = try RunState(decoding: try #require(try txn.get(dbs.runs, Array(id.utf8))))
                change(&r)
                try txn.put(dbs.runs, Array(id.utf8), r.encoded)
            }
        }
        let edits: [Edit] = [
            ("job status", editJob("r1/start") { $0.status = .failed }),
            ("job revision", editJob("r2/a") { $0.revision += 1 }),
            ("job result", editJob("r1/result1") { $0.resultJSON = Array("{\"rows\":1}".utf8) }),
            ("job options absent", editJob("r3/x") { $0.optionsJSON = Array("{}".utf8) }),
            ("job children", editJob("r1/start") { $0.children.reverse() }),
            ("job worker", editJob("r2/b") { $0.worker = "ghost" }),
            ("job ready since", editJob("r1/finish") { $0.readySince = 3 }),
            ("job deleted", { _, txn, dbs in _ = try txn.delete(dbs.jobs, Array("r3/z".utf8)) }),
            ("job added", { _, txn, dbs in
                var j = try JobState(decoding: try #require(try txn.get(dbs.jobs, Array("r3/z".utf8))))
                j.id = "r3/extra"
                try txn.put(dbs.jobs, Array(j.id.utf8), j.encoded)
            }),
            // Not noticed (a record is decoded, and decoding stops at its last field), but the
            // same for both.
            ("job bytes appended", { _, txn, dbs in
                let b = try #require(try txn.getBytes(dbs.jobs, Array("r1/start".utf8)))
                try txn.put(dbs.jobs, Array("r1/start".utf8), b + [0])
            }),
            ("run counts", editRun("r1") { $0.counts[.finished, default: 0] += 1 }),
            ("run status", editRun("r2") { $0.status = .finished }),
            ("run position", editRun("r3") { $0.position -= 1 }),
            ("run position to none", editRun("r1") { $0.position = 999_999 }),
            ("run name", editRun("r1") { $0.name = "other" }),
            ("run deleted", { _, txn, dbs in _ = try txn.delete(dbs.runs, Array("r2".utf8)) }),
            ("run added", { _, txn, dbs in
                var r = try RunState(decoding: try #require(try txn.get(dbs.runs, Array("r1".utf8))))
                r.id = "r9"
                try txn.put(dbs.runs, Array("r9".utf8), r.encoded)
            }),
            ("ready cleared", { _, txn, dbs in try txn.clear(dbs.ready) }),
            ("ready extra", { _, txn, dbs in try txn.put(dbs.ready, Array("zzzz".utf8), []) }),
            ("ready value", { _, txn, dbs in
                var first: [UInt8]?
                try txn.forEach(dbs.ready) { k, _ in first = Array(k); return false }
                try txn.put(dbs.ready, try #require(first), Array("x".utf8))
            }),
            ("waiting extra", { _, txn, dbs in try txn.put(dbs.waiting, Array("r1/start".utf8), Keys.position(1)) }),
            ("waiting cleared", { _, txn, dbs in try txn.clear(dbs.waiting) }),
            ("active extra", { _, txn, dbs in try txn.put(dbs.active, Array("result2".utf8), Keys.position(2)) }),
            ("active cleared", { _, txn, dbs in try txn.clear(dbs.active) }),
            ("head position", { store, txn, dbs in
                let h = try store.core.head(txn)
                try txn.put(dbs.meta, Keys.head, Head(position: h.position - 1, hash: h.hash, time: h.time).encoded)
            }),
            ("head hash", { store, txn, dbs in
                let h = try store.core.head(txn)
                try txn.put(dbs.meta, Keys.head, Head(position: h.position, hash: .zero, time: h.time).encoded)
            }),
        ]
        for (name, edit) in edits {
            try await withFixture { store in
                try tamper(store) { txn, dbs in try edit(store, txn, dbs) }
                let report = try expectSameVerdict(store, name)
                #expect(!report.ok || name == "job bytes appended", "\(name) went unnoticed")
            }
        }
    }

    /// A stored record that cannot be decoded is an error, not a violation, as before; on the
    /// second thread's pass too (it must end that pass and the thread cleanly).
    @Test func undecodableRecordsAreErrors() async throws {
        for (db, key) in [("jobs", "r1/start"), ("runs", "r2"), ("jobs", "r2/b")] {
            for tuning in [VerifyTuning(), VerifyTuning(batchLines: 2, secondThread: true), VerifyTuning(secondThread: false)] {
                try await withFixture { store in
                    try tamper(store) { txn, dbs in
                        let d = db == "jobs" ? dbs.jobs : dbs.runs
                        let b = try #require(try txn.getBytes(d, Array(key.utf8)))
                        try txn.put(d, Array(key.utf8), Array(b.prefix(b.count / 2)))
                    }
                    #expect(throws: (any Error).self, "reference, \(db) \(key)") { _ = try store.referenceVerify() }
                    #expect(throws: (any Error).self, "\(tuning), \(db) \(key)") { _ = try store.verify(tuning: tuning) }
                    // The store can still be read and verified after the failed verifications.
                    try tamper(store) { txn, dbs in try txn.clear(db == "jobs" ? dbs.jobs : dbs.runs) }
                    try expectSameVerdict(store, "\(db) cleared")
                }
            }
        }
    }

    /// Indexes that differ from the facts: index violations.
    @Test func tamperedIndexes() async throws {
        let dbNames: [(String, (Databases) -> Database)] = [("by_job", \.byJob), ("by_run", \.byRun), ("by_time", \.byTime), ("fact_ids", \.factIDs), ("run_args", \.runArgs)]
        for (name, db) in dbNames {
            for change in ["delete", "add", "alter"] {
                try await withFixture { store in
                    try tamper(store) { txn, dbs in
                        var entry: ([UInt8], [UInt8])?
                        try txn.forEach(db(dbs)) { k, v in entry = (Array(k), Array(v)); return false }
                        let (k, v) = try #require(entry)
                        switch change {
                        case "delete": _ = try txn.delete(db(dbs), k)
                        case "add": try txn.put(db(dbs), k + [0x7F], v)
                        default:
                            try txn.delete(db(dbs), k)
                            try txn.put(db(dbs), Array(k.dropLast()) + [k.last! ^ 1], v)
                        }
                    }
                    let report = try expectSameVerdict(store, "\(name) \(change)")
                    #expect(report.violations.contains { $0.kind == .index }, "\(name) \(change): \(report.violations)")
                }
            }
        }
        try await withFixture { store in
            try tamper(store) { txn, dbs in try txn.put(dbs.runArgs, Array("r1".utf8), Array("{}".utf8)) }
            let report = try expectSameVerdict(store, "run_args value")
            #expect(report.violations.contains { $0.kind == .index }, "\(report.violations)")
        }
    }

    /// More than 100 violations: the first 100 are kept and the pass stops where the reference
    /// stopped (with the same counts), but lines that cannot be decoded never stop it.
    @Test func manyViolations() async throws {
        let dir = TempDirectory("tamper")
        defer { dir.cleanup() }
        var options = StoreOptions()
        options.durability = .unsafeNoSync
        let store = try LogStore(path: dir.path + "/db.lmdb", options: options)
        for r in 0..<24 {
            _ = try await store.submit(RunPlan(id: "m\(r)", graph: seedDiamond))
            for type in ["start", "result1", "result2", "finish"] {
                try await store.claim("m\(r)/\(type)")
                try await store.settle("m\(r)/\(type)", .jobFinished)
            }
        }
        let lines = try factLines(store)
        // Every fact's prev off by one digit, each with a hash of its own: 312 chain violations.
        try tamper(store) { txn, dbs in
            for (p, line) in lines {
                var body = LineEdit.body(line)
                let prev = String(decoding: body.suffix(66).prefix(64), as: UTF8.self)
                body = LineEdit.settingPrev(body, String(prev.dropLast()) + (prev.last == "0" ? "1" : "0"))
                try txn.put(dbs.facts, Keys.position(p), LineEdit.line(body: body))
            }
        }
        var report = try expectSameVerdict(store, "every prev")
        #expect(report.violations.count == 100 && report.violationCount >= 100)
        // And from position 150 on, every line undecodable as well.
        try tamper(store) { txn, dbs in
            for p in 150...UInt64(lines.count) {
                try txn.put(dbs.facts, Keys.position(p), Array("{\"position\":\(p),\"oops\"".utf8))
            }
        }
        report = try expectSameVerdict(store, "undecodable tail")
        // The first 100 are at positions 1-100 as before.
        #expect(report.violations.count == 100)
        // Only undecodable lines from 40 on: the pass goes on to the end.
        try tamper(store) { txn, dbs in
            for (p, line) in lines { try txn.put(dbs.facts, Keys.position(p), line) }
            for p in 40...UInt64(lines.count) {
                try txn.put(dbs.facts, Keys.position(p), Array("garbage \(p)".utf8))
            }
        }
        report = try expectSameVerdict(store, "garbage tail")
        #expect(report.violationCount > 200)
    }
}
