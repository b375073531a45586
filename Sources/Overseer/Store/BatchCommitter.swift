import CLMDB
import Foundation

/// Runs batches of write requests, one write transaction each (group commit), on the writer
/// thread, over LMDB or a ``StoreBackend``.
struct BatchCommitter: Sendable {
    let engine: StoreCore.Engine
    let dbs: Databases
    let path: String
    let maximumMapSize: Int

    /// Runs one batch in one write transaction. Returns whether the log grew.
    ///
    /// Requests run one after the other directly in the transaction. One that throws has its error
    /// recorded; the transaction is then aborted and the batch re-run without it, so a failed
    /// request leaves no trace and does not fail the others. (LMDB's nested transactions would
    /// do the same, but each allocates a 2 MB dirty-page list, which dominated the cost of small
    /// appends.) Requests are closures over the store's state, so re-running them is safe.
    ///
    /// With a backend, a lost connection before the commit re-runs the batch after a backoff. A
    /// connection lost *during* the commit leaves its outcome unknown: the batch's first new
    /// fact id is then looked up once the backend answers again. Found, the commit happened and
    /// the results stand; absent, it did not and the batch runs again. Nothing is written twice.
    func process(_ batch: [WriteRequest]) -> Bool {
        var grew = false
        var excluded = Set<Int>()
        let clock = ContinuousClock()
        var unavailableSince: ContinuousClock.Instant?
        var backoff = Duration.milliseconds(50)
        attempts: while true {
            for (i, r) in batch.enumerated() where !excluded.contains(i) { r.result = nil }
            if excluded.count == batch.count { break }
            var firstNewFact: String?
            do {
                try transact { txn in
                    guard let hb = try txn.get(dbs.meta, Keys.head) else {
                        throw StoreError(.corrupt, path: path, "the store lacks its head record")
                    }
                    var writer = LogWriter(txn: txn, dbs: dbs, head: try Head(decoding: hb), path: path)
                    let start = writer.head
                    for (i, request) in batch.enumerated() where !excluded.contains(i) {
                        do {
                            request.result = .success(try request.body(&writer))
                        } catch let e as LMDBError where e.isMapFull {
                            throw e
                        } catch let e as BackendUnavailable {
                            throw e
                        } catch {
                            request.result = .failure(error)
                            excluded.insert(i)
                            throw RerunBatch()
                        }
                    }
                    firstNewFact = writer.firstAppendedID
                    if writer.head != start {
                        try txn.put(dbs.meta, Keys.head, writer.head.encoded)
                        grew = true
                    }
                }
            } catch is RerunBatch {
                // The failed request's error is recorded; run the rest again from a clean state.
                grew = false
                continue
            } catch let e as BackendUnavailable {
                guard case .backend(let backend) = engine else { fatalError("BackendUnavailable from LMDB") }
                let since = unavailableSince ?? clock.now
                unavailableSince = since
                var committed = false
                var unknown = e.commitUnknown
                while true {
                    if clock.now - since > backend.retryWindow {
                        let what = unknown
                            ? "the commit's outcome is unknown (the connection was lost while committing) and the store stayed unreachable for \(backend.retryWindow); check the log before retrying"
                            : "the store stayed unreachable for \(backend.retryWindow); nothing was written"
                        fail(batch, StoreError(.unavailable, path: path, "\(what): \(e.message)"), skipping: excluded)
                        grew = false
                        break attempts
                    }
                    Thread.sleep(forTimeInterval: Double(backoff.components.attoseconds) / 1e18 + Double(backoff.components.seconds))
                    backoff = min(backoff * 2, .seconds(2))
                    guard unknown else { break }
                    guard let id = firstNewFact else { break }  // nothing appended: re-running is harmless
                    do {
                        committed = try backend.read { t in
                            try Transaction(backend: t, path: path).get(dbs.factIDs, Array(id.utf8)) != nil
                        }
                        unknown = false
                        break
                    } catch is BackendUnavailable {
                        continue
                    } catch {
                        fail(batch, error, skipping: excluded)
                        grew = false
                        break attempts
                    }
                }
                if committed { break attempts }  // the results recorded in that attempt stand
                grew = false
                continue
            } catch let e as LMDBError where e.isMapFull {
                grew = false
                if case .lmdb(let env) = engine, env.mapSize < maximumMapSize {
                    do {
                        try env.grow(minimum: nil)
                        continue
                    } catch {
                        fail(batch, StoreError.from(error), skipping: excluded)
                    }
                } else {
                    fail(batch, StoreError.from(e), skipping: excluded)
                }
            } catch let e as LMDBError {
                grew = false
                fail(batch, StoreError.from(e), skipping: excluded)
            } catch {
                grew = false
                fail(batch, error, skipping: excluded)
            }
            break
        }
        for r in batch { r.finish() }
        return grew
    }

    /// One write transaction over whichever engine this is.
    private func transact(_ body: (Transaction) throws -> Void) throws {
        switch engine {
        case .lmdb(let env):
            try env.write(body)
        case .backend(let backend):
            let path = self.path
            try backend.write { try body(Transaction(backend: $0, path: path)) }
        }
    }

    /// Fails every request that had not failed on its own: the transaction did not commit, so
    /// none of them took effect.
    private func fail(_ batch: [WriteRequest], _ error: any Error, skipping excluded: Set<Int>) {
        for (i, r) in batch.enumerated() where !excluded.contains(i) {
            r.result = .failure(error)
        }
    }
}

private struct RerunBatch: Error {}
