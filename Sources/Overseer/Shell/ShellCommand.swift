import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A program to run as a child process, with its arguments: never through a shell string.
///
/// ```swift
/// let result = try await ShellCommand(["printf", "%s", userInput]).run()
/// result.exitCode      // 0
/// result.stdoutTail    // userInput, verbatim
/// ```
///
/// `argv[0]` is looked up in `PATH` (the child's, so `environment` may change it) when it has no
/// `/`, like `execvp`; otherwise it is a path, relative to ``cwd`` when that is set. The child
/// runs in its own process group, with stdin from `/dev/null`, default dispositions for the
/// usual termination signals (the worker ignores SIGTERM and SIGINT, and ignored signals would
/// otherwise be inherited) and an empty signal mask. Only descriptors 0, 1 and 2 are inherited.
public struct ShellCommand: Sendable, Hashable {
    /// The program and its arguments; `argv[0]` is the program.
    public var argv: [String]
    /// Variables added to (or replacing) this process's environment for the child.
    public var environment: [String: String]
    /// The directory the child runs in; `nil` means this process's.
    public var cwd: String?

    /// How many bytes of each of stdout and stderr are kept: the last 64 KiB.
    public static let tailLimit = 64 * 1024

    /// After the program exits, how long to keep reading output that processes it left behind
    /// (holding the pipes open) may still write.
    static let drainWindow: Duration = .milliseconds(250)

    public init(_ argv: [String], environment: [String: String] = [:], cwd: String? = nil) {
        self.argv = argv
        self.environment = environment
        self.cwd = cwd
    }

    /// Runs the command to its end and returns how it ended, with the last 64 KiB of its output.
    ///
    /// When the calling task is cancelled (or `timeout` passes) before the program exits, its
    /// whole process group gets SIGTERM, and SIGKILL `killGrace` later if the program is still
    /// running then (or, once it has exited, if other processes of its group are still holding its
    /// output open). The result is still returned, marked ``ShellResult/cancelled`` (or
    /// ``ShellResult/timedOut``). Processes the program leaves running after a normal exit are
    /// not signalled.
    ///
    /// Throws ``ShellError`` when the program cannot be started, and `CancellationError` when
    /// the task was already cancelled (then nothing is started). The blocking waits happen on two
    /// dedicated threads, not on the concurrency pool.
    public func run(timeout: Duration? = nil, killGrace: Duration = .seconds(5)) async throws -> ShellResult {
        try Task.checkCancellation()
        let process = try ShellProcess.spawn(self)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ShellResult, Never>) in
                process.start(timeout: timeout, killGrace: killGrace, continuation: continuation)
            }
        } onCancel: {
            process.cancel()
        }
    }
}

/// How a ``ShellCommand`` ended.
public struct ShellResult: Sendable, Hashable {
    /// The exit status, when the program exited normally.
    public var exitCode: Int32?
    /// The signal that killed the program, when one did.
    public var signal: Int32?
    /// Whether the program dumped core when it was killed.
    public var coreDumped: Bool
    /// The last 64 KiB of stdout (invalid UTF-8 repaired, cut at a character boundary).
    public var stdoutTail: String
    /// The last 64 KiB of stderr.
    public var stderrTail: String
    /// All bytes the program wrote to stdout, kept or not.
    public var stdoutBytes: Int
    /// All bytes the program wrote to stderr, kept or not.
    public var stderrBytes: Int
    /// From the start of the program until it was reaped.
    public var duration: Duration
    /// The program's process id, which was also its process group id.
    public var pid: Int32
    /// The calling task was cancelled while the program ran, so its group was terminated.
    public var cancelled: Bool
    /// The `timeout` given to ``ShellCommand/run(timeout:killGrace:)`` passed, so its group was
    /// terminated.
    public var timedOut: Bool
    /// The group was sent SIGKILL, after the kill grace.
    public var killedAfterGrace: Bool

    /// The program exited with status 0.
    public var succeeded: Bool { exitCode == 0 }
    /// The program was stopped because of a cancellation or timeout.
    public var terminated: Bool { cancelled || timedOut }
    /// Some of stdout was dropped from ``stdoutTail``.
    public var stdoutTruncated: Bool { stdoutBytes > ShellCommand.tailLimit }
    /// Some of stderr was dropped from ``stderrTail``.
    public var stderrTruncated: Bool { stderrBytes > ShellCommand.tailLimit }

