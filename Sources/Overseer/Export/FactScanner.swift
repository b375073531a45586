import CCrypto
import Foundation

// The fast path of `verify()`: one pass over a fact line that both reads its fields and proves
// that the line is exactly what `FactCoding.body` + `appendHash` would write for them, so that
// the line need not be re-encoded and compared. It accepts a subset of canonical lines: every
// string free of escapes outside `data`, object keys of plain ASCII, integers only (no doubles),
// modest nesting. Anything else (including every line that is not canonical) makes it give up,
// and the line goes through `Fact.decode` as before, which decides and explains. So the scanner
// never has to explain an error, and it must never accept a line that `Fact.decode` refuses.

/// A byte range `[start, end)` of a line. `end == 0` means absent: no value ends at offset 0.
struct LineSpan: Sendable, Equatable {
    var start: UInt32 = 0
    var end: UInt32 = 0

    @inline(__always) var isPresent: Bool { end != 0 }
    @inline(__always) var count: Int { Int(end &- start) }
}

/// A SHA-256 digest as four words (the 32 bytes in memory order): compared without allocating.
struct RawDigest: Sendable, Equatable {
    var w0: UInt64 = 0, w1: UInt64 = 0, w2: UInt64 = 0, w3: UInt64 = 0

    static let zero = RawDigest()

    init() {}

    init(_ d: Digest) {
        self.init()
        d.bytes.withUnsafeBytes { b in
            w0 = b.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
            w1 = b.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            w2 = b.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
            w3 = b.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
        }
    }

    init(bytes b: UnsafeRawPointer) {
        w0 = b.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
        w1 = b.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        w2 = b.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
        w3 = b.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
    }

    var digest: Digest {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBytes { o in
            o.storeBytes(of: w0, toByteOffset: 0, as: UInt64.self)
            o.storeBytes(of: w1, toByteOffset: 8, as: UInt64.self)
            o.storeBytes(of: w2, toByteOffset: 16, as: UInt64.self)
            o.storeBytes(of: w3, toByteOffset: 24, as: UInt64.self)
        }
        return Digest(bytes: out)
    }
}

/// What the scanner read of one canonical line: offsets into it, and the values that are not
/// strings. Plain values only, so batches of them cross threads as they are.
struct ScannedFact: Sendable {
    var position: UInt64 = 0
    var time = Instant(microseconds: 0)
    /// String contents (without quotes); absent for `null`.
    var id = LineSpan(), kind = LineSpan(), run = LineSpan(), job = LineSpan()
    var worker = LineSpan(), host = LineSpan(), reason = LineSpan()
    var knownKind = KnownKind.other
    /// 0 for `null` (a revision is at least 1).
    var revision: UInt64 = 0
    var pid: Int32?
    var attempt: Int64?
    /// The members of `data` that the fold and verify read: each value's JSON text.
    var name = LineSpan(), priority = LineSpan(), leaseMilliseconds = LineSpan(), result = LineSpan()
    var error = LineSpan(), notBefore = LineSpan(), type = LineSpan(), parents = LineSpan()
    var options = LineSpan(), args = LineSpan()
    var prev = RawDigest()
    var hash = RawDigest()

    func member(_ key: FactDataKey) -> LineSpan {
        switch key {
        case .name: name
        case .priority: priority
        case .leaseMilliseconds: leaseMilliseconds
        case .result: result
        case .error: error
        case .notBefore: notBefore
        case .type: type
        case .parents: parents
        case .options: options
        case .args: args
        }
    }
}

enum FactScanner {
    /// Nesting deeper than this inside `data` is left to the full decoder.
    static let maximumDepth = 64

    /// Reads a line in canonical form; nil when the line is not canonical, or canonical in a way
    /// the scanner does not handle. The hash is not checked here.
    static func scan(_ line: UnsafeBufferPointer<UInt8>) -> ScannedFact? {
        guard let base = line.baseAddress, line.count >= 200, line.count < Int(UInt32.max) else { return nil }
        var s = Scanner(base: base, count: line.count)
        return s.fact()
    }

