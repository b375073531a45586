import Foundation
import Synchronization

/// Progress and info: stderr only, so stdout stays one JSON result per line.
enum Progress {
    static func say(_ message: String) {
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }
}

/// One result line: `{"suite","name","value","unit","baseline","ratio"}`; baseline and ratio only
/// when a comparison applies.
struct BenchResult: Sendable {
    var suite: String
    var name: String
    var value: Double
    var unit: String
    var baseline: Double?
    var ratio: Double?

    var jsonLine: String {
        var s = "{\"suite\":\(Format.quoted(suite)),\"name\":\(Format.quoted(name)),\"value\":\(Format.number(value)),\"unit\":\(Format.quoted(unit))"
        if let baseline { s += ",\"baseline\":\(Format.number(baseline))" }
        if let ratio { s += ",\"ratio\":\(Format.number(ratio, digits: 3))" }
        return s + "}"
    }
}

/// `log --only verify`: sizes and where to keep the store.
struct VerifyOnly: Sendable {
    var facts: Int?
    /// A store kept between runs; nil for a temp store removed at the end.
    var store: String?
    var repetitions: Int?
}

/// Shared by every suite of one invocation.
final class BenchContext: Sendable {
    let quick: Bool
    /// Set for `log --only verify`.
    let verifyOnly: VerifyOnly?
    /// Set for `log --only append`: the append measurements alone.
    let appendOnly: Bool
    /// `--store`: which store the suites measure (LMDB figures come along as baselines).
    let store: BenchStoreKind
    /// With `--store postgres`: the server (`--url`, or a throwaway one).
    let postgres: BenchPostgres?
    /// A fresh directory for this run's stores; removed at the end.
    let root: String

