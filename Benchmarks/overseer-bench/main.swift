// overseer-bench: performance suites for Overseer, each compared with a raw-LMDB baseline
// measured in the same run. See docs/performance.md.
//
//   overseer-bench SUITE [--quick]     SUITE is a suite name (see Suites.swift) or `all`
//
// Results: one JSON object per line on stdout. Progress: stderr.

#if canImport(Glibc)
import Glibc
#endif

let usage = """
    usage: overseer-bench SUITE [--quick]
      SUITE   \(BenchSuites.all.map(\.name).joined(separator: " | ")) | all
      --quick smaller sizes (a smoke run, well under 30 s in release)
    """

var args = Array(CommandLine.arguments.dropFirst())
if args.first == "_worker" { await HiddenWorker.run(Array(args.dropFirst())) }
let quick = args.contains("--quick")
args.removeAll { $0 == "--quick" }
guard args.count == 1 else {
    Progress.say(usage)
    exit(2)
}
let selected: [any BenchSuite]
if args[0] == "all" {
    selected = BenchSuites.all
} else if let suite = BenchSuites.all.first(where: { $0.name == args[0] }) {
    selected = [suite]
} else {
    Progress.say("unknown suite '\(args[0])'\n" + usage)
    exit(2)
}

let context: BenchContext
do {
    context = try BenchContext(quick: quick)
} catch {
    Progress.say("overseer-bench: \(error)")
    exit(1)
}
var failed = false
for suite in selected {
    Progress.say("== suite \(suite.name)\(quick ? " (quick)" : ""); load average \(loadAverage())")
    let start = ContinuousClock.now
    do {
        try await suite.run(context)
    } catch {
        Progress.say("suite \(suite.name) failed: \(error)")
        failed = true
    }
    Progress.say("== suite \(suite.name) took \(Format.seconds(ContinuousClock.now - start)); load average \(loadAverage())")
}
context.cleanUp()
exit(failed ? 1 : 0)
