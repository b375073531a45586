import Foundation
import Synchronization

/// Notices commits by other processes on the LMDB stores this process has open, and wakes the
/// waiters of the store concerned (workers waiting for ready jobs, `facts(after:)` followers).
///
/// One per process: a single inotify instance and thread serve every open store, one watch
/// each on its data.mdb. (Linux allows a user 128 inotify instances in all by default, which an
/// instance per store would use up on a busy host; watches are plentiful.)
///
/// Every page a commit writes raises an event, this process's own commits included, so the
/// watcher is frugal with them:
/// - it sleeps while nobody in this process waits on any store; events queue up in the kernel
///   meanwhile, so a commit made just before a waiter arrives is still seen when it does;
/// - after an event it lets the rest of that commit's page writes land (``settle``), then reads
///   them all at once;
/// - it wakes a store's waiters only when the store's last transaction is not this process's
///   own, since the writer wakes them itself after its commits.
/// Waiters also re-check on a timeout, so a notice missed here costs latency, never correctness.
final class ChangeWatcher: Sendable {
    /// One store's watch. Removing it (``ChangeWatcher/remove(_:)``) ends the notices.
    final class Watch: Sendable {
        let descriptor: Int32
        let signal: CommitSignal
        /// The id of the store's last committed transaction, by any process.
        let lastCommit: @Sendable () -> Int
        /// The id of this process's last commit, as its writer saw it right after.
        private let ownCommit: Atomic<Int>

        init(descriptor: Int32, signal: CommitSignal, lastCommit: @escaping @Sendable () -> Int) {
            self.descriptor = descriptor
            self.signal = signal
            self.lastCommit = lastCommit
            ownCommit = Atomic(lastCommit())
        }

        /// Called by the writer after each of its transactions, before it wakes the waiters.
        func noteOwnCommit(_ transaction: Int) {
            ownCommit.store(transaction, ordering: .sequentiallyConsistent)
        }

        /// Wakes the waiters when someone else committed last.
        func check() {
            if lastCommit() != ownCommit.load(ordering: .sequentiallyConsistent) { signal.notify() }
        }
    }

    static let shared = ChangeWatcher()

    /// How long a commit's page writes get to land after the first one's event.
    static let settle = Duration.microseconds(200)

    /// The inotify instance; -1 when none could be made (then only the waiters' timeouts remain).
    private let fd: Int32
    private let watches = Mutex<[Watch]>([])
    /// Set while the thread sleeps for want of waiters; the first waiter to arrive clears it.
    private static let asleep = Atomic<Bool>(false)
    private static let arrivals = DispatchSemaphore(value: 0)

    private init() {
        fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { return }
        let thread = Thread { [self] in self.loop() }
        thread.name = "overseer-watch"
        thread.start()
    }

    /// Watches `file` (a store's data.mdb) for `signal`'s waiters. Nil when the system refuses
    /// (no inotify, or no watches left).
    func watch(file: String, signal: CommitSignal, lastCommit: @escaping @Sendable () -> Int) -> Watch? {
        guard fd >= 0 else { return nil }
        return watches.withLock { list -> Watch? in
            // The same file twice (two paths to one store) yields the same descriptor.
            let wd = inotify_add_watch(fd, file, UInt32(IN_MODIFY))
            guard wd >= 0 else { return nil }
            let w = Watch(descriptor: wd, signal: signal, lastCommit: lastCommit)
            list.append(w)
            return w
        }
    }

    func remove(_ watch: Watch) {
        watches.withLock { list in
            list.removeAll { $0 === watch }
            if !list.contains(where: { $0.descriptor == watch.descriptor }) {
                _ = inotify_rm_watch(fd, watch.descriptor)
            }
        }
    }

    /// Called by ``CommitSignal`` when a waiter registers: ends the thread's sleep, if it sleeps.
    static func waiterArrived() {
        if asleep.exchange(false, ordering: .sequentiallyConsistent) { arrivals.signal() }
    }

    private func anyoneWaits() -> Bool {
        watches.withLock { list in list.contains { $0.signal.hasWaiters } }
    }

    private func loop() {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let settle = UInt32(ChangeWatcher.settle.components.attoseconds / 1_000_000_000_000)
        while true {
            ChangeWatcher.asleep.store(true, ordering: .sequentiallyConsistent)
            if !anyoneWaits() {
                _ = ChangeWatcher.arrivals.wait(timeout: .now() + .milliseconds(250))
                continue
            }
            ChangeWatcher.asleep.store(false, ordering: .sequentiallyConsistent)
            pfd.revents = 0
            guard poll(&pfd, 1, 250) > 0 else { continue }
            usleep(settle)
            var touched = Set<Int32>()
            var overflowed = false
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                guard n > 0 else { break }
                buffer.withUnsafeBytes { raw in
                    var offset = 0
                    // struct inotify_event: wd, mask, cookie, len, then `len` bytes of name.
                    while offset + 16 <= n {
                        let wd = raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)
                        let mask = raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
                        let len = raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self)
                        if mask & UInt32(IN_Q_OVERFLOW) != 0 { overflowed = true } else { touched.insert(wd) }
                        offset += 16 + Int(len)
                    }
                }
            }
            let due = watches.withLock { list in list.filter { overflowed || touched.contains($0.descriptor) } }
            for w in due { w.check() }
        }
    }
}
