import Foundation
import Testing

@testable import Overseer

/// FIPS 180-4 SHA-256 in plain Swift: the test's own, so hashes are checked the way a third party
/// would, without the library's libcrypto call.
enum ReferenceSHA256 {
    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    static func hex(_ message: [UInt8]) -> String {
        var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        var m = message
        let bitLength = UInt64(message.count) * 8
        m.append(0x80)
        while m.count % 64 != 56 { m.append(0) }
        for i in (0..<8).reversed() { m.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(i) * 8))) }
        func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        var w = [UInt32](repeating: 0, count: 64)
        for chunk in stride(from: 0, to: m.count, by: 64) {
            for i in 0..<16 {
                w[i] = UInt32(m[chunk + 4 * i]) << 24 | UInt32(m[chunk + 4 * i + 1]) << 16 | UInt32(m[chunk + 4 * i + 2]) << 8 | UInt32(m[chunk + 4 * i + 3])
            }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
            for i in 0..<64 {
                let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                let ch = (e & f) ^ (~e & g)
                let t1 = hh &+ s1 &+ ch &+ k[i] &+ w[i]
                let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                let maj = (a & b) ^ (a & c) ^ (b & c)
                let t2 = s0 &+ maj
                (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
            }
            for (i, v) in [a, b, c, d, e, f, g, hh].enumerated() { h[i] = h[i] &+ v }
        }
        return h.map { String(format: "%08x", $0) }.joined()
    }

    static func hex(_ text: String) -> String { hex(Array(text.utf8)) }
}

/// Splits a fact line the way a third party would: the line must end with
/// `,"hash":"<64 hex>"}`; the body is the line without that member.
func splitHash(_ line: String) -> (body: String, hash: String)? {
    let suffix = "\"}"
    let marker = ",\"hash\":\""
    guard line.hasSuffix(suffix), let range = line.range(of: marker, options: .backwards) else { return nil }
    let hash = String(line[range.upperBound..<line.index(line.endIndex, offsetBy: -2)])
    guard hash.count == 64, hash.allSatisfy({ "0123456789abcdef".contains($0) }) else { return nil }
    return (String(line[..<range.lowerBound]) + "}", hash)
}

func jsonParseError(_ text: String) -> JSONError? {
    do {
        _ = try JSONValue.parse(text)
        return nil
    } catch {
        return error
    }
}

func jsonParseError(_ bytes: [UInt8]) -> JSONError? {
    do {
        _ = try JSONValue.parse(bytes)
        return nil
    } catch {
        return error
    }
}

@Suite struct JSONFormatTests {
    @Test func parsesScalarsAndContainers() throws {
        #expect(try JSONValue.parse("null") == .null)
        #expect(try JSONValue.parse(" true ") == .bool(true))
        #expect(try JSONValue.parse("\n\tfalse\r\n") == .bool(false))
        #expect(try JSONValue.parse("[]") == .array([]))
        #expect(try JSONValue.parse("{}") == .object([:]))
        #expect(try JSONValue.parse(#"{"a":[1,{"b":null}],"c":"d"}"#) == ["a": [1, ["b": nil]], "c": "d"])
        #expect(try JSONValue.parse(#" [ 1 , 2 ] "#) == [1, 2])
    }

    @Test func numbers() throws {
        #expect(try JSONValue.parse("0") == .int(0))
        #expect(try JSONValue.parse("-0") == .int(0))
        #expect(try JSONValue.parse("42") == .int(42))
        #expect(try JSONValue.parse("-17") == .int(-17))
        #expect(try JSONValue.parse("9223372036854775807") == .int(Int64.max))
        #expect(try JSONValue.parse("-9223372036854775808") == .int(Int64.min))
        // Past Int64: a double, not an overflow.
        #expect(try JSONValue.parse("9223372036854775808") == .double(9_223_372_036_854_775_808.0))
        #expect(try JSONValue.parse("1.5") == .double(1.5))
        #expect(try JSONValue.parse("1.0") == .double(1.0))
        #expect(try JSONValue.parse("-2.5e3") == .double(-2500))
        #expect(try JSONValue.parse("1E2") == .double(100))
        #expect(try JSONValue.parse("1e-2") == .double(0.01))
        #expect(try JSONValue.parse("2E+2") == .double(200))
        for bad in ["01", "-01", "1.", ".5", "-", "+1", "1e", "1e+", "0x10", "1.5.2", "--1", "- 1", "NaN", "Infinity", "1e400", "-1e400"] {
            #expect(jsonParseError(bad) != nil, "\(bad) must be rejected")
        }
        #expect(jsonParseError("01")?.message == "leading zeros are not allowed")
        #expect(jsonParseError("1e400")?.message == "number out of range")
        // Integers stay integers through a round trip; doubles keep a fraction or exponent.
        #expect(JSONValue.int(-12345).canonicalString == "-12345")
        #expect(JSONValue.double(1.5).canonicalString == "1.5")
        #expect(JSONValue.double(100).canonicalString == "100.0")
        #expect(JSONValue.double(.nan).canonicalString == "null")
        #expect(JSONValue.double(.infinity).canonicalString == "null")
        for d in [0.1, -2.5e-300, 1e21, 123456.789, Double.leastNonzeroMagnitude, Double.greatestFiniteMagnitude] {
            let text = JSONValue.double(d).canonicalString
            #expect(try JSONValue.parse(text) == .double(d), "\(d) written as \(text)")
        }
        #expect(JSONValue.double(2).intValue == 2)
        #expect(JSONValue.double(2.5).intValue == nil)
    }

