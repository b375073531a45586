import Foundation
import Overseer

/// Plain-text tables and the stable JSON shapes of `--json` (see docs/cli.md).
enum Format {
    /// Left-aligned columns separated by two spaces; the last column is not padded.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        var widths = [Int](repeating: 0, count: header.count)
        for row in all {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        return all.map { row in
            row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count)
            }.joined(separator: "  ").trimmingTrailingSpaces()
        }.joined(separator: "\n")
    }

    static func time(_ t: Instant?) -> String { t?.rfc3339 ?? "-" }

    static func counts(_ run: RunState) -> String {
        var parts: [String] = []
        for s in JobStatus.allCases where run.count(s) > 0 { parts.append("\(run.count(s)) \(s.rawValue)") }
        return "\(run.total) jobs: " + (parts.isEmpty ? "none" : parts.joined(separator: ", "))
    }

    static func countsJSON(_ run: RunState) -> JSONValue {
        var o: [String: JSONValue] = [:]
        for s in JobStatus.allCases { o[s.rawValue] = .int(Int64(run.count(s))) }
        return .object(o)
    }

    static func runJSON(_ run: RunState) -> JSONValue {
        [
            "id": .string(run.id), "status": .string(run.status.rawValue), "name": run.name.map { .string($0) } ?? .null,
            "created": .string(run.createdAt.rfc3339), "ended": run.endedAt.map { .string($0.rfc3339) } ?? .null,
            "position": .int(Int64(run.position)), "total": .int(Int64(run.total)), "counts": countsJSON(run),
        ]
    }

    static func jobJSON(_ job: JobState, in snapshot: RunSnapshot) -> JSONValue {
        [
            "id": .string(job.id), "type": .string(job.type), "status": .string(job.status.rawValue),
            "attempts": .int(Int64(job.attempt)), "worker": job.worker.map { .string($0) } ?? .null,
            "started": job.firstStartedAt.map { .string($0.rfc3339) } ?? .null,
            "ended": job.endedAt.map { .string($0.rfc3339) } ?? .null,
            "error": job.error.map(errorText).map { .string($0) } ?? .null,
            "reason": job.reason.map { .string($0) } ?? .null,
            "blocked_by": .array(snapshot.blockers(of: job.id).map { .string($0) }),
        ]
    }

    /// An error recorded in a fact, as one line.
    static func errorText(_ e: JSONValue) -> String {
        if let m = e["message"]?.stringValue { return m.split(separator: "\n").first.map(String.init) ?? m }
        return e.canonicalString
    }

    static func note(_ job: JobState, in snapshot: RunSnapshot) -> String {
        let blockers = snapshot.blockers(of: job.id)
        if !blockers.isEmpty {
            let names = blockers.map { id -> String in
                let b = snapshot.job(id: id)
                return "\(b?.type ?? id) (\(b?.status.rawValue ?? "?"))"
            }
            return "blocked by " + names.joined(separator: ", ")
        }
        if let e = job.error, job.status == .failed || job.status == .unstarted { return "\(job.reason ?? "error"): \(errorText(e))" }
        if job.status == .aborted, let r = job.reason { return "aborted: \(r)" }
        if job.status == .unstarted, let nb = job.notBefore { return "retry after \(nb.rfc3339)" }
        return ""
    }

    static func runReport(_ snapshot: RunSnapshot, position: UInt64?) -> String {
        let run = snapshot.run
        var lines: [String] = []
        let name = run.name.map { " (\($0))" } ?? ""
        lines.append("run \(run.id)\(name): \(run.status.rawValue) — \(counts(run))")
        var meta = "created \(run.createdAt.rfc3339)"
        if let e = run.endedAt { meta += "  ended \(e.rfc3339)" }
        if let position { meta += "  as of @\(position)" }
        lines.append(meta)
        lines.append("")
        let rows = snapshot.jobs.map { j in
            [j.type, j.status.rawValue, String(j.attempt), j.worker ?? "-", time(j.firstStartedAt), time(j.endedAt), note(j, in: snapshot)]
        }
        lines.append(table(["JOB", "STATUS", "ATTEMPTS", "WORKER", "STARTED", "ENDED", "NOTE"], rows))
        return lines.joined(separator: "\n")
    }

    static func runsTable(_ runs: [RunState]) -> String {
        let rows = runs.map { r in
            [r.id, r.name ?? "-", r.status.rawValue, String(r.total), String(r.count(.finished)), String(r.count(.failed)), String(r.count(.aborted)), String(r.count(.started)), r.createdAt.rfc3339]
        }
        return table(["RUN", "NAME", "STATUS", "JOBS", "FINISHED", "FAILED", "ABORTED", "RUNNING", "CREATED"], rows)
    }

    /// One fact as a human line: `@5  2026-…Z  job.claimed  r1/start  rev 2  attempt 1  by w1  (reason)`.
    static func fact(_ f: Fact) -> String {
        var parts = ["@\(f.position)", f.time.rfc3339, f.kind.rawValue, f.job ?? f.run ?? f.worker ?? "-"]
        if let r = f.revision { parts.append("rev \(r)") }
        if let a = f.attempt { parts.append("attempt \(a)") }
        if let w = f.worker, f.job != nil || f.run != nil { parts.append("by \(w)") }
        if let r = f.reason { parts.append("(\(r))") }
        if let e = f.data["error"] { parts.append("error: \(errorText(e))") }
        return parts.joined(separator: "  ")
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var s = self
        while s.hasSuffix(" ") { s.removeLast() }
        return s
    }
}
