#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A pipeline file: a named ``JobGraph`` whose jobs are shell commands.
///
/// ```json
/// { "name": "nightly",
///   "jobs": {
///     "start":   { "command": ["sh", "-c", "echo start"] },
///     "result1": { "after": ["start"], "command": ["./compute", "1"], "retries": 2, "timeout": 60 },
///     "result2": { "after": ["start"], "command": ["./compute", "2"] },
///     "finish":  { "after": ["result1", "result2"], "command": ["./publish"] }
///   } }
/// ```
///
/// ```swift
/// let pipeline = try Pipeline.load(path: "nightly.json")
/// pipeline.graph.topologicalOrder()   // ["start", "result1", "result2", "finish"]
/// ```
///
/// Top-level fields: `name` (required; the same rules as job type names), `jobs` (required; an
/// object of job name to ``PipelineJob``) and `description` (optional string). Any other field is
/// an error, with a suggestion when it looks like a misspelling.
public struct Pipeline: Sendable, Hashable {
    /// The pipeline's name.
    public var name: String
    /// The text of the optional `description` field.
    public var description: String?
    /// The jobs, by job type name.
    public var jobs: [String: PipelineJob]

    /// Creates a pipeline in code; ``load(path:)`` and ``parse(_:file:)`` read one from JSON.
    public init(name: String, description: String? = nil, jobs: [String: PipelineJob]) {
        self.name = name
        self.description = description
        self.jobs = jobs
    }

    /// The dependency graph of the jobs: each job type and the job types in its `after`.
    public var graph: JobGraph {
        JobGraph(jobs.mapValues(\.after))
    }

    /// The largest pipeline file accepted, in bytes (16 MiB).
    public static let maximumFileSize = 16 << 20

    /// Reads and checks the pipeline file at `path`.
    ///
    /// Throws ``PipelineError`` with code `.unreadable` (and the operating system's reason) when
    /// the file cannot be read, `.tooLarge` beyond ``maximumFileSize``, and otherwise as
    /// ``parse(_:file:)`` does, naming the file by `path`.
    public static func load(path: String) throws(PipelineError) -> Pipeline {
        let bytes = try readFile(path)
        return try parse(bytes, file: path)
    }

    /// Parses and checks a pipeline from the bytes of a JSON file; `file` names it in errors.
    ///
    /// Every problem is a ``PipelineError`` whose message starts with `file`: malformed JSON
    /// gives `file:line:column: what`; a bad field names the job and the field
    /// (`"pipeline.json: job 'result1': field 'retries' must be an integer from 0 to 1000, got -1"`);
    /// a bad graph (unknown job in `after`, a cycle, …) is the ``GraphError`` message after the
    /// file name. Fields and jobs are checked in name order, so a file always reports the same
    /// first error.
    public static func parse(_ bytes: [UInt8], file: String) throws(PipelineError) -> Pipeline {
        if bytes.count > maximumFileSize {
            throw PipelineError.tooLarge(file: file, size: bytes.count)
        }
        let root: JSONValue
        do {
            root = try JSONValue.parse(bytes)
        } catch {
            throw PipelineError(
                code: .malformed, file: file, line: error.line, column: error.column,
                message: "\(file):\(error.line):\(error.column): \(error.message)")
        }
        let reader = FieldReader(file: file, job: nil)
        guard case .object(let top) = root else {
            throw reader.error(
                .invalidField, field: nil,
                "the top level must be an object with the fields 'name' and 'jobs', got \(describe(root))")
        }
        try reader.rejectUnknown(top, known: ["name", "jobs", "description"], prefix: "")

        guard let nameValue = top["name"] else {
            throw reader.error(.missingField, field: "name", "missing required field 'name' (the pipeline's name)")
        }
        guard case .string(let name) = nameValue else {
            throw reader.error(
                .invalidField, field: "name", "field 'name' must be a string, got \(describe(nameValue))")
        }
        if let problem = JobGraph.nameProblem(name) {
            throw reader.error(
                .invalidField, field: "name",
                "invalid pipeline name \(problem.shown) in field 'name': \(problem.reason)")
        }
        var description: String?
        if let value = top["description"] {
            guard case .string(let text) = value else {
                throw reader.error(
                    .invalidField, field: "description", "field 'description' must be a string, got \(describe(value))")
            }
            description = text
        }
        guard let jobsValue = top["jobs"] else {
            throw reader.error(
                .missingField, field: "jobs", "missing required field 'jobs' (an object of job name to job)")
        }
        guard case .object(let jobObjects) = jobsValue else {
            throw reader.error(
                .invalidField, field: "jobs",
                "field 'jobs' must be an object of job name to job, got \(describe(jobsValue))")
        }
        var jobs: [String: PipelineJob] = [:]
        jobs.reserveCapacity(jobObjects.count)
        for jobName in jobObjects.keys.sorted() {
            let jobReader = FieldReader(file: file, job: jobName)
            jobs[jobName] = try jobReader.job(jobObjects[jobName] ?? .null)
        }

        let pipeline = Pipeline(name: name, description: description, jobs: jobs)
        do {
            try pipeline.graph.validate()
        } catch {
            let field: String? =
                switch error.code {
                case .unknownParent, .selfDependency, .duplicateParent, .cycle: "after"
                case .empty: "jobs"
                case .invalidName, .duplicateType, .missingHandler: nil
                }
            throw PipelineError(
                code: .graph, file: file, job: error.job, field: field, message: "\(file): \(error.message)",
                graphError: error)
        }
        return pipeline
    }
}

