import Foundation

/// Compact binary encodings of the views (job state, run summary, ready entries). Views are
/// private to the store and rebuilt from facts, so this format may change with the format version.

extension Array where Element == UInt8 {
    mutating func appendBigEndian(_ v: UInt64) {
        Swift.withUnsafeBytes(of: v.bigEndian) { append(contentsOf: $0) }
    }

    mutating func appendBigEndian(_ v: UInt32) {
        Swift.withUnsafeBytes(of: v.bigEndian) { append(contentsOf: $0) }
    }
}

func readBigEndian64(_ b: UnsafeRawBufferPointer, at offset: Int = 0) -> UInt64 {
    var v: UInt64 = 0
    for i in 0..<8 { v = v << 8 | UInt64(b[offset + i]) }
    return v
}

struct ViewCorruption: Error, CustomStringConvertible {
    let what: String
    var description: String { "damaged view record: \(what)" }
}

/// Where an encoding goes: ``ByteWriter`` appends it; ``ByteMatcher`` compares it with bytes
/// encoded before, without building it. The encodings are written once, against this.
protocol ByteSink {
    mutating func u8(_ v: UInt8)
    mutating func u64(_ v: UInt64)
    mutating func raw(_ b: UnsafeRawBufferPointer)
    /// Length (8 bytes), then the UTF-8 bytes.
    mutating func string(_ s: String)
}

extension ByteSink {
    mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
    mutating func int(_ v: Int) { i64(Int64(v)) }
    mutating func optionalString(_ s: String?) {
        if let s {
            u8(1)
            string(s)
        } else {
            u8(0)
        }
    }
    mutating func optionalInstant(_ t: Instant?) {
        if let t {
            u8(1)
            i64(t.microseconds)
        } else {
            u8(0)
        }
    }
    mutating func optionalU64(_ v: UInt64?) {
        if let v {
            u8(1)
            u64(v)
        } else {
            u8(0)
        }
    }
    mutating func rawJSON(_ v: [UInt8]?) {
        if let v {
            u8(1)
            u64(UInt64(v.count))
            v.withUnsafeBytes { raw($0) }
        } else {
            u8(0)
        }
    }
    mutating func strings(_ list: [String]) {
        u64(UInt64(list.count))
        for s in list { string(s) }
    }
}

struct ByteWriter: ByteSink {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u64(_ v: UInt64) { bytes.appendBigEndian(v) }
    mutating func raw(_ b: UnsafeRawBufferPointer) { bytes.append(contentsOf: b) }
    mutating func string(_ s: String) {
        u64(UInt64(s.utf8.count))
        bytes.append(contentsOf: s.utf8)
    }
    mutating func json(_ v: JSONValue?) {
        if let v {
            u8(1)
            let c = v.canonicalBytes
            u64(UInt64(c.count))
            bytes.append(contentsOf: c)
        } else {
            u8(0)
        }
    }
}

/// Compares an encoding with `buffer` as it goes: `matches` at the end, with every byte used,
/// exactly when the encoding's bytes are `buffer`'s.
struct ByteMatcher: ByteSink {
    let buffer: UnsafeRawBufferPointer
    private(set) var offset = 0
    private(set) var matches = true

    init(_ buffer: UnsafeRawBufferPointer) { self.buffer = buffer }

    var matchesAll: Bool { matches && offset == buffer.count }

    mutating func u8(_ v: UInt8) {
        guard matches, offset < buffer.count, buffer[offset] == v else { return fail() }
        offset += 1
    }
    mutating func u64(_ v: UInt64) {
        guard matches, offset + 8 <= buffer.count, readBigEndian64(buffer, at: offset) == v else { return fail() }
        offset += 8
    }
    mutating func raw(_ b: UnsafeRawBufferPointer) {
        guard matches, offset + b.count <= buffer.count else { return fail() }
        if b.count > 0, memcmp(buffer.baseAddress! + offset, b.baseAddress!, b.count) != 0 { return fail() }
        offset += b.count
    }
    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { u in
            u64(UInt64(u.count))
            raw(UnsafeRawBufferPointer(u))
        }
    }
    private mutating func fail() { matches = false }
}

