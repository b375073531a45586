import Foundation
import Testing

@testable import Overseer

/// The SHA-256 of a file's bytes, nil when it cannot be read.
func sha256OfFile(_ path: String) -> String? {
    guard let data = FileManager.default.contents(atPath: path) else { return nil }
    return Digest.sha256(Array(data)).hex
}

/// Every entry of a directory with the hash of its bytes ("dir" for directories).
func directoryListing(_ dir: String) -> [String: String] {
    var out: [String: String] = [:]
    for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: dir + "/" + name, isDirectory: &isDir)
        out[name] = isDir.boolValue ? "dir" : (sha256OfFile(dir + "/" + name) ?? "unreadable")
    }
    return out
}

/// The error opening `path` gives, or nil when it opened (the store is closed again at once).
func storeOpenError(_ path: String, options: StoreOptions = StoreOptions()) -> StoreError? {
    do {
        _ = try LogStore(path: path, options: options)
        return nil
    } catch {
        return error
    }
}

/// Creates a store at `path` holding a few runs (about `facts` facts), then closes it.
func makeFilledStore(_ path: String, runs: Int = 3) throws {
    var options = StoreOptions()
    options.durability = .unsafeNoSync
    let store = try LogStore(path: path, options: options)
    for r in 0..<runs {
        _ = try store.submitSync(RunPlan(id: "r\(r)", graph: seedDiamond, args: ["pad": .string(String(repeating: "p", count: 3000))]))
        for type in ["start", "result1", "result2", "finish"] {
            let id = "r\(r)/\(type)"
            _ = try store.writeSync { w -> Bool in
                let j = try w.job(id)!
                _ = try w.append(FactDraft(kind: .jobClaimed, run: j.run, job: id, author: Author(name: "w"), attempt: j.attempt + 1, data: ["lease_ms": 1000]), expecting: j.revision)
                _ = try w.append(FactDraft(kind: .jobFinished, run: j.run, job: id, author: Author(name: "w"), attempt: j.attempt + 1), expecting: j.revision + 1)
                return true
            }
        }
    }
    #expect(try store.verify().ok)
}

/// Writes a foreign LMDB environment (someone else's data) through the internal Environment.
func makeForeignEnvironment(_ dir: String, _ fill: (Environment, Transaction) throws -> Void) throws {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let env = try Environment(directory: dir, path: dir, mapSize: 1 << 20, maxDatabases: 4, maxReaders: 16, noSync: false)
    try env.write { txn in try fill(env, txn) }
}

/// Runs `overseer-probe open PATH [UID]` and returns its three output lines and how it ended.
func probeOpenStore(_ path: String, uid: UInt32? = nil) throws -> (lines: [String], reason: Process.TerminationReason, status: Int32, stderr: String) {
    let probe = try ProbeProcess(["open", path] + (uid.map { [String($0)] } ?? []))
    let (reason, status) = probe.waitForExit()
    return (probe.lines, reason, status, probe.stderrText)
}

@Suite struct BadStoreTests {
    @Test func randomBytesAreCorrupt() throws {
        let dir = TempDirectory("bad")
        defer { dir.cleanup() }
        let path = dir.path + "/db.lmdb"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        var rng = SplitMixRNG(seed: 99)
        let bytes = (0..<65536).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        _ = FileManager.default.createFile(atPath: path + "/data.mdb", contents: Data(bytes))
        let before = sha256OfFile(path + "/data.mdb")
        let e = try #require(storeOpenError(path))
        #expect(e.code == .corrupt)
        #expect(e.path == path)
        #expect(e.message.contains("not a valid LMDB file"), "\(e.message)")
        #expect(sha256OfFile(path + "/data.mdb") == before)
        #expect(Set(directoryListing(path).keys).subtracting(["lock.mdb"]) == ["data.mdb"])
    }

