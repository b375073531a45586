import Foundation
import Synchronization

/// The front door: a store, plus submitting runs, working them, and operator actions.
///
/// ```swift
/// let graph: JobGraph = ["start": [], "result1": ["start"], "result2": ["start"], "finish": ["result1", "result2"]]
/// let handlers: Handlers = [
///     "start": { job in print("start") }, "result1": { job in print("result1") },
///     "result2": { job in print("result2") }, "finish": { job in print("finish") },
/// ]
/// let overseer = try Overseer(store: .lmdb(path: "myapp.lmdb"))
/// try await overseer.submit(graph, run: "nightly-2026-12-03", args: Report(org: 42))
/// try await overseer.work(handlers)   // until SIGTERM / SIGINT
/// ```
public final class Overseer: Sendable {
    /// Where the log lives: `.lmdb(path:)` here, `.postgres(_:)` from `OverseerPostgres`.
    public struct Store: Sendable {
        let open: @Sendable () throws -> LogStore

        /// A store opened by `open` (for other backends: see ``LogStore/init(backend:options:)``).
        public init(open: @escaping @Sendable () throws -> LogStore) { self.open = open }

        /// The embedded default: an LMDB environment in a directory on this machine.
        public static func lmdb(path: String, options: StoreOptions = StoreOptions()) -> Store {
            Store { try LogStore(path: path, options: options) }
        }
    }

    public let log: LogStore

    public init(store: Store) throws {
        log = try store.open()
    }

    public init(log: LogStore) { self.log = log }

    /// Submits `graph` as a run with `args` that every job can read. Validated before anything
    /// is written; with `handlers`, every type must have one. Resubmitting the same run id with
    /// the same graph and args does nothing. Returns the run id.
    @discardableResult
    public func submit<A: Encodable & Sendable>(
        _ graph: JobGraph, run: String? = nil, args: A, name: String? = nil, priority: Int = 0,
        typePriorities: [String: Int] = [:], handlers: Handlers? = nil, author: Author = .process
    ) async throws -> String {
        try await submit(graph, run: run, json: try JSONValue(encoding: args), name: name, priority: priority, typePriorities: typePriorities, handlers: handlers, author: author)
    }

    /// Submits `graph` as a run without arguments.
    @discardableResult
    public func submit(_ graph: JobGraph, run: String? = nil, name: String? = nil, priority: Int = 0, handlers: Handlers? = nil) async throws -> String {
        try await submit(graph, run: run, json: .object([:]), name: name, priority: priority, handlers: handlers)
    }

    /// Submits with arguments already in JSON form.
    @discardableResult
    public func submit(
        _ graph: JobGraph, run: String? = nil, json args: JSONValue, name: String? = nil, priority: Int = 0,
        typePriorities: [String: Int] = [:], options: [String: JSONValue] = [:], handlers: Handlers? = nil, author: Author = .process
    ) async throws -> String {
        if let handlers { try graph.validate(handledTypes: handlers.types) } else { try graph.validate() }
        let plan = RunPlan(id: run ?? RunPlan.generateID(), graph: graph, args: args, name: name, priority: priority, typePriorities: typePriorities, options: options)
        return try await log.submit(plan, author: author).run
    }

    /// Works with `handlers` until SIGTERM or SIGINT: the first signal drains (no new claims;
    /// running jobs get the shutdown grace, then are cancelled and released), a second stops at once.
    public func work(_ handlers: Handlers, configuration: WorkerConfiguration = WorkerConfiguration()) async throws {
        let worker = Worker(store: log, handlers: handlers, configuration: configuration)
        let signals = SignalTrap.install { second in worker.stop(immediately: second) }
        defer { signals.remove() }
        try await worker.run()
    }

    /// Submits a run and works it to its end in this process; returns its final summary.
    public func run<A: Encodable & Sendable>(
        _ graph: JobGraph, handlers: Handlers, run: String? = nil, args: A, configuration: WorkerConfiguration = WorkerConfiguration()
    ) async throws -> RunSnapshot {
        let id = try await submit(graph, run: run, args: args, handlers: handlers)
        return try await work(run: id, handlers: handlers, configuration: configuration)
    }

