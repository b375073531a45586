import Foundation
import Overseer
import OverseerPostgres
import Synchronization

/// An acknowledgement journal: one line per append this process saw succeed, `A POSITION ID`,
/// written with one write(2) each (O_APPEND), so a SIGKILL loses at most the line being written.
/// `E text` lines note store errors; `N text` lines are other notes.
final class Journal: Sendable {
    private let fd: Int32
    private let lock = Mutex(())

    init(path: String) {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if fd < 0 {
            FileHandle.standardError.write(Data("overseer-torture: cannot open journal \(path): \(String(cString: strerror(errno)))\n".utf8))
            exit(2)
        }
    }

    func line(_ text: String) {
        let bytes = Array((text.replacingOccurrences(of: "\n", with: " ") + "\n").utf8)
        lock.withLock { _ in
            var off = 0
            while off < bytes.count {
                let n = bytes[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n <= 0 { return }
                off += n
            }
        }
    }

    func ack(_ fact: Fact) { line("A \(fact.position) \(fact.id)") }
    func ack(_ facts: [Fact]) { for f in facts { ack(f) } }

    func record(_ event: WorkerEvent) {
        switch event {
        case .claimed(let c): line("A \(c.claimPosition) \(c.claimFactID)")
        case .completed(_, _, .recorded(let facts)): ack(facts)
        case .completed(_, _, .rejected(let fact)): ack(fact)
        case .releasedExpired(let facts): ack(facts)
        case .storeError(let message): line("E \(String(format: "%.3f", Date().timeIntervalSince1970)) \(message)")
        case .claimLost(let c): line("N lost \(c.job) rev \(c.revision)")
        case .started, .stopping, .stopped: break
        }
    }
}

/// Store options every torture process uses: a small initial map, so that it grows (across
/// processes) during the run.
func tortureStoreOptions() -> StoreOptions {
    var o = StoreOptions()
    o.initialMapSize = 2 << 20
    return o
}

/// Opens the store under torture: an LMDB directory, or a postgres:// URL (then the same
/// scenario runs over PostgreSQL; docs/reliability.md).
func openTortureStore(_ location: String) throws -> LogStore {
    if location.hasPrefix("postgres://") || location.hasPrefix("postgresql://") {
        return try LogStore.postgres(location, options: tortureStoreOptions(), retryWindow: .seconds(60))
    }
    return try LogStore(path: location, options: tortureStoreOptions())
}

/// `overseer-torture worker --store DIR --seed S --journal FILE --name NAME [--concurrency N] [--lease-ms MS]`
enum WorkerMode {
    static func main(_ options: [String: String]) async -> Int32 {
        guard let store = options["store"], let seedText = options["seed"], let seed = UInt64(seedText),
            let journalPath = options["journal"], let name = options["name"]
        else {
            FileHandle.standardError.write(Data("overseer-torture worker: needs --store --seed --journal --name\n".utf8))
            return 2
        }
        let journal = Journal(path: journalPath)
        var handlers = Handlers([String: Handler]())
        for spec in TypeTable.make(seed: seed) {
            handlers.on(spec.name, options: spec.options) { job in try await Script.perform(job) }
        }
        var config = WorkerConfiguration()
        config.name = name
        config.concurrency = Int(options["concurrency"] ?? "3") ?? 3
        config.lease = .milliseconds(Int(options["lease-ms"] ?? "1500") ?? 1500)
        config.poll = .milliseconds(40)
        config.shutdownGrace = .seconds(2)
        config.events = { e in journal.record(e) }
        journal.line("N start \(name) pid \(getpid())")
        // SIGTERM drains the current worker: one handler for the process, shared by the restarts
        // below. (Before fc18a51, a second Overseer.work in a process ignored SIGTERM; see
        // docs/reliability.md, B75.)
        let current = Mutex<Worker?>(nil)
        let stopRequested = Mutex(false)
        signal(SIGTERM, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
        source.setEventHandler {
            stopRequested.withLock { $0 = true }
            current.withLock { $0 }?.stop()
        }
        source.resume()
        defer { source.cancel() }
        // A worker that cannot start (the disk is full, so worker.started cannot be recorded)
        // tries again, as a supervisor would restart it.
        var failures = 0
        while !stopRequested.withLock({ $0 }) {
            do {
                let log = try openTortureStore(store)
                let worker = Worker(store: log, handlers: handlers, configuration: config)
                current.withLock { $0 = worker }
                if stopRequested.withLock({ $0 }) { worker.stop() }
                try await worker.run()
                journal.line("N stopped")
                return 0
            } catch {
                failures += 1
                journal.line("E \(String(format: "%.3f", Date().timeIntervalSince1970)) run: \(error)")
                if failures > 600 { return 1 }
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
        journal.line("N stopped before starting")
        return 0
    }
}

/// `overseer-torture append-probe STORE SECONDS`: appends in a loop, reporting errors and going on
/// (to see whether one process recovers once a full disk has space again).
enum AppendProbe {
    static func main(_ args: [String]) -> Int32 {
        guard args.count >= 4, let seconds = Double(args[3]) else { return 2 }
        let pad = args.count > 4 ? Int(args[4]) ?? 200 : 200
        let store: LogStore
        do { store = try openTortureStore(args[2]) } catch {
            print("open: \(error)")
            return 1
        }
        let end = Date().addingTimeInterval(seconds)
        var ok = 0, failed = 0
        var last = ""
        while Date() < end {
            do {
                _ = try store.writeSync { w in try w.append(FactDraft(kind: .workerStarted, author: Author(name: "probe"), data: ["pad": .string(String(repeating: "p", count: pad))]), expecting: nil) }
                ok += 1
                if !last.isEmpty { print("recovered after \(failed) failures: \(last)"); last = "" }
            } catch {
                failed += 1
                let s = "\(error)"
                if s != last { print("error after \(ok) ok: \(s)"); last = s }
                usleep(200_000)
            }
            fflush(nil)
        }
        print("done: \(ok) ok, \(failed) failed")
        return 0
    }
}