    /// The elements of a canonical JSON array (each element's text); nil when `span` is not an
    /// array.
    static func forEachElement(of span: LineSpan, in base: UnsafePointer<UInt8>, _ body: (LineSpan) -> Void) -> Bool {
        guard span.isPresent, base[Int(span.start)] == UInt8(ascii: "[") else { return false }
        var s = Scanner(base: base, count: Int(span.end))
        s.i = Int(span.start) + 1
        if s.peek == UInt8(ascii: "]") { return true }
        while true {
            let start = s.i
            guard s.value(depth: 1) else { return false }
            body(LineSpan(start: UInt32(start), end: UInt32(s.i)))
            if s.peek == UInt8(ascii: ",") {
                s.i += 1
                continue
            }
            return s.peek == UInt8(ascii: "]")
        }
    }

    /// A canonical integer's value (the text `String(Int64)` writes); nil for anything else.
    static func integer(_ span: LineSpan, in base: UnsafePointer<UInt8>) -> Int64? {
        guard span.isPresent else { return nil }
        var s = Scanner(base: base, count: Int(span.end))
        s.i = Int(span.start)
        guard let v = s.integer(), s.i == Int(span.end) else { return nil }
        return v
    }

    /// Hex digit values, 0xFF for bytes that are not lower-case hex digits.
    static let hexValues: [UInt8] = (0..<256).map { c in
        switch c {
        case 0x30...0x39: UInt8(c - 0x30)
        case 0x61...0x66: UInt8(c - 0x61 + 10)
        default: 0xFF
        }
    }

    static let ones: UInt64 = 0x0101_0101_0101_0101
    static let highs: UInt64 = 0x8080_8080_8080_8080

    /// Whether any of the eight bytes of `x` is not one a canonical string holds as it is when
    /// it is ASCII: a control character, `"`, `\\`, or a byte of 0x80 or more. (The usual
    /// word tricks: exact as a yes or no.)
    @inline(__always) static func hasSpecialByte(_ x: UInt64) -> Bool {
        @inline(__always) func hasZero(_ v: UInt64) -> Bool { (v &- ones) & ~v & highs != 0 }
        let control = (x &- ones &* 0x20) & ~x & highs
        return x & highs != 0 || control != 0 || hasZero(x ^ (ones &* 0x22)) || hasZero(x ^ (ones &* 0x5C))
    }

    /// Eight lower-case hex digits (in memory order) as four bytes (in memory order in the low
    /// 32 bits); nil when one is not a lower-case hex digit.
    @inline(__always) static func hexWord(_ x: UInt64) -> UInt32? {
        guard x & highs == 0 else { return nil }
        // For bytes below 0x80, adding 0x80 - lo sets a byte's high bit when it is >= lo, and
        // adding 0x7F - hi when it is > hi; no carry crosses into the next byte.
        let atLeast0 = x &+ ones &* (0x80 - 0x30), above9 = x &+ ones &* (0x7F - 0x39)
        let atLeastA = x &+ ones &* (0x80 - 0x61), aboveF = x &+ ones &* (0x7F - 0x66)
        let digit = atLeast0 & ~above9 & highs, letter = atLeastA & ~aboveF & highs
        guard digit | letter == highs else { return nil }
        // '0'-'9' are 0x30-0x39 and 'a'-'f' 0x61-0x66: the low four bits, plus 9 for letters.
        let nibbles = (x & (ones &* 0x0F)) &+ (letter >> 7) &* 9
        // Byte 2j becomes nibble 2j << 4 | nibble 2j+1; then the even bytes are packed.
        var v = ((nibbles << 4) | (nibbles >> 8)) & 0x00FF_00FF_00FF_00FF
        v = (v | (v >> 8)) & 0x0000_FFFF_0000_FFFF
        v = (v | (v >> 16)) & 0x0000_0000_FFFF_FFFF
        return UInt32(truncatingIfNeeded: v)
    }

    /// Bytes that a canonical string holds as they are when they are ASCII: 0x20-0x7F but `"`
    /// and `\`.
    @inline(__always) static func isPlainASCII(_ b: UInt8) -> Bool {
        b >= 0x20 && b < 0x80 && b != 0x22 && b != 0x5C
    }

    struct Scanner {
        let base: UnsafePointer<UInt8>
        let count: Int
        var i = 0
        /// Escapes seen so far (strings in `data` may hold them).
        var escapes = 0

        init(base: UnsafePointer<UInt8>, count: Int) {
            self.base = base
            self.count = count
        }

