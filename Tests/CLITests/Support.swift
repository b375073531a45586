import Foundation
import Testing

/// The built `overseer` binary.
func overseerBinary() -> String {
    let bundle = Bundle.main.bundleURL
    let candidate = bundle.appendingPathComponent("overseer").path
    if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    return root.appendingPathComponent(".build/debug/overseer").path
}

struct CLIResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// A temp directory with a store path and helpers to run the CLI in it.
final class Sandbox: @unchecked Sendable {
    // @unchecked: used from one test at a time; `path` is immutable.
    let path: String
    var db: String { path + "/store.lmdb" }

    init(_ label: String = "cli") {
        path = FileManager.default.temporaryDirectory.path + "/overseer-\(label)-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func write(_ name: String, _ text: String) -> String {
        let p = path + "/" + name
        try! text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    func read(_ name: String) -> String {
        (try? String(contentsOfFile: path + "/" + name, encoding: .utf8)) ?? ""
    }

    /// Runs `overseer ARGS` to completion (with --db unless `db` is false).
    @discardableResult
    func run(_ args: [String], db: Bool = true, env: [String: String] = [:], timeout: Double = 120) throws -> CLIResult {
        let p = spawn(args, db: db, env: env)
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Read both pipes concurrently so a full pipe never blocks the child.
        let outData = Reader(out.fileHandleForReading)
        let errData = Reader(err.fileHandleForReading)
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(5000) }
        if p.isRunning {
            p.terminate()
            Issue.record("overseer \(args) timed out after \(timeout)s")
        }
        p.waitUntilExit()
        return CLIResult(status: p.terminationStatus, stdout: outData.text(), stderr: errData.text())
    }

    /// Starts `overseer ARGS` in the background, output to files in the sandbox.
    func start(_ args: [String], name: String, env: [String: String] = [:]) throws -> Process {
        let p = spawn(args, db: true, env: env)
        _ = FileManager.default.createFile(atPath: path + "/\(name).out", contents: nil)
        _ = FileManager.default.createFile(atPath: path + "/\(name).err", contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: path + "/\(name).out")
        p.standardError = FileHandle(forWritingAtPath: path + "/\(name).err")
        try p.run()
        return p
    }

    private func spawn(_ args: [String], db: Bool, env: [String: String]) -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: overseerBinary())
        p.arguments = args + (db ? ["--db", self.db] : [])
        var environment = ProcessInfo.processInfo.environment
        environment["NO_COLOR"] = "1"
        environment.removeValue(forKey: "OVERSEER_DB")
        for (k, v) in env { environment[k] = v }
        p.environment = environment
        p.currentDirectoryURL = URL(fileURLWithPath: path)
        return p
    }
}

/// Collects a pipe's bytes on a background thread.
final class Reader: @unchecked Sendable {
    // @unchecked: `data` is guarded by `lock`.
    private var data = Data()
    private let lock = NSLock()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                lock.withLock { data.append(chunk) }
            }
            done.signal()
        }
    }

    func text() -> String {
        done.wait()
        return lock.withLock { String(decoding: data, as: UTF8.self) }
    }
}

/// Waits until `condition` holds, polling, up to `seconds`.
func waitUntil(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}
