import Foundation
import Synchronization

/// Something `verify()` found wrong.
public struct Violation: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// A fact's hash does not match its bytes, or its `prev` does not match the fact before.
        case hashChain = "hash-chain"
        /// Positions skip, repeat or go backwards.
        case density
        /// A fact's time is earlier than the fact before.
        case time
        /// A line is not a well-formed fact in canonical form.
        case format
        /// A fact breaks the state machine (for example a second live claim, or a claim before a
        /// parent finished).
        case transition
        /// A stored view differs from the re-fold of the facts.
        case view
        /// An index (by job, run, time, fact id) differs from the facts.
        case index
        /// The recorded head differs from the last fact.
        case head
    }

    public let kind: Kind
    public let position: UInt64?
    /// 1-based line number, when checking an export file.
    public let line: Int?
    public let message: String

    public var description: String {
        var at: [String] = []
        if let line { at.append("line \(line)") }
        if let position { at.append("position \(position)") }
        let prefix = at.isEmpty ? "" : at.joined(separator: ", ") + ": "
        return "\(prefix)\(kind.rawValue): \(message)"
    }
}

/// The result of a verification.
public struct VerifyReport: Sendable, CustomStringConvertible {
    public internal(set) var facts: Int = 0
    public internal(set) var runs: Int = 0
    public internal(set) var jobs: Int = 0
    /// The hash of the last fact checked.
    public internal(set) var headHash: Digest = .zero
    public internal(set) var firstPosition: UInt64 = 0
    public internal(set) var lastPosition: UInt64 = 0
    /// The first violations found (at most 100 are kept; ``violationCount`` counts all).
    public internal(set) var violations: [Violation] = []
    public internal(set) var violationCount = 0
    /// True when the export starts after position 1 or skips positions on purpose (a filtered
    /// export): the chain is then checked only where positions are consecutive.
    public internal(set) var partial = false

    public var ok: Bool { violationCount == 0 }
    public var firstViolation: Violation? { violations.first }

    mutating func add(_ v: Violation) {
        violationCount += 1
        if violations.count < 100 { violations.append(v) }
    }

    public var description: String {
        if ok {
            return "ok: \(facts) facts (positions \(firstPosition)–\(lastPosition)), \(runs) runs, \(jobs) jobs; head \(headHash.hex)\(partial ? " (partial export: chain checked where positions are consecutive)" : "")"
        }
        return "FAILED: \(violationCount) violation(s); first: \(violations[0])"
    }
}

/// Checks a sequence of fact lines: canonical form, hashes, the `prev` chain, dense positions and
/// non-decreasing times. Shared by store and export verification.
struct ChainChecker {
    var previous: (position: UInt64, hash: RawDigest, time: Instant)?
    var allowGaps: Bool
    var report = VerifyReport()
    /// The hash of the last fact, when the fast path checked it (``finishedReport`` puts it into
    /// the report; making a `Digest` for every fact would cost an allocation each).
    private var pendingHead: RawDigest?

    init(allowGaps: Bool) { self.allowGaps = allowGaps }

    /// Checks one line; returns its fact when it could be decoded.
    mutating func check(_ bytes: some Collection<UInt8>, line: Int?) -> Fact? {
        let fact: Fact
        do {
            fact = try Fact.decode(line: bytes)
        } catch {
            report.add(Violation(kind: error.isHashMismatch ? .hashChain : .format, position: error.position, line: line, message: error.message))
            // Keep the chain going from what the line claims (its position, hash and time, when
            // they can be read), so one bad line is one violation, not also a gap after it.
            if let value = try? JSONValue.parse(bytes), let p = value["position"]?.intValue, p >= 1,
                let h = value["hash"]?.stringValue.flatMap(Digest.init(hex:)),
                let t = value["time"]?.stringValue.flatMap(Instant.init(rfc3339:))
            {
                if previous == nil { report.firstPosition = UInt64(p) }
                previous = (UInt64(p), RawDigest(h), t)
                report.lastPosition = UInt64(p)
            }
            return nil
        }
        chain(position: fact.position, prev: RawDigest(fact.prev), hash: RawDigest(fact.hash), time: fact.time, line: line)
        report.headHash = fact.hash
        pendingHead = nil
        return fact
    }

    /// The same checks for a line that the scanner read, found canonical, and whose hash it
    /// found to match (what ``check(_:line:)`` does after a successful decode).
    mutating func check(scanned f: ScannedFact, line: Int?) {
        chain(position: f.position, prev: f.prev, hash: f.hash, time: f.time, line: line)
        pendingHead = f.hash
    }

    private mutating func chain(position: UInt64, prev: RawDigest, hash: RawDigest, time: Instant, line: Int?) {
        report.facts += 1
        if let before = previous {
            if position == before.position + 1 {
                if prev != before.hash {
                    report.add(Violation(kind: .hashChain, position: position, line: line, message: "prev \(prev.digest.hex) does not match the hash of position \(before.position) (\(before.hash.digest.hex))"))
                }
            } else if position > before.position && allowGaps {
                report.partial = true
            } else {
                report.add(Violation(kind: .density, position: position, line: line, message: "position \(position) follows position \(before.position)"))
            }
            if time < before.time {
                report.add(Violation(kind: .time, position: position, line: line, message: "time \(time) is earlier than \(before.time) at position \(before.position)"))
            }
        } else {
            report.firstPosition = position
            if position == 1 {
                if prev != .zero {
                    report.add(Violation(kind: .hashChain, position: 1, line: line, message: "the first fact's prev must be all zeros"))
                }
            } else if allowGaps {
                report.partial = true
            } else {
                report.add(Violation(kind: .density, position: position, line: line, message: "the log starts at position \(position), not 1"))
            }
        }
        previous = (position, hash, time)
        report.lastPosition = position
    }

