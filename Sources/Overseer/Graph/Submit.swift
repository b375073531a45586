import Foundation

/// What submitting a graph as a run records, besides the graph itself.
public struct RunPlan: Sendable, Hashable {
    /// The run's id; ``RunPlan/generateID()`` makes a time-ordered one.
    public var id: String
    public var graph: JobGraph
    /// Arguments every job of the run can read.
    public var args: JSONValue
    /// A name for the run's kind (a pipeline's name).
    public var name: String?
    /// Added to every job's own priority; higher runs first.
    public var priority: Int
    /// Per job type: a priority of its own (added to the run's).
    public var typePriorities: [String: Int]
    /// Per job type: options recorded on the job (retry policy, timeout, limit, command, ...).
    public var options: [String: JSONValue]

    public init(
        id: String = RunPlan.generateID(), graph: JobGraph, args: JSONValue = .object([:]), name: String? = nil,
        priority: Int = 0, typePriorities: [String: Int] = [:], options: [String: JSONValue] = [:]
    ) {
        self.id = id
        self.graph = graph
        self.args = args
        self.name = name
        self.priority = priority
        self.typePriorities = typePriorities
        self.options = options
    }

    /// A time-ordered run id: `20261203-154312-3f9a1c` (UTC, then random hex).
    public static func generateID() -> String {
        let t = Instant.now().rfc3339  // 2026-12-03T15:43:12.123456Z
        let c = Array(t.utf8)
        let digits = c.filter { $0 >= 0x30 && $0 <= 0x39 }
        let date = String(decoding: digits[0..<8], as: UTF8.self)
        let time = String(decoding: digits[8..<14], as: UTF8.self)
        let random = String(UInt32.random(in: 0...0xFFFFFF), radix: 16)
        return "\(date)-\(time)-\(String(repeating: "0", count: 6 - random.count))\(random)"
    }

    /// The job id of a type in this run: `RUN/TYPE`.
    public func jobID(_ type: String) -> String { "\(id)/\(type)" }

    /// Checks the run id (the graph is checked by ``JobGraph/validate()``).
    public static func validateRunID(_ id: String) throws(GraphError) {
        if id.contains("/") {
            throw GraphError(code: .invalidName, job: nil, message: "run id \(quotedName(id)) must not contain '/' (job ids are RUN/TYPE)")
        }
        if let problem = JobGraph.nameProblem(id) {
            throw GraphError(code: .invalidName, job: nil, message: "run id \(problem.shown) is not valid: \(problem.reason)")
        }
    }

    /// The `run.created` data: everything that identifies the run, compared on resubmission.
    var runData: JSONValue {
        var graphJSON: [String: JSONValue] = [:]
        for (type, parents) in graph.parents { graphJSON[type] = .array(parents.sorted().map { .string($0) }) }
        var data: [String: JSONValue] = ["graph": .object(graphJSON), "args": args, "priority": .int(Int64(priority))]
        if let name { data["name"] = .string(name) }
        if !typePriorities.isEmpty {
            data["type_priorities"] = .object(typePriorities.mapValues { .int(Int64($0)) })
        }
        if !options.isEmpty { data["options"] = .object(options) }
        return .object(data)
    }
}

/// Why a submission was refused.
public struct SubmitError: Error, Sendable, CustomStringConvertible {
    public let run: String
    public let message: String
    public var description: String { "run '\(run)': \(message)" }
}

/// The result of a submission.
public enum SubmitOutcome: Sendable, Hashable {
    /// The run and its jobs were created.
    case created(run: String, facts: [Fact])
    /// The same run (same graph, args and options) already existed: nothing was written.
    case alreadyExists(run: String)

    public var run: String {
        switch self {
        case .created(let r, _), .alreadyExists(let r): return r
        }
    }
}

extension LogWriter {
    /// Creates a run: `run.created`, then one `job.created` per type in topological order, all in
    /// this transaction. Resubmitting the same plan does nothing; a different plan under the same
    /// id is an error.
    public mutating func submit(_ plan: RunPlan, author: Author = .process) throws -> SubmitOutcome {
        try RunPlan.validateRunID(plan.id)
        try plan.graph.validate()
        let data = plan.runData
        if let existing = try run(plan.id) {
            guard let created = try fact(at: existing.createdPosition) else {
                throw StoreError(.corrupt, path: path, "run '\(plan.id)': its run.created fact is missing")
            }
            if created.data == data { return .alreadyExists(run: plan.id) }
            var differs: [String] = []
            for key in ["graph", "args", "priority", "name", "options", "type_priorities"] where created.data[key] != data[key] {
                differs.append(key)
            }
            throw SubmitError(run: plan.id, message: "already exists with a different \(differs.joined(separator: ", ")); choose another run id")
        }
        var items: [(FactDraft, expecting: UInt64?)] = [(FactDraft(kind: .runCreated, run: plan.id, author: author, data: data), nil)]
        for type in plan.graph.topologicalOrder() {
            let parents = (plan.graph.parents[type] ?? []).map { plan.jobID($0) }
            var jobData: [String: JSONValue] = [
                "type": .string(type),
                "parents": .array(parents.map { .string($0) }),
                "priority": .int(Int64(plan.priority + (plan.typePriorities[type] ?? 0))),
            ]
            if let o = plan.options[type] { jobData["options"] = o }
            items.append((FactDraft(kind: .jobCreated, run: plan.id, job: plan.jobID(type), author: author, data: .object(jobData)), 0))
        }
        switch try appendAll(items) {
        case .appended(let facts): return .created(run: plan.id, facts: facts)
        case .conflict(let index, _, _):
            throw SubmitError(run: plan.id, message: "job '\(items[index].0.job ?? "?")' already exists")
        }
    }
}

extension LogStore {
    /// Submits a run (see ``LogWriter/submit(_:author:)``).
    public func submit(_ plan: RunPlan, author: Author = .process) async throws -> SubmitOutcome {
        try await write { try $0.submit(plan, author: author) }
    }

    /// The blocking form of ``submit(_:author:)``.
    public func submitSync(_ plan: RunPlan, author: Author = .process) throws -> SubmitOutcome {
        try writeSync { try $0.submit(plan, author: author) }
    }
}
