// overseer-bench: performance suites for Overseer, each compared with a raw-LMDB baseline
// measured in the same run. See docs/performance.md.
//
//   overseer-bench SUITE [--quick] [--store lmdb|postgres] [--url URL]
//       SUITE is a suite name (see Suites.swift) or `all`. `--store postgres` measures the
//       PostgreSQL store against the LMDB one in the same run, on the server `--url` names or on a
//       throwaway one (scripts/pg-test-server.sh) deleted at the end.
//   overseer-bench log --only verify [--facts N] [--keep PATH] [--reps K]
//       only the verify measurement, on a store kept between runs at --keep PATH
//   overseer-bench log --only append [--quick]
//       only the append measurements (single, concurrent, and both without fsync)
//
// Results: one JSON object per line on stdout. Progress: stderr.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

let usage = """
    usage: overseer-bench SUITE [--quick] [--store lmdb|postgres] [--url URL]
           overseer-bench log --only verify [--facts N] [--keep PATH] [--reps K]
           overseer-bench log --only append [--quick]
      SUITE   \(BenchSuites.all.map(\.name).joined(separator: " | ")) | all
      --quick smaller sizes (a smoke run, well under 30 s in release with the LMDB store)
      --store lmdb (the default), or postgres: the PostgreSQL store, with LMDB's figures from the
              same run as baselines
      --url   the PostgreSQL server (postgres://user:password@host:port/db); without it a throwaway
              server is started with scripts/pg-test-server.sh and deleted at the end
      --only verify
              only the verify measurement of the log suite, on a store of N facts (default
              1,000,000; 100,000 with --quick). With --keep, the store at PATH is kept and
              reused by later runs (filled or extended to N facts first), so that iterating
              on verify does not pay for the fill each time. K passes (default 3).
      --only append
              only the append measurements of the log suite (single, concurrent.64, and the
              same two without fsync), for iterating on the append path.
    """

var args = Array(CommandLine.arguments.dropFirst())
if args.first == "_worker" { await HiddenWorker.run(Array(args.dropFirst())) }
let quick = args.contains("--quick")
args.removeAll { $0 == "--quick" }
/// Removes `--name VALUE` from `args` and returns VALUE; exits on a missing value.
@MainActor func option(_ name: String) -> String? {
    guard let i = args.firstIndex(of: name) else { return nil }
    guard i + 1 < args.count else {
        Progress.say("\(name) needs a value\n" + usage)
        exit(2)
    }
    let value = args[i + 1]
    args.removeSubrange(i...(i + 1))
    return value
}
@MainActor func intOption(_ name: String) -> Int? {
    guard let text = option(name) else { return nil }
    guard let n = Int(text.replacingOccurrences(of: "_", with: "")), n > 0 else {
        Progress.say("\(name) needs a positive integer, not '\(text)'\n" + usage)
        exit(2)
    }
    return n
}
let only = option("--only")
// `--store` names the store kind; `--keep PATH` (with `--only verify`) the store kept between runs.
let storeOption = option("--store")
let keepOption = option("--keep")
let verifyOptions = VerifyOnly(facts: intOption("--facts"), store: keepOption, repetitions: intOption("--reps"))
let url = option("--url")
guard args.count == 1, only == nil || ((only == "verify" || only == "append") && args[0] == "log") else {
    Progress.say(usage)
    exit(2)
}
if only != "verify", verifyOptions.facts != nil || verifyOptions.repetitions != nil || keepOption != nil {
    Progress.say("--facts, --keep and --reps go with --only verify\n" + usage)
    exit(2)
}
let storeName = storeOption ?? "lmdb"
guard let storeKind = BenchStoreKind(rawValue: storeName), only == nil || storeKind == .lmdb else {
    Progress.say("unknown store '\(storeName)' (lmdb or postgres; --only verify measures LMDB; its kept store is --keep PATH)\n" + usage)
    exit(2)
}
if url != nil, storeKind != .postgres {
    Progress.say("--url needs --store postgres\n" + usage)
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
    var postgres: BenchPostgres?
    if storeKind == .postgres {
        postgres = try url.map { BenchPostgres(url: $0) } ?? BenchPostgres.startThrowaway()
    }
    context = try BenchContext(quick: quick, verifyOnly: only == "verify" ? verifyOptions : nil, appendOnly: only == "append", store: storeKind, postgres: postgres)
    if let postgres { Progress.say("postgres: \(postgres.describeSettings())") }
} catch {
    Progress.say("overseer-bench: \(error)")
    exit(1)
}
// An interrupted run still deletes its temp directory and its throwaway server.
var signalSources: [any DispatchSourceSignal] = []
for sig in [SIGINT, SIGTERM] {
    signal(sig, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
    source.setEventHandler {
        Progress.say("overseer-bench: interrupted; cleaning up")
        WorkerProcess.terminateAll()
        context.cleanUp()
        exit(128 + sig)
    }
    source.resume()
    signalSources.append(source)
}
var failed = false
for suite in selected {
    Progress.say("== suite \(suite.name)\(quick ? " (quick)" : "")\(storeKind == .postgres ? " (postgres)" : ""); load average \(loadAverage())")
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
