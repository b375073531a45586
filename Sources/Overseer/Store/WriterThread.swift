import Foundation
import Synchronization

/// One queued write: a closure to run inside the shared write transaction, and its completion.
final class WriteRequest: @unchecked Sendable {
    // @unchecked: `result` is written only by the writer thread before `finish()` and read only
    // after the waiter has been resumed by it; `body` is called only on the writer thread.
    let body: (inout LogWriter) throws -> any Sendable
    var result: Result<any Sendable, any Error>?
    private let completion: @Sendable (Result<any Sendable, any Error>) -> Void

    init(body: @escaping (inout LogWriter) throws -> any Sendable, completion: @escaping @Sendable (Result<any Sendable, any Error>) -> Void) {
        self.body = body
        self.completion = completion
    }

    func finish() {
        completion(result ?? .failure(StoreError(.io, path: "", "write request finished without a result")))
    }
}

/// The single thread that runs every write transaction of one environment in this process.
///
/// LMDB's write lock belongs to an OS thread, so all writes stay on this one. Requests that queue
/// up while a transaction commits share the next transaction and its one fsync (group commit).
/// Each request runs in a nested transaction, so its failure undoes only its own writes.
final class WriterThread: @unchecked Sendable {
    // @unchecked: all mutable state is guarded by `condition`.
    private let condition = NSCondition()
    private var queue: [WriteRequest] = []
    private var stopping = false
    private var thread: Thread?
    private let maximumBatch: Int
    private let process: ([WriteRequest]) -> Void
    private let done = DispatchSemaphore(value: 0)

    /// Set on the writer thread, so a write issued from inside a write can be caught.
    static let isWriterKey = "overseer.writer"

    init(name: String, maximumBatch: Int, process: @escaping ([WriteRequest]) -> Void) {
        self.maximumBatch = maximumBatch
        self.process = process
        let t = Thread { [unowned self] in self.loop() }
        t.name = name
        t.stackSize = 8 << 20
        thread = t
        t.start()
    }

    func submit(_ request: WriteRequest) {
        condition.lock()
        if stopping {
            condition.unlock()
            request.result = .failure(StoreError(.io, path: "", "the store is closed"))
            request.finish()
            return
        }
        queue.append(request)
        condition.signal()
        condition.unlock()
    }

    var isCurrent: Bool { Thread.current.threadDictionary[WriterThread.isWriterKey] != nil }

    private func loop() {
        Thread.current.threadDictionary[WriterThread.isWriterKey] = true
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty && stopping {
                condition.unlock()
                break
            }
            let batch: [WriteRequest]
            if queue.count <= maximumBatch {
                batch = queue
                queue.removeAll(keepingCapacity: true)
            } else {
                batch = Array(queue.prefix(maximumBatch))
                queue.removeFirst(maximumBatch)
            }
            condition.unlock()
            process(batch)
        }
        done.signal()
    }

    /// Finishes the queued requests, then ends the thread.
    func stop() {
        condition.lock()
        let wasStopping = stopping
        stopping = true
        condition.signal()
        condition.unlock()
        if !wasStopping, !isCurrent { done.wait() }
    }
}

/// Wakes in-process waiters after each commit; waiters also re-check on a timeout, which is how
/// commits by other processes are noticed.
final class CommitSignal: Sendable {
    private struct Waiter {
        let id: UInt64
        /// Resumed with true by a commit, false by the timeout or cancellation.
        let continuation: CheckedContinuation<Bool, Never>
    }
    private let state = Mutex<(next: UInt64, waiters: [Waiter], expired: Set<UInt64>)>((0, [], []))
    /// Whether anyone waits now.
    var hasWaiters: Bool { state.withLock { !$0.waiters.isEmpty } }

    func notify() {
        let waiters = state.withLock { s -> [Waiter] in
            let w = s.waiters
            s.waiters.removeAll()
            return w
        }
        for w in waiters { w.continuation.resume(returning: true) }
    }

    /// Returns after the next commit in this process (or, through a ``ChangeWatcher``, in
    /// another one), or after `timeout`, or on cancellation. True when a commit woke it.
    @discardableResult
    func wait(timeout: Duration) async -> Bool {
        let id = state.withLock { s -> UInt64 in
            s.next += 1
            return s.next
        }
        let timer = Task {
            do {
                try await Task.sleep(for: timeout)
            } catch {
                return  // cancelled: the waiter already returned
            }
            self.resume(id)
        }
        let woken = await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    if Task.isCancelled || s.expired.remove(id) != nil { return true }
                    s.waiters.append(Waiter(id: id, continuation: c))
                    return false
                }
                if resumeNow {
                    c.resume(returning: false)
                } else {
                    ChangeWatcher.waiterArrived()
                }
            }
        } onCancel: {
            self.resume(id)
        }
        timer.cancel()
        state.withLock { _ = $0.expired.remove(id) }
        return woken
    }

    private func resume(_ id: UInt64) {
        let waiter = state.withLock { s -> Waiter? in
            guard let i = s.waiters.firstIndex(where: { $0.id == id }) else {
                // Not registered yet: remember, so the registration returns at once.
                s.expired.insert(id)
                return nil
            }
            return s.waiters.remove(at: i)
        }
        waiter?.continuation.resume(returning: false)
    }
}