    public init(
        exitCode: Int32?, signal: Int32?, coreDumped: Bool = false, stdoutTail: String, stderrTail: String,
        stdoutBytes: Int? = nil, stderrBytes: Int? = nil, duration: Duration, pid: Int32 = 0, cancelled: Bool = false,
        timedOut: Bool = false, killedAfterGrace: Bool = false
    ) {
        self.exitCode = exitCode
        self.signal = signal
        self.coreDumped = coreDumped
        self.stdoutTail = stdoutTail
        self.stderrTail = stderrTail
        self.stdoutBytes = stdoutBytes ?? stdoutTail.utf8.count
        self.stderrBytes = stderrBytes ?? stderrTail.utf8.count
        self.duration = duration
        self.pid = pid
        self.cancelled = cancelled
        self.timedOut = timedOut
        self.killedAfterGrace = killedAfterGrace
    }

    /// "exited with status 3", "killed by signal 9 (SIGKILL)".
    public var statusDescription: String {
        if let exitCode { return "exited with status \(exitCode)" }
        if let signal {
            let name = ShellResult.signalName(signal).map { " (\($0))" } ?? ""
            return "killed by signal \(signal)\(name)\(coreDumped ? ", core dumped" : "")"
        }
        return "ended with an unknown status"
    }

    /// The last non-empty line of stderr, capped at 500 characters; empty if there is none.
    public var lastStderrLine: String {
        let lines = stderrTail.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" })
        guard let line = lines.last(where: { !$0.allSatisfy(\.isWhitespace) }) else { return "" }
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        return trimmed.count > 500 ? String(trimmed.prefix(500)) + "…" : trimmed
    }

    /// The conventional name of a signal number, such as `SIGKILL`.
    public static func signalName(_ signal: Int32) -> String? {
        switch signal {
        case SIGHUP: "SIGHUP"
        case SIGINT: "SIGINT"
        case SIGQUIT: "SIGQUIT"
        case SIGILL: "SIGILL"
        case SIGTRAP: "SIGTRAP"
        case SIGABRT: "SIGABRT"
        case SIGBUS: "SIGBUS"
        case SIGFPE: "SIGFPE"
        case SIGKILL: "SIGKILL"
        case SIGUSR1: "SIGUSR1"
        case SIGSEGV: "SIGSEGV"
        case SIGUSR2: "SIGUSR2"
        case SIGPIPE: "SIGPIPE"
        case SIGALRM: "SIGALRM"
        case SIGTERM: "SIGTERM"
        case SIGCHLD: "SIGCHLD"
        case SIGCONT: "SIGCONT"
        case SIGSTOP: "SIGSTOP"
        case SIGTSTP: "SIGTSTP"
        case SIGTTIN: "SIGTTIN"
        case SIGTTOU: "SIGTTOU"
        case SIGURG: "SIGURG"
        case SIGXCPU: "SIGXCPU"
        case SIGXFSZ: "SIGXFSZ"
        case SIGVTALRM: "SIGVTALRM"
        case SIGPROF: "SIGPROF"
        case SIGWINCH: "SIGWINCH"
        case SIGSYS: "SIGSYS"
        default: nil
        }
    }
}

/// Why a ``ShellCommand`` could not be started.
public struct ShellError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        /// The command is empty, or its program is an empty string.
        case emptyCommand
        /// An argument or environment variable cannot be passed to a program (it contains a NUL
        /// byte, or a variable name is empty or contains `=`).
        case invalidArgument
        /// The program was not found (in `PATH`, or at its path).
        case notFound
        /// The program exists but cannot be executed (permissions, format).
        case notExecutable
        /// The working directory does not exist or cannot be entered.
        case badDirectory
        /// Another operating system failure (pipes, spawning).
        case system
    }

    public let code: Code
    /// The command, as given.
    public let command: [String]
    /// The operating system's error number, when there is one.
    public let errno: Int32?
    /// A sentence naming the program and the reason.
    public let message: String
    public var description: String { message }

    public init(code: Code, command: [String], errno: Int32? = nil, message: String) {
        self.code = code
        self.command = command
        self.errno = errno
        self.message = message
    }
}

