import Foundation
import Overseer

/// `overseer graph PIPELINE|--run ID [--format dot|svg]`
enum GraphCommand {
    static let spec = CommandSpec(
        name: "graph", summary: "Draw a pipeline's graph, or a run's with each job coloured by status.",
        positionals: ["[PIPELINE]"],
        options: [
            StoreLocation.option,
            OptionSpec(name: "run", value: "ID", help: "Draw this run (status colours) instead of a pipeline file."),
            OptionSpec(name: "format", value: "dot|svg", help: "dot (default: Graphviz source) or svg (drawn by Graphviz 'dot')."),
        ],
        details: "",
        run: run)

    static let colours: [JobStatus: String] = [
        .unstarted: "#e0e0e0", .started: "#8ecae6", .finished: "#90be6d", .failed: "#f94144", .aborted: "#f9c74f",
    ]

    static func run(_ args: ParsedArguments) async throws -> Int32 {
        let format = args.value("format") ?? "dot"
        guard format == "dot" || format == "svg" else {
            throw UsageError(message: "--format must be dot or svg, got '\(format)'", command: "graph")
        }
        let dot: String
        if let runID = args.value("run") {
            guard args.positionals.isEmpty else { throw UsageError(message: "give a PIPELINE or --run ID, not both", command: "graph") }
            let store = try StoreLocation.open(args, create: false)
            guard let snapshot = try store.snapshot(ofRun: runID) else { throw InputError(message: "no run '\(runID)' in \(store.path)") }
            var lines = ["digraph \"\(escape(runID))\" {", "  rankdir=LR;", "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];"]
            for j in snapshot.jobs {
                lines.append("  \"\(escape(j.type))\" [fillcolor=\"\(colours[j.status]!)\", tooltip=\"\(j.status.rawValue)\", label=\"\(escape(j.type))\\n\(j.status.rawValue)\"];")
            }
            for j in snapshot.jobs {
                for p in j.parents {
                    let parent = p.split(separator: "/", maxSplits: 1).last.map(String.init) ?? p
                    lines.append("  \"\(escape(parent))\" -> \"\(escape(j.type))\";")
                }
            }
            lines.append("}")
            dot = lines.joined(separator: "\n")
        } else {
            guard let file = args.positionals.first else { throw UsageError(message: "'graph' needs a PIPELINE file or --run ID", command: "graph") }
            let pipeline = try Pipeline.load(path: file)
            let graph = pipeline.graph
            var lines = ["digraph \"\(escape(pipeline.name))\" {", "  rankdir=LR;", "  node [shape=box, style=rounded, fontname=\"Helvetica\"];"]
            for t in graph.topologicalOrder() { lines.append("  \"\(escape(t))\";") }
            for t in graph.topologicalOrder() {
                for p in (graph.parents[t] ?? []).sorted() { lines.append("  \"\(escape(p))\" -> \"\(escape(t))\";") }
            }
            lines.append("}")
            dot = lines.joined(separator: "\n")
        }
        if format == "dot" {
            Console.out(dot)
            return 0
        }
        Console.out(try render(dot))
        return 0
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    }

    /// Runs Graphviz `dot -Tsvg`, with the DOT text on stdin.
    static func render(_ dot: String) throws -> String {
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map { "\($0)/dot" }
        guard let exe = paths.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw InputError(message: "--format svg needs Graphviz's 'dot', which is not installed (apt-get install graphviz); --format dot prints the source instead")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["-Tsvg"]
        let input = Pipe()
        let output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        try p.run()
        input.fileHandleForWriting.write(Data(dot.utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw InputError(message: "Graphviz 'dot' failed with status \(p.terminationStatus)") }
        return String(decoding: data, as: UTF8.self)
    }
}