    @Test func errorsNameThePathAsGiven() throws {
        // Through a symlink and with a trailing slash: the error names what the caller passed.
        let dir = TempDirectory("bad")
        defer { dir.cleanup() }
        try FileManager.default.createDirectory(atPath: dir.path + "/real/db.lmdb", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/link", withDestinationPath: dir.path + "/real")
        _ = FileManager.default.createFile(atPath: dir.path + "/real/db.lmdb/data.mdb", contents: Data(repeating: 0xAB, count: 65536))
        for path in [dir.path + "/link/db.lmdb", dir.path + "/real/db.lmdb/"] {
            let e = try #require(storeOpenError(path))
            #expect(e.code == .corrupt)
            #expect(e.path == path, "the error names \(e.path)")
            #expect(e.description.hasPrefix(path + ": "))
        }
    }

    @Test func shortDataFilesAreCorruptInProcess() throws {
        let dir = TempDirectory("bad")
        defer { dir.cleanup() }
        let path = dir.path + "/db.lmdb"
        try makeFilledStore(path)
        let data = try #require(FileManager.default.contents(atPath: path + "/data.mdb"))
        #expect(truncate(path + "/data.mdb", 4096) == 0)
        let before = sha256OfFile(path + "/data.mdb")
        let e = try #require(storeOpenError(path))
        #expect(e.code == .corrupt)
        #expect(e.path == path)
        #expect(e.message.contains("truncated"), "\(e.message)")
        #expect(sha256OfFile(path + "/data.mdb") == before)
        #expect(data.count > 16384)
    }

    /// Truncations past the meta pages are opened in a child process: reading a mapped page past
    /// the end of the file would be a SIGBUS, and that must show up as a failure, not kill the tests.
    @Test(arguments: ["4096", "8192", "half"])
    func truncatedDataFilesFailCleanly(cut: String) throws {
        let dir = TempDirectory("bad")
        defer { dir.cleanup() }
        let path = dir.path + "/db.lmdb"
        try makeFilledStore(path)
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path + "/data.mdb")[.size] as? Int)
        let length: Int
        switch cut {
        case "half": length = size / 2
        default: length = Int(cut)!
        }
        #expect(length < size && length > 0)
        #expect(truncate(path + "/data.mdb", off_t(length)) == 0)
        let before = sha256OfFile(path + "/data.mdb")
        let r = try probeOpenStore(path)
        #expect(r.reason == .exit && r.status == 0, "opening a data.mdb cut to \(length) of \(size) bytes crashed the process (\(r.reason), signal/status \(r.status)): \(r.stderr.split(separator: "\n").prefix(3).joined(separator: " | "))")
        #expect(r.lines.first == "error corrupt", "cut to \(length) of \(size): \(r.lines)")
        if r.lines.count >= 3 {
            #expect(r.lines[1] == path)
            #expect(r.lines[2].contains("truncated") || r.lines[2].contains("damaged"), "\(r.lines[2])")
        }
        #expect(sha256OfFile(path + "/data.mdb") == before, "the truncated file was changed")
    }

    @Test func aPlainFileIsNotAStore() throws {
        let dir = TempDirectory("bad")
        defer { dir.cleanup() }
        let path = dir.path + "/notes.txt"
        _ = FileManager.default.createFile(atPath: path, contents: Data("hello\n".utf8))
        let e = try #require(storeOpenError(path))
        #expect(e.code == .notAStore)
        #expect(e.path == path)
        #expect(e.message.contains("it is a file"))
        #expect(directoryListing(dir.path) == ["notes.txt": sha256OfFile(path)!])
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "hello\n")
    }

    @Test func aDirectoryOfOtherFilesIsNotAStore() throws {
        let dir = TempDirectory("bad")
        defer { dir.cleanup() }
        try FileManager.default.createDirectory(atPath: dir.path + "/photos", withIntermediateDirectories: false)
        _ = FileManager.default.createFile(atPath: dir.path + "/a.jpg", contents: Data([1, 2, 3]))
        _ = FileManager.default.createFile(atPath: dir.path + "/README", contents: Data("x".utf8))
        let before = directoryListing(dir.path)
        let e = try #require(storeOpenError(dir.path))
        #expect(e.code == .notAStore)
        #expect(e.path == dir.path)
        #expect(e.message.contains("holds other files"), "\(e.message)")
        #expect(directoryListing(dir.path) == before, "the directory was changed")
        // Also with createIfMissing off, and for a path that does not exist.
        var options = StoreOptions()
        options.createIfMissing = false
        let missing = dir.path + "/nope"
        let m = try #require(storeOpenError(missing, options: options))
        #expect(m.code == .notAStore)
        #expect(m.path == missing)
        #expect(!FileManager.default.fileExists(atPath: missing))
    }

    @Test func foreignLMDBEnvironmentsAreNotStores() throws {
        let dir = TempDirectory("bad")
        defer { dir.cleanup() }
        let variants: [(String, (Environment, Transaction) throws -> Void)] = [
            ("named", { env, txn in
                let db = try env.openDatabase("other", in: txn, create: true)!
                try txn.put(db, Array("k".utf8), Array("v".utf8))
            }),
            ("main", { _, txn in try txn.put(Database(dbi: 1), Array("key".utf8), Array("value".utf8)) }),
            ("meta-without-format", { env, txn in
                let db = try env.openDatabase("meta", in: txn, create: true)!
                try txn.put(db, Array("owner".utf8), Array("someone else".utf8))
            }),
            ("unknown-marker", { env, txn in
                let db = try env.openDatabase("meta", in: txn, create: true)!
                try txn.put(db, Keys.format, Array("acme-log 1".utf8))
            }),
            ("garbled-version", { env, txn in
                let db = try env.openDatabase("meta", in: txn, create: true)!
                try txn.put(db, Keys.format, Array("overseer-log one".utf8))
            }),
        ]
        for (name, fill) in variants {
            let path = dir.path + "/" + name
            try makeForeignEnvironment(path, fill)
            let before = sha256OfFile(path + "/data.mdb")
            let e = try #require(storeOpenError(path), "\(name)")
            #expect(e.code == .notAStore, "\(name): \(e)")
            #expect(e.path == path)
            #expect(e.message.hasPrefix("not an Overseer store"), "\(name): \(e.message)")
            #expect(sha256OfFile(path + "/data.mdb") == before, "\(name): data.mdb was changed")
        }
    }

    @Test func aNewerFormatIsRefusedAndLeftUntouched() throws {
        let dir = TempDirectory("bad")
        defer { dir.cleanup() }
        let path = dir.path + "/db.lmdb"
        try makeFilledStore(path, runs: 1)
        #expect(try rewriteFormatMarker(path, to: "overseer-log 99") == Array("overseer-log 1".utf8))
        let before = try #require(sha256OfFile(path + "/data.mdb"))
        let e = try #require(storeOpenError(path))
        #expect(e.code == .newerFormat)
        #expect(e.path == path)
        #expect(e.message.contains("store format 99"), "\(e.message)")
        #expect(sha256OfFile(path + "/data.mdb") == before)
        // Twice, to be sure the first refusal left nothing half-open behind.
        #expect(storeOpenError(path)?.code == .newerFormat)
        #expect(sha256OfFile(path + "/data.mdb") == before)
    }

    @Test func unwritableDirectories() throws {
        // As root the probe runs as another user, who must be able to reach the directories:
        // use /tmp itself (world-searchable), not a TMPDIR that may be private to root.
        let base = geteuid() == 0 && FileManager.default.fileExists(atPath: "/tmp") ? "/tmp/overseer-unwritable-\(UUID().uuidString.prefix(8))" : TempDirectory("bad").path
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer {
            _ = chmod(base + "/locked", 0o700)
            _ = chmod(base + "/empty", 0o700)
            _ = chmod(base + "/store", 0o700)
            try? FileManager.default.removeItem(atPath: base)
        }
        // A: the store would be created inside a directory that cannot be written.
        let locked = base + "/locked"
        try FileManager.default.createDirectory(atPath: locked, withIntermediateDirectories: false)
        // B: the store directory exists, empty, but cannot be written.
        let empty = base + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: false)
        // C: a real store whose directory cannot be written.
        let store = base + "/store"
        try makeFilledStore(store, runs: 1)
        let storeData = sha256OfFile(store + "/data.mdb")
        let cases = [(locked + "/db.lmdb", "cannot create the store directory"), (empty, "not writable"), (store, "not writable")]

        if geteuid() == 0 {
            // Root ignores permission bits, so chmod alone proves nothing. The probe drops to
            // uid 65534 (nobody) before opening; the directories are given to that user, mode 0500.
            _ = chmod(base, 0o755)
            for p in [locked, empty, store, store + "/data.mdb", store + "/lock.mdb"] { #expect(chown(p, 65534, 65534) == 0) }
            for p in [locked, empty, store] { #expect(chmod(p, 0o500) == 0) }
            for (path, phrase) in cases {
                let r = try probeOpenStore(path, uid: 65534)
                if r.reason == .exit && r.status == 3 {
                    // No CAP_SETUID here (an unusual container): nothing can be checked as root.
                    print("unwritableDirectories: skipped, the probe could not drop privileges: \(r.stderr)")
                    return
                }
                #expect(r.reason == .exit && r.status == 0, "\(r.stderr)")
                #expect(r.lines.count == 3 && r.lines[0] == "error unwritable", "\(path): \(r.lines)")
                if r.lines.count == 3 {
                    #expect(r.lines[1] == path)
                    #expect(r.lines[2].contains(phrase), "\(r.lines[2])")
                }
            }
        } else {
            for p in [locked, empty, store] { #expect(chmod(p, 0o500) == 0) }
            for (path, phrase) in cases {
                let e = try #require(storeOpenError(path), "\(path) opened")
                #expect(e.code == .unwritable)
                #expect(e.path == path)
                #expect(e.message.contains(phrase), "\(e.message)")
            }
        }
        #expect(directoryListing(locked).isEmpty)
        #expect(directoryListing(empty).isEmpty)
        #expect(sha256OfFile(store + "/data.mdb") == storeData)
    }
}

// MARK: - Export files

/// The lines of an export (without newlines) and a writer for altered copies.
struct TamperFixture {
    let dir: TempDirectory
    let lines: [[UInt8]]

    var original: String { dir.path + "/export.jsonl" }

    func write(_ lines: [[UInt8]], name: String, newlineAtEnd: Bool = true) -> String {
        var bytes: [UInt8] = []
        for (i, l) in lines.enumerated() {
            bytes += l
            if i < lines.count - 1 || newlineAtEnd { bytes.append(0x0A) }
        }
        let path = dir.path + "/" + name
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }
}

/// A store with two runs (one finished, one half done), exported whole.
func makeTamperFixture() async throws -> TamperFixture {
    let dir = TempDirectory("export")
    try await withStore { store, _ in
        _ = try await store.submit(RunPlan(id: "r1", graph: seedDiamond))
        for type in ["start", "result1", "result2", "finish"] {
            try await store.claim("r1/\(type)")
            try await store.settle("r1/\(type)", .jobFinished, data: ["result": ["type": .string(type)]])
        }
        _ = try await store.submit(RunPlan(id: "r2", graph: ["a": [], "b": ["a"]]))
        try await store.claim("r2/a", worker: "w2")
        try await store.settle("r2/a", .jobFailed, reason: "error", data: ["error": ["message": "boom"]])
        #expect(try store.export(to: dir.path + "/export.jsonl") == 18)
    }
    let data = try #require(FileManager.default.contents(atPath: dir.path + "/export.jsonl"))
    var lines = Array(data).split(separator: 0x0A, omittingEmptySubsequences: false).map(Array.init)
    #expect(lines.last == [])
    lines.removeLast()
    return TamperFixture(dir: dir, lines: lines)
}

/// Imports `path` into `store` expecting a refusal, and checks nothing was written.
func expectImportRefused(_ store: LogStore, _ path: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        let n = try store.importLog(from: path)
        Issue.record("\(what): the import was accepted (\(n) facts)", sourceLocation: sourceLocation)
    } catch {
        #expect(error is ExportError, "\(what): \(error)", sourceLocation: sourceLocation)
    }
    #expect((try? store.lastPosition()) == 0, "\(what): a refused import wrote facts", sourceLocation: sourceLocation)
}

