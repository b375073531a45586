import Foundation

/// Which facts an export holds.
public struct ExportFilter: Sendable, Hashable {
    /// Only this run's facts (its `run.created`, its jobs' facts).
    public var run: String?
    /// Only facts after this point (exclusive).
    public var since: LogPoint?
    /// Only facts up to this point (inclusive).
    public var until: LogPoint?

    public init(run: String? = nil, since: LogPoint? = nil, until: LogPoint? = nil) {
        self.run = run
        self.since = since
        self.until = until
    }

    public var isEverything: Bool { run == nil && since == nil && until == nil }
}

/// Why an export or import file could not be used.
public struct ExportError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let line: Int?
    public let message: String
    public var description: String {
        if let line { return "\(path):\(line): \(message)" }
        return "\(path): \(message)"
    }
}

extension LogStore {
    /// Calls `body` with each exported line (no newline), in log order.
    public func exportLines(_ filter: ExportFilter = ExportFilter(), _ body: ([UInt8]) throws -> Void) throws -> Int {
        let lower = try filter.since.map { try position(of: $0) + 1 } ?? 1
        let upper = try filter.until.map { try position(of: $0) } ?? UInt64.max
        guard lower <= upper else { return 0 }
        var count = 0
        if let run = filter.run {
            for fact in try history(ofRun: run, through: upper) where fact.position >= lower {
                try body(fact.line)
                count += 1
            }
            return count
        }
        try forEachLine(in: lower...upper) { _, bytes in
            try body(Array(bytes))
            count += 1
            return true
        }
        return count
    }

    /// Writes the filtered log as JSON Lines to `path` (created 0600; replaced atomically), or to
    /// standard output when `path` is nil. Returns the number of facts written.
    @discardableResult
    public func export(to path: String?, filter: ExportFilter = ExportFilter()) throws -> Int {
        let out = try OutputFile(path: path)
        let count: Int
        do {
            count = try exportLines(filter) { line in
                try out.write(line)
                try out.write([0x0A])
            }
            try out.commit()
        } catch {
            out.discard()
            throw error
        }
        return count
    }

    /// Copies every fact of a verified export into this store, verbatim (same positions, times
    /// and hashes). The store must be empty; nothing is written unless the whole file verifies.
    @discardableResult
    public func importLog(from path: String) throws -> Int {
        let report = try ExportFile.verify(path: path)
        guard report.ok else {
            throw ExportError(path: path, line: report.firstViolation?.line, message: "the export does not verify: \(report.firstViolation!)")
        }
        guard !report.partial else {
            throw ExportError(path: path, line: nil, message: "a partial export (filtered by run or time) cannot be imported; export the whole log")
        }
        guard try lastPosition() == 0 else {
            throw StoreError(.invalid, path: self.path, "import needs an empty store; this one holds \(try lastPosition()) facts")
        }
        var facts: [Fact] = []
        try ExportFile.forEachLine(path: path) { bytes, _ in
            facts.append(try Fact.decode(line: bytes))
        }
        // Chunks keep each transaction's dirty pages bounded; if any chunk fails, the store (empty
        // before) is emptied again, so a failed import leaves nothing behind.
        let chunk = 2048
        var index = 0
        do {
            while index < facts.count {
                let slice = Array(facts[index..<min(index + chunk, facts.count)])
                try writeSync { writer in
                    for f in slice { try writer.appendVerbatim(f) }
                }
                index += chunk
            }
        } catch {
            if index > 0 {
                let written = UInt64(index)
                try writeSync { writer in try writer.resetEmptyStore(expectingOnly: written) }
            }
            throw error
        }
        return facts.count
    }
}

extension LogWriter {
    /// Returns a store to its freshly created state: used only to undo a failed import into an
    /// empty store, never on a store with history of its own.
    mutating func resetEmptyStore(expectingOnly imported: UInt64) throws {
        guard head.position == imported else {
            throw StoreError(.io, path: path, "the failed import cannot be undone: the store holds \(head.position) facts, not the \(imported) imported (another process wrote meanwhile)")
        }
        for db in [dbs.facts, dbs.jobs, dbs.runs, dbs.ready, dbs.active, dbs.byJob, dbs.byRun, dbs.byTime, dbs.factIDs, dbs.leases, dbs.waiting, dbs.runArgs] {
            try txn.clear(db)
        }
        head = Head.empty
        try txn.put(dbs.meta, Keys.head, Head.empty.encoded)
    }