    init(quick: Bool, verifyOnly: VerifyOnly? = nil, appendOnly: Bool = false, store: BenchStoreKind = .lmdb, postgres: BenchPostgres? = nil) throws {
        self.quick = quick
        self.verifyOnly = verifyOnly
        self.appendOnly = appendOnly
        self.store = store
        self.postgres = postgres
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array((base + "/overseer-bench.XXXXXX").utf8CString)
        guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw BenchError("cannot create a temp directory under \(base)")
        }
        root = String(cString: dir)
        Progress.say("temp dir \(root)")
    }

    /// A new, not yet existing path under the run's temp directory.
    func path(_ name: String) -> String { root + "/" + name }

    /// Prints one result on stdout (flushed at once, so partial runs still report).
    func emit(_ suite: String, _ name: String, value: Double, unit: String, baseline: Double? = nil, ratio: Double? = nil) {
        let line = BenchResult(suite: suite, name: name, value: value, unit: unit, baseline: baseline, ratio: ratio).jsonLine
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    func remove(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

    func cleanUp() {
        remove(root)
        postgres?.destroy()
    }

    /// The PostgreSQL server, for code that runs only with `--store postgres`.
    func requirePostgres() throws -> BenchPostgres {
        guard let postgres else { throw BenchError("this measurement needs --store postgres") }
        return postgres
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// The first three fields of /proc/loadavg: other work on the machine skews every figure.
func loadAverage() -> String {
    guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return "?" }
    return text.split(separator: " ").prefix(3).joined(separator: " ")
}

enum Stats {
    static func median(_ xs: [Double]) -> Double {
        precondition(!xs.isEmpty)
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Times `body` with ContinuousClock.
func measure<T>(_ body: () throws -> T) rethrows -> (T, Double) {
    let clock = ContinuousClock()
    let start = clock.now
    let value = try body()
    return (value, (clock.now - start).seconds)
}

func measureAsync<T>(_ body: () async throws -> T) async rethrows -> (T, Double) {
    let clock = ContinuousClock()
    let start = clock.now
    let value = try await body()
    return (value, (clock.now - start).seconds)
}

enum Format {
    static func quoted(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where c.value < 0x20: out += String(format: "\\u%04x", c.value)
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }

    /// Integers print without a fraction; others with up to `digits` decimals.
    static func number(_ x: Double, digits: Int = 2) -> String {
        if !x.isFinite { return "null" }
        if abs(x) >= 1000 { return String(Int64(x.rounded())) }
        var s = String(format: "%.\(digits)f", x)
        while s.contains("."), s.hasSuffix("0") { s.removeLast() }
        if s.hasSuffix(".") { s.removeLast() }
        return s
    }

    static func seconds(_ d: Duration) -> String { String(format: "%.2f s", d.seconds) }

    /// 10000 -> "10k", 1000000 -> "1M".
    static func count(_ n: Int) -> String {
        if n >= 1_000_000, n % 1_000_000 == 0 { return "\(n / 1_000_000)M" }
        if n >= 1000, n % 1000 == 0 { return "\(n / 1000)k" }
        return "\(n)"
    }
}

/// This process's memory, from /proc/self/status (kB values, returned in bytes).
enum ProcessMemory {
    static func field(_ name: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            let digits = line.dropFirst(name.count + 1).filter { $0.isNumber }
            return Int(digits).map { $0 * 1024 }
        }
        return nil
    }

    /// User and system CPU time of the whole process so far (every thread, the sampler's too).
    static var cpuSeconds: Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6 + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6
    }

    static var rss: Int { field("VmRSS") ?? 0 }
    static var hwm: Int { field("VmHWM") ?? 0 }
    /// Anonymous (heap, stacks) part of the RSS; excludes pages of mapped files such as data.mdb.
    static var anon: Int { field("RssAnon") ?? 0 }
    /// Mapped-file part of the RSS (LMDB's read-only map of data.mdb lands here).
    static var file: Int { field("RssFile") ?? 0 }

    /// Several fields from one read of /proc/self/status (bytes, 0 when missing), parsed without
    /// building strings: the memory sampler calls this every few milliseconds, on the same two
    /// cores as what it measures.
    static func fields(_ names: [StaticString]) -> [Int] {
        var out = [Int](repeating: 0, count: names.count)
        var buffer = [UInt8](repeating: 0, count: 8192)
        let fd = open("/proc/self/status", O_RDONLY)
        guard fd >= 0 else { return out }
        defer { close(fd) }
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return out }
        var lineStart = 0
        for i in 0..<n where buffer[i] == 0x0A || i == n - 1 {
            for (k, name) in names.enumerated() {
                let len = name.utf8CodeUnitCount
                guard i - lineStart > len, buffer[lineStart + len] == UInt8(ascii: ":"),
                    memcmp(buffer.withUnsafeBytes { $0.baseAddress! + lineStart }, name.utf8Start, len) == 0
                else { continue }
                var v = 0
                for j in (lineStart + len + 1)..<i where buffer[j] >= 0x30 && buffer[j] <= 0x39 {
                    v = v * 10 + Int(buffer[j] - 0x30)
                }
                out[k] = v * 1024
            }
            lineStart = i + 1
        }
        return out
    }

    /// Resets VmHWM to the current RSS (Linux: writing 5 to /proc/self/clear_refs). False if refused.
    static func resetPeak() -> Bool {
        guard let h = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? h.close() }
        do { try h.write(contentsOf: Data("5".utf8)) } catch { return false }
        return true
    }
}

/// Samples RSS parts on a background thread, keeping the maxima (RssAnon has no kernel peak).
final class MemorySampler: Sendable {
    private let state = Mutex<(stop: Bool, maxAnon: Int, maxFile: Int, maxRSS: Int)>((false, 0, 0, 0))
    private let finished = DispatchSemaphore(value: 0)

    init(interval: Duration = .milliseconds(5)) {
        let t = Thread { [self] in
            let micros = UInt32(interval.seconds * 1e6)
            while true {
                let f = ProcessMemory.fields(["RssAnon", "RssFile", "VmRSS"])
                let anon = f[0], file = f[1], rss = f[2]
                let stop = state.withLock { s -> Bool in
                    s.maxAnon = max(s.maxAnon, anon)
                    s.maxFile = max(s.maxFile, file)
                    s.maxRSS = max(s.maxRSS, rss)
                    return s.stop
                }
                if stop { break }
                usleep(micros)
            }
            finished.signal()
        }
        t.start()
    }

    /// Stops sampling; returns the maxima seen (bytes).
    func stop() -> (anon: Int, file: Int, rss: Int) {
        state.withLock { $0.stop = true }
        finished.wait()
        return state.withLock { ($0.maxAnon, $0.maxFile, $0.maxRSS) }
    }
}
