// A separate process for the multi-process tests: claim races and SIGKILL crash loops.
// Usage:
//   overseer-probe claim-race STORE RUN JOBS THREADS [GO_FILE]
//     (with GO_FILE: prints "ready" once the store is open, then waits for GO_FILE to exist)
//   overseer-probe append-loop STORE
//   overseer-probe open STORE [UID]   (opens, as UID when given, and verifies; prints the outcome)
//   overseer-probe work-twice STORE   (Overseer.work twice in one process; SIGTERM must stop the second)
//   overseer-probe hold-write-lock STORE   (opens a write transaction, prints "locked", never ends it)
import Foundation
import Overseer
import OverseerPostgres

let args = CommandLine.arguments
func usage() -> Never {
    FileHandle.standardError.write(Data("usage: overseer-probe claim-race STORE RUN JOBS THREADS [GO_FILE] | append-loop STORE | open STORE [UID] | work-twice STORE | hold-write-lock STORE\n".utf8))
    exit(2)
}
guard args.count >= 3 else { usage() }

// `open` reports what opening (and verifying) a store does, as three lines:
//   ok FACTS HEADHASH | error CODE   then the error's path, then its message.
// A crash (a signal) shows up as the process's termination reason instead.
if args[1] == "open" {
    guard args.count == 3 || args.count == 4 else { usage() }
    if args.count == 4 {
        guard let uid = UInt32(args[3]) else { usage() }
        // Drop root's privileges for good, so permission bits apply to this process.
        guard setgroups(0, nil) == 0, setgid(uid) == 0, setuid(uid) == 0 else {
            FileHandle.standardError.write(Data("overseer-probe: cannot become uid \(uid): \(String(cString: strerror(errno)))\n".utf8))
            exit(3)
        }
    }
    do {
        let s = try LogStore(path: args[2])
        let report = try s.verify()
        print(report.ok ? "ok \(report.facts) \(report.headHash.hex)" : "violation \(report)")
    } catch let e as StoreError {
        print("error \(e.code.rawValue)\n\(e.path)\n\(e.message)")
    } catch {
        print("other \(type(of: error))\n\n\(error)")
    }
    fflush(nil)
    exit(0)
}
let store: LogStore
do {
    // STORE is an LMDB path or a postgres:// URL (then the PostgreSQL process tests use it).
    if args[2].hasPrefix("postgres://") || args[2].hasPrefix("postgresql://") {
        store = try LogStore.postgres(args[2], retryWindow: .seconds(60))
    } else {
        store = try LogStore(path: args[2])
    }
} catch {
    FileHandle.standardError.write(Data("overseer-probe: \(error)\n".utf8))
    exit(3)
}
let me = "probe-\(getpid())"

switch args[1] {
case "claim-race":
    guard args.count == 6 || args.count == 7, let jobs = Int(args[4]), let threads = Int(args[5]) else { usage() }
    let run = args[3]
    if args.count == 7 {
        // A start line, so that every process races from the same moment.
        print("ready")
        fflush(nil)
        while !FileManager.default.fileExists(atPath: args[6]) { usleep(1000) }
    }
    let group = DispatchGroup()
    let output = NSLock()
    for t in 0..<threads {
        group.enter()
        Thread.detachNewThread {
            defer { group.leave() }
            let worker = "\(me)-t\(t)"
            for j in (0..<jobs).shuffled() {
                let id = "\(run)/j\(j)"
                do {
                    guard let state = try store.job(id), state.status == .unstarted else { continue }
                    let draft = FactDraft(kind: .jobClaimed, run: run, job: id, author: Author(name: worker), attempt: state.attempt + 1, data: ["lease_ms": 60000])
                    let outcome = try store.writeSync { w -> AppendOutcome in
                        // Re-check inside the transaction: a claim is only legal from unstarted.
                        guard let now = try w.job(id), now.status == .unstarted else {
                            return .conflict(expected: state.revision, actual: 0)
                        }
                        return try w.append(draft, expecting: state.revision)
                    }
                    if case .appended = outcome {
                        output.lock()
                        print("won \(id) \(worker)")
                        fflush(nil)
                        output.unlock()
                    }
                } catch {
                    FileHandle.standardError.write(Data("overseer-probe: \(error)\n".utf8))
                    exit(1)
                }
            }
        }
    }
    group.wait()
case "append-loop":
    var n = 0
    while true {
        n += 1
        let draft = FactDraft(kind: .workerStarted, author: Author(name: me), data: ["n": .int(Int64(n))])
        do {
            let outcome = try store.writeSync { w in try w.append(draft, expecting: nil) }
            if let f = outcome.fact {
                print("ack \(f.position) \(f.id)")
                fflush(nil)
            }
        } catch {
            FileHandle.standardError.write(Data("overseer-probe: \(error)\n".utf8))
            exit(1)
        }
    }
case "work-twice":
    // Overseer.work twice in one process (the first returns at once, idle), then SIGTERM must
    // stop the second as it stops the first: prints "ready", then "stopped" after the signal.
    // Start as a process launched from a shell does: no signal blocked (a test runner may pass
    // its own mask on to its children).
    var none = sigset_t()
    sigemptyset(&none)
    pthread_sigmask(SIG_SETMASK, &none, nil)
    let s = store
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        let handlers = Handlers(["noop": { _ in }])
        var config = WorkerConfiguration()
        config.untilIdle = true
        do {
            try await Overseer(log: s).work(handlers, configuration: config)
            config.untilIdle = false
            print("ready")
            fflush(nil)
            try await Overseer(log: s).work(handlers, configuration: config)
            print("stopped")
        } catch {
            print("error \(error)")
        }
        fflush(nil)
        done.signal()
    }
    done.wait()
case "hold-write-lock":
    // Stands for a host that stops between two statements of a write transaction (cut off,
    // paused): the transaction holds the log's lock (the head row) and never ends. Prints "locked"
    // from inside it, then sleeps until killed.
    _ = try? store.writeSync { _ in
        print("locked")
        fflush(nil)
        while true { sleep(3600) }
    }
    exit(1)
default:
    usage()
}
