import Foundation
import Overseer

/// `overseer verify [FILE]`
enum VerifyCommand {
    static let spec = CommandSpec(
        name: "verify", summary: "Check a store, or an exported file: hash chain, fold, invariants.",
        positionals: ["[FILE]"],
        options: [
            StoreLocation.option,
            OptionSpec(name: "partial", value: nil, help: "FILE is a filtered export (--run/--since/--until): accept gaps between positions."),
        ],
        details: "Checks the hash chain, that positions are dense and times never decrease, that fact ids are\nunique, that every fact is a legal transition (at most one live claim per job, no claim before\nall parents finished), and for a store that the views equal a re-fold of the facts. Names the\nfirst violation. With --partial (a filtered export), gaps between positions are accepted, the\nchain is checked where positions are consecutive, and transitions are not re-folded.\nExit 0 if everything holds, 1 if a violation was found, 2 if FILE cannot be read, 3 if the\nstore cannot be opened.",
        run: run)

    static func run(_ args: ParsedArguments) async throws -> Int32 {
        let report: VerifyReport
        let what: String
        if args.flag("partial") && args.positionals.isEmpty {
            throw UsageError(message: "--partial applies to an exported FILE, not to a store", command: "verify")
        }
        if let file = args.positionals.first {
            report = try ExportFile.verify(path: file, partial: args.flag("partial"))
            what = file
        } else {
            let store = try StoreLocation.open(args, create: false)
            report = try store.verify()
            what = store.path
        }
        if report.ok {
            Console.out("\(what): \(report)")
            return 0
        }
        Console.out("\(what): \(report)")
        for v in report.violations.prefix(10).dropFirst() { Console.out("  also: \(v)") }
        return 1
    }
}
