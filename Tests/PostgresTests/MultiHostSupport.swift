import Foundation
import Overseer
import OverseerPostgres
import OverseerTestSupport
import Synchronization

// Two hosts for the multi-host tests (MultiHostTests.swift, docs/postgres.md "Many hosts"): two
// network namespaces joined by a veth pair, made by scripts/netns-hosts.sh, with a PostgreSQL
// server inside the first. Where namespaces cannot be made, both hosts are groups of processes on
// loopback and a host is "cut off" by stopping its process (SIGSTOP) instead of its link.

/// The checkout's root (three levels above this file).
let checkoutRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// The built `overseer` CLI and probe.
var overseerCLI: String { productsDirectory().appendingPathComponent("overseer").path }
var overseerProbe: String { productsDirectory().appendingPathComponent("overseer-probe").path }

/// The environment for the processes a multi-host test starts: no store from the caller's
/// environment, no colour.
private func childEnvironment() -> [String: String] {
    var environment = ProcessInfo.processInfo.environment
    environment.removeValue(forKey: "OVERSEER_DB")
    environment["NO_COLOR"] = "1"
    return environment
}

/// How a command run to its end did.
struct ToolResult: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
    /// It was still running at its timeout and was killed.
    var timedOut: Bool
    /// Wall-clock seconds it took.
    var seconds: Double
}

/// Runs `argv` (argv[0] looked up in PATH) to its end, killing it (SIGKILL) at `timeout` seconds.
func runTool(_ argv: [String], timeout: Double = 60) throws -> ToolResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = argv
    p.environment = childEnvironment()
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    let start = Date()
    try p.run()
    // Read both pipes on threads of their own, so that neither can fill up and block the child.
    let outData = Background { out.fileHandleForReading.readDataToEndOfFile() }
    let errData = Background { err.fileHandleForReading.readDataToEndOfFile() }
    var timedOut = false
    let deadline = start.addingTimeInterval(timeout)
    while p.isRunning {
        if Date() > deadline {
            timedOut = true
            kill(p.processIdentifier, SIGKILL)
            break
        }
        usleep(10_000)
    }
    p.waitUntilExit()
    return ToolResult(
        status: p.terminationStatus, stdout: String(decoding: outData.wait(), as: UTF8.self),
        stderr: String(decoding: errData.wait(), as: UTF8.self), timedOut: timedOut, seconds: Date().timeIntervalSince(start))
}

/// A long-running child (a worker, a probe) whose stderr and stdout lines are kept with the time
/// each arrived, for the timeline.
final class HostProcess: @unchecked Sendable {
    // @unchecked: `process` is used from the test's thread only; the lines sit behind a Mutex.
    let name: String
    let process: Process
    private let lines = Lines()
    private let readers = DispatchGroup()

    private final class Lines: Sendable {
        let value = Mutex<[(time: Date, stream: String, text: String)]>([])
    }

    init(_ argv: [String], name: String) throws {
        self.name = name
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = argv
        p.environment = childEnvironment()
        p.standardInput = FileHandle.nullDevice
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        process = p
        try p.run()
        for (pipe, stream) in [(out, "out"), (err, "err")] {
            let handle = pipe.fileHandleForReading
            readers.enter()
            Thread.detachNewThread { [readers, lines] in
                var pending = Data()
                while true {
                    let chunk = handle.availableData  // blocks until data or end of file
                    if chunk.isEmpty { break }
                    pending.append(chunk)
                    while let newline = pending.firstIndex(of: 0x0A) {
                        let text = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                        pending.removeSubrange(pending.startIndex...newline)
                        lines.value.withLock { $0.append((Date(), stream, text)) }
                    }
                }
                readers.leave()
            }
        }
    }

    var pid: pid_t { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var log: [(time: Date, stream: String, text: String)] { lines.value.withLock { $0 } }
    var stdoutLines: [String] { log.filter { $0.stream == "out" }.map(\.text) }
    var logText: String { log.map { "\($0.stream): \($0.text)" }.joined(separator: "\n") }

    /// Waits up to `timeout` seconds for the process to end by itself; returns whether it did.
    func waitForExit(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline { return false }
            usleep(20_000)
        }
        process.waitUntilExit()
        _ = readers.wait(timeout: .now() + 10)
        return true
    }

    /// SIGTERM, then up to `timeout` seconds to end; SIGKILL after that. Returns whether it ended
    /// on its own (and its exit status then).
    func terminate(timeout: Double) -> (byItself: Bool, status: Int32) {
        guard process.isRunning else { return (true, process.terminationStatus) }
        kill(pid, SIGCONT)  // a stopped process cannot act on SIGTERM
        kill(pid, SIGTERM)
        if waitForExit(timeout: timeout) { return (true, process.terminationStatus) }
        forceKill()
        return (false, -1)
    }

