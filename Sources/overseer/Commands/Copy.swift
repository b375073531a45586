import Foundation
import Overseer

/// `overseer copy --from A --to B`
enum CopyCommand {
    static let spec = CommandSpec(
        name: "copy", summary: "Copy a whole log between stores (LMDB ⇄ PostgreSQL), verified.",
        positionals: [],
        options: [
            OptionSpec(name: "from", value: "PATH|URL", help: "The source store (required)."),
            OptionSpec(name: "to", value: "PATH|URL", help: "The destination store: new or empty (required)."),
        ],
        details: "Copies every fact verbatim (same positions, times and hashes) and rebuilds the views by folding\nthem, then verifies the destination and checks that its head hash equals the source's. The\ndestination must be empty; if the copy fails it is emptied again. Workers may keep appending\nto the source meanwhile: the copy takes the log as it was when it started.\nExit 0 when the copy verifies, 2 for bad arguments or a non-empty destination, 3 when a store\ncannot be opened or the copy does not verify.",
        run: run)

    static func run(_ args: ParsedArguments) async throws -> Int32 {
        guard let from = args.value("from"), !from.isEmpty else { throw UsageError(message: "--from is required", command: "copy") }
        guard let to = args.value("to"), !to.isEmpty else { throw UsageError(message: "--to is required", command: "copy") }
        if from == to { throw UsageError(message: "--from and --to name the same store", command: "copy") }
        let source = try StoreLocation.open(from, create: false)
        let destination = try StoreLocation.open(to, create: true)
        let started = Date()
        let report = try destination.copy(from: source) { done, total in
            if Console.isTerminal { Console.error("\rcopied \(done) of \(total) facts", terminator: "") }
        }
        if Console.isTerminal { Console.error("") }
        let seconds = Date().timeIntervalSince(started)
        Console.out("copied \(report.facts) facts from \(source.path) to \(destination.path) in \(String(format: "%.1f", seconds)) s; verified: \(report.verify.runs) runs, \(report.verify.jobs) jobs, head \(report.headHash.hex)")
        return 0
    }
}