    /// ``report`` with the head hash of the last fact checked.
    var finishedReport: VerifyReport {
        var r = report
        if let pendingHead { r.headHash = pendingHead.digest }
        return r
    }
}

/// An order-independent checksum of a set of keys, to compare an index with what the facts imply
/// without holding either in memory: the count and the sum of a 64-bit hash of each key.
struct KeySetDigest: Equatable, Sendable {
    var count = 0
    var sum: UInt64 = 0

    mutating func add(_ hash: UInt64) {
        count += 1
        sum = sum &+ hash
    }
}

/// The 64-bit hashes behind ``KeySetDigest``: each a function of the whole key (and value), eight
/// bytes at a time, with a final avalanche so that sums of similar keys do not cancel.
enum KeyHash {
    @inline(__always) static func avalanche(_ x: UInt64) -> UInt64 {
        var h = x
        h ^= h >> 33
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        h = h &* 0xc4ce_b9fe_1a85_ec53
        h ^= h >> 33
        return h
    }

    static func bytes(_ p: UnsafeRawPointer?, _ n: Int) -> UInt64 {
        var h: UInt64 = 0x243f_6a88_85a3_08d3 ^ (UInt64(n) &* 0x9e37_79b9_7f4a_7c15)
        guard let p else { return avalanche(h) }
        var i = 0
        // Each step is a bijection of the state for a given word, and injective in the word.
        while i + 8 <= n {
            h = (h ^ p.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0x9fb2_1c65_1e98_df25
            h ^= h >> 29
            i += 8
        }
        if i < n {
            var w: UInt64 = 0
            var shift: UInt64 = 0
            while i < n {
                w |= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << shift
                shift += 8
                i += 1
            }
            h = (h ^ w) &* 0x9fb2_1c65_1e98_df25
            h ^= h >> 29
        }
        return avalanche(h)
    }

    static func bytes(_ b: UnsafeRawBufferPointer) -> UInt64 { bytes(b.baseAddress, b.count) }

    static func bytes(_ s: String) -> UInt64 {
        var s = s
        return s.withUTF8 { bytes(UnsafeRawPointer($0.baseAddress), $0.count) }
    }

    static func bytes(_ a: [UInt8]) -> UInt64 { a.withUnsafeBytes { bytes($0) } }

    /// A by-job or by-run key, `ID · 0x00 · position (8 bytes, big-endian)`, from its parts.
    static func prefixed(id: UInt64, separator: UInt8, position: UInt64) -> UInt64 {
        avalanche(id ^ avalanche(position ^ (UInt64(separator) << 56 | 0x5bd1_e995)))
    }

    /// A by-job or by-run key as stored (any bytes: a damaged key gets a hash too).
    static func prefixedKey(_ k: UnsafeRawBufferPointer) -> UInt64 {
        let n = k.count
        guard n >= 9 else { return avalanche(bytes(k) ^ 0x7a3c_5e1f) }
        return prefixed(id: bytes(k.baseAddress, n - 9), separator: k[n - 9], position: readBigEndian64(k, at: n - 8))
    }

    /// A by-time key: `time (sign-flipped, big-endian) · position (big-endian)`.
    static func time(_ t: Instant, _ position: UInt64) -> UInt64 {
        var key = ((UInt64(bitPattern: t.microseconds) ^ (1 << 63)).bigEndian, position.bigEndian)
        return withUnsafeBytes(of: &key) { bytes($0) }
    }

    /// A run-args entry: the run's id and its args.
    static func pair(_ key: UInt64, _ value: UInt64) -> UInt64 {
        avalanche(key ^ avalanche(value &+ 0x2545_f491_4f6c_dd1d))
    }
}

/// The hashes of the index entries one fact implies.
struct FactKeyHashes: Sendable {
    var time: UInt64 = 0
    var id: UInt64 = 0
    var job: UInt64?
    var run: UInt64?
    var args: UInt64?

    init() {}

    init(_ fact: Fact) {
        time = KeyHash.time(fact.time, fact.position)
        id = KeyHash.bytes(fact.id)
        if let j = fact.job { job = KeyHash.prefixed(id: KeyHash.bytes(j), separator: 0, position: fact.position) }
        if let r = fact.run {
            let runHash = KeyHash.bytes(r)
            run = KeyHash.prefixed(id: runHash, separator: 0, position: fact.position)
            if fact.kind == .runCreated {
                args = KeyHash.pair(runHash, KeyHash.bytes(fact.dataCanonicalBytes(.args) ?? JSONValue.object([:]).canonicalBytes))
            }
        }
    }

    init(_ f: ScannedFact, base: UnsafePointer<UInt8>) {
        @inline(__always) func hash(_ s: LineSpan) -> UInt64 { KeyHash.bytes(base + Int(s.start), s.count) }
        time = KeyHash.time(f.time, f.position)
        id = hash(f.id)
        if f.job.isPresent { job = KeyHash.prefixed(id: hash(f.job), separator: 0, position: f.position) }
        if f.run.isPresent {
            let runHash = hash(f.run)
            run = KeyHash.prefixed(id: runHash, separator: 0, position: f.position)
            if f.knownKind == .runCreated {
                args = KeyHash.pair(runHash, f.args.isPresent ? hash(f.args) : KeyHash.bytes(JSONValue.object([:]).canonicalBytes))
            }
        }
    }
}

/// What the index digests expect from the facts.
struct ExpectedIndexes: Sendable {
    var byJob = KeySetDigest(), byRun = KeySetDigest(), byTime = KeySetDigest(), ids = KeySetDigest(), args = KeySetDigest()

