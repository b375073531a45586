import Foundation
import Overseer
import Synchronization

/// Progress for `run`: a live line on a terminal, plain lines otherwise.
enum Progress {
    private static let state = Mutex<(finished: Int, failed: Int, running: Int, drawn: Bool, start: ContinuousClock.Instant)>((0, 0, 0, false, ContinuousClock.now))

    static func printer(runID: String, total: Int) -> @Sendable (WorkerEvent) -> Void {
        let terminal = Console.isTerminal
        return { event in
            switch event {
            case .claimed(let c) where c.run == runID:
                state.withLock { $0.running += 1 }
            case .completed(let c, let outcome, let result) where c.run == runID:
                let line: String? = state.withLock { s in
                    s.running -= 1
                    var text: String?
                    switch (outcome, result) {
                    case (_, .rejected): text = "\(c.type): late result rejected (attempt \(c.attempt))"
                    case (.finished, _):
                        s.finished += 1
                        text = "\(c.type): finished (attempt \(c.attempt))"
                    case (.failed(let e, let reason, let retry), _):
                        if retry == nil { s.failed += 1 }
                        text = "\(c.type): \(reason) (attempt \(c.attempt))\(retry.map { String(format: ", retry in %.1fs", $0) } ?? ""): \(Format.errorText(e))"
                    case (.fault(let e, let after), _): text = "\(c.type): fault (attempt \(c.attempt)), retry in \(String(format: "%.1fs", after)): \(Format.errorText(e))"
                    case (.aborted(let reason, _), _): text = "\(c.type): aborted: \(reason)"
                    case (.shutdown, _): text = "\(c.type): released (shutdown)"
                    }
                    if terminal {
                        let elapsed = ContinuousClock.now - s.start
                        let secs = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                        let rate = secs > 0 ? Double(s.finished) / secs : 0
                        let remaining = total - s.finished - s.failed
                        let eta = rate > 0 ? String(format: "%.0fs", Double(remaining) / rate) : "?"
                        s.drawn = true
                        return "\u{1B}[2K\r\(s.finished)/\(total) finished, \(s.running) running, \(s.failed) failed — \(String(format: "%.1f", rate)) jobs/s, ETA \(eta)"
                    }
                    return text
                }
                if let line {
                    if terminal { Console.write(line) } else { Console.out(line) }
                }
            case .storeError(let message):
                Console.error("overseer: store error (retrying): \(message)")
            default:
                break
            }
        }
    }

    static func end() {
        if state.withLock({ $0.drawn }) { Console.out("") }
    }

    /// For `worker`: one plain line per event on stderr.
    static func logger(worker: String) -> @Sendable (WorkerEvent) -> Void {
        { event in
            switch event {
            case .started(let w): Console.error("worker \(w): started")
            case .claimed(let c): Console.error("worker \(worker): claimed \(c.job) (attempt \(c.attempt))")
            case .completed(let c, let outcome, let result):
                if case .rejected = result {
                    Console.error("worker \(worker): \(c.job): late result rejected")
                } else {
                    Console.error("worker \(worker): \(c.job): \(outcome.summary)")
                }
            case .releasedExpired(let facts):
                for f in facts { Console.error("worker \(worker): released \(f.job ?? "?") (lease of \(f.data["expired_worker"]?.stringValue ?? "?") expired)") }
            case .claimLost(let c): Console.error("worker \(worker): lost the claim of \(c.job); cancelling its command")
            case .storeError(let m): Console.error("worker \(worker): store error (retrying): \(m)")
            case .stopping(let now): Console.error("worker \(worker): stopping\(now ? " now" : " (draining)")")
            case .stopped(let w): Console.error("worker \(w): stopped")
            }
        }
    }
}

extension AttemptOutcome {
    var summary: String {
        switch self {
        case .finished: "finished"
        case .failed(let e, let reason, let retry): "\(reason)\(retry != nil ? " (will retry)" : ""): \(Format.errorText(e))"
        case .fault(let e, _): "fault (will retry): \(Format.errorText(e))"
        case .aborted(let reason, _): "aborted: \(reason)"
        case .shutdown: "released (shutdown)"
        }
    }
}