/// One job of a ``Pipeline``: the command to run and how to run it.
///
/// In JSON, only `command` is required:
/// `{ "after": ["start"], "command": ["./compute", "1"], "retries": 2, "timeout": 60 }`.
public struct PipelineJob: Sendable, Hashable {
    /// The job types this job waits for (`after`); default none.
    public var after: [String]
    /// The program and its arguments (`command`), run without a shell; non-empty, and the
    /// program is not an empty string. Use `["sh", "-c", "…"]` for a shell line.
    public var command: [String]
    /// Extra attempts after the first fails (`retries`), 0...1000; default 0.
    public var retries: Int
    /// How long to wait between attempts (`backoff`); `nil` means the runner's default.
    ///
    /// In JSON either a number (the first delay in seconds) or
    /// `{"initial": 1, "max": 300, "multiplier": 2}` with every key optional.
    public var backoff: Backoff?
    /// The longest one attempt may run, in seconds (`timeout`); `nil` means no limit.
    public var timeout: Double?
    /// The job's priority among ready jobs (`priority`), -1000...1000; default 0.
    public var priority: Int
    /// How many jobs of this type may run at once (`max_concurrent`), 1 or more; `nil` means no limit.
    public var maxConcurrent: Int?
    /// Variables added to the command's environment (`env`); default none.
    public var env: [String: String]
    /// The directory to run the command in (`cwd`); `nil` means the runner's own.
    public var cwd: String?

    /// Creates a job in code, with the same defaults as a pipeline file.
    public init(
        command: [String], after: [String] = [], retries: Int = 0, backoff: Backoff? = nil,
        timeout: Double? = nil, priority: Int = 0, maxConcurrent: Int? = nil, env: [String: String] = [:],
        cwd: String? = nil
    ) {
        self.after = after
        self.command = command
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.priority = priority
        self.maxConcurrent = maxConcurrent
        self.env = env
        self.cwd = cwd
    }
}

/// Exponential backoff between attempts: wait `initial` seconds, then multiply the wait by
/// `multiplier` after each failure, never waiting more than `max`.
public struct Backoff: Sendable, Hashable {
    /// The first wait, in seconds; default 1.
    public var initial: Double
    /// The longest wait, in seconds; default 300 (or `initial`, if that is larger).
    public var max: Double
    /// The factor applied to the wait after each failure; default 2.
    public var multiplier: Double

    /// Creates a backoff; the defaults match a pipeline file's.
    public init(initial: Double = 1, max: Double = 300, multiplier: Double = 2) {
        self.initial = initial
        self.max = max
        self.multiplier = multiplier
    }
}

