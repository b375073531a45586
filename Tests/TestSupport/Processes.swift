import Foundation

// Shared by the test targets: child processes (the probe, the CLI) and where they are built.

/// Where the package's executables are built.
public func productsDirectory() -> URL {
    let bundle = Bundle.main.bundleURL
    if FileManager.default.fileExists(atPath: bundle.appendingPathComponent("overseer-probe").path) { return bundle }
    // Fall back to the default build folder next to the sources.
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    return root.appendingPathComponent(".build/debug")
}

/// Runs blocking work (waiting for processes, sleeping) off Swift's cooperative pool.
public func runOffPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

/// Bytes appended by one thread and read by others.
public final class LockedBytes: @unchecked Sendable {
    // @unchecked: `bytes` is only touched under `lock`.
    private let lock = NSLock()
    private var bytes: [UInt8] = []
    public func append(_ data: Data) { lock.withLock { bytes.append(contentsOf: data) } }
    public var value: [UInt8] { lock.withLock { bytes } }
}

/// A child `overseer-probe` process whose stdout and stderr are collected as they arrive.
public final class ProbeProcess: @unchecked Sendable {
    // @unchecked: Process is used from one thread at a time; the buffers lock themselves.
    public let process: Process
    public let arguments: [String]
    private let out = LockedBytes()
    private let err = LockedBytes()
    private let readersDone = DispatchGroup()

    public static var executable: URL { productsDirectory().appendingPathComponent("overseer-probe") }

    /// Starts the probe with `arguments`.
    public convenience init(_ arguments: [String]) throws {
        try self.init(executable: ProbeProcess.executable.path, arguments)
    }

    /// Starts any executable (the CLI, for example) with `arguments`.
    public init(executable: String, _ arguments: [String]) throws {
        self.arguments = arguments
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        let stdout = Pipe()
        let stderr = Pipe()
        p.standardOutput = stdout
        p.standardError = stderr
        p.standardInput = FileHandle.nullDevice
        process = p
        try p.run()
        for (pipe, sink) in [(stdout, out), (stderr, err)] {
            let handle = pipe.fileHandleForReading
            readersDone.enter()
            Thread.detachNewThread { [readersDone] in
                while true {
                    let data = handle.availableData  // blocks until data or end of file
                    if data.isEmpty { break }
                    sink.append(data)
                }
                readersDone.leave()
            }
        }
    }

    public var pid: pid_t { process.processIdentifier }

    /// The complete lines of stdout received so far.
    public var lines: [String] {
        let bytes = out.value
        guard let lastNewline = bytes.lastIndex(of: 0x0A) else { return [] }
        return String(decoding: bytes[...lastNewline], as: UTF8.self).split(separator: "\n").map(String.init)
    }

    public var stderrText: String { String(decoding: err.value, as: UTF8.self) }

    /// Polls until stdout holds `count` lines or `timeout` passes; returns whether it did.
    public func waitForLines(_ count: Int, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if lines.count >= count { return true }
            if !process.isRunning { return lines.count >= count }
            usleep(2000)
        }
        return false
    }

    /// Waits for the process to end and for its output to be drained.
    public func waitForExit() -> (reason: Process.TerminationReason, status: Int32) {
        process.waitUntilExit()
        _ = readersDone.wait(timeout: .now() + 30)
        return (process.terminationReason, process.terminationStatus)
    }
}