    @Test func stringEscapes() throws {
        #expect(try JSONValue.parse(#""a\"b\\c\/d\be\ff\ng\rh\ti""#) == .string("a\"b\\c/d\u{8}e\u{c}f\ng\rh\ti"))
        #expect(try JSONValue.parse(#""\u0041\u00e9\u20AC""#) == .string("Aé€"))
        #expect(try JSONValue.parse(#""\u0000""#) == .string("\u{0}"))
        // The writer escapes only what it must: quote, backslash and control characters.
        let s = JSONValue.string("q\"b\\s/n\nr\rt\tb\u{8}f\u{c}z\u{0}u\u{1f}d\u{7f}é😀\u{2028}")
        #expect(s.canonicalString == #""q\"b\\s/n\nr\rt\tb\bf\fz\u0000u\u001fd"# + "\u{7f}é😀\u{2028}\"")
        #expect(try JSONValue.parse(s.canonicalString) == s)
        for bad in [#""\x""#, #""\u12""#, #""\u12G4""#, #""abc"#, "\"a\nb\"", "\"a\u{1}b\"", #""\"#] {
            #expect(jsonParseError(bad) != nil, "\(bad.debugDescription) must be rejected")
        }
        #expect(jsonParseError("\"a\tb\"")?.message == "unescaped control character in string")
        #expect(jsonParseError(#""abc"#)?.message == "unterminated string")
    }

    @Test func unicodeAndSurrogates() throws {
        #expect(try JSONValue.parse(#""\ud83d\ude00""#) == .string("😀"))
        #expect(try JSONValue.parse(#""\uD834\uDD1E""#) == .string("𝄞"))
        #expect(try JSONValue.parse("\"😀é\"") == .string("😀é"))
        #expect(jsonParseError(#""\ud83d""#)?.message == "unpaired surrogate in \\u escape")
        #expect(jsonParseError(#""\ud83dx""#)?.message == "unpaired surrogate in \\u escape")
        #expect(jsonParseError(#""\ude00""#)?.message == "unpaired surrogate in \\u escape")
        #expect(jsonParseError(#""\ud83d\u0041""#)?.message == "invalid low surrogate in \\u escape")
        // Invalid UTF-8: a bad continuation, an overlong form, an encoded surrogate, a stray byte.
        for bytes: [UInt8] in [[0x22, 0xC3, 0x28, 0x22], [0x22, 0xC0, 0xAF, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0x5C, 0x6E, 0xFF, 0x22]] {
            #expect(jsonParseError(bytes)?.message == "invalid UTF-8 in string", "\(bytes)")
        }
        #expect(jsonParseError([0xFF]) != nil)
        // Non-ASCII is written raw, keys sorted by UTF-8 bytes (not by Swift's String order).
        let o: JSONValue = ["é": 1, "z": 2, "Z": 3, "a": 4, "😀": 5, "\u{FF5E}": 6]
        #expect(o.canonicalString == "{\"Z\":3,\"a\":4,\"z\":2,\"é\":1,\"\u{FF5E}\":6,\"😀\":5}")
    }