        @inline(__always) var peek: UInt8 { i < count ? base[i] : 0 }

        /// The bytes of `s` at `i`; compared inline (a call to memcmp for each of a line's
        /// dozen short member names cost more than the comparisons).
        @inline(__always) mutating func literal(_ s: StaticString) -> Bool {
            let n = s.utf8CodeUnitCount
            guard i + n <= count else { return false }
            let p = UnsafeRawPointer(s.utf8Start), q = UnsafeRawPointer(base + i)
            var k = 0
            while k + 8 <= n {
                guard q.loadUnaligned(fromByteOffset: k, as: UInt64.self) == p.loadUnaligned(fromByteOffset: k, as: UInt64.self) else { return false }
                k += 8
            }
            while k < n {
                guard q.load(fromByteOffset: k, as: UInt8.self) == p.load(fromByteOffset: k, as: UInt8.self) else { return false }
                k += 1
            }
            i += n
            return true
        }

        /// Skips whole words of bytes that a string holds as they are (ASCII but control
        /// characters, `"` and `\`), eight at a time.
        @inline(__always) mutating func skipPlainWords() {
            while i + 8 <= count {
                let x = UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)
                if FactScanner.hasSpecialByte(x) { return }
                i += 8
            }
        }

        /// `-?(0|[1-9][0-9]*)` within Int64, and not `-0`: what `String(Int64)` writes.
        mutating func integer() -> Int64? {
            var negative = false
            if peek == UInt8(ascii: "-") {
                negative = true
                i += 1
            }
            guard i < count else { return nil }
            let first = base[i]
            guard first >= 0x30, first <= 0x39 else { return nil }
            if first == 0x30 {
                i += 1
                if negative { return nil }
                return 0
            }
            var magnitude: UInt64 = 0
            var digits = 0
            // 19 digits fit in a UInt64; more never fit in an Int64.
            while i < count, base[i] >= 0x30, base[i] <= 0x39 {
                digits += 1
                if digits > 19 { return nil }
                magnitude = magnitude &* 10 &+ UInt64(base[i] &- 0x30)
                i += 1
            }
            if negative {
                if magnitude > UInt64(Int64.max) + 1 { return nil }
                return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
            }
            if magnitude > UInt64(Int64.max) { return nil }
            return Int64(magnitude)
        }

        /// The rest of a well-formed UTF-8 sequence whose first byte (0x80 or more) is at `i`,
        /// by the table of Unicode's chapter 3 (no overlong forms, surrogates or values past
        /// U+10FFFF): what `String(validating:)` accepts.
        @inline(__always) mutating func utf8Sequence() -> Bool {
            let b0 = base[i]
            @inline(__always) func continuation(_ k: Int, _ low: UInt8 = 0x80, _ high: UInt8 = 0xBF) -> Bool {
                i + k < count && base[i + k] >= low && base[i + k] <= high
            }
            switch b0 {
            case 0xC2...0xDF:
                guard continuation(1) else { return false }
                i += 2
            case 0xE0:
                guard continuation(1, 0xA0), continuation(2) else { return false }
                i += 3
            case 0xE1...0xEC, 0xEE...0xEF:
                guard continuation(1), continuation(2) else { return false }
                i += 3
            case 0xED:
                guard continuation(1, 0x80, 0x9F), continuation(2) else { return false }
                i += 3
            case 0xF0:
                guard continuation(1, 0x90), continuation(2), continuation(3) else { return false }
                i += 4
            case 0xF1...0xF3:
                guard continuation(1), continuation(2), continuation(3) else { return false }
                i += 4
            case 0xF4:
                guard continuation(1, 0x80, 0x8F), continuation(2), continuation(3) else { return false }
                i += 4
            default:
                return false
            }
            return true
        }

        /// A string without escapes, at `i` (its opening quote); returns its contents.
        mutating func plainString() -> LineSpan? {
            guard peek == UInt8(ascii: "\"") else { return nil }
            i += 1
            let start = i
            skipPlainWords()
            while i < count {
                let b = base[i]
                if FactScanner.isPlainASCII(b) {
                    i += 1
                } else if b == UInt8(ascii: "\"") {
                    let span = LineSpan(start: UInt32(start), end: UInt32(i))
                    i += 1
                    return span
                } else if b >= 0x80 {
                    guard utf8Sequence() else { return nil }
                } else {
                    return nil  // an escape or a control character
                }
            }
            return nil
        }