    /// SIGKILL (fine when it has ended) and wait.
    func forceKill() {
        if process.isRunning {
            kill(pid, SIGKILL)
            _ = waitForExit(timeout: 10)
        }
    }

    /// Whether a child of this process (a shell job of a worker) is still running. A zombie
    /// (ended, not yet reaped, as under a stopped parent) counts as ended.
    var hasLiveChildren: Bool {
        let me = pid
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return false }
        for entry in entries where entry.allSatisfy(\.isNumber) {
            guard let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, fields[1] == "\(me)", fields[0] != "Z" { return true }
        }
        return false
    }
}

/// Reads the log straight from the server's tables (over the Unix socket, which no network cut
/// touches) for the test's own polling.
final class FactReader {
    private let connection: PGConnection
    private(set) var facts: [Fact] = []

    init(url: String) throws {
        connection = try PGConnection(url)
    }

    deinit { connection.close() }

    /// Fetches the facts appended since the last call; returns all of them.
    @discardableResult
    func refresh() throws -> [Fact] {
        if !connection.isOK { try connection.reset() }
        let after = facts.last?.position ?? 0
        // The table may not exist yet (before the first worker or `migrate` made the schema).
        let exists = try connection.exec("SELECT to_regclass('overseer_facts') IS NOT NULL").string(0, 0) == "t"
        guard exists else { return facts }
        let r = try connection.exec(
            "SELECT line FROM overseer_facts WHERE position > $1 ORDER BY position", [.int64(Int64(after))])
        for row in 0..<r.rowCount {
            facts.append(try Fact.decode(line: r.bytes(row, 0) ?? []))
        }
        return facts
    }

    var head: UInt64 { facts.last?.position ?? 0 }
}

/// Polls `condition` every `interval` seconds until it holds or `timeout` seconds pass.
func eventually(_ timeout: Double, every interval: Double = 0.2, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if try condition() { return true }
        if Date() > deadline { return false }
        Thread.sleep(forTimeInterval: interval)
    }
}

/// Two hosts and a PostgreSQL server on host A.
final class TwoHosts: @unchecked Sendable {
    // @unchecked: used from one test thread.
    enum Host: String { case a = "A", b = "B" }

    /// The two namespaces, or nil when the hosts are processes on loopback.
    let namespaces: (a: String, b: String)?
    /// The server's address as the hosts reach it: ns A's veth address, or 127.0.0.1.
    let serverHost: String
    let port: Int
    /// The workers' URL (TCP).
    let url: String
    /// The server's Unix socket, for the test's own look-ups: no network cut reaches it.
    let socketURL: String
    let serverDir: String
    /// A directory for the test's files (the pipeline).
    let workDir: String
    private var loopbackServer: PrivatePGServer?
    /// Why namespaces were not used, when they were not.
    let fallbackReason: String?

    var usesNamespaces: Bool { namespaces != nil }
    var mode: String { usesNamespaces ? "network namespaces \(namespaces!.a) and \(namespaces!.b) joined by a veth pair" : "processes on loopback" }

    static let netnsScript = checkoutRoot + "/scripts/netns-hosts.sh"