    @Test func duplicateKeysAreRejectedWithLineAndColumn() throws {
        let e = try #require(jsonParseError("{\n  \"a\": 1,\n  \"a\": 2\n}"))
        #expect(e.message == "duplicate key \"a\"")
        #expect(e.line == 3)
        #expect(e.column == 3)
        #expect(e.offset == 14)
        #expect(e.description == "line 3, column 3: duplicate key \"a\"")
        // Columns count characters, not bytes.
        let u = try #require(jsonParseError(#"{"é":1,"é":2}"#))
        #expect(u.message == "duplicate key \"é\"")
        #expect((u.line, u.column, u.offset) == (1, 8, 8))
        // Nested objects are checked too; equal keys in different objects are fine.
        #expect(jsonParseError(#"{"a":{"b":1,"b":2}}"#)?.message == "duplicate key \"b\"")
        #expect(try JSONValue.parse(#"{"a":{"a":1},"b":{"a":2}}"#) == ["a": ["a": 1], "b": ["a": 2]])
    }

    @Test func canonicallyEquivalentNamesAreRefusedClearly() {
        // RFC 8259 §8.3 compares names code unit by code unit, so "é" precomposed (U+00E9) and
        // decomposed (e + U+0301) are different names; Swift's String == calls them equal. Rather
        // than silently merging them, the parser refuses them with a message that says why.
        let nfc = "\u{E9}", nfd = "e\u{301}"
        let both = "{\"\(nfc)\":1,\"\(nfd)\":2}"
        #expect(jsonParseError(both)?.message == "keys \"\(nfc)\" and \"\(nfd)\" differ only in Unicode normalization; use one form")
        // Values that encode to different bytes must not compare equal.
        #expect(JSONValue.string(nfc) != JSONValue.string(nfd), "values with different canonical bytes compare equal")
        #expect(JSONValue.object(["k": .string(nfc)]) != JSONValue.object(["k": .string(nfd)]))
        #expect(JSONValue.string(nfc).canonicalBytes != JSONValue.string(nfd).canonicalBytes)
    }

    @Test func depthLimit() throws {
        let n = JSONValue.maximumDepth
        #expect(n == 512)
        let ok = String(repeating: "[", count: n) + String(repeating: "]", count: n)
        let value = try JSONValue.parse(ok)
        #expect(value.canonicalString == ok)
        let deep = String(repeating: "[", count: n + 1) + String(repeating: "]", count: n + 1)
        let e = try #require(jsonParseError(deep))
        #expect(e.message == "nesting deeper than 512 levels")
        #expect((e.line, e.column) == (1, n + 1))
        let objects = String(repeating: #"{"a":"#, count: n + 1) + "1" + String(repeating: "}", count: n + 1)
        #expect(jsonParseError(objects)?.message == "nesting deeper than 512 levels")
        // Far deeper input fails cleanly too (no stack exhaustion).
        #expect(jsonParseError(String(repeating: "[", count: 200_000))?.message == "nesting deeper than 512 levels")
    }

    @Test func trailingGarbageAndStructuralErrors() throws {
        let e = try #require(jsonParseError("{} x"))
        #expect(e.message == "unexpected content after the JSON value")
        #expect((e.line, e.column, e.offset) == (1, 4, 3))
        let multi = try #require(jsonParseError("[1,\n2]\n]"))
        #expect((multi.line, multi.column) == (3, 1))
        for bad in ["", "   ", "1 2", "[1,]", "[1 2]", #"{"a":1,}"#, #"{"a" 1}"#, #"{a:1}"#, "[", "{", "nul", "nullx", "truefalse", "[1]]", #"{"a":1}}"#, "\u{FEFF}1"] {
            #expect(jsonParseError(bad) != nil, "\(bad.debugDescription) must be rejected")
        }
        #expect(jsonParseError("")?.message == "unexpected end of input, expected a value")
        #expect(jsonParseError("tru")?.message == "invalid literal, expected 'true'")
    }

    @Test func canonicalFormRoundTrips() throws {
        let text = #"{"a":[1,-2,3.25,true,false,null,"x"],"b":{"c":{}},"d":"\u0007\\"}"#
        let v = try JSONValue.parse(text)
        #expect(v.canonicalString == text)
        #expect(try JSONValue.parse(v.canonicalBytes) == v)
        // Whitespace and key order do not survive; the value does.
        let loose = try JSONValue.parse(" { \"d\" : \"\\u0007\\\\\" , \"b\":{\"c\":{ }},\"a\":[1,-2,3.25,true,false,null,\"\\u0078\"] } ")
        #expect(loose == v)
        #expect(loose.canonicalString == text)
    }
}

@Suite struct InstantFormatTests {
    @Test func formatsWithSixFractionalDigitsInUTC() {
        #expect(Instant(microseconds: 0).rfc3339 == "1970-01-01T00:00:00.000000Z")
        #expect(Instant(microseconds: 1).rfc3339 == "1970-01-01T00:00:00.000001Z")
        #expect(Instant(microseconds: -1).rfc3339 == "1969-12-31T23:59:59.999999Z")
        #expect(Instant(microseconds: 1_796_306_700_250_000).rfc3339 == "2026-12-03T14:05:00.250000Z")
        #expect(Instant(microseconds: 951_782_400_000_000).rfc3339 == "2000-02-29T00:00:00.000000Z")
        #expect(Instant(microseconds: 253_402_300_799_999_999).rfc3339 == "9999-12-31T23:59:59.999999Z")
        #expect(Instant(microseconds: -62_135_596_800_000_000).rfc3339 == "0001-01-01T00:00:00.000000Z")
    }