/// Why a pipeline file could not be loaded: a stable ``code``, where (file, and line and column
/// for malformed JSON; job and field for a bad value), and a message that says all of it.
public struct PipelineError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of problem; stable across releases.
    public enum Code: String, Sendable {
        /// The file could not be opened or read; the message gives the operating system's reason.
        case unreadable
        /// The file is larger than ``Pipeline/maximumFileSize``.
        case tooLarge
        /// The file is not valid JSON; ``PipelineError/line`` and ``PipelineError/column`` say where.
        case malformed
        /// A field has the wrong type or an out-of-range value.
        case invalidField
        /// An object has a field the format does not define.
        case unknownField
        /// A required field is absent.
        case missingField
        /// The jobs do not form a valid graph; ``PipelineError/graphError`` has the details.
        case graph
    }

    /// The kind of problem.
    public let code: Code
    /// The file, as named to ``Pipeline/load(path:)`` or ``Pipeline/parse(_:file:)``.
    public let file: String
    /// The 1-based line, for malformed JSON.
    public let line: Int?
    /// The 1-based column in characters, for malformed JSON.
    public let column: Int?
    /// The job the problem is in, if any.
    public let job: String?
    /// The field the problem is in, if any, such as `retries`, `command[0]` or `backoff.max`.
    public let field: String?
    /// The underlying graph problem, for code `.graph`.
    public let graphError: GraphError?
    /// A sentence that starts with the file and names the problem and the place.
    public let message: String
    /// The ``message``.
    public var description: String { message }

    /// Creates an error; the library's own errors come from ``Pipeline/load(path:)``.
    public init(
        code: Code, file: String, line: Int? = nil, column: Int? = nil, job: String? = nil,
        field: String? = nil, message: String, graphError: GraphError? = nil
    ) {
        self.code = code
        self.file = file
        self.line = line
        self.column = column
        self.job = job
        self.field = field
        self.message = message
        self.graphError = graphError
    }

    static func tooLarge(file: String, size: Int?) -> PipelineError {
        let what = size.map { "is \($0) bytes" } ?? "is larger than that"
        return PipelineError(
            code: .tooLarge, file: file,
            message: "\(file): pipeline file \(what); the limit is 16 MiB (\(Pipeline.maximumFileSize) bytes)")
    }

    static func unreadable(file: String, errno code: Int32) -> PipelineError {
        PipelineError(
            code: .unreadable, file: file,
            message: "\(file): cannot read pipeline file: \(String(cString: strerror(code)))")
    }
}

// MARK: - Reading the file

extension Pipeline {
    /// The whole file at `path`, or a `.unreadable` / `.tooLarge` error.
    static func readFile(_ path: String) throws(PipelineError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PipelineError.unreadable(file: path, errno: errno) }
        defer { _ = close(fd) }  // read-only descriptor: nothing to lose if close fails
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw PipelineError.unreadable(file: path, errno: errno) }
        // open(2) succeeds on a directory; say so now instead of failing at read(2).
        if info.st_mode & S_IFMT == S_IFDIR { throw PipelineError.unreadable(file: path, errno: EISDIR) }
        if info.st_size > maximumFileSize { throw PipelineError.tooLarge(file: path, size: Int(info.st_size)) }

        // Read until end of file rather than trusting st_size: pipes report 0, and a file may
        // grow. Stop one byte past the limit, which is enough to know it is too large.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(info.st_size) + 1)
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw PipelineError.unreadable(file: path, errno: errno)
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            if bytes.count > maximumFileSize { throw PipelineError.tooLarge(file: path, size: nil) }
        }
        return bytes
    }
}

// MARK: - Reading fields

/// Checks the fields of one object in a pipeline file and builds errors that name the file,
/// the job and the field.
private struct FieldReader {
    let file: String
    let job: String?

    static let jobFields: Set<String> = [
        "after", "command", "retries", "backoff", "timeout", "priority", "max_concurrent", "env", "cwd",
    ]
    static let backoffFields: Set<String> = ["initial", "max", "multiplier"]
    /// Durations above this (about 31 years) are surely mistakes, and they would overflow a
    /// nanosecond clock.
    static let longestDuration = 1_000_000_000.0

    func error(_ code: PipelineError.Code, field: String?, _ text: String) -> PipelineError {
        let place = job.map { "\(file): job \(quotedName($0)): " } ?? "\(file): "
        return PipelineError(code: code, file: file, job: job, field: field, message: place + text)
    }

    /// Throws for the first field (in name order) of `object` that is not in `known`.
    /// `prefix` names the enclosing field, as in `backoff.`.
    func rejectUnknown(_ object: [String: JSONValue], known: Set<String>, prefix: String) throws(PipelineError) {
        guard let unknown = object.keys.filter({ !known.contains($0) }).min() else { return }
        let field = prefix + unknown
        var text = "unknown field \(quotedName(field))"
        if let match = Suggest.closest(to: unknown, among: known.sorted()) {
            text += " (did you mean \(quotedName(prefix + match))?)"
        } else {
            text += " (known fields: " + known.sorted().map { prefix + $0 }.joined(separator: ", ") + ")"
        }
        throw error(.unknownField, field: field, text)
    }

