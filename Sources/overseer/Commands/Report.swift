import Foundation
import Overseer

/// `overseer report RUN --output FILE.html [--no-dot] [--no-verify]`
enum ReportCommand {
    static let spec = CommandSpec(
        name: "report", summary: "Write a run's report: one HTML file with its graph, timeline, jobs and time travel.",
        positionals: ["RUN"],
        options: [
            StoreLocation.option,
            OptionSpec(name: "output", value: "FILE", help: "Where to write the HTML file (required; - for stdout)."),
            OptionSpec(name: "no-dot", value: nil, help: "Draw the graph with the built-in layout even when Graphviz dot is installed."),
            OptionSpec(name: "no-verify", value: nil, help: "Do not verify the store (the report then says so)."),
        ],
        details: "The file needs no network and no other file: open it in any browser. A slider replays the run\nfact by fact; open it at a position with FILE.html#@N. See docs/report.md.",
        run: run)

    static func run(_ args: ParsedArguments) async throws -> Int32 {
        guard let output = args.value("output") else {
            throw UsageError(message: "'report' needs --output FILE.html", command: "report")
        }
        if output.isEmpty { throw UsageError(message: "--output is empty", command: "report") }
        let runID = args.positionals[0]
        let store = try StoreLocation.open(args, create: false)
        guard try store.run(runID) != nil else { throw InputError(message: "no run '\(runID)' in \(store.path)") }
        var options = ReportOptions()
        if args.flag("no-dot") { options.layout = .builtIn }
        options.verify = !args.flag("no-verify")
        let html = try RunReport.html(store: store, run: runID, options: options)
        let data = Data(html.utf8)
        if output == "-" {
            FileHandle.standardOutput.write(data)
            return 0
        }
        do {
            try data.write(to: URL(fileURLWithPath: output), options: .atomic)
        } catch {
            throw InputError(message: "cannot write \(output): \((error as NSError).localizedDescription)")
        }
        Console.error("wrote \(output) (\(String(format: "%.1f", Double(data.count) / 1_048_576)) MiB): run \(runID)")
        return 0
    }
}