    @Test func roundTripsRandomInstants() {
        var rng = SplitMixRNG(seed: overseerTestSeed(0x1257A47))
        let lo: Int64 = -62_135_596_800_000_000  // 0001-01-01
        let hi: Int64 = 253_402_300_799_999_999  // 9999-12-31T23:59:59.999999
        for _ in 0..<5000 {
            let m = lo + Int64(rng.next() % UInt64(hi - lo + 1))
            let t = Instant(microseconds: m)
            #expect(Instant(rfc3339: t.rfc3339) == t, "\(m) → \(t.rfc3339)")
        }
        // Agrees with Foundation's calendar arithmetic.
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        for _ in 0..<500 {
            let seconds = Int64(rng.next() % 4_102_444_800)  // 1970..2100
            let t = Instant(microseconds: seconds * 1_000_000)
            #expect(t.rfc3339 == f.string(from: t.date).dropLast() + ".000000Z", "\(seconds)")
        }
    }

    @Test func parsesOffsetsAndFractions() throws {
        let base = try #require(Instant(rfc3339: "2026-12-03T12:05:00Z"))
        #expect(Instant(rfc3339: "2026-12-03T14:05:00+02:00") == base)
        #expect(Instant(rfc3339: "2026-12-03T06:35:00-05:30") == base)
        #expect(Instant(rfc3339: "2026-12-04T00:05:00+12:00") == base)
        #expect(Instant(rfc3339: "2026-12-03T12:05:00-00:00") == base)
        #expect(Instant(rfc3339: "2026-12-03t12:05:00z") == base)
        #expect(Instant(rfc3339: "2026-12-03 12:05:00Z") == base)
        #expect(Instant(rfc3339: "2026-12-03T12:05:00.5Z") == base.adding(milliseconds: 500))
        #expect(Instant(rfc3339: "2026-12-03T12:05:00.000001Z")?.microseconds == base.microseconds + 1)
        #expect(Instant(rfc3339: "2026-12-03T12:05:00.123456789Z")?.microseconds == base.microseconds + 123_456)
        #expect(Instant(rfc3339: "2026-12-03T12:05:00.999999999+01:00")?.microseconds == base.microseconds - 3_600_000_000 + 999_999)
        // Across a day boundary by the offset.
        #expect(Instant(rfc3339: "2027-01-01T00:30:00+01:00") == Instant(rfc3339: "2026-12-31T23:30:00Z"))
        #expect(Instant(rfc3339: "1969-12-31T23:59:59.999999Z")?.microseconds == -1)
    }