        /// `null` or a string without escapes.
        mutating func optionalPlainString() -> LineSpan?? {
            if literal("null") { return .some(nil) }
            guard let s = plainString() else { return nil }
            return .some(s)
        }

        mutating func optionalInteger() -> Int64?? {
            if literal("null") { return .some(nil) }
            guard let v = integer() else { return nil }
            return .some(v)
        }

        /// A string in canonical form, escapes allowed: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`,
        /// and `\u00xx` (lower-case) for the other control characters, exactly as
        /// `JSONWriter.writeString` writes them.
        mutating func string() -> Bool {
            guard peek == UInt8(ascii: "\"") else { return false }
            i += 1
            skipPlainWords()
            while i < count {
                let b = base[i]
                if FactScanner.isPlainASCII(b) {
                    i += 1
                } else if b == UInt8(ascii: "\"") {
                    i += 1
                    return true
                } else if b == UInt8(ascii: "\\") {
                    guard i + 1 < count else { return false }
                    escapes += 1
                    switch base[i + 1] {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "n"), UInt8(ascii: "r"),
                        UInt8(ascii: "t"), UInt8(ascii: "b"), UInt8(ascii: "f"):
                        i += 2
                    case UInt8(ascii: "u"):
                        guard i + 6 <= count, base[i + 2] == 0x30, base[i + 3] == 0x30 else { return false }
                        let hi = FactScanner.hexValues[Int(base[i + 4])], lo = FactScanner.hexValues[Int(base[i + 5])]
                        guard hi <= 1, lo != 0xFF else { return false }
                        let c = hi << 4 | lo
                        // The control characters that have a short escape are written with it.
                        guard c != 0x08, c != 0x09, c != 0x0A, c != 0x0C, c != 0x0D else { return false }
                        i += 6
                    default:
                        return false
                    }
                } else if b >= 0x80 {
                    guard utf8Sequence() else { return false }
                } else {
                    return false
                }
            }
            return false
        }

        mutating func value(depth: Int) -> Bool {
            guard i < count else { return false }
            switch base[i] {
            case UInt8(ascii: "\""): return string()
            case UInt8(ascii: "{"): return object(depth: depth + 1, top: nil)
            case UInt8(ascii: "["): return array(depth: depth + 1)
            case UInt8(ascii: "t"): return literal("true")
            case UInt8(ascii: "f"): return literal("false")
            case UInt8(ascii: "n"): return literal("null")
            default: return integer() != nil
            }
        }

        mutating func array(depth: Int) -> Bool {
            guard depth <= FactScanner.maximumDepth else { return false }
            i += 1
            if peek == UInt8(ascii: "]") {
                i += 1
                return true
            }
            while true {
                guard value(depth: depth) else { return false }
                let b = peek
                i += 1
                if b == UInt8(ascii: ",") { continue }
                return b == UInt8(ascii: "]")
            }
        }

        /// An object with its keys in strictly increasing byte order, each key plain ASCII (keys
        /// that differ only in Unicode normalization are the full decoder's to refuse). With
        /// `top`, the members verify reads are recorded there.
        mutating func object(depth: Int, top: UnsafeMutablePointer<ScannedFact>?) -> Bool {
            guard depth <= FactScanner.maximumDepth else { return false }
            i += 1
            if peek == UInt8(ascii: "}") {
                i += 1
                return true
            }
            var previousStart = 0, previousCount = -1
            while true {
                guard peek == UInt8(ascii: "\"") else { return false }
                i += 1
                let keyStart = i
                while i < count, FactScanner.isPlainASCII(base[i]) { i += 1 }
                guard peek == UInt8(ascii: "\"") else { return false }
                let keyCount = i - keyStart
                i += 1
                if previousCount >= 0 {
                    let r = memcmp(base + previousStart, base + keyStart, min(previousCount, keyCount))
                    guard r < 0 || (r == 0 && previousCount < keyCount) else { return false }
                }
                previousStart = keyStart
                previousCount = keyCount
                guard peek == UInt8(ascii: ":") else { return false }
                i += 1
                let valueStart = i
                let escapesBefore = escapes
                guard value(depth: depth) else { return false }
                if let top {
                    let span = LineSpan(start: UInt32(valueStart), end: UInt32(i))
                    // The members the fold reads as strings: it gets them without unescaping.
                    switch record(key: keyStart, count: keyCount, span, in: top) {
                    case .asString: if escapes != escapesBefore { return false }
                    case .asBytes, .none: break
                    }
                }
                let b = peek
                i += 1
                if b == UInt8(ascii: ",") { continue }
                return b == UInt8(ascii: "}")
            }
        }

        enum Use { case none, asString, asBytes }

        func record(key: Int, count n: Int, _ span: LineSpan, in f: UnsafeMutablePointer<ScannedFact>) -> Use {
            @inline(__always) func isKey(_ s: StaticString) -> Bool {
                n == s.utf8CodeUnitCount && memcmp(base + key, s.utf8Start, n) == 0
            }
            switch n {
            case 4:
                if isKey("name") { f.pointee.name = span; return .asString }
                if isKey("type") { f.pointee.type = span; return .asString }
                if isKey("args") { f.pointee.args = span; return .asBytes }
            case 5:
                if isKey("error") { f.pointee.error = span; return .asBytes }
            case 6:
                if isKey("result") { f.pointee.result = span; return .asBytes }
            case 7:
                if isKey("parents") { f.pointee.parents = span; return .asString }
                if isKey("options") { f.pointee.options = span; return .asBytes }
            case 8:
                if isKey("priority") { f.pointee.priority = span; return .asBytes }
                if isKey("lease_ms") { f.pointee.leaseMilliseconds = span; return .asBytes }
            case 10:
                if isKey("not_before") { f.pointee.notBefore = span; return .asString }
            default:
                break
            }
            return .none
        }

        /// 64 lower-case hex digits.
        mutating func digest() -> RawDigest? {
            guard i + 64 <= count else { return nil }
            let p = UnsafeRawPointer(base + i)
            var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
            var ok = true
            withUnsafeMutableBytes(of: &words) { out in
                for k in 0..<4 {
                    guard let lo = FactScanner.hexWord(p.loadUnaligned(fromByteOffset: 16 * k, as: UInt64.self)),
                        let hi = FactScanner.hexWord(p.loadUnaligned(fromByteOffset: 16 * k + 8, as: UInt64.self))
                    else {
                        ok = false
                        return
                    }
                    out.storeBytes(of: UInt64(lo) | UInt64(hi) << 32, toByteOffset: 8 * k, as: UInt64.self)
                }
            }
            guard ok else { return nil }
            i += 64
            var d = RawDigest()
            d.w0 = words.0
            d.w1 = words.1
            d.w2 = words.2
            d.w3 = words.3
            return d
        }

        func kindCode(_ span: LineSpan) -> KnownKind {
            let p = base + Int(span.start), n = span.count
            @inline(__always) func isKind(_ s: StaticString) -> Bool {
                n == s.utf8CodeUnitCount && memcmp(p, s.utf8Start, n) == 0
            }
            switch n {
            case 10:
                if isKind("job.failed") { return .jobFailed }
            case 11:
                if isKind("run.created") { return .runCreated }
                if isKind("run.aborted") { return .runAborted }
                if isKind("job.created") { return .jobCreated }
                if isKind("job.claimed") { return .jobClaimed }
                if isKind("job.aborted") { return .jobAborted }
                if isKind("job.retried") { return .jobRetried }
            case 12:
                if isKind("job.finished") { return .jobFinished }
                if isKind("job.released") { return .jobReleased }
                if isKind("job.rejected") { return .jobRejected }
            case 14:
                if isKind("worker.started") { return .workerStarted }
                if isKind("worker.stopped") { return .workerStopped }
            default:
                break
            }
            return .other
        }

        mutating func fact() -> ScannedFact? {
            var f = ScannedFact()
            guard literal("{\"position\":"), let position = integer(), position >= 1 else { return nil }
            f.position = UInt64(position)
            guard literal(",\"time\":\""), i + 27 <= count,
                let time = Instant(canonical: UnsafeBufferPointer(start: base + i, count: 27))
            else { return nil }
            f.time = time
            i += 27
            guard literal("\",\"id\":"), let id = plainString() else { return nil }
            f.id = id
            guard literal(",\"kind\":"), let kind = plainString() else { return nil }
            f.kind = kind
            f.knownKind = kindCode(kind)
            guard literal(",\"run\":"), let run = optionalPlainString() else { return nil }
            f.run = run ?? LineSpan()
            guard literal(",\"job\":"), let job = optionalPlainString() else { return nil }
            f.job = job ?? LineSpan()
            guard literal(",\"revision\":"), let revision = optionalInteger() else { return nil }
            if let r = revision {
                guard r >= 1 else { return nil }
                f.revision = UInt64(r)
            }
            guard literal(",\"worker\":"), let worker = optionalPlainString() else { return nil }
            f.worker = worker ?? LineSpan()
            guard literal(",\"host\":"), let host = optionalPlainString() else { return nil }
            f.host = host ?? LineSpan()
            guard literal(",\"pid\":"), let pid = optionalInteger() else { return nil }
            if let pid {
                guard let p32 = Int32(exactly: pid) else { return nil }
                f.pid = p32
            }
            guard literal(",\"attempt\":"), let attempt = optionalInteger() else { return nil }
            f.attempt = attempt
            guard literal(",\"reason\":"), let reason = optionalPlainString() else { return nil }
            f.reason = reason ?? LineSpan()
            guard literal(",\"data\":"), peek == UInt8(ascii: "{") else { return nil }
            let ok = withUnsafeMutablePointer(to: &f) { object(depth: 1, top: $0) }
            guard ok else { return nil }
            guard literal(",\"prev\":\""), let prev = digest() else { return nil }
            f.prev = prev
            guard literal("\",\"hash\":\""), let hash = digest(), literal("\"}"), i == count else { return nil }
            f.hash = hash
            return f
        }
    }
}

