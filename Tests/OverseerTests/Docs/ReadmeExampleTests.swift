import Foundation
import Testing

import Overseer  // public API only, as in the README

/// The README's Swift example, kept compiling and passing.
@Suite struct ReadmeExampleTests {
    struct Report: Codable, Sendable { var org: Int }

    @Test func theReadmeExampleWorks() async throws {
        let dir = FileManager.default.temporaryDirectory.path + "/readme-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        let graph: JobGraph = [
            "start": [],
            "result1": ["start"],
            "result2": ["start"],
            "finish": ["result1", "result2"],
        ]
        var handlers: Handlers = [
            "start": { job in _ = job.id },
            "result1": { job in try job.setResult(["rows": 1200]) },
            "result2": { job in _ = job.id },
            "finish": { job in _ = try job.args(as: Report.self).org },
        ]
        handlers.options["result1"] = JobOptions(retry: .exponential(maximumAttempts: 3), timeout: .seconds(60))

        let overseer = try Overseer(store: .lmdb(path: dir + "/myapp.lmdb"))
        try await overseer.submit(graph, run: "nightly-2026-12-03", args: Report(org: 42))
        var config = WorkerConfiguration()
        config.untilIdle = true
        let worker = Worker(store: overseer.log, handlers: handlers, configuration: config)
        try await worker.run()

        let log = overseer.log
        #expect(try log.run("nightly-2026-12-03")?.status == .finished)
        let then = try log.run("nightly-2026-12-03", asOf: .time(Instant(rfc3339: "2000-01-01T02:00:00Z")!))
        #expect(then == nil)
        let steps = try log.replay(run: "nightly-2026-12-03")
        #expect(steps.last?.run?.status == .finished)
        #expect(try log.verify().ok)
        let exported = try log.export(to: dir + "/audit.jsonl")
        #expect(exported == Int(try log.lastPosition()))
        #expect(try ExportFile.verify(path: dir + "/audit.jsonl").ok)
    }
}