    @Test func rejectsInvalidText() {
        let bad = [
            "2026-02-30T00:00:00Z", "2026-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-01-00T00:00:00Z",
            "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z", "2026-01-01T23:00:61Z", "2026-01-01T00:00:00",
            "2026-01-01T00:00:00+0100", "2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00+01:60",
            "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00.1234567890Z", "2026-01-01T00:00:00ZZ",
            "2026-01-01T00:00:00Z ", " 2026-01-01T00:00:00Z", "26-01-01T00:00:00Z", "2026-1-01T00:00:00Z",
            "2026-01-01X00:00:00Z", "2026/01/01T00:00:00Z", "", "2026-01-01", "+2026-01-01T00:00:00Z",
            "20260-01-01T00:00:00Z", "2026-01-01T00:00:00,5Z",
        ]
        for text in bad { #expect(Instant(rfc3339: text) == nil, "\(text) must be rejected") }
    }

    @Test func leapYears() throws {
        for year in [1600, 2000, 2004, 2024, 2400, 1996] {
            #expect(Instant(rfc3339: "\(year)-02-29T00:00:00Z") != nil, "\(year) is a leap year")
        }
        for year in [1700, 1800, 1900, 2100, 2023, 2025, 2200] {
            #expect(Instant(rfc3339: "\(year)-02-29T00:00:00Z") == nil, "\(year) is not a leap year")
        }
        let feb28 = try #require(Instant(rfc3339: "2024-02-28T12:00:00Z"))
        #expect(feb28.adding(seconds: 86_400).rfc3339 == "2024-02-29T12:00:00.000000Z")
        #expect(feb28.adding(seconds: 2 * 86_400).rfc3339 == "2024-03-01T12:00:00.000000Z")
        let feb28b = try #require(Instant(rfc3339: "2100-02-28T12:00:00Z"))
        #expect(feb28b.adding(seconds: 86_400).rfc3339 == "2100-03-01T12:00:00.000000Z")
        #expect(try #require(Instant(rfc3339: "2024-12-31T00:00:00Z")).seconds(to: try #require(Instant(rfc3339: "2025-01-01T00:00:00Z"))) == 86_400)
        #expect(try #require(Instant(rfc3339: "2024-01-01T00:00:00Z")).seconds(to: try #require(Instant(rfc3339: "2025-01-01T00:00:00Z"))) == 366 * 86_400)
    }
}

@Suite struct FactLineTests {
    /// A store with a few facts of different kinds; returns the lines as a third party reads them
    /// from an export file.
    func exportedLines(_ store: LogStore, _ dir: String) async throws -> [String] {
        _ = try await store.append(
            FactDraft(id: "fixed-id-1", kind: .workerStarted, author: Author(name: "w\"1", host: "h\u{e9}", pid: 42), reason: "r\n", data: ["b": 1, "a": ["x", nil, true, 1.5]]),
            expecting: nil)
        _ = try await store.submit(RunPlan(id: "r1", graph: seedDiamond, args: ["k": "v"]))
        try await store.claim("r1/start", worker: "w2")
        try await store.settle("r1/start", .jobFinished, data: ["result": ["rows": 10]])
        _ = try await store.append(FactDraft(kind: .jobRejected, run: "r1", job: "r1/start", author: Author(name: "w9"), attempt: 1, reason: "late"), expecting: nil)
        let file = dir + "/export.jsonl"
        #expect(try store.export(to: file) == 9)
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(text.hasSuffix("\n"))
        return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }

    @Test func referenceHashMatchesKnownVectors() {
        #expect(ReferenceSHA256.hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(ReferenceSHA256.hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(ReferenceSHA256.hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(ReferenceSHA256.hex(String(repeating: "a", count: 1000)) == Digest.sha256(Array(String(repeating: "a", count: 1000).utf8)).hex)
    }

    @Test func aFactLineIsItsCanonicalBodyPlusTheHashOfThatBody() async throws {
        let dir = TempDirectory("lines")
        defer { dir.cleanup() }
        try await withStore { store, _ in
            let lines = try await exportedLines(store, dir.path)
            var previousHash = String(repeating: "0", count: 64)
            for (i, line) in lines.enumerated() {
                guard let (body, hash) = splitHash(line) else {
                    Issue.record("line \(i + 1) does not end with the hash member: \(line)")
                    continue
                }
                #expect(ReferenceSHA256.hex(body) == hash, "line \(i + 1): hash is not SHA-256 of the body")
                #expect(body.hasPrefix("{\"position\":\(i + 1),\"time\":\""), "line \(i + 1)")
                #expect(body.hasSuffix(",\"prev\":\"\(previousHash)\"}"), "line \(i + 1): prev must be the previous line's hash")
                previousHash = hash
                // The library agrees.
                let fact = try Fact.decode(line: Array(line.utf8))
                #expect(fact.hash.hex == hash)
                #expect(String(decoding: fact.canonicalBody, as: UTF8.self) == body)
                #expect(String(decoding: fact.line, as: UTF8.self) == line)
            }
            // The exact member order, absent values as null, data keys sorted.
            let first = try #require(try store.fact(at: 1))
            let expected = "{\"position\":1,\"time\":\"\(first.time.rfc3339)\",\"id\":\"fixed-id-1\",\"kind\":\"worker.started\",\"run\":null,\"job\":null,\"revision\":null,\"worker\":\"w\\\"1\",\"host\":\"h\u{e9}\",\"pid\":42,\"attempt\":null,\"reason\":\"r\\n\",\"data\":{\"a\":[\"x\",null,true,1.5],\"b\":1},\"prev\":\"\(String(repeating: "0", count: 64))\",\"hash\":\"\(first.hash.hex)\"}"
            #expect(lines[0] == expected)
            #expect(first.time.rfc3339.count == 27)
            // A job fact carries run, job, revision and attempt.
            let claim = try #require(lines.first { $0.contains("\"kind\":\"job.claimed\"") })
            #expect(claim.contains(",\"run\":\"r1\",\"job\":\"r1/start\",\"revision\":2,\"worker\":\"w2\","))
            #expect(claim.contains(",\"attempt\":1,\"reason\":null,\"data\":{\"lease_ms\":60000},\"prev\":"))
            let rejected = try #require(lines.last)
            #expect(rejected.contains("\"kind\":\"job.rejected\",\"run\":\"r1\",\"job\":\"r1/start\",\"revision\":null,"))
            #expect(try store.headHash().hex == splitHash(rejected)?.hash)
        }
    }