    func job(_ value: JSONValue) throws(PipelineError) -> PipelineJob {
        guard case .object(let fields) = value else {
            throw error(
                .invalidField, field: nil,
                "must be an object with at least the field 'command', got \(describe(value))")
        }
        try rejectUnknown(fields, known: FieldReader.jobFields, prefix: "")
        var job = PipelineJob(command: [])
        if let value = fields["after"] { job.after = try after(value) }
        guard let commandValue = fields["command"] else {
            throw error(
                .missingField, field: "command",
                "missing required field 'command' (the program and its arguments, e.g. [\"sh\", \"-c\", \"echo hi\"])")
        }
        job.command = try command(commandValue)
        if let value = fields["retries"] {
            job.retries = try integer(value, field: "retries", in: 0...1000, "an integer from 0 to 1000")
        }
        if let value = fields["backoff"] { job.backoff = try backoff(value) }
        if let value = fields["timeout"] {
            job.timeout = try seconds(
                value, field: "timeout", minimum: 0, inclusive: false,
                "a number of seconds greater than 0 and at most 1000000000")
        }
        if let value = fields["priority"] {
            job.priority = try integer(value, field: "priority", in: -1000...1000, "an integer from -1000 to 1000")
        }
        if let value = fields["max_concurrent"] {
            job.maxConcurrent = try integer(value, field: "max_concurrent", in: 1...Int.max, "an integer, 1 or more")
        }
        if let value = fields["env"] { job.env = try env(value) }
        if let value = fields["cwd"] {
            guard case .string(let path) = value, !path.isEmpty else {
                throw error(
                    .invalidField, field: "cwd",
                    "field 'cwd' must be a non-empty string (a directory), got \(describe(value))")
            }
            try rejectNUL(path, field: "cwd")
            job.cwd = path
        }
        return job
    }

