import Foundation
import Synchronization

/// Throw from a handler to abort the job and every job downstream of it. For situations that
/// "shouldn't happen", where retrying makes no sense.
public struct Abort: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "abort: \(reason)" }
}

/// Throw from a handler for a transient problem: the job goes back to unstarted and is retried
/// after a backoff. Faults do not use up the retry budget, but a job that faults
/// ``RetryPolicy/maximumFaults`` times in a row fails.
public struct Fault: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "fault: \(reason)" }
}

/// How a job type's failed attempts are retried: exponential backoff with jitter, and a cap.
public struct RetryPolicy: Sendable, Hashable, Codable {
    /// Attempts in all, the first included (1 means never retry).
    public var maximumAttempts: Int
    /// Delay before the second attempt, in seconds.
    public var initialDelay: Double
    /// Each further delay is the previous one times this.
    public var multiplier: Double
    /// No delay exceeds this, in seconds.
    public var maximumDelay: Double
    /// Each delay is scaled by a random factor in `1 - jitter ... 1 + jitter`.
    public var jitter: Double
    /// Consecutive faults after which the job fails instead of being retried again.
    public var maximumFaults: Int

    public init(maximumAttempts: Int, initialDelay: Double = 1, multiplier: Double = 2, maximumDelay: Double = 300, jitter: Double = 0.5, maximumFaults: Int = 100) {
        self.maximumAttempts = max(1, maximumAttempts)
        self.initialDelay = max(0, initialDelay)
        self.multiplier = max(1, multiplier)
        self.maximumDelay = max(0, maximumDelay)
        self.jitter = min(1, max(0, jitter))
        self.maximumFaults = max(1, maximumFaults)
    }

    /// One attempt; a failure is final. Faults are still retried with backoff.
    public static let never = RetryPolicy(maximumAttempts: 1)

    /// `maximumAttempts` attempts with exponential backoff and jitter.
    public static func exponential(maximumAttempts: Int = 3, initialDelay: Double = 1, multiplier: Double = 2, maximumDelay: Double = 300, jitter: Double = 0.5) -> RetryPolicy {
        RetryPolicy(maximumAttempts: maximumAttempts, initialDelay: initialDelay, multiplier: multiplier, maximumDelay: maximumDelay, jitter: jitter)
    }

    /// The delay after the `attempt`-th attempt (1-based), in seconds, jitter included. Never
    /// below 10 ms, so nothing can spin in a tight loop.
    public func delay(afterAttempt attempt: Int) -> Double {
        let exponent = Double(max(0, attempt - 1))
        let base = min(maximumDelay, initialDelay * pow(multiplier, min(exponent, 64)))
        let factor = jitter == 0 ? 1 : Double.random(in: (1 - jitter)...(1 + jitter))
        return max(0.01, min(maximumDelay, base * factor))
    }
}

/// Per job type settings of a handler.
public struct JobOptions: Sendable, Hashable {
    public var retry: RetryPolicy = .never
    /// The attempt's handler is cancelled after this long, and the attempt fails with reason
    /// `timeout` (then the retry policy applies). nil: no timeout.
    public var timeout: Duration?
    /// Live claims of this type allowed at once, across every worker sharing the store.
    public var maximumConcurrent: Int?

    public init(retry: RetryPolicy = .never, timeout: Duration? = nil, maximumConcurrent: Int? = nil) {
        self.retry = retry
        self.timeout = timeout
        self.maximumConcurrent = maximumConcurrent
    }
}

/// What a handler gets: the job, its run's arguments and its parents' results.
public struct Job: Sendable {
    /// `RUN/TYPE`.
    public let id: String
    public let run: String
    public let type: String
    /// 1 for the first attempt.
    public let attempt: Int
    /// The worker running this attempt.
    public let worker: String
    /// The run's arguments, as recorded.
    public let arguments: JSONValue
    /// Each parent's recorded result, by parent type.
    public let parentResults: [String: JSONValue]
    /// Options recorded on the job at submission (for shell pipelines: the command).
    public let options: JSONValue
    let resultBox: ResultBox