// MARK: - Output tails

/// Keeps the last `limit` bytes appended to it.
struct TailBuffer {
    let limit: Int
    private var bytes: [UInt8] = []
    /// Every byte appended.
    private(set) var total = 0

    init(limit: Int = ShellCommand.tailLimit) { self.limit = limit }

    mutating func append(_ chunk: UnsafeRawBufferPointer) {
        total += chunk.count
        if chunk.count >= limit {
            bytes = Array(chunk.suffix(limit))
            return
        }
        bytes.append(contentsOf: chunk)
        // Compact only when twice the limit is held, so each byte is moved at most once or twice.
        if bytes.count > 2 * limit { bytes.removeFirst(bytes.count - limit) }
    }

    /// The kept bytes.
    var tail: ArraySlice<UInt8> { bytes.suffix(limit) }

    /// The kept bytes as text: invalid UTF-8 repaired, and at most `limit` bytes of UTF-8 that
    /// start at a character boundary (a tail may start inside a multi-byte sequence).
    var string: String { TailBuffer.text(tail, limit: limit) }

    static func text(_ raw: some Collection<UInt8>, limit: Int) -> String {
        var start = raw.startIndex
        // Skip continuation bytes at the front, left over from a character cut in two.
        var skipped = 0
        while start != raw.endIndex, skipped < 3, raw[start] & 0xC0 == 0x80 {
            start = raw.index(after: start)
            skipped += 1
        }
        let repaired = String(decoding: raw[start...], as: UTF8.self)
        return cap(repaired, bytes: limit)
    }

    /// The end of `text`, at most `bytes` bytes of UTF-8, starting at a scalar boundary.
    static func cap(_ text: String, bytes: Int) -> String {
        let utf8 = Array(text.utf8)
        guard utf8.count > bytes else { return text }
        var start = utf8.count - bytes
        while start < utf8.count, utf8[start] & 0xC0 == 0x80 { start += 1 }
        return String(decoding: utf8[start...], as: UTF8.self)
    }
}

// MARK: - The child process

/// One spawned child: the read ends of its output pipes, a wake-up pipe, and the flags that the
/// two threads watching it and the cancellation handler share.
final class ShellProcess: Sendable {
    let pid: pid_t
    let command: [String]
    private let stdoutFD: Int32
    private let stderrFD: Int32
    /// Written to (one byte, non-blocking) to wake the monitor thread's poll. Closed only in
    /// deinit, so a late cancel() can never write into a reused descriptor.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let started: ContinuousClock.Instant

    private struct Flags {
        var cancelRequested = false
        var exited = false
        /// waitid saw the exit and left the child a zombie, so its pid (and group id) stays
        /// reserved until it is reaped: the group may be signalled until then.
        var reapable = false
    }
    private let flags = Mutex(Flags())

    private init(pid: pid_t, command: [String], stdoutFD: Int32, stderrFD: Int32, wake: (Int32, Int32), started: ContinuousClock.Instant) {
        self.pid = pid
        self.command = command
        self.stdoutFD = stdoutFD
        self.stderrFD = stderrFD
        self.wakeRead = wake.0
        self.wakeWrite = wake.1
        self.started = started
    }

    deinit {
        _ = close(wakeRead)
        _ = close(wakeWrite)
    }