    func after(_ value: JSONValue) throws(PipelineError) -> [String] {
        guard case .array(let items) = value else {
            throw error(
                .invalidField, field: "after", "field 'after' must be an array of job names, got \(describe(value))")
        }
        var names: [String] = []
        names.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard case .string(let name) = item else {
                throw error(
                    .invalidField, field: "after[\(i)]", "field 'after[\(i)]' must be a job name, got \(describe(item))"
                )
            }
            names.append(name)
        }
        return names
    }

    func command(_ value: JSONValue) throws(PipelineError) -> [String] {
        guard case .array(let items) = value else {
            var text =
                "field 'command' must be an array of strings (the program and its arguments), got \(describe(value))"
            if case .string(let line) = value {
                // The usual mistake: a shell line where an argv array belongs.
                text +=
                    "; to run it with a shell, write " + JSONValue.array(["sh", "-c", .string(line)]).canonicalString
            }
            throw error(.invalidField, field: "command", text)
        }
        guard !items.isEmpty else {
            throw error(
                .invalidField, field: "command",
                "field 'command' must not be empty: give the program and its arguments, e.g. [\"./publish\"]")
        }
        var argv: [String] = []
        argv.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard case .string(let argument) = item else {
                throw error(
                    .invalidField, field: "command[\(i)]",
                    "field 'command[\(i)]' must be a string, got \(describe(item))")
            }
            try rejectNUL(argument, field: "command[\(i)]")
            argv.append(argument)
        }
        if argv[0].isEmpty {
            throw error(.invalidField, field: "command[0]", "field 'command[0]' must name the program to run, got \"\"")
        }
        return argv
    }

    func backoff(_ value: JSONValue) throws(PipelineError) -> Backoff {
        switch value {
        case .int, .double:
            let initial = try seconds(
                value, field: "backoff", minimum: 0, inclusive: true,
                "a number of seconds from 0 to 1000000000, or an object with 'initial', 'max' and 'multiplier'")
            return Backoff(initial: initial, max: Swift.max(300, initial))
        case .object(let fields):
            try rejectUnknown(fields, known: FieldReader.backoffFields, prefix: "backoff.")
            var result = Backoff()
            if let v = fields["initial"] {
                result.initial = try seconds(
                    v, field: "backoff.initial", minimum: 0, inclusive: true, "a number of seconds from 0 to 1000000000"
                )
            }
            if let v = fields["max"] {
                result.max = try seconds(
                    v, field: "backoff.max", minimum: 0, inclusive: true, "a number of seconds from 0 to 1000000000")
                if result.max < result.initial {
                    throw error(
                        .invalidField, field: "backoff.max",
                        "field 'backoff.max' must not be less than 'backoff.initial' (\(format(result.initial))), got \(describe(v))"
                    )
                }
            } else {
                result.max = Swift.max(result.max, result.initial)
            }
            if let v = fields["multiplier"] {
                guard let m = v.doubleValue, isNumber(v), m.isFinite, m >= 1, m <= 1000 else {
                    throw error(
                        .invalidField, field: "backoff.multiplier",
                        "field 'backoff.multiplier' must be a number from 1 to 1000, got \(describe(v))")
                }
                result.multiplier = m
            }
            return result
        default:
            throw error(
                .invalidField, field: "backoff",
                "field 'backoff' must be a number of seconds or an object with 'initial', 'max' and 'multiplier', got \(describe(value))"
            )
        }
    }

    func env(_ value: JSONValue) throws(PipelineError) -> [String: String] {
        guard case .object(let variables) = value else {
            throw error(
                .invalidField, field: "env",
                "field 'env' must be an object of variable name to string value, got \(describe(value))")
        }
        var result: [String: String] = [:]
        result.reserveCapacity(variables.count)
        for key in variables.keys.sorted() {
            let reason: String? =
                if key.isEmpty {
                    "it must not be empty"
                } else if key.utf8.contains(UInt8(ascii: "=")) {
                    "it must not contain '='"
                } else if key.utf8.contains(0) {
                    "it must not contain a NUL character"
                } else {
                    nil
                }
            if let reason {
                throw error(
                    .invalidField, field: "env",
                    "field 'env' has an invalid variable name \(quotedName(key)): \(reason)")
            }
            let field = "env.\(key)"
            guard case .string(let text) = variables[key] ?? .null else {
                throw error(
                    .invalidField, field: field,
                    "field \(quotedName(field)) must be a string, got \(describe(variables[key] ?? .null))")
            }
            try rejectNUL(text, field: field)
            result[key] = text
        }
        return result
    }

    func integer(_ value: JSONValue, field: String, in range: ClosedRange<Int>, _ expected: String)
        throws(PipelineError) -> Int
    {
        guard isNumber(value), let wide = value.intValue, let n = Int(exactly: wide), range.contains(n) else {
            throw error(.invalidField, field: field, "field '\(field)' must be \(expected), got \(describe(value))")
        }
        return n
    }

    func seconds(_ value: JSONValue, field: String, minimum: Double, inclusive: Bool, _ expected: String)
        throws(PipelineError) -> Double
    {
        guard isNumber(value), let d = value.doubleValue, d.isFinite,
            inclusive ? d >= minimum : d > minimum, d <= FieldReader.longestDuration
        else {
            throw error(.invalidField, field: field, "field '\(field)' must be \(expected), got \(describe(value))")
        }
        return d
    }

    func rejectNUL(_ text: String, field: String) throws(PipelineError) {
        if text.utf8.contains(0) {
            throw error(
                .invalidField, field: field,
                "field \(quotedName(field)) contains a NUL character, which a command, argument or environment value cannot hold"
            )
        }
    }

    func isNumber(_ value: JSONValue) -> Bool {
        switch value {
        case .int, .double: true
        default: false
        }
    }

    /// `5` for 5.0, `2.5` for 2.5.
    func format(_ d: Double) -> String {
        if d.rounded() == d, abs(d) < 1e15 { return String(Int64(d)) }
        return JSONValue.double(d).canonicalString
    }
}

/// A JSON value as a message shows it: scalars as written (long strings cut short), arrays and
/// objects by kind.
private func describe(_ value: JSONValue) -> String {
    switch value {
    case .array: return "an array"
    case .object: return "an object"
    case .string(let text) where text.count > 60:
        return String(JSONValue.string(String(text.prefix(60))).canonicalString.dropLast()) + "…\""
    default: return value.canonicalString
    }
}