    /// Appends a fact that already has its position, time and hashes (import, copy between
    /// stores). It must continue this log exactly.
    public mutating func appendVerbatim(_ fact: Fact) throws {
        guard fact.position == head.position + 1 else {
            throw StoreError(.invalid, path: path, "fact at position \(fact.position) cannot follow position \(head.position)")
        }
        guard fact.prev == head.hash else {
            throw StoreError(.invalid, path: path, "fact at position \(fact.position) does not chain onto the log's head")
        }
        guard fact.time >= head.time else {
            throw StoreError(.invalid, path: path, "fact at position \(fact.position) is older than the log's head")
        }
        var v = views
        try Fold.apply(fact, to: &v)
        try txn.appendFact(dbs.facts, fact, line: fact.line)
        try writeIndexes(of: fact)
        head = Head(position: fact.position, hash: fact.hash, time: fact.time)
        if firstAppendedID == nil { firstAppendedID = fact.id }
    }
}

/// Offline checks of an exported JSON Lines file.
public enum ExportFile {
    /// Largest line accepted (a fact is at most ``LogStore/maximumFactSize``).
    static let maximumLine = LogStore.maximumFactSize + 4096

    /// Calls `body` with each line's bytes (without the newline) and its 1-based number.
    static func forEachLine(path: String, _ body: ([UInt8], Int) throws -> Void) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw ExportError(path: path, line: nil, message: "cannot open for reading: \(String(cString: strerror(errno)))")
        }
        defer { try? handle.close() }
        var pending: [UInt8] = []
        var lineNumber = 0
        while true {
            let chunk: Data?
            do {
                chunk = try handle.read(upToCount: 1 << 20)
            } catch {
                throw ExportError(path: path, line: lineNumber, message: "read failed: \(error.localizedDescription)")
            }
            guard let chunk, !chunk.isEmpty else { break }
            pending.append(contentsOf: chunk)
            var start = 0
            while let nl = pending[start...].firstIndex(of: 0x0A) {
                lineNumber += 1
                try body(Array(pending[start..<nl]), lineNumber)
                start = nl + 1
            }
            pending.removeFirst(start)
            if pending.count > maximumLine {
                throw ExportError(path: path, line: lineNumber + 1, message: "line longer than \(maximumLine) bytes")
            }
        }
        if !pending.isEmpty {
            throw ExportError(path: path, line: lineNumber + 1, message: "the last line is truncated (no newline at the end of the file)")
        }
    }

    /// Verifies an export: every line's canonical form and hash, the chain, dense positions,
    /// times, unique fact ids, and a re-fold of every fact through the state machine.
    ///
    /// A filtered export (`--run`, `--since`, `--until`) holds a subset of the log: verify it with
    /// `partial: true`, which accepts gaps between positions and checks the chain only where
    /// positions are consecutive (a dropped line then cannot be told from a filtered one).
    public static func verify(path: String, partial: Bool = false) throws -> VerifyReport {
        var checker = ChainChecker(allowGaps: partial)
        var views = MemoryViews()
        var foldBroken = false
        var emptyLines = 0
        var ids: [String: UInt64] = [:]
        try forEachLine(path: path) { bytes, number in
            if bytes.isEmpty {
                emptyLines += 1
                checker.report.add(Violation(kind: .format, position: nil, line: number, message: "empty line"))
                return
            }
            guard let fact = checker.check(bytes, line: number) else {
                foldBroken = true
                return
            }
            // Fact ids are unique in a real log (an append with a known id is a no-op).
            if let first = ids.updateValue(fact.position, forKey: fact.id) {
                checker.report.add(Violation(kind: .format, position: fact.position, line: number, message: "fact id '\(fact.id)' repeats the id of position \(first)"))
            }
            if !checker.report.partial && !foldBroken {
                do {
                    try views.apply(fact)
                } catch {
                    checker.report.add(Violation(kind: .transition, position: fact.position, line: number, message: "\(error)"))
                    foldBroken = true
                }
            }
        }
        var report = checker.report
        if report.facts == 0 && report.violationCount == 0 {
            report.add(Violation(kind: .format, position: nil, line: nil, message: "the file holds no facts"))
        }
        report.runs = views.runs.count
        report.jobs = views.jobs.count
        return report
    }
}

