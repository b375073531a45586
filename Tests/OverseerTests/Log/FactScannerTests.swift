import Foundation
import Testing

@testable import Overseer

// The scanner is verify's fast path: it must accept only lines that `Fact.decode` accepts, and
// read the same values from them. These tests generate facts of every shape, and mutate them
// with the hash kept valid, and compare the two decoders line by line.

/// Random facts of every shape the line format allows.
struct FactGenerator {
    var rng: SplitMixRNG
    /// Lines made while this is off keep to the plainer subset that the scanner reads itself.
    var wild = true

    static let alphabet: [String] = ["a", "b", "z", "0", "9", "-", "/", ".", " ", "_", "~", "\u{7f}", "\"", "\\", "\n", "\t", "\r", "\u{8}", "\u{c}", "\u{0}", "\u{1}", "\u{1f}", "é", "e\u{301}", "ß", "€", "\u{1F600}", "\u{FFFD}", "\u{FEFF}", "K", "\u{212A}"]

    mutating func string(plain: Bool = false) -> String {
        let n = rng.int(0...12)
        var s = ""
        for _ in 0..<n {
            if plain || !wild || rng.chance(70) {
                s += rng.pick(["a", "b", "r", "1", "/", "-", "x", "Q", " "])!
            } else {
                s += rng.pick(FactGenerator.alphabet)!
            }
        }
        return s
    }

    mutating func integer() -> Int64 {
        switch rng.int(0...5) {
        case 0: return 0
        case 1: return Int64(rng.int(-9...9))
        case 2: return Int64.max
        case 3: return Int64.min
        case 4: return Int64(bitPattern: rng.next())
        default: return Int64(rng.int(0...100_000))
        }
    }

    mutating func value(depth: Int) -> JSONValue {
        switch rng.int(0...(depth > 4 ? 5 : 8)) {
        case 4 where !wild: return .int(integer())
        case 0: return .null
        case 1: return .bool(rng.chance(50))
        case 2, 3: return .int(integer())
        case 4: return .double(rng.pick([0.5, -1.25, 1e-7, 3.0, 1e21, 60000.0, -0.0])!)
        case 5: return .string(string())
        case 6, 7: return object(depth: depth + 1)
        default: return .array((0..<rng.int(0...4)).map { _ in value(depth: depth + 1) })
        }
    }

    mutating func object(depth: Int) -> JSONValue {
        var members: [String: JSONValue] = [:]
        for _ in 0..<rng.int(0...5) {
            let key = rng.chance(30) ? rng.pick(["name", "priority", "lease_ms", "result", "error", "not_before", "type", "parents", "options", "args", "graph", "a", "b", "", "na", "namf"])! : string()
            members[key] = value(depth: depth)
        }
        return .object(members)
    }

    /// The data of a fact: sometimes one that the fold reads, with members of the right types.
    mutating func data() -> JSONValue {
        var d = object(depth: 1).objectValue ?? [:]
        if rng.chance(50) {
            switch rng.int(0...5) {
            case 0: d["type"] = .string(string(plain: rng.chance(70)))
            case 1: d["parents"] = .array((0..<rng.int(0...3)).map { _ in rng.chance(90) ? .string(string(plain: rng.chance(70))) : .int(1) })
            case 2: d["priority"] = .int(integer())
            case 3: d["lease_ms"] = rng.chance(80) ? .int(Int64(rng.int(0...100_000))) : .double(1.5)
            case 4: d["not_before"] = .string(Instant(microseconds: Int64(rng.int(0...2_000_000_000)) * 1_000_000).rfc3339)
            default: d["result"] = value(depth: 2)
            }
        }
        return .object(d)
    }

    mutating func optional(_ make: (inout FactGenerator) -> String) -> String? {
        rng.chance(30) ? nil : make(&self)
    }