struct ByteReader {
    let buffer: UnsafeRawBufferPointer
    var offset = 0

    init(_ buffer: UnsafeRawBufferPointer) { self.buffer = buffer }

    mutating func need(_ n: Int) throws(ViewCorruption) {
        if n < 0 || offset + n > buffer.count { throw ViewCorruption(what: "truncated at byte \(offset)") }
    }
    mutating func u8() throws(ViewCorruption) -> UInt8 {
        try need(1)
        defer { offset += 1 }
        return buffer[offset]
    }
    mutating func u64() throws(ViewCorruption) -> UInt64 {
        try need(8)
        defer { offset += 8 }
        return readBigEndian64(buffer, at: offset)
    }
    mutating func i64() throws(ViewCorruption) -> Int64 { Int64(bitPattern: try u64()) }
    mutating func int() throws(ViewCorruption) -> Int { Int(try i64()) }
    mutating func string() throws(ViewCorruption) -> String {
        let n = Int(clamping: try u64())
        try need(n)
        defer { offset += n }
        return String(decoding: UnsafeRawBufferPointer(rebasing: buffer[offset..<(offset + n)]), as: UTF8.self)
    }
    mutating func optionalString() throws(ViewCorruption) -> String? {
        try u8() == 0 ? nil : try string()
    }
    mutating func optionalInstant() throws(ViewCorruption) -> Instant? {
        try u8() == 0 ? nil : Instant(microseconds: try i64())
    }
    mutating func optionalU64() throws(ViewCorruption) -> UInt64? {
        try u8() == 0 ? nil : try u64()
    }
    mutating func json() throws(ViewCorruption) -> JSONValue? {
        guard try u8() != 0 else { return nil }
        let n = Int(clamping: try u64())
        try need(n)
        defer { offset += n }
        do {
            return try JSONValue.parse(UnsafeRawBufferPointer(rebasing: buffer[offset..<(offset + n)]))
        } catch {
            throw ViewCorruption(what: "invalid JSON (\(error))")
        }
    }
    mutating func rawJSON() throws(ViewCorruption) -> [UInt8]? {
        guard try u8() != 0 else { return nil }
        let n = Int(clamping: try u64())
        try need(n)
        defer { offset += n }
        return Array(buffer[offset..<(offset + n)])
    }
    mutating func strings() throws(ViewCorruption) -> [String] {
        let n = Int(clamping: try u64())
        guard n <= buffer.count else { throw ViewCorruption(what: "bad list length") }
        var out = [String]()
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try string()) }
        return out
    }
}

extension JobStatus {
    var code: UInt8 {
        switch self {
        case .unstarted: 0
        case .started: 1
        case .finished: 2
        case .failed: 3
        case .aborted: 4
        }
    }
    init(code: UInt8) throws(ViewCorruption) {
        switch code {
        case 0: self = .unstarted
        case 1: self = .started
        case 2: self = .finished
        case 3: self = .failed
        case 4: self = .aborted
        default: throw ViewCorruption(what: "job status code \(code)")
        }
    }
}

extension RunStatus {
    var code: UInt8 {
        switch self {
        case .running: 0
        case .finished: 1
        case .failed: 2
        case .aborted: 3
        }
    }
    init(code: UInt8) throws(ViewCorruption) {
        switch code {
        case 0: self = .running
        case 1: self = .finished
        case 2: self = .failed
        case 3: self = .aborted
        default: throw ViewCorruption(what: "run status code \(code)")
        }
    }
}

extension JobState {
    var encoded: [UInt8] {
        var w = ByteWriter()
        w.bytes.reserveCapacity(160)
        encode(into: &w)
        return w.bytes
    }

    /// Whether `bytes` are this job's ``encoded`` form (without making it).
    func matchesEncoding(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var m = ByteMatcher(bytes)
        encode(into: &m)
        return m.matchesAll
    }

