import Foundation
import Overseer

/// `overseer demo`: the seed's diamond, end to end, in a temporary store.
enum DemoCommand {
    static let spec = CommandSpec(
        name: "demo", summary: "Run the seed's diamond pipeline end to end in a temporary store.",
        positionals: [],
        options: [OptionSpec(name: "clean", value: nil, help: "Delete the temporary store at the end instead of keeping it for a look.")],
        details: "Four jobs: start, then result1 and result2 in parallel, then finish. Prints what each handler\nprints, the run's timeline from the log, its final state, and where to look next.",
        run: run)

    static func run(_ args: ParsedArguments) async throws -> Int32 {
        let dir = FileManager.default.temporaryDirectory.path + "/overseer-demo-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let path = dir + "/demo.lmdb"
        let keep = !args.flag("clean")
        defer { if !keep { try? FileManager.default.removeItem(atPath: dir) } }

        let graph: JobGraph = [
            "start": [],
            "result1": ["start"],
            "result2": ["start"],
            "finish": ["result1", "result2"],
        ]
        let say: @Sendable (String) -> Void = { Console.out("  handler: \($0)") }
        let handlers: Handlers = [
            "start": { job in say("start (run \(job.run), org \(job.arguments["org"]?.intValue ?? 0))") },
            "result1": { job in
                try await Task.sleep(for: .milliseconds(20))
                try job.setResult(["rows": 1200])
                say("result1")
            },
            "result2": { job in
                try await Task.sleep(for: .milliseconds(30))
                try job.setResult(["rows": 800])
                say("result2")
            },
            "finish": { job in
                let a: [String: Int]? = try job.result(of: "result1")
                let b: [String: Int]? = try job.result(of: "result2")
                say("finish (\((a?["rows"] ?? 0) + (b?["rows"] ?? 0)) rows in all)")
            },
        ]
        Console.out("Overseer demo — store \(path)\n")
        Console.out("Running the diamond: start → result1, result2 → finish")
        let overseer = try Overseer(store: .lmdb(path: path))
        var config = WorkerConfiguration()
        config.name = "demo-worker"
        config.concurrency = 2
        let snapshot = try await overseer.run(graph, handlers: handlers, run: "demo", args: ["org": 42] as [String: Int], configuration: config)
        let log = overseer.log
        let facts = try log.history(ofRun: snapshot.run.id)
        Console.out("\nTimeline (every fact of the run, from the log):")
        let t0 = facts.first?.time ?? Instant.now()
        for f in facts {
            let dt = String(format: "+%.3fs", t0.seconds(to: f.time))
            let subject = f.job.map { String($0.split(separator: "/").last ?? "") } ?? f.run ?? f.worker ?? ""
            var line = "  \(dt)  @\(f.position)  \(f.kind.rawValue)  \(subject)"
            if let attempt = f.attempt { line += "  attempt \(attempt)" }
            if let worker = f.worker, f.job != nil { line += "  by \(worker)" }
            Console.out(line)
        }
        Console.out("")
        Console.out(Format.runReport(snapshot, position: nil))
        let report = try log.verify()
        Console.out("\nverify: \(report)")
        let mid = facts.count > 6 ? facts[facts.count / 2].position : facts.last?.position ?? 0
        // Name the binary as it was run, so the commands work without it on PATH.
        let exe = CommandLine.arguments[0].contains("/") ? CommandLine.arguments[0] : "overseer"
        Console.out("""

            Where to look next\(keep ? " (the store stays in \(dir); remove it with rm -r when done)" : " (this store was deleted: run without --clean to keep it)"):
              \(exe) status demo --db \(path)
              \(exe) status demo --as-of @\(mid) --db \(path)
              \(exe) history --run demo --db \(path)
              \(exe) replay demo --db \(path)
              \(exe) report demo --output demo.html --db \(path)
              \(exe) export --output demo.jsonl --db \(path) && \(exe) verify demo.jsonl
            """)
        return snapshot.run.status == .finished && report.ok ? 0 : 1
    }
}