/// A canonical worker.started line for hand-made exports; returns the line and its hash.
func craftedWorkerLine(position: UInt64, time: Instant, id: String, prev: String) -> (line: [UInt8], hash: String) {
    let body = "{\"position\":\(position),\"time\":\"\(time.rfc3339)\",\"id\":\"\(id)\",\"kind\":\"worker.started\",\"run\":null,\"job\":null,\"revision\":null,\"worker\":\"w\",\"host\":null,\"pid\":null,\"attempt\":null,\"reason\":null,\"data\":{},\"prev\":\"\(prev)\"}"
    let hash = Digest.sha256(Array(body.utf8)).hex
    return (Array(body.dropLast().utf8) + Array(",\"hash\":\"\(hash)\"}".utf8), hash)
}

@Suite struct BadExportTests {
    @Test func anUntouchedExportVerifiesAndImports() async throws {
        let fx = try await makeTamperFixture()
        defer { fx.dir.cleanup() }
        let report = try ExportFile.verify(path: fx.original)
        #expect(report.ok, "\(report)")
        #expect(!report.partial)
        #expect(report.facts == 18 && report.runs == 2 && report.jobs == 6)
        try await withStore { store, _ in
            let imported = try store.importLog(from: fx.original)
            #expect(imported == 18)
            #expect(try store.headHash() == report.headHash)
            #expect(try store.run("r2")?.status == .failed)
        }
    }