    mutating func line() -> [UInt8] {
        wild = rng.chance(50)
        let kinds = FactKind.all.map(\.rawValue) + ["job.exploded", "", "run.created "]
        let draft = FactDraft(
            id: rng.chance(80) ? FactDraft.newID() : string(), kind: FactKind(rawValue: rng.pick(kinds)!),
            run: optional { $0.string(plain: $0.rng.chance(80)) }, job: optional { $0.string(plain: $0.rng.chance(80)) },
            author: Author(name: optional { $0.string(plain: $0.rng.chance(80)) }, host: optional { $0.string() }, pid: rng.chance(30) ? nil : Int32(truncatingIfNeeded: integer())),
            attempt: rng.chance(40) ? nil : Int(integer()), reason: optional { $0.string() }, data: data())
        let time = Instant(microseconds: rng.chance(10) ? Int64(rng.int(-62_135_596_800...253_402_300_799)) * 1_000_000 + Int64(rng.int(0...999_999)) : 1_800_000_000_000_000 + Int64(rng.int(0...1_000_000_000)))
        let revision: UInt64? = rng.chance(40) ? nil : UInt64(rng.int(1...1_000_000))
        let prev = rng.chance(10) ? Digest.zero : Digest.sha256([UInt8(truncatingIfNeeded: rng.next())])
        let (_, line) = Fact.make(position: UInt64(rng.int(1...Int(Int32.max))), time: time, draft: draft, revision: revision, prev: prev)
        return line
    }
}

/// Checks that where the scanner accepts `line`, the full decoder accepts it with the same values.
/// Returns whether the scanner accepted it.
@discardableResult
func expectScannerAgrees(_ line: [UInt8], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
    line.withUnsafeBufferPointer { b -> Bool in
        guard let f = FactScanner.scan(b) else { return false }
        let fact: Fact
        do {
            fact = try Fact.decode(line: line)
        } catch {
            Issue.record("\(what): the scanner accepted a line that Fact.decode refuses (\(error)): \(String(decoding: line, as: UTF8.self))", sourceLocation: sourceLocation)
            return true
        }
        let base = b.baseAddress!
        var scanned = f
        return withUnsafePointer(to: &scanned) { fp -> Bool in
        let s = ScannedLine(fp, base: base)
        func text(_ span: LineSpan) -> String? { ScannedLine.string(span, base) }
        #expect(f.position == fact.position && f.time == fact.time, "\(what)", sourceLocation: sourceLocation)
        #expect(text(f.id) == fact.id && s.kind == fact.kind && s.run == fact.run && s.job == fact.job, "\(what)", sourceLocation: sourceLocation)
        #expect(s.revision == fact.revision && s.worker == fact.worker && text(f.host) == fact.host && f.pid == fact.pid, "\(what)", sourceLocation: sourceLocation)
        #expect(s.attempt == fact.attempt && s.reason == fact.reason, "\(what)", sourceLocation: sourceLocation)
        #expect(f.prev == RawDigest(fact.prev) && f.hash == RawDigest(fact.hash) && f.hash.digest == fact.hash, "\(what)", sourceLocation: sourceLocation)
        #expect(f.knownKind.factKind.map { $0 == fact.kind } ?? !FactKind.all.contains(fact.kind), "\(what)", sourceLocation: sourceLocation)
        for key in [FactDataKey.name, .priority, .result, .error, .type, .parents, .options, .args, .leaseMilliseconds, .notBefore] {
            #expect(s.dataString(key) == fact.dataString(key), "\(what): \(key)", sourceLocation: sourceLocation)
            #expect(s.dataInteger(key) == fact.dataInteger(key), "\(what): \(key)", sourceLocation: sourceLocation)
            #expect(s.dataCanonicalBytes(key) == fact.dataCanonicalBytes(key), "\(what): \(key)", sourceLocation: sourceLocation)
            #expect(s.dataStringList(key) == fact.dataStringList(key), "\(what): \(key)", sourceLocation: sourceLocation)
        }
        let keys = FactKeyHashes(f, base: base), reference = FactKeyHashes(fact)
        #expect(keys.time == reference.time && keys.id == reference.id && keys.job == reference.job && keys.run == reference.run && keys.args == reference.args, "\(what): index hashes", sourceLocation: sourceLocation)
        return true
        }
    }
}

