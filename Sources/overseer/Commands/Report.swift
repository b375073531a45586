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
        let report = try RunReport.build(store: store, run: runID, options: options)
        let data = Data(report.html.utf8)
        if output == "-" {
            FileHandle.standardOutput.write(data)
        } else {
            do {
                try data.write(to: URL(fileURLWithPath: output), options: .atomic)
            } catch {
                let dir = (output as NSString).deletingLastPathComponent.isEmpty ? "." : (output as NSString).deletingLastPathComponent
                var isDirectory: ObjCBool = false
                let reason: String
                if !FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory) || !isDirectory.boolValue {
                    reason = "the directory \(dir) does not exist"
                } else if !FileManager.default.isWritableFile(atPath: dir) {
                    reason = "the directory \(dir) is not writable"
                } else {
                    reason = (error as NSError).localizedDescription
                }
                throw InputError(message: "cannot write \(output): \(reason)")
            }
            let size = data.count < 1 << 20 ? "\(max(1, data.count / 1024)) KiB" : String(format: "%.1f MiB", Double(data.count) / 1_048_576)
            Console.error("wrote \(output) (\(size)): run \(runID), \(report.facts) facts, graph by \(report.layout)\(report.layoutNote.map { " (\($0))" } ?? "")")
        }
        if let verify = report.verify, !verify.ok {
            Console.error("overseer report: the store failed verification, as the report shows: \(verify)")
            return 1
        }
        return 0
    }
}
