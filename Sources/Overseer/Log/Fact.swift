import CCrypto
import Foundation
import Synchronization

/// A fact's kind: a namespaced string, stable once released. See docs/log-format.md.
public struct FactKind: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible,
    ExpressibleByStringLiteral
{
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }

    /// A run was submitted: its graph, args and options (`data.graph`, `data.args`, ...).
    public static let runCreated: FactKind = "run.created"
    /// An operator aborted a whole run (`reason`); the jobs' own `job.aborted` facts follow it.
    public static let runAborted: FactKind = "run.aborted"
    /// A job was created, unstarted (`data.type`, `data.parents`, `data.priority`).
    public static let jobCreated: FactKind = "job.created"
    /// A worker claimed the job for an attempt (`worker`, `attempt`, `data.lease_ms`).
    public static let jobClaimed: FactKind = "job.claimed"
    /// The attempt succeeded (`data.result`, optional).
    public static let jobFinished: FactKind = "job.finished"
    /// The attempt failed and no retry is left (`data.error`, `reason`).
    public static let jobFailed: FactKind = "job.failed"
    /// The job went back to unstarted: a fault, a failed attempt with retries left, a timeout, an
    /// expired lease or a shutdown (`reason`, `data.not_before`, `data.error`).
    public static let jobReleased: FactKind = "job.released"
    /// The job was aborted, by its handler, by an operator, or as a descendant (`data.cause`).
    public static let jobAborted: FactKind = "job.aborted"
    /// An operator made a failed or aborted job runnable again.
    public static let jobRetried: FactKind = "job.retried"
    /// A late result from a superseded claim was refused. It does not advance the revision.
    public static let jobRejected: FactKind = "job.rejected"
    /// A worker started (`data.host`, `data.pid`, `data.types`, `data.concurrency`).
    public static let workerStarted: FactKind = "worker.started"
    /// A worker stopped (`reason`).
    public static let workerStopped: FactKind = "worker.stopped"

    /// Every kind this version writes and folds.
    public static let all: [FactKind] = [
        .runCreated, .runAborted, .jobCreated, .jobClaimed, .jobFinished, .jobFailed, .jobReleased,
        .jobAborted, .jobRetried, .jobRejected, .workerStarted, .workerStopped,
    ]

    /// Kinds that advance a job's revision (all job facts but `job.rejected`).
    public var advancesRevision: Bool {
        rawValue.hasPrefix("job.") && self != .jobRejected
    }
}

/// libcrypto frees its global state from an atexit handler (OPENSSL_cleanup). A thread still in
/// libcrypto when the process exits (libpq authenticating a connection, a hash) then dereferences
/// freed state, and the process dies of SIGSEGV after it has done its work and printed its result.
/// Told before its first use not to register that handler, libcrypto leaves its memory to the
/// exiting process, and the race is gone. OverseerPostgres does the same before libpq connects.
enum Libcrypto {
    static let noCleanupAtExit: Void = {
        _ = OPENSSL_init_crypto(UInt64(OPENSSL_INIT_NO_ATEXIT), nil)
    }()
}