    mutating func add(_ h: FactKeyHashes) {
        byTime.add(h.time)
        ids.add(h.id)
        if let j = h.job { byJob.add(j) }
        if let r = h.run { byRun.add(r) }
        if let a = h.args { args.add(a) }
    }
}

/// A fact read in place from its line (which the scanner found canonical), for the fold: the
/// strings it needs are made once, `data` is never built.
struct ScannedLine: FoldFact {
    private let scanned: UnsafePointer<ScannedFact>
    let base: UnsafePointer<UInt8>
    let kind: FactKind
    let run: String?
    let job: String?
    let worker: String?
    let reason: String?

    /// The fact's strings.
    struct Strings: Sendable {
        var kind: FactKind
        var run, job, worker, reason: String?

        init(_ f: ScannedFact, _ base: UnsafePointer<UInt8>) {
            kind = f.knownKind.factKind ?? FactKind(rawValue: ScannedLine.string(f.kind, base) ?? "")
            run = ScannedLine.string(f.run, base)
            job = ScannedLine.string(f.job, base)
            worker = ScannedLine.string(f.worker, base)
            reason = ScannedLine.string(f.reason, base)
        }
    }

    /// `check`'s fact, which must be fast, read from `base`; both must outlive this.
    init(_ check: UnsafePointer<LineCheck>, base: UnsafePointer<UInt8>) {
        let f = UnsafeRawPointer(check).advanced(by: MemoryLayout<LineCheck>.offset(of: \LineCheck.fact)!).assumingMemoryBound(to: ScannedFact.self)
        self.init(f, base: base, strings: check.pointee.strings ?? Strings(f.pointee, base))
    }

    init(_ scanned: UnsafePointer<ScannedFact>, base: UnsafePointer<UInt8>, strings: Strings? = nil) {
        self.scanned = scanned
        self.base = base
        let s = strings ?? Strings(scanned.pointee, base)
        kind = s.kind
        run = s.run
        job = s.job
        worker = s.worker
        reason = s.reason
    }

    /// A string's contents, which the scanner found valid UTF-8 and free of escapes.
    static func string(_ s: LineSpan, _ base: UnsafePointer<UInt8>) -> String? {
        guard s.isPresent else { return nil }
        return String(decoding: UnsafeBufferPointer(start: base + Int(s.start), count: s.count), as: UTF8.self)
    }

    var knownKind: KnownKind { scanned.pointee.knownKind }
    var position: UInt64 { scanned.pointee.position }
    var time: Instant { scanned.pointee.time }
    var revision: UInt64? { scanned.pointee.revision == 0 ? nil : scanned.pointee.revision }
    var attempt: Int? { scanned.pointee.attempt.map { Int($0) } }

    private func bytes(_ s: LineSpan) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: base + Int(s.start), count: s.count)
    }

    /// The string value of a JSON text, nil when it is not a string.
    private func stringValue(_ s: LineSpan) -> String? {
        guard s.isPresent, base[Int(s.start)] == UInt8(ascii: "\"") else { return nil }
        let contents = UnsafeBufferPointer(start: base + Int(s.start) + 1, count: s.count - 2)
        if !contents.contains(UInt8(ascii: "\\")) { return String(decoding: contents, as: UTF8.self) }
        return (try? JSONValue.parse(bytes(s)))?.stringValue
    }

    func dataString(_ key: FactDataKey) -> String? { stringValue(scanned.pointee.member(key)) }

    func dataInteger(_ key: FactDataKey) -> Int64? { FactScanner.integer(scanned.pointee.member(key), in: base) }

    func dataCanonicalBytes(_ key: FactDataKey) -> [UInt8]? {
        let s = scanned.pointee.member(key)
        return s.isPresent ? Array(bytes(s)) : nil
    }

    func dataStringList(_ key: FactDataKey) -> [String?] {
        var out: [String?] = []
        let isArray = FactScanner.forEachElement(of: scanned.pointee.member(key), in: base) { out.append(stringValue($0)) }
        return isArray ? out : []
    }
}

/// The fold's target in `verify()`: ``MemoryViews`` again (string-keyed, so a verdict never
/// depends on how ids are spelled), tuned for a pass that touches each record many times. A
/// record the fold takes is handed over, not copied, and its slot remembered for the put that
/// follows; ready entries are keyed without building their byte keys.
struct VerifyViews: FoldTarget {
    final class Slot<State> {
        var state: State?
        init(_ state: State) { self.state = state }
    }

    private(set) var jobs: [String: Slot<JobState>] = [:]
    private(set) var runs: [String: Slot<RunState>] = [:]
    private var ready: Set<ReadyKey> = []
    private(set) var activeByType: [String: Int] = [:]
    private var waiting: [String: Int] = [:]
    /// Each run's job ids, in creation order (so a run can be compared and dropped).
    private var jobsOfRun: [String: [String]] = [:]
    private var takenJob: (id: String, slot: Slot<JobState>)?
    private var takenRun: (id: String, slot: Slot<RunState>)?