@Suite struct FactScannerTests {
    @Test func generatedLinesDecodeTheSameBothWays() throws {
        var g = FactGenerator(rng: SplitMixRNG(seed: 7))
        var fast = 0
        let n = 3000
        for i in 0..<n {
            let line = g.line()
            let fact = try Fact.decode(line: line)
            #expect(fact.line == line)
            if expectScannerAgrees(line, "line \(i)") { fast += 1 }
            line.withUnsafeBufferPointer { b in
                #expect(LineHasher.bodyHash(b) == RawDigest(Digest.sha256(Array(line.dropLast(75)) + [UInt8(ascii: "}")])))
            }
        }
        // The generator makes plenty of lines the scanner hands on (doubles, escapes, odd keys);
        // but it must take a good share itself, or this test proves little.
        #expect(fast > n / 5, "the scanner took \(fast) of \(n) lines")
        #expect(fast < n, "the scanner took every line")
    }

    /// Every kind of small damage, with the hash recomputed so that only the form is at stake.
    @Test func mutatedLinesAreNeverAcceptedWrongly() throws {
        var g = FactGenerator(rng: SplitMixRNG(seed: 11))
        let inserts: [[UInt8]] = [[0x20], [0x22], [0x5C], [0x2C], [0x7B], [0x7D], [0x5B], [0x5D], [0x3A], [0x30], [0x2D], [0x2E], [0x65], [0x0A], [0x00], [0x80], [0xC3], [0xE9], [0xED, 0xA0, 0x80], [0xF0, 0x9F, 0x98, 0x80], Array("null".utf8), Array("\\u0041".utf8), Array("\\u00e9".utf8), Array("\\/".utf8)]
        var accepted = 0, refused = 0
        for i in 0..<1500 {
            let line = g.line()
            let bodyCount = line.count - 75
            for m in 0..<12 {
                var body = Array(line.prefix(bodyCount))
                let at = g.rng.int(0...(body.count - 1))
                switch m % 6 {
                case 0: body[at] ^= UInt8(1 << g.rng.int(0...7))
                case 1: body.insert(contentsOf: g.rng.pick(inserts)!, at: at)
                case 2: body.remove(at: at)
                case 3:
                    let end = min(body.count, at + g.rng.int(1...8))
                    body.insert(contentsOf: Array(body[at..<end]), at: end)
                case 4:
                    if at + 1 < body.count { body.swapAt(at, at + 1) }
                default:
                    if body[at] >= 0x30 && body[at] <= 0x39 { body[at] = UInt8(0x30 + g.rng.int(0...9)) } else { body[at] = g.rng.pick(inserts)![0] }
                }
                body.append(UInt8(ascii: "}"))
                let mutated = LineEdit.line(body: body)
                if expectScannerAgrees(mutated, "line \(i) mutation \(m)") { accepted += 1 } else { refused += 1 }
            }
        }
        #expect(accepted > 100 && refused > 100, "accepted \(accepted), refused \(refused)")
    }

