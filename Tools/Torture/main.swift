// overseer-torture: random pipelines, several worker processes on one store, faults at random
// moments (SIGKILL, SIGSTOP past the lease, operator retries and aborts, new runs, a full disk),
// then an independent checker of the exported log against the workers' acknowledgement journals.
//
//   overseer-torture --seed S --minutes M [--workers N] [--store DIR|URL] [--disk-full]
//                    [--points N] [--flips N] [--keep] [--verbose]
//   overseer-torture worker ...   (the worker processes the harness starts)
//   overseer-torture check EXPORT [JOURNAL...] [--seed S]    (only the checker)
//   overseer-torture append-probe STORE SECONDS [PAD]        (appends in a loop, reporting failures)
import Foundation
import Overseer

enum TortureMain {
    static let usage = "usage: overseer-torture --seed S --minutes M [--workers N] [--store DIR] [--disk-full] [--points N] [--flips N] [--full-hold SECONDS] [--keep] [--verbose]"

    static func options(_ args: ArraySlice<String>) -> [String: String]? {
        var out: [String: String] = [:]
        var i = args.startIndex
        let flags: Set<String> = ["disk-full", "keep", "verbose"]
        while i < args.endIndex {
            let a = args[i]
            guard a.hasPrefix("--") else { return nil }
            let name = String(a.dropFirst(2))
            if flags.contains(name) {
                out[name] = "1"
                i += 1
                continue
            }
            guard i + 1 < args.endIndex else { return nil }
            out[name] = args[i + 1]
            i += 2
        }
        return out
    }

    static func main() async -> Int32 {
        let args = CommandLine.arguments
        if args.count > 1 && args[1] == "append-probe" { return AppendProbe.main(args) }
        if args.count > 1 && args[1] == "check" { return CheckMode.main(Array(args.dropFirst(2))) }
        if args.count > 1 && args[1] == "worker" {
            guard let o = options(args[2...]) else {
                FileHandle.standardError.write(Data("overseer-torture worker: bad arguments\n".utf8))
                return 2
            }
            return await WorkerMode.main(o)
        }
        guard let o = options(args[1...]) else {
            FileHandle.standardError.write(Data((usage + "\n").utf8))
            return 2
        }
        var config = TortureConfig()
        let known: Set<String> = ["seed", "minutes", "workers", "store", "disk-full", "points", "flips", "keep", "verbose", "full-hold"]
        if let unknown = o.keys.first(where: { !known.contains($0) }) {
            FileHandle.standardError.write(Data("overseer-torture: unknown option --\(unknown)\n\(usage)\n".utf8))
            return 2
        }
        guard let seedText = o["seed"], let seed = UInt64(seedText), let minutesText = o["minutes"], let minutes = Double(minutesText), minutes > 0 else {
            FileHandle.standardError.write(Data((usage + "\n").utf8))
            return 2
        }
        config.seed = seed
        config.minutes = minutes
        if let w = o["workers"] {
            guard let n = Int(w), (1...32).contains(n) else {
                FileHandle.standardError.write(Data("overseer-torture: --workers must be 1 to 32\n".utf8))
                return 2
            }
            config.workers = n
        }
        config.storeDir = o["store"]
        config.diskFull = o["disk-full"] != nil
        if config.diskFull, let store = config.storeDir, store.contains("://") {
            FileHandle.standardError.write(Data("overseer-torture: --disk-full fills an LMDB store's tmpfs; it does not apply to a postgres:// store\n".utf8))
            return 2
        }
        config.points = o["points"].flatMap(Int.init) ?? 1000
        config.flips = o["flips"].flatMap(Int.init) ?? 200
        config.keep = o["keep"] != nil
        config.fullHold = o["full-hold"].flatMap(Double.init) ?? 6
        config.verbose = o["verbose"] != nil
        signal(SIGPIPE, SIG_IGN)
        return await Orchestrator(config).run()
    }
}

/// `overseer-torture check EXPORT [JOURNAL...] [--seed S]`: only the checker, on an export and
/// journals (no store, so no as-of comparison; the seed gives the per-type limits).
enum CheckMode {
    static func main(_ args: [String]) -> Int32 {
        var files: [String] = []
        var seed: UInt64 = 0
        var i = 0
        while i < args.count {
            if args[i] == "--seed", i + 1 < args.count, let s = UInt64(args[i + 1]) {
                seed = s
                i += 2
            } else {
                files.append(args[i])
                i += 1
            }
        }
        guard let export = files.first else {
            FileHandle.standardError.write(Data("usage: overseer-torture check EXPORT [JOURNAL...] [--seed S]\n".utf8))
            return 2
        }
        var checker = Checker(CheckerInput(
            exportPath: export, journals: Array(files.dropFirst()), limits: seed == 0 ? [:] : TypeTable.limits(seed: seed), store: nil,
            points: 0, flips: 0, seed: seed, quiescent: true))
        let r = checker.run()
        print("facts \(r.facts), acks \(r.acks), runs \(r.runs), jobs \(r.jobs), violations \(r.violationCount)")
        for v in r.violations.prefix(50) { print("  - \(v)") }
        return r.violationCount == 0 ? 0 : 1
    }
}

exit(await TortureMain.main())