    /// A ready entry's identity: what its key bytes hold (job ids compared by their bytes).
    struct ReadyKey: Hashable {
        let priority: UInt32
        let since: UInt64
        let job: String

        init(_ e: ReadyEntry) {
            // As in ReadyEntry.key: descending priority.
            priority = UInt32(truncatingIfNeeded: Int64(Int32.max) - Int64(e.priority))
            since = e.since
            job = e.job
        }

        static func == (a: ReadyKey, b: ReadyKey) -> Bool {
            a.priority == b.priority && a.since == b.since && a.job.utf8.elementsEqual(b.job.utf8)
        }

        func hash(into hasher: inout Hasher) {
            hasher.combine(priority)
            hasher.combine(since)
            var j = job
            j.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        }
    }

    func job(_ id: String) -> JobState? { jobs[id]?.state }

    mutating func takeJob(_ id: String) -> JobState? {
        guard let slot = jobs[id] else { return nil }
        let state = slot.state.take()
        if state != nil { takenJob = (id, slot) }
        return state
    }

    mutating func putJob(_ job: JobState) {
        if let taken = takenJob {
            takenJob = nil
            if taken.slot.state == nil, taken.id == job.id {
                taken.slot.state = job
                return
            }
        }
        if let slot = jobs[job.id] {
            slot.state = job
        } else {
            jobs[job.id] = Slot(job)
            jobsOfRun[job.run, default: []].append(job.id)
        }
    }

    func run(_ id: String) -> RunState? { runs[id]?.state }

    mutating func takeRun(_ id: String) -> RunState? {
        guard let slot = runs[id] else { return nil }
        let state = slot.state.take()
        if state != nil { takenRun = (id, slot) }
        return state
    }

    mutating func putRun(_ run: RunState) {
        if let taken = takenRun {
            takenRun = nil
            if taken.slot.state == nil, taken.id == run.id {
                taken.slot.state = run
                return
            }
        }
        if let slot = runs[run.id] {
            slot.state = run
        } else {
            runs[run.id] = Slot(run)
        }
    }

    mutating func insertReady(_ entry: ReadyEntry) { ready.insert(ReadyKey(entry)) }

    mutating func removeReady(_ entry: ReadyEntry) throws {
        if ready.remove(ReadyKey(entry)) == nil {
            throw ViewCorruption(what: "ready entry of '\(entry.job)' missing")
        }
    }

    // The fold reads a count, then often reads it again or sets it: the last one is kept.
    private var lastActive: (type: String, count: Int)?
    private var lastWaiting: (job: String, count: Int)?

    mutating func active(_ type: String) -> Int {
        if let a = lastActive, a.type == type { return a.count }
        let count = activeByType[type] ?? 0
        lastActive = (type, count)
        return count
    }

    mutating func setActive(_ type: String, _ count: Int) {
        activeByType[type] = count == 0 ? nil : count
        lastActive = (type, count)
    }

    mutating func unfinishedParents(_ job: String) -> Int {
        if let w = lastWaiting, w.job == job { return w.count }
        let count = waiting[job] ?? 0
        lastWaiting = (job, count)
        return count
    }

    mutating func setUnfinishedParents(_ job: String, _ count: Int) {
        waiting[job] = count == 0 ? nil : count
        lastWaiting = (job, count)
    }

    // For the comparison with the stored views, which drops what it compared.

    var runIDs: [String] { Array(runs.keys) }

    mutating func removeRun(_ id: String) -> RunState? {
        return runs.removeValue(forKey: id)?.state.take()
    }

    mutating func removeJobs(ofRun id: String) -> [String] { jobsOfRun.removeValue(forKey: id) ?? [] }

    mutating func removeJob(_ id: String) -> JobState? {
        return jobs.removeValue(forKey: id)?.state.take()
    }

    mutating func removeWaiting(_ job: String) -> Int? {
        lastWaiting = nil
        return waiting.removeValue(forKey: job)
    }

    mutating func removeReadyKey(of entry: ReadyEntry) { ready.remove(ReadyKey(entry)) }
}

/// Fact lines copied out of the read transaction in key order, and what the checking stage made
/// of them. Batches go back and forth between the two threads of `verify()`.
struct FactBatch: Sendable {
    var bytes: [UInt8] = []
    /// Where each line ends in `bytes` (it starts where the one before ends).
    var ends: [Int] = []
    /// Each line's key, read as a position.
    var keys: [UInt64] = []
    var checks: [LineCheck] = []
    /// Filled by the folding thread: the runs that these lines end, and the violations the fold
    /// had found after them.
    var ended: [EndedRun] = []
    var foldViolations = 0

    var count: Int { ends.count }

    mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        ends.removeAll(keepingCapacity: true)
        keys.removeAll(keepingCapacity: true)
        checks.removeAll(keepingCapacity: true)
        ended.removeAll(keepingCapacity: true)
        foldViolations = 0
    }

    mutating func append(key: UnsafeRawBufferPointer, line: UnsafeRawBufferPointer) {
        keys.append(key.count >= 8 ? readBigEndian64(key) : key.reduce(0) { $0 << 8 | UInt64($1) })
        bytes.append(contentsOf: line)
        ends.append(bytes.count)
    }

    func range(_ i: Int) -> Range<Int> { (i == 0 ? 0 : ends[i - 1])..<ends[i] }

    /// The checking stage: scans each line and, when it is canonical, checks its hash and hashes
    /// the index entries it implies. A pure function of the lines, so it runs on either thread.
    mutating func check() {
        checks.removeAll(keepingCapacity: true)
        checks.reserveCapacity(count)
        bytes.withUnsafeBufferPointer { all in
            for i in 0..<count {
                let line = UnsafeBufferPointer(rebasing: all[range(i)])
                guard let f = FactScanner.scan(line), LineHasher.bodyHash(line) == f.hash else {
                    checks.append(LineCheck())
                    continue
                }
                let base = line.baseAddress!
                checks.append(LineCheck(fast: true, fact: f, keyHashes: FactKeyHashes(f, base: base), strings: ScannedLine.Strings(f, base)))
            }
        }
    }

    /// Each line with its check, in order, until `body` returns false.
    func withLines(_ body: (Int, UnsafeBufferPointer<UInt8>, UnsafePointer<LineCheck>) throws -> Bool) rethrows {
        try bytes.withUnsafeBufferPointer { all in
            try checks.withUnsafeBufferPointer { c in
                for i in 0..<count {
                    if try !body(i, UnsafeBufferPointer(rebasing: all[range(i)]), c.baseAddress! + i) { return }
                }
            }
        }
    }
}

/// The checking stage's verdict on one line.
struct LineCheck: Sendable {
    /// Whether the line is canonical and its hash matches; if not, it goes through `Fact.decode`.
    var fast = false
    /// The line's fields, when `fast`.
    var fact = ScannedFact()
    var keyHashes = FactKeyHashes()
    /// The strings the fold reads, made here rather than by the fold.
    var strings: ScannedLine.Strings?
}

/// A one-way queue between two threads.
final class Handoff<T: Sendable>: Sendable {
    private let items = Mutex<[T]>([])
    private let available = DispatchSemaphore(value: 0)

    func put(_ item: T) {
        items.withLock { $0.append(item) }
        available.signal()
    }

    func take() -> T {
        available.wait()
        return items.withLock { $0.removeFirst() }
    }

    /// The next item if there is one, without waiting.
    func poll() -> T? {
        guard available.wait(timeout: .now()) == .success else { return nil }
        return items.withLock { $0.removeFirst() }
    }
}

/// The stored entries of one index, hashed into a digest a chunk at a time (in one read
/// transaction the chunks make up exactly one pass over the entries).
struct IndexScan {
    let name: String
    let db: Database
    let hash: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> UInt64
    private(set) var digest = KeySetDigest()
    /// The first key not hashed yet (empty: from the start).
    private var next: [UInt8] = []
    private(set) var done = false

    init(_ name: String, _ db: Database, _ hash: @escaping (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> UInt64) {
        self.name = name
        self.db = db
        self.hash = hash
    }

    mutating func scan(_ txn: Transaction, upTo limit: Int) throws {
        guard !done else { return }
        var n = 0
        var resume: [UInt8]?
        var d = digest
        try txn.forEach(db, from: next) { k, v in
            if n == limit {
                resume = Array(k)
                return false
            }
            d.add(hash(k, v))
            n += 1
            return true
        }
        digest = d
        if let resume { next = resume } else { done = true }
    }
}

/// How `verify()` schedules its work; tests use small batches to cross batch boundaries.
struct VerifyTuning: Sendable {
    /// Lines per batch. Small enough that the batches in flight stay in cache: with 4096 lines
    /// (3.5 MB with their checks) the pass took about a fifth more CPU time.
    var batchLines = 512
    /// Fold on a second thread while this one reads and compares. nil: when there is a second
    /// core.
    var secondThread: Bool? = nil
    /// Batches handed to the folding thread and not yet back, at most.
    var inFlight = 4

    static let standard = VerifyTuning()
}

extension LogStore {
    /// Recomputes the hash chain and re-folds every view from the facts alone, then compares
    /// them with the stored views and indexes, inside one consistent read transaction. Reports
    /// the first position where they differ. Memory stays bounded by the runs in flight: a run's
    /// state is compared and dropped once the pass reaches its last fact.
    ///
    /// With two cores, this thread reads the facts, checks each line's form and hash, and
    /// compares the views, while a second thread folds; that pass stops at the first violation,
    /// and the store is then verified again on this thread alone, fact by fact, for the report
    /// (the violations in log order, and the stop after 100 of them).
    public func verify() throws -> VerifyReport {
        try verify(tuning: .standard)
    }

    func verify(tuning: VerifyTuning) throws -> VerifyReport {
        try read { txn in
            let lastOfRun = try StoreVerification.lastPositions(txn, dbs)
            if tuning.secondThread ?? (ProcessInfo.processInfo.activeProcessorCount > 1) {
                do {
                    if let report = try StoreVerification.twoThreads(self, txn, lastOfRun, tuning) { return report }
                } catch {
                    // Decided by the sequential pass below, which throws too, or reports first.
                }
            }
            return try StoreVerification.oneThread(self, txn, lastOfRun, tuning)
        }
    }
}

/// A run that the fold has passed the last fact of, with its folded state, for the comparison
/// with the stored views (which may happen on another thread).
struct EndedRun: Sendable {
    var id: String
    /// nil when no fact created it.
    var run: RunState?
    /// Its jobs in creation order, each with the unfinished parents the fold counts.
    var jobs: [(job: JobState, waiting: Int)] = []
}

/// The fold half of a verification: the chain, each fact's key and index entries, the fold, and
/// the runs that end.
struct FoldStage {
    var checker = ChainChecker(allowGaps: false)
    var memory = VerifyViews()
    /// Each run's last position, from the stored view; a run is compared when passed.
    var lastOfRun: [UInt64: [String]]
    /// The positions in `lastOfRun`, as bits (when they are few enough to hold so): most facts
    /// end no run, and a bit is cheaper to test than a dictionary.
    private var lastBits: [UInt64]
    var expected = ExpectedIndexes()
    var foldBroken = false
    var last: UInt64 = 0