    @Test(arguments: [1, 7, 12, 18])
    func aFlippedByteNamesItsLine(line: Int) async throws {
        let fx = try await makeTamperFixture()
        defer { fx.dir.cleanup() }
        try await withStore { store, _ in
            for mask: UInt8 in [0x01, 0x20, 0x04] {
                var lines = fx.lines
                let i = lines[line - 1].count / 2
                lines[line - 1][i] ^= mask
                let path = fx.write(lines, name: "flip-\(line)-\(mask).jsonl")
                let report = try ExportFile.verify(path: path)
                let v = try #require(report.firstViolation, "flip of byte \(i) of line \(line) (mask \(mask)) not detected")
                #expect(v.line == line, "\(v)")
                #expect(v.kind == .hashChain || v.kind == .format, "\(v)")
                expectImportRefused(store, path, "flipped byte in line \(line)")
            }
        }
    }

    @Test func aRewrittenLineWithItsOwnHashBreaksTheChainAtTheNextLine() async throws {
        let fx = try await makeTamperFixture()
        defer { fx.dir.cleanup() }
        var lines = fx.lines
        // r1/result1's finish gets a different result and a matching hash of its own.
        let k = try #require(lines.firstIndex { String(decoding: $0, as: UTF8.self).contains("\"result\":{\"type\":\"result1\"}") })
        let text = String(decoding: lines[k], as: UTF8.self)
        let (body, _) = try #require(splitHash(text.replacingOccurrences(of: "\"type\":\"result1\"", with: "\"type\":\"forged\"")))
        let hash = ReferenceSHA256.hex(body)
        lines[k] = Array((String(body.dropLast()) + ",\"hash\":\"\(hash)\"}").utf8)
        #expect(try Fact.decode(line: lines[k]).hash.hex == hash)
        let path = fx.write(lines, name: "forged.jsonl")
        let report = try ExportFile.verify(path: path)
        let v = try #require(report.firstViolation)
        #expect(v.kind == .hashChain)
        #expect(v.line == k + 2)
        #expect(v.position == UInt64(k + 2))
        try await withStore { store, _ in expectImportRefused(store, path, "forged line") }
    }