    /// Makes the hosts: network namespaces unless OVERSEER_TEST_NO_NETNS is set or they cannot be
    /// made (then a loud warning, and loopback).
    init() throws {
        let tag = String(UInt32.random(in: 0...0xFF_FFFF), radix: 16)
        workDir = FileManager.default.temporaryDirectory.appendingPathComponent("overseer-mh-\(tag)").path
        try FileManager.default.createDirectory(atPath: workDir, withIntermediateDirectories: true)
        var reason: String?
        var made: (a: String, b: String, octet: Int)?
        if ProcessInfo.processInfo.environment["OVERSEER_TEST_NO_NETNS"].map({ !$0.isEmpty }) ?? false {
            reason = "OVERSEER_TEST_NO_NETNS is set"
        } else {
            // Namespaces left by a test process that crashed before its teardown.
            _ = try? runTool(["bash", Self.netnsScript, "sweep"], timeout: 60)
            let a = "ovs-a-\(tag)", b = "ovs-b-\(tag)", octet = Int.random(in: 1...254)
            let r = try runTool(["bash", Self.netnsScript, "setup", a, b, String(octet), String(getpid())], timeout: 60)
            if r.status == 0 && !r.timedOut {
                made = (a, b, octet)
            } else {
                reason = "scripts/netns-hosts.sh setup failed: " + r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        fallbackReason = reason
        if let made {
            namespaces = (made.a, made.b)
            serverHost = "10.213.\(made.octet).1"
            port = 55432
            serverDir = workDir + "/pg"
            // The server runs inside host A and listens on its veth address (and its loopback).
            let r = try runTool(
                ["ip", "netns", "exec", made.a, "bash", pgTestServerScript, "start", serverDir, String(port), "\(serverHost),127.0.0.1"],
                timeout: 120)
            guard r.status == 0, !r.timedOut else {
                _ = try? runTool(["bash", pgTestServerScript, "destroy", serverDir])
                _ = try? runTool(["bash", Self.netnsScript, "teardown", made.a, made.b])
                try? FileManager.default.removeItem(atPath: workDir)
                throw PrivateServerError(text: "pg-test-server.sh start inside \(made.a) failed: \(r.stderr)")
            }
            url = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            FileHandle.standardError.write(Data("""

                ********************************************************************************
                WARNING: network namespaces unavailable (\(reason ?? "?")):
                running the multi-host scenario on loopback, where cutting a host off is SIGSTOP of
                its process and healing is SIGCONT.
                ********************************************************************************

                """.utf8))
            namespaces = nil
            let server: PrivatePGServer
            do {
                server = try PrivatePGServer()
            } catch {
                try? FileManager.default.removeItem(atPath: workDir)
                throw error
            }
            loopbackServer = server
            serverDir = server.dir
            url = server.url
            serverHost = "127.0.0.1"
            port = Int(url.split(separator: ":").last?.split(separator: "/").first ?? "") ?? 0
        }
        socketURL = "postgresql://overseer@/overseer?host=\(serverDir)&port=\(port)"
    }

    /// `command` as run on `host`.
    func argv(on host: Host, _ command: [String]) -> [String] {
        guard let namespaces else { return command }
        return ["ip", "netns", "exec", host == .a ? namespaces.a : namespaces.b] + command
    }

    /// `overseer ARGS --db URL` on `host`, to its end.
    func overseer(on host: Host, _ args: [String], timeout: Double = 60) throws -> ToolResult {
        try runTool(argv(on: host, [overseerCLI] + args + ["--db", url]), timeout: timeout)
    }

    /// Cuts host B off: its veth link goes down; on loopback, `process` is stopped.
    func cutOffB(_ process: HostProcess) throws {
        if let namespaces {
            let r = try runTool(["bash", Self.netnsScript, "cut", namespaces.b])
            guard r.status == 0 else { throw PrivateServerError(text: "netns-hosts.sh cut failed: \(r.stderr)") }
        } else {
            kill(process.pid, SIGSTOP)
        }
    }

    /// Joins host B again.
    func healB(_ process: HostProcess) throws {
        if let namespaces {
            let r = try runTool(["bash", Self.netnsScript, "heal", namespaces.b])
            guard r.status == 0 else { throw PrivateServerError(text: "netns-hosts.sh heal failed: \(r.stderr)") }
        } else {
            kill(process.pid, SIGCONT)
        }
    }

    /// The TCP connections from `process` (on host B) to the server that are established now.
    func establishedConnections(of process: HostProcess) -> Int {
        // /proc/PID/net/tcp lists the sockets of PID's network namespace: host B's own.
        guard let table = try? String(contentsOfFile: "/proc/\(process.pid)/net/tcp", encoding: .utf8) else { return 0 }
        let port = String(format: "%04X", self.port)
        return table.split(separator: "\n").dropFirst().filter { line in
            let f = line.split(separator: " ")
            return f.count > 3 && f[2].hasSuffix(":" + port) && f[3] == "01"
        }.count
    }

    /// Stops the server, kills whatever is left on the hosts, deletes the namespaces and files.
    func destroy() {
        if let server = loopbackServer {
            server.destroy()
        } else {
            _ = try? runTool(["bash", pgTestServerScript, "destroy", serverDir], timeout: 120)
        }
        if let namespaces {
            let r = try? runTool(["bash", Self.netnsScript, "teardown", namespaces.a, namespaces.b], timeout: 60)
            if let r, r.status != 0 {
                FileHandle.standardError.write(Data("multi-host teardown: \(r.stderr)\n".utf8))
            }
        }
        try? FileManager.default.removeItem(atPath: workDir)
    }
}

/// Events of a scenario with their wall-clock times, printed relative to one of them.
final class Timeline {
    private(set) var events: [(time: Date, text: String)] = []

    func add(_ text: String, at time: Date = Date()) { events.append((time, text)) }

    func add(_ fact: Fact, _ text: String) {
        add(text, at: Date(timeIntervalSince1970: Double(fact.time.microseconds) / 1e6))
    }

    func time(of prefix: String) -> Date? { events.first { $0.text.hasPrefix(prefix) }?.time }

    /// One line per event, with seconds since `origin`, in time order.
    func render(from origin: Date) -> String {
        events.sorted { $0.time < $1.time }.map { e in
            String(format: "%+8.2f s  ", e.time.timeIntervalSince(origin)) + e.text
        }.joined(separator: "\n")
    }
}