    init(lastOfRun: [UInt64: [String]]) {
        self.lastOfRun = lastOfRun
        let highest = lastOfRun.keys.max() ?? 0
        if highest < 1 << 28 {
            lastBits = [UInt64](repeating: 0, count: Int(highest / 64) + 1)
            for p in lastOfRun.keys { lastBits[Int(p / 64)] |= 1 << (p % 64) }
        } else {
            lastBits = []
        }
    }

    private func mayEndRuns(_ p: UInt64) -> Bool {
        if lastBits.isEmpty { return true }
        let word = Int(truncatingIfNeeded: p / 64)
        return p / 64 < UInt64(lastBits.count) && lastBits[word] & (1 << (p % 64)) != 0
    }

    /// One line: false when it could not be decoded (which stops the fold, never the pass).
    /// The runs it ends go to `ended`.
    mutating func fact(_ line: UnsafeBufferPointer<UInt8>, storedAt position: UInt64, check: UnsafePointer<LineCheck>, ended: inout [EndedRun]) -> Bool {
        if check.pointee.fast {
            checker.check(scanned: check.pointee.fact, line: nil)
            decoded(ScannedLine(check, base: line.baseAddress!), storedAt: position, keyHashes: check.pointee.keyHashes, ended: &ended)
        } else {
            guard let fact = checker.check(line, line: nil) else {
                foldBroken = true
                return false
            }
            decoded(fact, storedAt: position, keyHashes: FactKeyHashes(fact), ended: &ended)
        }
        return true
    }

    private mutating func decoded<F: FoldFact>(_ fact: F, storedAt position: UInt64, keyHashes: FactKeyHashes, ended: inout [EndedRun]) {
        if fact.position != position {
            checker.report.add(Violation(kind: .index, position: position, line: nil, message: "stored under position \(position) but says \(fact.position)"))
        }
        last = position
        expected.add(keyHashes)
        if !foldBroken {
            do {
                try Fold.apply(fact, to: &memory)
            } catch {
                checker.report.add(Violation(kind: .transition, position: fact.position, line: nil, message: "\(error)"))
                foldBroken = true
            }
        }
        if !foldBroken, mayEndRuns(fact.position), let done = lastOfRun.removeValue(forKey: fact.position) {
            for id in done { ended.append(end(id)) }
        }
    }

    /// Takes a run's folded state out of memory.
    private mutating func end(_ id: String) -> EndedRun {
        guard let run = memory.removeRun(id) else { return EndedRun(id: id, run: nil) }
        var r = EndedRun(id: id, run: run)
        for jobID in memory.removeJobs(ofRun: id) {
            guard let job = memory.removeJob(jobID) else { continue }
            if let since = job.readySince {
                memory.removeReadyKey(of: ReadyEntry(priority: job.priority, since: since, job: job.id, type: job.type, notBefore: job.notBefore))
            }
            let waiting = memory.removeWaiting(jobID) ?? 0
            r.jobs.append((consume job, waiting))
        }
        return r
    }

    /// What the end of the verification needs of the fold.
    var summary: FoldSummary {
        FoldSummary(
            report: checker.finishedReport, foldBroken: foldBroken, last: last, expected: expected,
            unmatchedRuns: lastOfRun.sorted { $0.key < $1.key }.flatMap(\.value), unendedRuns: memory.runIDs.sorted(),
            activeByType: memory.activeByType)
    }
}

struct FoldSummary: Sendable {
    var report: VerifyReport
    var foldBroken: Bool
    var last: UInt64
    var expected: ExpectedIndexes
    /// Runs whose stored last position matched no fact.
    var unmatchedRuns: [String]
    /// Runs the fold made that were never compared.
    var unendedRuns: [String]
    var activeByType: [String: Int]
}

/// The comparison half: each ended run against the stored views, then what is left.
struct CompareStage {
    let store: LogStore
    let txn: Transaction
    let dbs: Databases
    let views: LMDBViews
    var expectedReady = 0
    var expectedWaiting = 0
    /// What the indexes hold; scanned at the end, or bit by bit while waiting for the fold.
    private var scans: [IndexScan]

    init(store: LogStore, txn: Transaction) {
        self.store = store
        self.txn = txn
        dbs = store.dbs
        views = LMDBViews(txn: txn, dbs: dbs)
        scans = [
            IndexScan("by_job", dbs.byJob) { k, _ in KeyHash.prefixedKey(k) },
            IndexScan("by_run", dbs.byRun) { k, _ in KeyHash.prefixedKey(k) },
            IndexScan("by_time", dbs.byTime) { k, _ in KeyHash.bytes(k) },
            IndexScan("fact_ids", dbs.factIDs) { k, _ in KeyHash.bytes(k) },
            IndexScan("run_args", dbs.runArgs) { k, v in KeyHash.pair(KeyHash.bytes(k), KeyHash.bytes(v)) },
        ]
    }

    var indexesLeft: Bool { scans.contains { !$0.done } }