    @Test func canonicalCornersOfTheFormat() throws {
        // Hand-made data values: accepted or not, never accepted wrongly.
        let datas = [
            "{}", "{\"a\":{}}", "{\"a\":[]}", "{\"\":1}", "{\"\":1,\"a\":2}", "{\"a\":1,\"\":2}", "{\"a\":1,\"a\":2}",
            "{\"a\":1,\"b\":2}", "{\"b\":1,\"a\":2}", "{\"a\":1,\"ab\":2}", "{\"ab\":1,\"a\":2}", "{\"A\":1,\"a\":2}",
            "{\"a\":-0}", "{\"a\":0}", "{\"a\":-1}", "{\"a\":01}", "{\"a\":9223372036854775807}", "{\"a\":9223372036854775808}",
            "{\"a\":-9223372036854775808}", "{\"a\":-9223372036854775809}", "{\"a\":12345678901234567890}", "{\"a\":1.0}", "{\"a\":1e3}",
            "{\"a\":\"\\u001f\"}", "{\"a\":\"\\u001F\"}", "{\"a\":\"\\u000a\"}", "{\"a\":\"\\n\"}", "{\"a\":\"\\u0000\"}", "{\"a\":\"\\u007f\"}",
            "{\"a\":\"\u{7f}\"}", "{\"a\":\"\\/\"}", "{\"a\":\"/\"}", "{\"a\":\"\\\"\"}", "{\"a\":\"\\\\\"}", "{\"a\":\"\\b\\f\\r\\t\"}",
            "{\"a\":true}", "{\"a\":false}", "{\"a\":null}", "{\"a\":tru}", "{\"a\":nul}", "{\"a\":[1,]}", "{\"a\":[,1]}", "{\"a\":[1 ]}",
            "{\"a\":{\"b\":{\"c\":[[[[]]]]}}}", "{\"type\":\"x\\ny\"}", "{\"type\":\"x\"}", "{\"parents\":[\"a\\\"b\"]}", "{\"parents\":[\"a\",1,null]}",
            "{\"name\":7}", "{\"priority\":\"7\"}", "{\"priority\":7}", "{\"lease_ms\":1.5}", "{\"result\":{\"z\":1,\"a\":2}}",
            "{\"caf\u{e9}\":1}", "{\"a\":\"caf\u{e9}\"}", "{\"a\":\"e\u{301}\"}", "{\"a\":\"\u{1F600}\"}",
            "{\"a\":" + String(repeating: "[", count: 70) + String(repeating: "]", count: 70) + "}",
        ]
        var accepted = 0
        for (i, d) in datas.enumerated() {
            let body = "{\"position\":\(i + 1),\"time\":\"2026-12-03T14:05:00.250000Z\",\"id\":\"x\",\"kind\":\"job.created\",\"run\":\"r\",\"job\":\"r/a\",\"revision\":1,\"worker\":null,\"host\":\"h\",\"pid\":1,\"attempt\":null,\"reason\":null,\"data\":\(d),\"prev\":\"\(String(repeating: "0", count: 64))\"}"
            if expectScannerAgrees(LineEdit.line(body: Array(body.utf8)), d) { accepted += 1 }
        }
        #expect(accepted > 20)
        // And the header: integers, times, strings, digests.
        let headers: [(String, String)] = [
            ("\"position\":1", "\"position\":01"), ("\"position\":1", "\"position\":0"), ("\"position\":1", "\"position\":-1"),
            ("\"pid\":1", "\"pid\":-0"), ("\"pid\":1", "\"pid\":2147483648"), ("\"pid\":1", "\"pid\":-2147483648"), ("\"pid\":1", "\"pid\":null"),
            ("\"attempt\":null", "\"attempt\":-9223372036854775808"), ("\"attempt\":null", "\"attempt\":0"),
            ("\"revision\":1", "\"revision\":0"), ("\"revision\":1", "\"revision\":null"),
            ("\"host\":\"h\"", "\"host\":\"h\\n\""), ("\"host\":\"h\"", "\"host\":\"\u{e9}\""), ("\"host\":\"h\"", "\"host\":\"\""),
            ("\"id\":\"x\"", "\"id\":null"), ("\"kind\":\"job.created\"", "\"kind\":\"job.created\\u0000\""),
            ("14:05:00.250000Z", "14:05:00.25Z"), ("14:05:00.250000Z", "14:05:60.250000Z"), ("14:05:00.250000Z", "24:05:00.250000Z"),
            ("2026-12-03", "2026-02-29"), ("2026-12-03", "2024-02-29"), ("2026-12-03", "0000-01-01"), ("2026-12-03", "9999-12-31"),
            ("\"prev\":\"0", "\"prev\":\"A"), ("\"prev\":\"0", "\"prev\":\"g"),
        ]
        for (old, new) in headers {
            let body = "{\"position\":1,\"time\":\"2026-12-03T14:05:00.250000Z\",\"id\":\"x\",\"kind\":\"job.created\",\"run\":\"r\",\"job\":\"r/a\",\"revision\":1,\"worker\":null,\"host\":\"h\",\"pid\":1,\"attempt\":null,\"reason\":null,\"data\":{},\"prev\":\"\(String(repeating: "0", count: 64))\"}"
            #expect(body.contains(old))
            expectScannerAgrees(LineEdit.line(body: Array(body.replacingOccurrences(of: old, with: new).utf8)), "\(old) → \(new)")
        }
    }