    /// Works until run `id` is no longer running (or a signal stops it); returns its snapshot.
    public func work(run id: String, handlers: Handlers, configuration: WorkerConfiguration = WorkerConfiguration()) async throws -> RunSnapshot {
        var configuration = configuration
        configuration.runs = .ids([id])
        let worker = Worker(store: log, handlers: handlers, configuration: configuration)
        let signals = SignalTrap.install { second in worker.stop(immediately: second) }
        defer { signals.remove() }
        let log = self.log
        let watcher = Task {
            var seen: UInt64 = 0
            while !Task.isCancelled {
                if let r = try? log.run(id), r.status != .running { break }
                seen = (try? log.lastPosition()) ?? seen
                try? await log.waitForAppend(after: seen, timeout: .milliseconds(200))
            }
            worker.stop()
        }
        defer { watcher.cancel() }
        try await worker.run()
        guard let snapshot = try log.snapshot(ofRun: id) else {
            throw SubmitError(run: id, message: "no such run")
        }
        return snapshot
    }

    /// Operator action: makes a failed or aborted job runnable again (with its aborted descendants).
    @discardableResult
    public func retry(job: String, reason: String? = nil, by author: Author = .operator()) async throws -> [Fact] {
        try await log.write { try $0.retryJob(job, author: author, reason: reason) }
    }

    /// Operator action: aborts a run; running handlers are cancelled at their next heartbeat.
    @discardableResult
    public func abort(run: String, reason: String, by author: Author = .operator()) async throws -> [Fact] {
        try await log.write { try $0.abortRun(run, author: author, reason: reason) }
    }

    /// Operator action: aborts one job and everything downstream of it.
    @discardableResult
    public func abort(job: String, reason: String, by author: Author = .operator()) async throws -> [Fact] {
        try await log.write { try $0.abortJob(job, author: author, reason: reason) }
    }

    /// A run's current state.
    public func status(run: String) throws -> RunSnapshot? { try log.snapshot(ofRun: run) }
}

/// SIGTERM/SIGINT handling through Dispatch signal sources, shared by the whole process.
///
/// The sources are created once and never cancelled: libdispatch installs its own signal handler
/// the first time, and resetting the disposition afterwards (to let a signal kill the process
/// again) would silently break every later source for that signal. Instead each `install`
/// registers a handler; a signal with no handler registered restores the default disposition and
/// re-raises itself, so the process ends as it would have. Set up outside any actor, with
/// `@Sendable` handlers (see docs/ARCHITECTURE.md: a MainActor-isolated closure here traps).
final class SignalTrap: Sendable {
    private let id: UInt64

    private init(id: UInt64) { self.id = id }

    private struct Entry {
        let handler: @Sendable (Bool) -> Void
        var signals: Int
    }

    private final class Registry: @unchecked Sendable {
        // @unchecked: `sources` is written once, under `state`'s lock; Dispatch sources are thread-safe.
        let state = Mutex<(next: UInt64, entries: [UInt64: Entry])>((0, [:]))
        var sources: [any DispatchSourceSignal] = []
        let once = Mutex(false)

        func startIfNeeded() {
            once.withLock { started in
                guard !started else { return }
                started = true
                for sig in [SIGTERM, SIGINT] {
                    signal(sig, SIG_IGN)
                    let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                    source.setEventHandler { @Sendable [self] in self.deliver(sig) }
                    source.resume()
                    sources.append(source)
                }
            }
        }

        func deliver(_ sig: Int32) {
            let calls = state.withLock { s -> [(@Sendable (Bool) -> Void, Bool)] in
                var out: [(@Sendable (Bool) -> Void, Bool)] = []
                for key in s.entries.keys.sorted() {
                    s.entries[key]!.signals += 1
                    out.append((s.entries[key]!.handler, s.entries[key]!.signals > 1))
                }
                return out
            }
            if calls.isEmpty {
                // Nobody is working: behave as if we had never caught it.
                signal(sig, SIG_DFL)
                raise(sig)
                return
            }
            for (handler, second) in calls { handler(second) }
        }
    }

    private static let registry = Registry()

    /// `handler(second)` is called on the first signal with false, on later ones with true.
    static func install(_ handler: @escaping @Sendable (Bool) -> Void) -> SignalTrap {
        registry.startIfNeeded()
        let id = registry.state.withLock { s -> UInt64 in
            s.next += 1
            s.entries[s.next] = Entry(handler: handler, signals: 0)
            return s.next
        }
        return SignalTrap(id: id)
    }

    func remove() {
        _ = SignalTrap.registry.state.withLock { $0.entries.removeValue(forKey: id) }
    }
}