    /// Hashes up to `limit` more index entries.
    mutating func scanIndexes(upTo limit: Int) throws {
        guard let i = scans.firstIndex(where: { !$0.done }) else { return }
        try scans[i].scan(txn, upTo: limit)
    }

    mutating func compare(_ ended: EndedRun, _ report: inout VerifyReport) throws {
        let id = ended.id
        guard let folded = ended.run else {
            report.add(Violation(kind: .view, position: nil, line: nil, message: "run '\(id)' is in the runs view but no fact creates it"))
            return
        }
        report.runs += 1
        // A stored record with the very bytes of the folded one equals it; only a record that
        // differs is decoded, to compare field by field as before.
        if let bytes = try txn.get(dbs.runs, Array(id.utf8)), !folded.matchesEncoding(bytes) {
            let stored = try RunState(decoding: bytes)
            if stored != folded {
                report.add(Violation(kind: .view, position: folded.position, line: nil, message: "run '\(id)': stored summary \(stored) differs from the fold \(folded)"))
            }
        }
        // Through a buffer pointer: iterating the array would copy each job (and retain its
        // arrays) only to read it.
        try ended.jobs.withUnsafeBufferPointer { jobs in
            for i in jobs.indices { try compare(jobs[i].job, folded: jobs[i].waiting, &report) }
        }
    }

    private mutating func compare(_ job: JobState, folded foldedWaiting: Int, _ report: inout VerifyReport) throws {
        let jobID = job.id
        report.jobs += 1
        if let bytes = try txn.get(dbs.jobs, Array(jobID.utf8)) {
            if !job.matchesEncoding(bytes) {
                let stored = try JobState(decoding: bytes)
                if stored != job {
                    report.add(Violation(kind: .view, position: job.position, line: nil, message: "job '\(jobID)': stored state differs from the fold (status \(stored.status) vs \(job.status), revision \(stored.revision) vs \(job.revision))"))
                }
            }
        } else {
            report.add(Violation(kind: .view, position: job.position, line: nil, message: "job '\(jobID)' is missing from the jobs view"))
        }
        let storedWaiting = try views.unfinishedParents(jobID)
        if storedWaiting != foldedWaiting {
            report.add(Violation(kind: .view, position: job.position, line: nil, message: "job '\(jobID)': \(storedWaiting) unfinished parents stored, the fold counts \(foldedWaiting)"))
        }
        if foldedWaiting > 0 { expectedWaiting += 1 }
        if let since = job.readySince {
            expectedReady += 1
            let entry = ReadyEntry(priority: job.priority, since: since, job: job.id, type: job.type, notBefore: job.notBefore)
            let stored = try txn.get(dbs.ready, entry.key)
            if stored.map({ !sameBytes($0, entry.value) }) ?? true {
                report.add(Violation(kind: .view, position: job.position, line: nil, message: "job '\(jobID)': its ready-set entry is missing or differs"))
            }
        }
    }

    /// After the last fact: what is left of the views, the indexes and the head.
    mutating func finish(_ fold: FoldSummary, _ report: inout VerifyReport) throws {
        if !fold.foldBroken {
            // Runs whose stored position matched no fact: their view is wrong.
            for id in fold.unmatchedRuns {
                report.add(Violation(kind: .view, position: nil, line: nil, message: "run '\(id)': the stored summary's last position matches no fact of the run"))
            }
            for id in fold.unendedRuns {
                report.add(Violation(kind: .view, position: nil, line: nil, message: "run '\(id)': the stored summary's last position is wrong or missing"))
            }
            let storedJobs = try txn.count(dbs.jobs)
            if storedJobs != report.jobs {
                report.add(Violation(kind: .view, position: nil, line: nil, message: "the jobs view holds \(storedJobs) jobs, the facts make \(report.jobs)"))
            }
            let storedWaiting = try txn.count(dbs.waiting)
            if storedWaiting != expectedWaiting {
                report.add(Violation(kind: .view, position: nil, line: nil, message: "the waiting view holds \(storedWaiting) entries, the facts make \(expectedWaiting)"))
            }
            let storedReady = try txn.count(dbs.ready)
            if storedReady != expectedReady {
                report.add(Violation(kind: .view, position: nil, line: nil, message: "the ready set holds \(storedReady) entries, the facts make \(expectedReady)"))
            }
            var storedActive: [String: Int] = [:]
            try txn.forEach(dbs.active) { k, v in
                storedActive[String(decoding: k, as: UTF8.self)] = Int(readBigEndian64(v))
                return true
            }
            if storedActive != fold.activeByType {
                report.add(Violation(kind: .view, position: nil, line: nil, message: "live claims by type: stored \(storedActive.sorted { $0.key < $1.key }), folded \(fold.activeByType.sorted { $0.key < $1.key })"))
            }
        }
        let e = fold.expected
        for (i, want) in [e.byJob, e.byRun, e.byTime, e.ids, e.args].enumerated() {
            try scans[i].scan(txn, upTo: .max)
            let got = scans[i].digest
            if got != want {
                report.add(Violation(kind: .index, position: nil, line: nil, message: "index \(scans[i].name) holds \(got.count) entries that do not match the \(want.count) the facts imply"))
            }
        }
        let head = try store.core.head(txn)
        let last = fold.last
        if head.position != last || (last > 0 && head.hash != report.headHash) {
            report.add(Violation(kind: .head, position: head.position, line: nil, message: "the recorded head (position \(head.position), \(head.hash.hex)) differs from the last fact (position \(last), \(report.headHash.hex))"))
        }
    }
}

enum StoreVerification {
    /// Each run's last position, from the stored runs view.
    static func lastPositions(_ txn: Transaction, _ dbs: Databases) throws -> [UInt64: [String]] {
        var lastOfRun: [UInt64: [String]] = [:]
        try txn.forEach(dbs.runs) { _, v in
            let run = try RunState(decoding: v)
            lastOfRun[run.position, default: []].append(run.id)
            return true
        }
        return lastOfRun
    }