    /// Asks for the group to be terminated (ignored once the program has exited).
    func cancel() {
        flags.withLock { $0.cancelRequested = true }
        wake()
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)  // non-blocking; a full pipe is already a pending wake-up
    }

    /// Starts the waiter and monitor threads; the continuation is resumed with the result.
    func start(timeout: Duration?, killGrace: Duration, continuation: CheckedContinuation<ShellResult, Never>) {
        let waiter = Thread { [self] in
            var info = siginfo_t()
            // WNOWAIT: see the exit without reaping, so the group id stays valid for kill(2).
            var ok = true
            while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0 {
                if errno != EINTR {
                    ok = false
                    break
                }
            }
            flags.withLock {
                $0.exited = true
                $0.reapable = ok
            }
            wake()
        }
        waiter.name = "overseer-shell-wait"
        let monitor = Thread { [self] in
            continuation.resume(returning: monitorLoop(timeout: timeout, killGrace: killGrace))
        }
        monitor.name = "overseer-shell-io"
        waiter.start()
        monitor.start()
    }

    /// Reads both pipes until the program has exited and its output is drained, signalling the
    /// group on cancellation or timeout, then reaps the program.
    private func monitorLoop(timeout: Duration?, killGrace: Duration) -> ShellResult {
        let clock = ContinuousClock()
        var tails = [TailBuffer(), TailBuffer()]
        var fds = [
            pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0),
            pollfd(fd: stderrFD, events: Int16(POLLIN), revents: 0),
            pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
        ]
        let timeoutDeadline = timeout.map { started + $0 }
        var cancelled = false
        var timedOut = false
        var terminatedAt: ContinuousClock.Instant?
        var killedAt: ContinuousClock.Instant?
        var exitedAt: ContinuousClock.Instant?
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)

        while true {
            let now = clock.now
            let (cancelRequested, exited) = flags.withLock { ($0.cancelRequested, $0.exited) }
            if exited, exitedAt == nil { exitedAt = now }
            if terminatedAt == nil, exitedAt == nil {
                if cancelRequested {
                    cancelled = true
                } else if let deadline = timeoutDeadline, now >= deadline {
                    timedOut = true
                }
                if cancelled || timedOut {
                    _ = kill(-pid, SIGTERM)
                    terminatedAt = now
                }
            }
            if let terminatedAt, killedAt == nil, now >= terminatedAt + killGrace {
                _ = kill(-pid, SIGKILL)
                killedAt = now
            }

            var deadlines: [ContinuousClock.Instant] = []
            let drained = fds[0].fd < 0 && fds[1].fd < 0
            if let exitedAt {
                if drained { break }
                if let terminatedAt {
                    // Terminated: others in the group hold the output open; they get the rest of
                    // the grace, then SIGKILL, then a short drain.
                    if let killedAt {
                        let end = max(exitedAt, killedAt) + ShellCommand.drainWindow
                        if now >= end { break }
                        deadlines.append(end)
                    } else {
                        deadlines.append(terminatedAt + killGrace)
                    }
                } else {
                    let end = exitedAt + ShellCommand.drainWindow
                    if now >= end { break }
                    deadlines.append(end)
                }
            } else {
                if terminatedAt == nil, let timeoutDeadline { deadlines.append(timeoutDeadline) }
                if let terminatedAt, killedAt == nil { deadlines.append(terminatedAt + killGrace) }
            }

            var wait: Int32 = -1
            if let next = deadlines.min() {
                let left = next - now
                let (seconds, attoseconds) = left.components
                let ms = max(0, seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
                wait = Int32(clamping: ms)
            }
            for i in fds.indices { fds[i].revents = 0 }
            let ready = poll(&fds, nfds_t(fds.count), wait)
            if ready < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                break  // cannot happen with valid descriptors; stop rather than spin
            }
            for i in 0..<2 where fds[i].fd >= 0 && fds[i].revents != 0 {
                let n = chunk.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    chunk.withUnsafeBytes { tails[i].append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    _ = close(fds[i].fd)
                    fds[i].fd = -1
                }
            }
            if fds[2].revents != 0 {
                while chunk.withUnsafeMutableBytes({ read(wakeRead, $0.baseAddress, $0.count) }) > 0 {}
            }
        }
        for i in 0..<2 where fds[i].fd >= 0 { _ = close(fds[i].fd) }

        let reapable = flags.withLock { $0.reapable }
        // A terminated program is gone; anything left in its group (stragglers that closed their
        // output) goes too. The zombie still reserves the group id, so this cannot hit another group.
        if reapable, terminatedAt != nil, killedAt == nil {
            _ = kill(-pid, SIGKILL)
        }
        var status: Int32 = 0
        var reaped = false
        while true {
            let r = waitpid(pid, &status, 0)
            if r == pid {
                reaped = true
                break
            }
            if r < 0, errno == EINTR { continue }
            break
        }
        let duration = clock.now - started

        var exitCode: Int32?
        var signal: Int32?
        var core = false
        if reaped {
            let low = status & 0x7F
            if low == 0 {
                exitCode = (status >> 8) & 0xFF
            } else if low != 0x7F {
                signal = low
                core = status & 0x80 != 0
            }
        }
        return ShellResult(
            exitCode: exitCode, signal: signal, coreDumped: core, stdoutTail: tails[0].string,
            stderrTail: tails[1].string, stdoutBytes: tails[0].total, stderrBytes: tails[1].total,
            duration: duration, pid: pid, cancelled: cancelled, timedOut: timedOut, killedAfterGrace: killedAt != nil)
    }

    // MARK: Spawning

    static func spawn(_ command: ShellCommand) throws(ShellError) -> ShellProcess {
        let argv = command.argv
        func fail(_ code: ShellError.Code, _ errno: Int32? = nil, _ text: String) -> ShellError {
            ShellError(code: code, command: argv, errno: errno, message: text)
        }
        guard let program = argv.first, !program.isEmpty else {
            throw fail(.emptyCommand, nil, "cannot run an empty command: the program (argv[0]) is missing or empty")
        }
        let shown = quoted(program)
        for (i, arg) in argv.enumerated() where arg.utf8.contains(0) {
            throw fail(.invalidArgument, nil, "cannot run \(shown): argument \(i) contains a NUL byte")
        }
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in command.environment {
            if key.isEmpty || key.utf8.contains(UInt8(ascii: "=")) || key.utf8.contains(0) {
                throw fail(.invalidArgument, nil, "cannot run \(shown): invalid environment variable name \(quoted(key))")
            }
            if value.utf8.contains(0) {
                throw fail(.invalidArgument, nil, "cannot run \(shown): environment variable \(key) contains a NUL byte")
            }
            environment[key] = value
        }

        if let cwd = command.cwd {
            var info = stat()
            if stat(cwd, &info) != 0 {
                let e = errno
                throw fail(.badDirectory, e, "cannot run \(shown): working directory \(quoted(cwd)): \(errorText(e))")
            }
            if info.st_mode & S_IFMT != S_IFDIR {
                throw fail(.badDirectory, ENOTDIR, "cannot run \(shown): working directory \(quoted(cwd)): \(errorText(ENOTDIR))")
            }
            if access(cwd, X_OK) != 0 {
                let e = errno
                throw fail(.badDirectory, e, "cannot run \(shown): working directory \(quoted(cwd)): \(errorText(e))")
            }
        }

        let path = try resolve(program, path: environment["PATH"], cwd: command.cwd, fail: fail)

        // The pipes: close-on-exec in this process (so concurrent spawns elsewhere do not
        // inherit them), dup'ed onto 1 and 2 in the child.
        let out = try makePipe(fail)
        let err: (Int32, Int32)
        let wake: (Int32, Int32)
        do {
            err = try makePipe(fail)
        } catch {
            closeAll(out.0, out.1)
            throw error
        }
        do {
            wake = try makePipe(fail)
        } catch {
            closeAll(out.0, out.1, err.0, err.1)
            throw error
        }
        for fd in [out.0, err.0, wake.0, wake.1] { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }

        let actions = UnsafeMutablePointer<posix_spawn_file_actions_t>.allocate(capacity: 1)
        let attributes = UnsafeMutablePointer<posix_spawnattr_t>.allocate(capacity: 1)
        posix_spawn_file_actions_init(actions)
        posix_spawnattr_init(attributes)
        defer {
            posix_spawn_file_actions_destroy(actions)
            posix_spawnattr_destroy(attributes)
            actions.deallocate()
            attributes.deallocate()
        }
        if let cwd = command.cwd {
            guard let addchdir = Native.addchdir else {
                closeAll(out.0, out.1, err.0, err.1, wake.0, wake.1)
                throw fail(.system, nil, "cannot run \(shown) in \(quoted(cwd)): this C library has no posix_spawn_file_actions_addchdir_np (glibc 2.29 or later is needed)")
            }
            _ = addchdir(actions, cwd)
        }
        posix_spawn_file_actions_addopen(actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(actions, out.1, 1)
        posix_spawn_file_actions_adddup2(actions, err.1, 2)
        if let closefrom = Native.addclosefrom { _ = closefrom(actions, 3) }

        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGCHLD] {
            sigaddset(&defaults, sig)
        }
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigdefault(attributes, &defaults)
        posix_spawnattr_setsigmask(attributes, &mask)
        posix_spawnattr_setpgroup(attributes, 0)
        posix_spawnattr_setflags(attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let cEnv: [UnsafeMutablePointer<CChar>?] = environment.keys.sorted().map { strdup("\($0)=\(environment[$0]!)") } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        var pid: pid_t = 0
        let started = ContinuousClock.now
        let rc = posix_spawn(&pid, path, actions, attributes, cArgs, cEnv)
        closeAll(out.1, err.1)
        if rc != 0 {
            closeAll(out.0, err.0, wake.0, wake.1)
            let where_ = path == program ? "" : " (\(path))"
            let code: ShellError.Code =
                switch rc {
                case ENOENT, ENOTDIR: .notFound
                case EACCES, ENOEXEC, EPERM, EISDIR, ETXTBSY: .notExecutable
                default: .system
                }
            throw fail(code, rc, "cannot run \(shown)\(where_): \(errorText(rc))")
        }
        return ShellProcess(pid: pid, command: argv, stdoutFD: out.0, stderrFD: err.0, wake: wake, started: started)
    }

    /// Where `program` is: itself when it contains `/` (relative to the child's working
    /// directory), else the first executable regular file named so in `PATH`, like `execvp`.
    private static func resolve(
        _ program: String, path: String?, cwd: String?, fail: (ShellError.Code, Int32?, String) -> ShellError
    ) throws(ShellError) -> String {
        if program.contains("/") { return program }
        let search = path ?? "/bin:/usr/bin"
        var denied = false
        for dir in search.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = dir.isEmpty ? program : "\(dir)/\(program)"
            // Relative entries are relative to the child's directory.
            let checked = candidate.hasPrefix("/") || cwd == nil ? candidate : "\(cwd!)/\(candidate)"
            var info = stat()
            guard stat(checked, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
            if access(checked, X_OK) == 0 { return checked }
            denied = true
        }
        if denied {
            throw fail(.notExecutable, EACCES, "cannot run \(quoted(program)): \(errorText(EACCES)) (found in PATH, but not executable)")
        }
        throw fail(.notFound, ENOENT, "cannot run \(quoted(program)): \(errorText(ENOENT)) (not found in PATH \(quoted(search)))")
    }

    /// A pipe with both ends close-on-exec and above 2 (so that dup2 onto 0–2 in the child
    /// cannot clobber them, even when this process runs with a standard descriptor closed).
    private static func makePipe(_ fail: (ShellError.Code, Int32?, String) -> ShellError) throws(ShellError) -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        let rc: Int32
        if let pipe2 = Native.pipe2 {
            rc = fds.withUnsafeMutableBufferPointer { pipe2($0.baseAddress!, O_CLOEXEC) }
        } else {
            rc = pipe(&fds)
            if rc == 0 { for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) } }
        }
        if rc != 0 {
            let e = errno
            throw fail(.system, e, "cannot create a pipe: \(errorText(e))")
        }
        for i in 0..<2 where fds[i] <= 2 {
            let moved = fcntl(fds[i], F_DUPFD_CLOEXEC, 3)
            _ = close(fds[i])
            fds[i] = moved
        }
        if fds[0] < 0 || fds[1] < 0 {
            let e = errno
            closeAll(fds[0], fds[1])
            throw fail(.system, e, "cannot create a pipe: \(errorText(e))")
        }
        return (fds[0], fds[1])
    }

    private static func closeAll(_ fds: Int32...) {
        for fd in fds where fd >= 0 { _ = close(fd) }
    }

    static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }

    static func quoted(_ s: String) -> String {
        "'" + s.replacingOccurrences(of: "\n", with: "\\n") + "'"
    }
}

/// glibc functions that Swift's Glibc module does not import (they are GNU extensions), looked
/// up once at run time.
private enum Native {
    typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32

    /// glibc 2.29+.
    static let addchdir: AddChdir? = symbol("posix_spawn_file_actions_addchdir_np")
    /// glibc 2.34+.
    static let addclosefrom: AddCloseFrom? = symbol("posix_spawn_file_actions_addclosefrom_np")
    static let pipe2: Pipe2? = symbol("pipe2")

    private static func symbol<T>(_ name: String) -> T? {
        guard let p = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { return nil }
        return unsafeBitCast(p, to: T.self)
    }
}