    /// Decodes the run's arguments.
    ///
    /// ```swift
    /// struct Report: Codable { var org: Int }
    /// let report = try job.args(as: Report.self)
    /// ```
    public func args<T: Decodable>(as type: T.Type = T.self) throws -> T {
        try JSONValue.decode(type, from: arguments)
    }

    /// Decodes a parent's result.
    public func result<T: Decodable>(of parentType: String, as type: T.Type = T.self) throws -> T? {
        guard let value = parentResults[parentType] else { return nil }
        return try JSONValue.decode(type, from: value)
    }

    /// Records a small result for this job's children to read (kept in the `job.finished` fact).
    public func setResult<T: Encodable>(_ value: T) throws {
        resultBox.set(try JSONValue(encoding: value))
    }

    /// Records a raw JSON result.
    public func setResult(json value: JSONValue) {
        resultBox.set(value)
    }
}

final class ResultBox: Sendable {
    private let value = Mutex<JSONValue?>(nil)
    func set(_ v: JSONValue) { value.withLock { $0 = v } }
    func get() -> JSONValue? { value.withLock { $0 } }
}

/// Wraps every handler call, like Overseer's harnesses: logging, injecting dependencies,
/// mapping errors. Call `next` to run the rest of the chain; middleware composes in order, the
/// first one outermost.
public typealias Middleware = @Sendable (_ job: Job, _ next: @Sendable (Job) async throws -> Void) async throws -> Void

/// A handler: an ordinary async function of a job. Returning means finished; throwing
/// ``Abort``, ``Fault`` or any other error means what those say.
public typealias Handler = @Sendable (Job) async throws -> Void

/// The handlers of a worker, by job type, with their options.
///
/// ```swift
/// var handlers: Handlers = [
///     "start":  { job in print("start") },
///     "finish": { job in try job.setResult(["rows": 10]) },
/// ]
/// handlers.options["start"] = JobOptions(retry: .exponential(maximumAttempts: 5), timeout: .seconds(60))
/// ```
public struct Handlers: Sendable, ExpressibleByDictionaryLiteral {
    public var handlers: [String: Handler]
    public var options: [String: JobOptions]
    public var middleware: [Middleware]

    public init(dictionaryLiteral elements: (String, Handler)...) {
        var h: [String: Handler] = [:]
        for (type, handler) in elements { h[type] = handler }
        handlers = h
        options = [:]
        middleware = []
    }

    /// No handlers yet; add them with ``on(_:options:_:)``.
    public init() {
        self.init([:])
    }

    public init(_ handlers: [String: Handler], options: [String: JobOptions] = [:], middleware: [Middleware] = []) {
        self.handlers = handlers
        self.options = options
        self.middleware = middleware
    }

    /// Adds (or replaces) the handler of a type.
    public mutating func on(_ type: String, options: JobOptions = JobOptions(), _ handler: @escaping Handler) {
        handlers[type] = handler
        self.options[type] = options
    }

    /// Adds a middleware around every handler; the first added is the outermost.
    public mutating func use(_ m: @escaping Middleware) { middleware.append(m) }

    public var types: Set<String> { Set(handlers.keys) }

    func options(for type: String) -> JobOptions { options[type] ?? JobOptions() }

    /// The handler of `type` wrapped in the middleware chain.
    func chain(for type: String) -> Handler? {
        guard let handler = handlers[type] else { return nil }
        var call: Handler = handler
        for m in middleware.reversed() {
            let next = call
            call = { job in try await m(job, next) }
        }
        return call
    }
}

extension JSONValue {
    /// Encodes any `Encodable` value as JSON (through Foundation's encoder, keys sorted).
    public init<T: Encodable>(encoding value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        self = try JSONValue.parse(data)
    }

    /// Decodes a `Decodable` value from this JSON.
    public static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        try JSONDecoder().decode(type, from: Data(value.canonicalBytes))
    }
}