    func encode<S: ByteSink>(into w: inout S) {
        w.string(id)
        w.string(run)
        w.string(type)
        w.strings(parents)
        w.strings(children)
        w.int(priority)
        w.u8(status.code)
        w.u64(revision)
        w.int(attempt)
        w.int(attemptBase)
        w.optionalString(worker)
        w.i64(createdAt.microseconds)
        w.u64(createdPosition)
        w.optionalInstant(claimedAt)
        w.i64(leaseMilliseconds)
        w.optionalInstant(firstStartedAt)
        w.optionalInstant(endedAt)
        w.optionalInstant(notBefore)
        w.optionalU64(readySince)
        w.optionalString(reason)
        w.rawJSON(errorJSON)
        w.rawJSON(resultJSON)
        w.rawJSON(optionsJSON)
        w.int(rejected)
        w.u64(position)
        w.int(failures)
        w.int(faults)
        w.int(expiries)
    }

    init(decoding buffer: UnsafeRawBufferPointer) throws(ViewCorruption) {
        var r = ByteReader(buffer)
        id = try r.string()
        run = try r.string()
        type = try r.string()
        parents = try r.strings()
        children = try r.strings()
        priority = try r.int()
        status = try JobStatus(code: try r.u8())
        revision = try r.u64()
        attempt = try r.int()
        attemptBase = try r.int()
        worker = try r.optionalString()
        createdAt = Instant(microseconds: try r.i64())
        createdPosition = try r.u64()
        claimedAt = try r.optionalInstant()
        leaseMilliseconds = try r.i64()
        firstStartedAt = try r.optionalInstant()
        endedAt = try r.optionalInstant()
        notBefore = try r.optionalInstant()
        readySince = try r.optionalU64()
        reason = try r.optionalString()
        errorJSON = try r.rawJSON()
        resultJSON = try r.rawJSON()
        optionsJSON = try r.rawJSON() ?? Array("{}".utf8)
        rejected = try r.int()
        position = try r.u64()
        failures = try r.int()
        faults = try r.int()
        expiries = try r.int()
    }
}

extension RunState {
    var encoded: [UInt8] {
        var w = ByteWriter()
        encode(into: &w)
        return w.bytes
    }

    /// Whether `bytes` are this run's ``encoded`` form (without making it).
    func matchesEncoding(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var m = ByteMatcher(bytes)
        encode(into: &m)
        return m.matchesAll
    }

    func encode<S: ByteSink>(into w: inout S) {
        w.string(id)
        w.u8(status.code)
        w.i64(createdAt.microseconds)
        w.u64(createdPosition)
        w.optionalInstant(endedAt)
        w.optionalString(name)
        w.int(priority)
        w.int(total)
        for s in JobStatus.allCases { w.int(counts[s] ?? 0) }
        w.int(ready)
        w.u8(abortedByOperator ? 1 : 0)
        w.optionalString(abortReason)
        w.u64(position)
    }

    init(decoding buffer: UnsafeRawBufferPointer) throws(ViewCorruption) {
        var r = ByteReader(buffer)
        id = try r.string()
        status = try RunStatus(code: try r.u8())
        createdAt = Instant(microseconds: try r.i64())
        createdPosition = try r.u64()
        endedAt = try r.optionalInstant()
        name = try r.optionalString()
        priority = try r.int()
        total = try r.int()
        var c: [JobStatus: Int] = [:]
        for s in JobStatus.allCases {
            let n = try r.int()
            if n != 0 { c[s] = n }
        }
        counts = c
        ready = try r.int()
        abortedByOperator = try r.u8() != 0
        abortReason = try r.optionalString()
        position = try r.u64()
    }
}

extension ReadyEntry {
    /// The value stored under ``key``: the job's type and its not-before instant (0 for none), so
    /// claim-next can filter entries without reading the job.
    var value: [UInt8] {
        var w = ByteWriter()
        w.string(type)
        w.i64(notBefore?.microseconds ?? 0)
        w.string(job)
        return w.bytes
    }

    static func decodeValue(_ buffer: UnsafeRawBufferPointer) throws(ViewCorruption) -> (type: String, notBefore: Int64, job: String) {
        var r = ByteReader(buffer)
        return (try r.string(), try r.i64(), try r.string())
    }
}