    @Test func aTruncatedExportIsAnError() async throws {
        let fx = try await makeTamperFixture()
        defer { fx.dir.cleanup() }
        var lines = fx.lines
        lines[17] = Array(lines[17].prefix(lines[17].count / 2))
        let cut = fx.write(lines, name: "cut.jsonl", newlineAtEnd: false)
        let noNewline = fx.write(fx.lines, name: "nonl.jsonl", newlineAtEnd: false)
        try await withStore { store, _ in
            for path in [cut, noNewline] {
                do {
                    let report = try ExportFile.verify(path: path)
                    Issue.record("a truncated export verified: \(report)")
                } catch let e as ExportError {
                    #expect(e.line == 18)
                    #expect(e.message.contains("truncated"), "\(e.message)")
                    #expect(e.path == path)
                }
                expectImportRefused(store, path, "truncated export")
            }
        }
    }

    @Test func aReorderedLineIsDetected() async throws {
        let fx = try await makeTamperFixture()
        defer { fx.dir.cleanup() }
        var lines = fx.lines
        lines.swapAt(5, 6)  // lines 6 and 7
        let path = fx.write(lines, name: "swapped.jsonl")
        let report = try ExportFile.verify(path: path)
        let v = try #require(report.firstViolation, "a swap of lines 6 and 7 verified: \(report)")
        #expect(v.line == 6 || v.line == 7, "\(v)")
        #expect(v.kind == .density || v.kind == .hashChain, "\(v)")
        try await withStore { store, _ in expectImportRefused(store, path, "swapped lines") }
    }

