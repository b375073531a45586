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
        details: "Checks the hash chain, that positions are dense and times never decrease, that every fact is a\nlegal transition (at most one live claim per job, no claim before all parents finished), and for\na store that the views equal a re-fold of the facts. Names the first violation. Exit 0 only if\neverything holds, 1 otherwise.",
        run: run)

    static func run(_ args: ParsedArguments) async throws -> Int32 {
        let report: VerifyReport
        let what: String
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