    /// Fact by fact on this thread, each fact's violations in order (the chain, its key, the
    /// fold, the runs it ends), until 100 of them are kept.
    static func oneThread(_ store: LogStore, _ txn: Transaction, _ lastOfRun: [UInt64: [String]], _ tuning: VerifyTuning) throws -> VerifyReport {
        var fold = FoldStage(lastOfRun: lastOfRun)
        var compare = CompareStage(store: store, txn: txn)
        var batch = FactBatch()
        var stopped = false
        var ended: [EndedRun] = []
        func process() throws {
            batch.check()
            try batch.withLines { i, line, check in
                ended.removeAll(keepingCapacity: true)
                guard fold.fact(line, storedAt: batch.keys[i], check: check, ended: &ended) else { return true }
                for r in ended { try compare.compare(r, &fold.checker.report) }
                stopped = fold.checker.report.violations.count >= 100
                return !stopped
            }
            batch.reset()
        }
        try txn.forEach(store.dbs.facts) { k, v in
            batch.append(key: k, line: v)
            if batch.count >= max(1, tuning.batchLines) { try process() }
            return !stopped
        }
        if !stopped, batch.count > 0 { try process() }
        let summary = fold.summary
        var report = summary.report
        try compare.finish(summary, &report)
        return report
    }

    enum ToFold: Sendable {
        case batch(FactBatch)
        case finish
    }

    enum FromFold: Sendable {
        case batch(FactBatch)
        case finished(FoldSummary)
    }

    /// This thread reads, checks each line and compares; a second one folds. nil as soon as
    /// either finds a violation: the caller then verifies on one thread, for the report.
    static func twoThreads(_ store: LogStore, _ txn: Transaction, _ lastOfRun: [UInt64: [String]], _ tuning: VerifyTuning) throws -> VerifyReport? {
        let toFold = Handoff<ToFold>()
        let fromFold = Handoff<FromFold>()
        let folder = Thread {
            var fold = FoldStage(lastOfRun: lastOfRun)
            var ended: [EndedRun] = []
            loop: while true {
                switch toFold.take() {
                case .batch(var b):
                    ended.removeAll(keepingCapacity: true)
                    if fold.checker.report.violationCount == 0 {
                        b.withLines { i, line, check in
                            let decoded = fold.fact(line, storedAt: b.keys[i], check: check, ended: &ended)
                            return decoded && fold.checker.report.violationCount == 0
                        }
                    }
                    swap(&ended, &b.ended)
                    b.foldViolations = fold.checker.report.violationCount
                    fromFold.put(.batch(b))
                case .finish:
                    fromFold.put(.finished(fold.summary))
                    break loop
                }
            }
        }
        folder.name = "overseer-verify"
        folder.start()
        var compare = CompareStage(store: store, txn: txn)
        var compared = VerifyReport()
        var batch = FactBatch()
        var spare: [FactBatch] = []
        var inFlight = 0
        var failed = false
        var folderDone = false
        defer {
            // Whatever happened, the folding thread is done before the transaction is.
            if !folderDone {
                while inFlight > 0 {
                    _ = fromFold.take()
                    inFlight -= 1
                }
                toFold.put(.finish)
                _ = fromFold.take()
            }
        }
        func send() {
            batch.check()
            toFold.put(.batch(batch))
            inFlight += 1
            batch = spare.popLast() ?? FactBatch()
            batch.reset()
        }
        func receive() throws {
            // While the fold is behind, hash index entries for the end: that work would
            // otherwise wait until the last fact is folded.
            var message: FromFold?
            while message == nil, compare.indexesLeft {
                message = fromFold.poll()
                if message == nil { try compare.scanIndexes(upTo: 512) }
            }
            guard case .batch(let b) = message ?? fromFold.take() else { return }
            inFlight -= 1
            if b.foldViolations > 0 { failed = true }
            if !failed {
                for r in b.ended {
                    try compare.compare(r, &compared)
                    if compared.violationCount > 0 {
                        failed = true
                        break
                    }
                }
            }
            spare.append(b)
        }
        try txn.forEach(store.dbs.facts) { k, v in
            batch.append(key: k, line: v)
            if batch.count >= max(1, tuning.batchLines) {
                send()
                while inFlight >= max(1, tuning.inFlight) { try receive() }
            }
            return !failed
        }
        if !failed, batch.count > 0 { send() }
        while inFlight > 0 { try receive() }
        toFold.put(.finish)
        let last = fromFold.take()
        folderDone = true
        guard case .finished(let s) = last, !failed, s.report.violationCount == 0 else { return nil }
        var report = s.report
        report.runs = compared.runs
        report.jobs = compared.jobs
        try compare.finish(s, &report)
        return report
    }
}

private func sameBytes(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    if a.count == 0 { return true }
    return b.withUnsafeBytes { memcmp(a.baseAddress!, $0.baseAddress!, a.count) == 0 }
}