    @Test func aDuplicatedLineIsDetected() async throws {
        let fx = try await makeTamperFixture()
        defer { fx.dir.cleanup() }
        var lines = fx.lines
        lines.insert(lines[5], at: 6)  // line 6 twice
        let path = fx.write(lines, name: "dup.jsonl")
        let report = try ExportFile.verify(path: path)
        let v = try #require(report.firstViolation, "a duplicated line verified: \(report)")
        #expect(v.line == 7, "\(v)")
        #expect(v.kind == .density, "\(v)")
        #expect(v.position == 6)
        try await withStore { store, _ in expectImportRefused(store, path, "duplicated line") }
    }

    /// A whole-log export missing one line in the middle must not verify as a (filtered) partial
    /// export: the chain from line 5 to the next line is broken.
    @Test func aDroppedLineIsDetected() async throws {
        let fx = try await makeTamperFixture()
        defer { fx.dir.cleanup() }
        var lines = fx.lines
        lines.remove(at: 5)  // position 6 goes missing; line 6 now holds position 7
        let path = fx.write(lines, name: "dropped.jsonl")
        let report = try ExportFile.verify(path: path)
        let v = report.firstViolation
        #expect(!report.ok, "an export with position 6 dropped verifies: \(report)")
        #expect(v?.line == 6, "\(String(describing: v))")
        try await withStore { store, _ in expectImportRefused(store, path, "dropped line") }
    }

    /// Fact ids are unique in a log (an append with a known id is a no-op), so an export where two
    /// facts share an id cannot be a real log; and an import that fails must write nothing, even
    /// when the failure comes after the first few thousand facts.
    @Test func anExportWithARepeatedFactIDFailsVerification() throws {
        let dir = TempDirectory("export")
        defer { dir.cleanup() }
        var lines: [[UInt8]] = []
        var prev = String(repeating: "0", count: 64)
        for p in 1...3 {
            let (line, hash) = craftedWorkerLine(position: UInt64(p), time: Instant(microseconds: 1_800_000_000_000_000 + Int64(p)), id: p == 3 ? "id-1" : "id-\(p)", prev: prev)
            lines.append(line)
            prev = hash
        }
        let fx = TamperFixture(dir: dir, lines: lines)
        let path = fx.write(lines, name: "ids.jsonl")
        let report = try ExportFile.verify(path: path)
        #expect(!report.ok, "two facts with id 'id-1' verify: \(report)")
        #expect(report.firstViolation?.line == 3)
    }

    @Test func aFailedImportWritesNothing() async throws {
        let dir = TempDirectory("export")
        defer { dir.cleanup() }
        var lines: [[UInt8]] = []
        var prev = String(repeating: "0", count: 64)
        let count = 2100
        for p in 1...count {
            // The last fact reuses the first one's id: appending it fails in the second chunk.
            let (line, hash) = craftedWorkerLine(position: UInt64(p), time: Instant(microseconds: 1_800_000_000_000_000 + Int64(p)), id: p == count ? "id-1" : "id-\(p)", prev: prev)
            lines.append(line)
            prev = hash
        }
        let path = TamperFixture(dir: dir, lines: lines).write(lines, name: "big.jsonl")
        var options = StoreOptions()
        options.durability = .unsafeNoSync
        try await withStore(options: options) { store, _ in
            var failed = false
            do {
                try store.importLog(from: path)
            } catch {
                failed = true
            }
            #expect(failed, "an import with a repeated fact id succeeded")
            let left = try store.lastPosition()
            #expect(left == 0, "a failed import left \(left) facts in the store")
        }
    }
}