/// A file written in full or not at all: a temp file beside the target, fsynced, then renamed
/// (rename(2); Foundation's replaceItemAt is broken on Linux). nil writes to standard output.
final class OutputFile {
    let path: String?
    private let temp: String?
    private let handle: FileHandle
    private var buffer: [UInt8] = []

    init(path: String?) throws {
        self.path = path
        guard let path else {
            temp = nil
            handle = FileHandle.standardOutput
            return
        }
        let t = path + ".tmp-\(getpid())"
        let fd = open(t, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else {
            throw ExportError(path: path, line: nil, message: "cannot create: \(String(cString: strerror(errno)))")
        }
        temp = t
        handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    func write(_ bytes: [UInt8]) throws {
        buffer.append(contentsOf: bytes)
        if buffer.count >= 1 << 20 { try flush() }
    }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        do {
            try handle.write(contentsOf: buffer)
        } catch {
            throw ExportError(path: path ?? "<stdout>", line: nil, message: "write failed: \(error.localizedDescription)")
        }
        buffer.removeAll(keepingCapacity: true)
    }

    func commit() throws {
        try flush()
        guard let path, let temp else { return }
        do {
            try handle.synchronize()
            try handle.close()
        } catch {
            throw ExportError(path: path, line: nil, message: "cannot finish writing: \(error.localizedDescription)")
        }
        if rename(temp, path) != 0 {
            throw ExportError(path: path, line: nil, message: "cannot move into place: \(String(cString: strerror(errno)))")
        }
    }

    func discard() {
        if let temp {
            try? handle.close()
            unlink(temp)
        }
    }
}

/// What ``LogStore/copy(from:chunk:progress:)`` did.
public struct CopyReport: Sendable {
    /// Facts copied.
    public let facts: Int
    /// The destination's verification after the copy.
    public let verify: VerifyReport
    /// The head hash of both logs (they are equal, or the copy throws).
    public let headHash: Digest
}

extension LogStore {
    /// Copies every fact of `source` into this store, verbatim (same positions, times and
    /// hashes), then verifies this store and checks that both heads agree. This store must be
    /// empty. How users move a log between LMDB and PostgreSQL, either way.
    ///
    /// The copy runs in chunks, each one write transaction; if any fails, the facts copied so
    /// far are removed again, so a failed copy leaves the destination empty.
    @discardableResult
    public func copy(from source: LogStore, chunk: Int = 2048, progress: ((Int, UInt64) -> Void)? = nil) throws -> CopyReport {
        let total = try source.lastPosition()
        guard try lastPosition() == 0 else {
            throw StoreError(.invalid, path: path, "copy needs an empty destination; this one holds \(try lastPosition()) facts")
        }
        var copied: UInt64 = 0
        do {
            while copied < total {
                let upper = min(copied + UInt64(chunk), total)
                var facts: [Fact] = []
                facts.reserveCapacity(chunk)
                try source.forEachFact(in: (copied + 1)...upper) { fact in
                    facts.append(fact)
                    return true
                }
                guard facts.count == Int(upper - copied) else {
                    throw StoreError(.corrupt, path: source.path, "positions \(copied + 1)–\(upper) should hold \(upper - copied) facts, found \(facts.count)")
                }
                let batch = facts
                try writeSync { writer in
                    for f in batch { try writer.appendVerbatim(f) }
                }
                copied = upper
                progress?(Int(copied), total)
            }
        } catch {
            if copied > 0 {
                let written = copied
                try? writeSync { writer in try writer.resetEmptyStore(expectingOnly: written) }
            }
            throw error
        }
        let report = try verify()
        // The source may have grown meanwhile: compare with its fact at the copied position.
        let sourceHead = total == 0 ? Digest.zero : (try source.fact(at: total)?.hash ?? .zero)
        guard report.ok else {
            throw StoreError(.corrupt, path: path, "the copy does not verify: \(report.firstViolation.map { "\($0)" } ?? "unknown")")
        }
        guard report.headHash == sourceHead, UInt64(report.facts) == total else {
            throw StoreError(.corrupt, path: path, "the copy's head \(report.headHash.hex) (\(report.facts) facts) differs from the source's \(sourceHead.hex) (\(total) facts)")
        }
        return CopyReport(facts: Int(total), verify: report, headHash: sourceHead)
    }
}