/// A SHA-256 digest.
public struct Digest: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) {
        precondition(bytes.count == 32, "a SHA-256 digest has 32 bytes")
        self.bytes = bytes
    }

    /// The digest that the first fact's `prev` holds: 32 zero bytes.
    public static let zero = Digest(bytes: [UInt8](repeating: 0, count: 32))

    /// SHA-256 of `data`, computed by OpenSSL's libcrypto.
    public static func sha256(_ data: UnsafeRawBufferPointer) -> Digest {
        _ = Libcrypto.noCleanupAtExit
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBufferPointer { o in
            _ = SHA256(data.baseAddress?.assumingMemoryBound(to: UInt8.self), data.count, o.baseAddress)
        }
        return Digest(bytes: out)
    }

    public static func sha256(_ data: [UInt8]) -> Digest {
        data.withUnsafeBytes { sha256($0) }
    }

    public init?(hex: String) {
        let h = Array(hex.utf8)
        guard h.count == 64 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(32)
        var i = 0
        while i < 64 {
            guard let hi = Digest.nibble(h[i]), let lo = Digest.nibble(h[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        self.bytes = out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }

    /// Parses 64 lower-case hex digits.
    init?(hexBytes h: UnsafeBufferPointer<UInt8>) {
        guard h.count == 64 else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        for i in 0..<32 {
            guard let hi = Digest.nibble(h[2 * i]), let lo = Digest.nibble(h[2 * i + 1]) else { return nil }
            out[i] = hi << 4 | lo
        }
        self.bytes = out
    }

    func appendHex(to out: inout [UInt8]) {
        for b in bytes {
            out.append(Digest.hexDigits[Int(b >> 4)])
            out.append(Digest.hexDigits[Int(b & 0x0F)])
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { hex }
}

/// Who wrote a fact, for audit: like Datomic's reified transactions.
public struct Author: Sendable, Hashable {
    /// The worker id, or an operator name such as `operator:alice`.
    public var name: String?
    public var host: String?
    public var pid: Int32?

    public init(name: String?, host: String? = Author.currentHost, pid: Int32? = getpid()) {
        self.name = name
        self.host = host
        self.pid = pid
    }

    /// This process, without a name.
    public static var process: Author { Author(name: nil) }

    /// An operator acting from this process; the name defaults to `$USER`.
    public static func `operator`(_ name: String? = nil) -> Author {
        Author(name: "operator:" + (name ?? ProcessInfo.processInfo.environment["USER"] ?? "unknown"))
    }

    public static let currentHost: String = ProcessInfo.processInfo.hostName
}

/// A fact before it is appended: the store adds its position, time, revision and hashes.
public struct FactDraft: Sendable, Hashable {
    /// A unique id (a UUID). Appending a draft whose id is already in the log does nothing and
    /// returns the existing fact, so a retry after an unknown outcome never writes twice.
    public var id: String
    public var kind: FactKind
    public var run: String?
    public var job: String?
    public var author: Author
    public var attempt: Int?
    public var reason: String?
    /// A JSON object with the kind's own fields.
    public var data: JSONValue

    public init(
        id: String = FactDraft.newID(), kind: FactKind, run: String? = nil, job: String? = nil,
        author: Author = .process, attempt: Int? = nil, reason: String? = nil, data: JSONValue = .object([:])
    ) {
        self.id = id
        self.kind = kind
        self.run = run
        self.job = job
        self.author = author
        self.attempt = attempt
        self.reason = reason
        self.data = data
    }
}

extension FactDraft {
    /// A new fact id: a UUID whose first 48 bits are the Unix time in milliseconds (UUID version 7),
    /// so ids made one after the other sort together and land near each other in the id index.
    public static func newID() -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        // 80 random bits from a generator seeded once per process from the system's entropy: ids
        // need to be unique, not secret, and a getrandom(2) per byte was the append path's top cost.
        let (a, b) = FactIDGenerator.shared.next()
        for i in 0..<8 { bytes[8 + i] = UInt8(truncatingIfNeeded: a >> UInt64(8 * i)) }
        bytes[6] = UInt8(truncatingIfNeeded: b)
        bytes[7] = UInt8(truncatingIfNeeded: b >> 8)
        let ms = UInt64(max(0, Instant.now().microseconds / 1000))
        for i in 0..<6 { bytes[i] = UInt8(truncatingIfNeeded: ms >> UInt64(8 * (5 - i))) }
        bytes[6] = 0x70 | (bytes[6] & 0x0F)
        bytes[8] = 0x80 | (bytes[8] & 0x3F)
        let hex = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(36)
        for (i, b) in bytes.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { out.append(UInt8(ascii: "-")) }
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// SplitMix64 over a per-process random seed, behind a lock.
final class FactIDGenerator: Sendable {
    static let shared = FactIDGenerator()
    private let state: Mutex<UInt64>

    init() {
        var rng = SystemRandomNumberGenerator()
        state = Mutex(rng.next())
    }

    func next() -> (UInt64, UInt64) {
        state.withLock { s in
            func step() -> UInt64 {
                s &+= 0x9E37_79B9_7F4A_7C15
                var z = s
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                return z ^ (z >> 31)
            }
            return (step(), step())
        }
    }
}

/// One immutable entry of the log.
public struct Fact: Sendable, Hashable, CustomStringConvertible {
    /// Dense, gap-free, from 1, in commit order.
    public let position: UInt64
    /// Commit instant; never decreases along the log.
    public let time: Instant
    public let id: String
    public let kind: FactKind
    public let run: String?
    public let job: String?
    /// The job's revision after this fact (1, 2, 3, ...); nil for facts that are not about a job's
    /// state (run and worker facts, and `job.rejected`).
    public let revision: UInt64?
    public let worker: String?
    public let host: String?
    public let pid: Int32?
    public let attempt: Int?
    public let reason: String?
    public let data: JSONValue
    /// The previous fact's hash (all zeros for position 1).
    public let prev: Digest
    /// SHA-256 of this fact's canonical bytes, which include `prev`.
    public let hash: Digest

    public var description: String {
        var parts = ["#\(position)", time.rfc3339, kind.rawValue]
        if let job { parts.append(job) } else if let run { parts.append(run) }
        if let revision { parts.append("rev \(revision)") }
        if let attempt { parts.append("attempt \(attempt)") }
        if let worker { parts.append("by \(worker)") }
        if let reason { parts.append("(\(reason))") }
        return parts.joined(separator: " ")
    }

    /// A new fact and its line, encoding the body once (the append path).
    static func make(position: UInt64, time: Instant, draft: FactDraft, revision: UInt64?, prev: Digest) -> (Fact, [UInt8]) {
        var body = FactCoding.body(
            position: position, time: time, id: draft.id, kind: draft.kind, run: draft.run, job: draft.job,
            revision: revision, worker: draft.author.name, host: draft.author.host, pid: draft.author.pid,
            attempt: draft.attempt, reason: draft.reason, data: draft.data, prev: prev)
        let hash = Digest.sha256(body)
        let fact = Fact(position: position, time: time, draft: draft, revision: revision, prev: prev, hash: hash)
        FactCoding.appendHash(hash, toBody: &body)
        return (fact, body)
    }

    private init(position: UInt64, time: Instant, draft: FactDraft, revision: UInt64?, prev: Digest, hash: Digest) {
        self.position = position
        self.time = time
        self.id = draft.id
        self.kind = draft.kind
        self.run = draft.run
        self.job = draft.job
        self.revision = revision
        self.worker = draft.author.name
        self.host = draft.author.host
        self.pid = draft.author.pid
        self.attempt = draft.attempt
        self.reason = draft.reason
        self.data = draft.data
        self.prev = prev
        self.hash = hash
    }

    fileprivate init(decoded f: FactCoding.Fields) {
        position = f.position
        time = f.time
        id = f.id
        kind = f.kind
        run = f.run
        job = f.job
        revision = f.revision
        worker = f.worker
        host = f.host
        pid = f.pid
        attempt = f.attempt
        reason = f.reason
        data = f.data
        prev = f.prev
        hash = f.hash
    }

    /// The canonical bytes that ``hash`` covers (see docs/log-format.md).
    public var canonicalBody: [UInt8] {
        FactCoding.body(
            position: position, time: time, id: id, kind: kind, run: run, job: job, revision: revision,
            worker: worker, host: host, pid: pid, attempt: attempt, reason: reason, data: data, prev: prev)
    }

    /// The JSON Lines form: the canonical body with `"hash"` as its last member (no newline).
    public var line: [UInt8] {
        var out = canonicalBody
        FactCoding.appendHash(hash, toBody: &out)
        return out
    }

    /// Decodes a JSON Lines form. It must be canonical (re-encoding gives the same bytes) and its
    /// hash must match its body; otherwise the error says which.
    public static func decode(line: some Collection<UInt8>) throws(FactDecodingError) -> Fact {
        let bytes = Array(line)
        let fields = try FactCoding.decode(bytes)
        let fact = Fact(decoded: fields)
        // One re-encoding checks the canonical form, and is the body the hash covers.
        var body = fact.canonicalBody
        let recomputed = Digest.sha256(body)
        FactCoding.appendHash(fields.hash, toBody: &body)
        if body != bytes {
            throw FactDecodingError(message: "fact is not in canonical form", position: fields.position)
        }
        if recomputed != fields.hash {
            throw FactDecodingError(
                message: "hash mismatch: stored \(fields.hash.hex), computed \(recomputed.hex)",
                position: fields.position, isHashMismatch: true)
        }
        return fact
    }

    /// Decodes without re-checking canonical form and hash (for trusted bytes read from the store).
    static func decodeTrusted(_ buffer: UnsafeRawBufferPointer) throws(FactDecodingError) -> Fact {
        let bound = buffer.bindMemory(to: UInt8.self)
        if let fields = FactCoding.decodeFast(bound) { return Fact(decoded: fields) }
        return Fact(decoded: try FactCoding.decode(Array(buffer)))
    }
}

/// Why a fact line could not be decoded.
public struct FactDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public let position: UInt64?
    public var isHashMismatch: Bool = false
    public var description: String {
        if let position { return "fact at position \(position): \(message)" }
        return message
    }
}

/// The canonical byte form. Member order is fixed; absent values are `null`:
/// `{"position":N,"time":"…","id":"…","kind":"…","run":…,"job":…,"revision":…,"worker":…,
/// "host":…,"pid":…,"attempt":…,"reason":…,"data":{…},"prev":"hex"}`.
enum FactCoding {
    struct Fields {
        var position: UInt64 = 0
        var time = Instant(microseconds: 0)
        var id = ""
        var kind: FactKind = ""
        var run: String?
        var job: String?
        var revision: UInt64?
        var worker: String?
        var host: String?
        var pid: Int32?
        var attempt: Int?
        var reason: String?
        var data: JSONValue = .object([:])
        var prev = Digest.zero
        var hash = Digest.zero
    }

    static func body(
        position: UInt64, time: Instant, id: String, kind: FactKind, run: String?, job: String?,
        revision: UInt64?, worker: String?, host: String?, pid: Int32?, attempt: Int?, reason: String?,
        data: JSONValue, prev: Digest
    ) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(320)
        func key(_ k: StaticString) {
            out.append(contentsOf: UnsafeBufferPointer(start: k.utf8Start, count: k.utf8CodeUnitCount))
        }
        func string(_ s: String?) {
            if let s { JSONWriter.writeString(s, into: &out) } else { key("null") }
        }
        func integer(_ i: Int64?) {
            if let i { JSONWriter.writeInteger(i, into: &out) } else { key("null") }
        }
        key("{\"position\":")
        JSONWriter.writeInteger(Int64(position), into: &out)
        key(",\"time\":\"")
        time.appendRFC3339(to: &out)
        key("\",\"id\":")
        string(id)
        key(",\"kind\":")
        string(kind.rawValue)
        key(",\"run\":")
        string(run)
        key(",\"job\":")
        string(job)
        key(",\"revision\":")
        integer(revision.map { Int64($0) })
        key(",\"worker\":")
        string(worker)
        key(",\"host\":")
        string(host)
        key(",\"pid\":")
        integer(pid.map { Int64($0) })
        key(",\"attempt\":")
        integer(attempt.map { Int64($0) })
        key(",\"reason\":")
        string(reason)
        key(",\"data\":")
        JSONWriter.write(data, into: &out)
        key(",\"prev\":\"")
        prev.appendHex(to: &out)
        key("\"}")
        return out
    }

    /// `body` minus its closing brace, then `,"hash":"HEX"}`.
    static func appendHash(_ hash: Digest, toBody out: inout [UInt8]) {
        out.removeLast()  // "}"
        let tail: StaticString = ",\"hash\":\""
        out.append(contentsOf: UnsafeBufferPointer(start: tail.utf8Start, count: tail.utf8CodeUnitCount))
        hash.appendHex(to: &out)
        out.append(UInt8(ascii: "\""))
        out.append(UInt8(ascii: "}"))
    }

    static func decode(_ bytes: [UInt8]) throws(FactDecodingError) -> Fields {
        if let f = bytes.withUnsafeBufferPointer({ decodeFast($0) }) { return f }
        return try decodeGeneric(bytes)
    }

    /// Reads a line in the canonical member order directly from its bytes; nil when the line is
    /// not in that shape (the generic decoder then explains what is wrong).
    static func decodeFast(_ b: UnsafeBufferPointer<UInt8>) -> Fields? {
        var p = JSONParser(b)
        func literal(_ s: StaticString) -> Bool {
            let n = s.utf8CodeUnitCount
            guard p.index + n <= b.count, memcmp(b.baseAddress! + p.index, s.utf8Start, n) == 0 else { return false }
            p.index += n
            return true
        }
        func integer() -> Int64? {
            var v: Int64 = 0
            var negative = false
            if p.index < b.count, b[p.index] == UInt8(ascii: "-") {
                negative = true
                p.index += 1
            }
            let start = p.index
            while p.index < b.count, b[p.index] >= 0x30, b[p.index] <= 0x39 {
                let (m, o1) = v.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(Int64(b[p.index] - 0x30))
                if o1 || o2 { return nil }
                v = a
                p.index += 1
            }
            guard p.index > start, !(b[start] == 0x30 && p.index - start > 1) else { return nil }
            return negative ? -v : v
        }
        func string() -> String? {
            guard p.index < b.count, b[p.index] == UInt8(ascii: "\"") else { return nil }
            return try? p.parseString()
        }
        func optionalString() -> String?? {
            if literal("null") { return .some(nil) }
            guard let s = string() else { return nil }
            return .some(s)
        }
        func optionalInteger() -> Int64?? {
            if literal("null") { return .some(nil) }
            guard let i = integer() else { return nil }
            return .some(i)
        }
        func digest() -> Digest? {
            guard p.index + 64 <= b.count, let d = Digest(hexBytes: UnsafeBufferPointer(rebasing: b[p.index..<(p.index + 64)])) else { return nil }
            p.index += 64
            return d
        }
        var f = Fields()
        guard literal("{\"position\":"), let position = integer(), position >= 1 else { return nil }
        f.position = UInt64(position)
        guard literal(",\"time\":\""), p.index + 27 <= b.count,
            let time = Instant(canonical: UnsafeBufferPointer(rebasing: b[p.index..<(p.index + 27)]))
        else { return nil }
        p.index += 27
        f.time = time
        guard literal("\",\"id\":"), let id = string() else { return nil }
        f.id = id
        guard literal(",\"kind\":"), let kind = string() else { return nil }
        f.kind = FactKind(rawValue: kind)
        guard literal(",\"run\":"), let run = optionalString() else { return nil }
        f.run = run
        guard literal(",\"job\":"), let job = optionalString() else { return nil }
        f.job = job
        guard literal(",\"revision\":"), let revision = optionalInteger() else { return nil }
        if let r = revision {
            guard r >= 1 else { return nil }
            f.revision = UInt64(r)
        }
        guard literal(",\"worker\":"), let worker = optionalString() else { return nil }
        f.worker = worker
        guard literal(",\"host\":"), let host = optionalString() else { return nil }
        f.host = host
        guard literal(",\"pid\":"), let pid = optionalInteger() else { return nil }
        if let pid {
            guard let p32 = Int32(exactly: pid) else { return nil }
            f.pid = p32
        }
        guard literal(",\"attempt\":"), let attempt = optionalInteger() else { return nil }
        f.attempt = attempt.map { Int($0) }
        guard literal(",\"reason\":"), let reason = optionalString() else { return nil }
        f.reason = reason
        guard literal(",\"data\":"), p.index < b.count, b[p.index] == UInt8(ascii: "{"),
            let data = try? p.parseValue()
        else { return nil }
        f.data = data
        guard literal(",\"prev\":\""), let prev = digest() else { return nil }
        f.prev = prev
        guard literal("\",\"hash\":\""), let hash = digest(), literal("\"}"), p.index == b.count else { return nil }
        f.hash = hash
        return f
    }

    static func decodeGeneric(_ bytes: [UInt8]) throws(FactDecodingError) -> Fields {
        let value: JSONValue
        do {
            value = try JSONValue.parse(bytes)
        } catch {
            throw FactDecodingError(message: "not valid JSON (\(error))", position: nil)
        }
        guard case .object(let o) = value else {
            throw FactDecodingError(message: "a fact must be a JSON object", position: nil)
        }
        var f = Fields()
        guard let p = o["position"]?.intValue, p >= 1 else {
            throw FactDecodingError(message: "missing or invalid 'position'", position: nil)
        }
        f.position = UInt64(p)
        let at = f.position
        func fail(_ m: String) -> FactDecodingError { FactDecodingError(message: m, position: at) }
        func optionalString(_ k: String) throws(FactDecodingError) -> String? {
            switch o[k] {
            case nil: throw fail("missing '\(k)'")
            case .null: return nil
            case .string(let s): return s
            default: throw fail("'\(k)' must be a string or null")
            }
        }
        func optionalInt(_ k: String) throws(FactDecodingError) -> Int64? {
            switch o[k] {
            case nil: throw fail("missing '\(k)'")
            case .null: return nil
            case .int(let i): return i
            default: throw fail("'\(k)' must be an integer or null")
            }
        }
        guard let t = o["time"]?.stringValue, let instant = Instant(rfc3339: t) else {
            throw fail("missing or invalid 'time'")
        }
        f.time = instant
        guard let id = try optionalString("id") else { throw fail("'id' must not be null") }
        f.id = id
        guard let kind = try optionalString("kind") else { throw fail("'kind' must not be null") }
        f.kind = FactKind(rawValue: kind)
        f.run = try optionalString("run")
        f.job = try optionalString("job")
        if let r = try optionalInt("revision") {
            guard r >= 1 else { throw fail("'revision' must be at least 1") }
            f.revision = UInt64(r)
        }
        f.worker = try optionalString("worker")
        f.host = try optionalString("host")
        if let pid = try optionalInt("pid") {
            guard let p32 = Int32(exactly: pid) else { throw fail("'pid' out of range") }
            f.pid = p32
        }
        f.attempt = try optionalInt("attempt").map { Int($0) }
        f.reason = try optionalString("reason")
        guard let data = o["data"], case .object = data else { throw fail("'data' must be an object") }
        f.data = data
        guard let prevHex = o["prev"]?.stringValue, let prev = Digest(hex: prevHex) else {
            throw fail("missing or invalid 'prev'")
        }
        f.prev = prev
        if let h = o["hash"] {
            guard let hex = h.stringValue, let hash = Digest(hex: hex) else { throw fail("invalid 'hash'") }
            f.hash = hash
        } else {
            throw fail("missing 'hash'")
        }
        if o.count != 15 {
            throw fail("unexpected members (a fact has exactly 15)")
        }
        return f
    }
}