    /// The word-at-a-time tests against their byte-at-a-time definitions: every byte value in
    /// every position, among neighbours of each kind.
    @Test func wordTricksMatchTheirDefinitions() {
        func word(_ bytes: [UInt8]) -> UInt64 { bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }
        let hex = Array("0123456789abcdef".utf8)
        for fill: UInt8 in [0x30, 0x66, 0x61, 0x39, 0x20, 0x7F, 0x00, 0xFF] {
            for position in 0..<8 {
                for value in 0...255 {
                    var bytes = [UInt8](repeating: fill, count: 8)
                    bytes[position] = UInt8(value)
                    let special = bytes.contains { !FactScanner.isPlainASCII($0) }
                    #expect(FactScanner.hasSpecialByte(word(bytes)) == special, "\(bytes)")
                    let valid = bytes.allSatisfy { hex.contains($0) }
                    if let packed = FactScanner.hexWord(word(bytes)) {
                        #expect(valid, "\(bytes)")
                        var expected: UInt32 = 0
                        for k in 0..<4 {
                            let hi = UInt32(hex.firstIndex(of: bytes[2 * k])!), lo = UInt32(hex.firstIndex(of: bytes[2 * k + 1])!)
                            expected |= (hi << 4 | lo) << (8 * UInt32(k))
                        }
                        #expect(packed == expected, "\(bytes)")
                    } else {
                        #expect(!valid, "\(bytes)")
                    }
                }
            }
        }
    }

    /// Verify with batches of a few lines, on one thread and two, agrees with the reference on an
    /// intact and a damaged store.
    @Test func smallBatchesAndBothThreadings() async throws {
        try await withFixture { store in
            let tunings = [VerifyTuning(batchLines: 1, secondThread: false), VerifyTuning(batchLines: 1, secondThread: true, inFlight: 1),
                           VerifyTuning(batchLines: 3, secondThread: true, inFlight: 2), VerifyTuning(batchLines: 7, secondThread: true), VerifyTuning(batchLines: 5, secondThread: false)]
            let reference = try store.referenceVerify()
            for t in tunings {
                let r = try store.verify(tuning: t)
                #expect(r.ok && r.facts == reference.facts && r.headHash == reference.headHash && r.runs == reference.runs && r.jobs == reference.jobs, "\(t): \(r)")
            }
            let p = try position(store, .jobFinished, job: "r1/start")
            #expect(try rewriteFact(store, at: p) { LineEdit.replace($0, "\"rows\":1200", "\"rows\":1200.5") })
            try tamper(store) { txn, dbs in _ = try txn.delete(dbs.facts, Keys.position(p + 3)) }
            let damaged = try store.referenceVerify()
            #expect(!damaged.ok)
            for t in tunings {
                let r = try store.verify(tuning: t)
                #expect(r.violations.map(normalized) == damaged.violations.map(normalized) && r.facts == damaged.facts, "\(t): \(r.violations)")
            }
        }
    }
}