    @Test func decodeRejectsNonCanonicalLines() async throws {
        let dir = TempDirectory("lines")
        defer { dir.cleanup() }
        try await withStore { store, _ in
            let lines = try await exportedLines(store, dir.path)
            let line = lines[0]
            let fact = try Fact.decode(line: Array(line.utf8))
            #expect(fact.id == "fixed-id-1")
            #expect(fact.worker == "w\"1" && fact.pid == 42 && fact.reason == "r\n")
            #expect(fact.data == ["b": 1, "a": ["x", nil, true, 1.5]])

            func rejection(_ variant: String) -> FactDecodingError? {
                do {
                    _ = try Fact.decode(line: Array(variant.utf8))
                    return nil
                } catch {
                    return error
                }
            }
            // Same JSON value, different bytes: refused as non-canonical, not as a hash mismatch.
            let idMember = ",\"id\":\"fixed-id-1\""
            let reordered = line.replacingOccurrences(of: idMember, with: "").replacingOccurrences(of: ",\"run\":", with: idMember + ",\"run\":")
            #expect(reordered != line)
            #expect(try JSONValue.parse(reordered) == JSONValue.parse(line))
            let variants: [(String, String)] = [
                ("reordered keys", reordered),
                ("space after a colon", line.replacingOccurrences(of: "\"position\":1", with: "\"position\": 1")),
                ("space between members", line.replacingOccurrences(of: ",\"id\":", with: ", \"id\":")),
                ("leading space", " " + line),
                ("trailing newline", line + "\n"),
                ("a needless \\u escape", line.replacingOccurrences(of: "fixed-id-1", with: "fixed-id-\\u0031")),
                ("data keys unsorted", line.replacingOccurrences(of: "{\"a\":[\"x\",null,true,1.5],\"b\":1}", with: "{\"b\":1,\"a\":[\"x\",null,true,1.5]}")),
                ("position as a float", line.replacingOccurrences(of: "\"position\":1,", with: "\"position\":1.0,")),
                ("upper-case hex", line.replacingOccurrences(of: fact.hash.hex, with: fact.hash.hex.uppercased())),
            ]
            for (name, variant) in variants {
                #expect(variant != line, "\(name): the variant must differ")
                let e = rejection(variant)
                #expect(e != nil, "\(name) must be refused")
                #expect(e?.isHashMismatch == false, "\(name): \(e?.message ?? "")")
            }
            #expect(rejection(reordered)?.message == "fact is not in canonical form")
            // Canonical, but a field changed: the hash no longer matches.
            let changed = try #require(rejection(line.replacingOccurrences(of: "\"pid\":42", with: "\"pid\":43")))
            #expect(changed.isHashMismatch)
            #expect(changed.position == 1)
            #expect(changed.message.hasPrefix("hash mismatch: stored \(fact.hash.hex), computed "))
            // Members missing or extra.
            #expect(rejection(line.replacingOccurrences(of: ",\"reason\":\"r\\n\"", with: ""))?.message == "missing 'reason'")
            #expect(rejection(line.replacingOccurrences(of: ",\"prev\":", with: ",\"zzz\":1,\"prev\":"))?.message == "unexpected members (a fact has exactly 15)")
            #expect(rejection(String(line.dropLast(2)) + "\"")?.message.hasPrefix("not valid JSON") == true)
            // Every line of the log decodes and re-encodes to itself.
            for l in lines {
                #expect(String(decoding: try Fact.decode(line: Array(l.utf8)).line, as: UTF8.self) == l)
            }
        }
    }
}