/// SHA-256 of a line's body (the line without its hash member), without copying it: OpenSSL's
/// SHA256_Init/Update/Final, resolved at run time because OpenSSL 3 declares them deprecated
/// (a warning here). The one-shot SHA256() fetches the algorithm through EVP on every call, which
/// costs more than hashing a 400-byte line; it remains the fallback when the symbols are missing.
enum LineHasher {
    typealias Initialize = @convention(c) (UnsafeMutableRawPointer?) -> Int32
    typealias Update = @convention(c) (UnsafeMutableRawPointer?, UnsafeRawPointer?, Int) -> Int32
    typealias Finish = @convention(c) (UnsafeMutablePointer<UInt8>?, UnsafeMutableRawPointer?) -> Int32

    struct Functions: @unchecked Sendable {
        // @unchecked: C function pointers, immutable once resolved.
        let initialize: Initialize
        let update: Update
        let finish: Finish
    }

    static let functions: Functions? = {
        guard let handle = dlopen(nil, RTLD_NOW),
            let i = dlsym(handle, "SHA256_Init"), let u = dlsym(handle, "SHA256_Update"), let f = dlsym(handle, "SHA256_Final")
        else { return nil }
        return Functions(
            initialize: unsafeBitCast(i, to: Initialize.self), update: unsafeBitCast(u, to: Update.self),
            finish: unsafeBitCast(f, to: Finish.self))
    }()

    /// `,"hash":"` + 64 hex digits + `"}`.
    static let hashMemberLength = 75

    /// The hash of the body of `line`, which must end with a hash member.
    static func bodyHash(_ line: UnsafeBufferPointer<UInt8>) -> RawDigest {
        let n = line.count - hashMemberLength
        var out: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &out) { o in
            let md = o.baseAddress!.assumingMemoryBound(to: UInt8.self)
            var brace = UInt8(ascii: "}")
            if let f = functions {
                // SHA256_CTX is 112 bytes; room to spare, 16-byte aligned.
                withUnsafeTemporaryAllocation(byteCount: 256, alignment: 16) { ctx in
                    _ = f.initialize(ctx.baseAddress)
                    _ = f.update(ctx.baseAddress, line.baseAddress, n)
                    _ = f.update(ctx.baseAddress, &brace, 1)
                    _ = f.finish(md, ctx.baseAddress)
                }
            } else {
                var body = [UInt8](UnsafeBufferPointer(rebasing: line[0..<n]))
                body.append(brace)
                _ = SHA256(body, body.count, md)
            }
        }
        var d = RawDigest()
        d.w0 = out.0
        d.w1 = out.1
        d.w2 = out.2
        d.w3 = out.3
        return d
    }
}
