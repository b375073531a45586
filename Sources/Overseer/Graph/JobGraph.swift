/// The shape of a pipeline: each job type and the job types it waits for (its parents).
///
/// A graph lists parents, not children, so each line reads "this job runs after those":
///
/// ```swift
/// let graph: JobGraph = [
///     "start": [],
///     "result1": ["start"],
///     "result2": ["start"],
///     "finish": ["result1", "result2"],
/// ]
/// try graph.validate()
/// graph.topologicalOrder()           // ["start", "result1", "result2", "finish"]
/// graph.descendants(of: "result1")   // ["finish"]
/// ```
///
/// Building a graph never fails; ``validate()`` reports what is wrong with it. All algorithms are
/// iterative and linear in the size of the graph (plus one sort of the names), so deep chains and
/// very wide graphs are fine.
public struct JobGraph: Sendable, Hashable, Codable, ExpressibleByDictionaryLiteral {
    /// For each job type, the job types it waits for, in the order given.
    public private(set) var parents: [String: [String]]

    /// Job types a dictionary literal gave more than once, with how many times; ``validate()``
    /// reports them. (A literal with repeated keys would otherwise silently keep one entry.)
    private var repeatedTypes: [String: Int] = [:]

    /// Creates a graph from a map of job type to the job types it waits for.
    public init(_ parents: [String: [String]]) {
        self.parents = parents
    }

    /// Creates a graph from a literal such as `["start": [], "finish": ["start"]]`.
    ///
    /// A job type given twice does not trap and does not silently replace the first entry: the
    /// first entry is kept and ``validate()`` throws ``GraphError/Code/duplicateType``.
    public init(dictionaryLiteral elements: (String, [String])...) {
        var parents: [String: [String]] = [:]
        parents.reserveCapacity(elements.count)
        var repeated: [String: Int] = [:]
        for (type, typeParents) in elements {
            if parents[type] == nil {
                parents[type] = typeParents
            } else {
                repeated[type, default: 1] += 1
            }
        }
        self.parents = parents
        self.repeatedTypes = repeated
    }

    /// Decodes a graph from a keyed container of job type to parent list, e.g. a JSON object.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        self.parents = try container.decode([String: [String]].self)
    }

    /// Encodes the graph as a map of job type to parent list (see ``parents``).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(parents)
    }

    /// All job types, sorted.
    public var types: [String] {
        parents.keys.sorted()
    }

    // MARK: Validation

    /// The longest job type name accepted, in UTF-8 bytes.
    public static let maximumNameLength = 200

    /// Checks that the graph can be run: it is not empty, every name is valid, every parent is a
    /// job type in the graph, no job waits for itself or lists a parent twice, and there is no
    /// cycle.
    ///
    /// The first problem found is thrown; problems are looked for in that order, and within each
    /// kind in job-name order, so the same graph always reports the same error.
    public func validate() throws(GraphError) {
        if parents.isEmpty {
            throw GraphError(code: .empty, job: nil, message: "job graph is empty: add at least one job type")
        }
        if let type = repeatedTypes.keys.min() {
            let count = repeatedTypes[type] ?? 2
            throw GraphError(
                code: .duplicateType, job: type,
                message: "duplicate job type \(quotedName(type)): it is given \(count) times; give each job type once")
        }
        // Names are not sorted here (sorting 100,000 names costs more than all the checks);
        // instead each check reports the offender whose name sorts first.
        let index = Index(self, sorted: false)
        var invalid: (name: String, problem: (shown: String, reason: String))?
        for name in index.names {
            guard let problem = JobGraph.nameProblem(name) else { continue }
            if let current = invalid, current.name < name { continue }
            invalid = (name, problem)
        }
        if let invalid {
            throw GraphError(
                code: .invalidName, job: invalid.name,
                message: "invalid job type name \(invalid.problem.shown): \(invalid.problem.reason)")
        }
        if let first = index.problems.min(by: { index.names[$0.job] < index.names[$1.job] }) {
            let type = index.names[first.job]
            switch first.problem {
            case .selfDependency:
                throw GraphError(code: .selfDependency, job: type, message: "job \(quotedName(type)) depends on itself")
            case .duplicate(let parent):
                throw GraphError(
                    code: .duplicateParent, job: type,
                    message: "job \(quotedName(type)) lists \(quotedName(parent)) more than once in the jobs it waits for")
            case .unknown(let parent):
                // A job waiting for itself under a typo is never the fix: leave it out of the hints.
                let hint = Suggest.didYouMean(parent, among: index.names.filter { $0 != type })
                throw GraphError(
                    code: .unknownParent, job: type,
                    message: "job \(quotedName(type)) depends on unknown job \(quotedName(parent))\(hint)")
            }
        }
        let (order, blocked) = index.kahn()
        if order.count < index.names.count {
            let cycle = index.findCycle(blocked: blocked)
            let names = cycle.map { escapingControls(index.names[$0]) }
            throw GraphError(
                code: .cycle, job: index.names[cycle[0]],
                message: "cycle: " + (names + [names[0]]).joined(separator: " -> "))
        }
    }

    /// Checks the graph as ``validate()`` does, then that every job type has a handler.
    ///
    /// A missing handler is an error; the message lists every job type without one (sorted),
    /// suggests a close handler name for each, and lists the handlers that match no job type,
    /// because a misspelt registration usually shows up on both lists. Handlers for types the
    /// graph does not use are not an error on their own.
    public func validate(handledTypes: Set<String>) throws(GraphError) {
        try validate()
        let missing = types.filter { !handledTypes.contains($0) }
        guard let first = missing.first else { return }
        let unused = handledTypes.filter { parents[$0] == nil }.sorted()
        let shown = 20
        var items: [String] = missing.prefix(shown).map { type in
            quotedName(type) + Suggest.didYouMean(type, among: unused)
        }
        if missing.count > shown { items.append("and \(missing.count - shown) more") }
        var message =
            missing.count == 1
            ? "no handler for job type \(items[0])"
            : "no handler for \(missing.count) job types: " + items.joined(separator: ", ")
        if !unused.isEmpty {
            var extra = unused.prefix(shown).map(quotedName)
            if unused.count > shown { extra.append("and \(unused.count - shown) more") }
            message += "; handlers that match no job type: " + extra.joined(separator: ", ")
        }
        throw GraphError(code: .missingHandler, job: first, message: message)
    }

    /// Why `name` is not a valid job type (or pipeline) name, or `nil` when it is valid:
    /// `shown` is the name as a message should quote it, `reason` says what is wrong.
    ///
    /// Valid: non-empty, not only whitespace, at most ``maximumNameLength`` UTF-8 bytes, no `/`,
    /// no control character (Unicode general category Cc). Other Unicode, emoji included, is fine.
    static func nameProblem(_ name: String) -> (shown: String, reason: String)? {
        // One pass over the bytes settles the common case (printable ASCII) without looking at
        // Unicode properties; the slower checks below run only when they could matter.
        var length = 0
        var slash = false
        var control = false
        var visible = false
        var previous: UInt8 = 0
        for byte in name.utf8 {
            length += 1
            switch byte {
            case UInt8(ascii: "/"):
                slash = true
                visible = true
            case 0x00..<0x20, 0x7F: control = true
            case 0x80...0x9F where previous == 0xC2: control = true  // U+0080...U+009F
            case UInt8(ascii: " "): break
            case 0x21..<0x7F: visible = true
            default: break
            }
            previous = byte
        }
        if length == 0 { return ("''", "it must not be empty") }
        if !visible, name.unicodeScalars.allSatisfy(\.properties.isWhitespace) {
            return (quotedName(name), "it must not be only whitespace")
        }
        if length > maximumNameLength {
            return (
                "'" + escapingControls(String(name.prefix(40))) + "…'",
                "it is \(length) bytes long, and the limit is \(maximumNameLength) bytes of UTF-8"
            )
        }
        if slash { return (quotedName(name), "it must not contain '/'") }
        if control, let scalar = name.unicodeScalars.first(where: isControlScalar) {
            return (quotedName(name), "it must not contain the control character \(escapeScalar(scalar))")
        }
        return nil
    }

    // MARK: Queries

    /// All job types in an order where every job comes after the jobs it waits for.
    ///
    /// Kahn's algorithm, taking the ready job whose name sorts first at each step, so the order
    /// depends only on the graph. Parents that are not job types are ignored. On a graph that
    /// fails ``validate()`` with a cycle, jobs on or after the cycle can never become ready and
    /// are left out.
    public func topologicalOrder() -> [String] {
        let index = Index(self, sorted: true)
        return index.kahn().order.map { index.names[$0] }
    }

    /// The job types that wait directly for `type`, sorted; empty for an unknown type.
    public func children(of type: String) -> [String] {
        var result = Set<String>()
        for (child, list) in parents where list.contains(type) {
            result.insert(child)
        }
        return result.sorted()
    }

    /// Every job type that waits for `type` directly or indirectly, in ``topologicalOrder()``
    /// order, not including `type` itself; empty for an unknown type.
    ///
    /// These are the jobs to run again after `type` is run again. On a graph with a cycle, jobs
    /// on or after the cycle are left out, as in ``topologicalOrder()``.
    public func descendants(of type: String) -> [String] {
        let index = Index(self, sorted: true)
        guard let source = index.position[type] else { return [] }
        var reached = [Bool](repeating: false, count: index.names.count)
        var stack = [source]
        while let node = stack.popLast() {
            for child in index.children(of: node) where !reached[child] {
                reached[child] = true
                stack.append(child)
            }
        }
        // The reached jobs in the order of the whole graph, so `descendants(of:)` always agrees
        // with `topologicalOrder()`.
        return index.kahn().order.compactMap { reached[$0] && $0 != source ? index.names[$0] : nil }
    }
}

// MARK: - Integer-indexed form

extension JobGraph {
    /// The graph with job types numbered, so the algorithms work on arrays of integers.
    ///
    /// `sorted: true` numbers the types in name order, so "smallest index" means "first by
    /// name" and ``kahn()`` breaks ties by name. `sorted: false` skips the sort (validation
    /// only needs to know whether an order exists) and keeps dictionary order.
    struct Index {
        enum ParentProblem {
            case selfDependency
            case duplicate(String)
            case unknown(String)
        }

        let sorted: Bool
        let names: [String]
        let position: [String: Int]
        /// Known parents of job `i`, without repeats or self-dependencies, are
        /// `parentList[parentStart[i]..<parentStart[i + 1]]`. Flat arrays: 100,000 small
        /// arrays cost more to allocate than everything else here.
        let parentStart: [Int]
        let parentList: [Int]
        /// Children of job `i`, the same way; ascending when `sorted`.
        let childStart: [Int]
        let childList: [Int]
        /// For each job whose parent list has a problem, the first problem in list order.
        let problems: [(job: Int, problem: ParentProblem)]

        init(_ graph: JobGraph, sorted: Bool) {
            // `keys.sorted()` and a lookup per job beat sorting the key-value pairs by key.
            let names = sorted ? graph.parents.keys.sorted() : Array(graph.parents.keys)
            let lists = sorted ? names.map { graph.parents[$0] ?? [] } : Array(graph.parents.values)
            let count = names.count
            var position: [String: Int] = [:]
            position.reserveCapacity(count)
            for i in 0..<count { position[names[i]] = i }
            var parentStart = [Int](repeating: 0, count: count + 1)
            var parentList: [Int] = []
            var childCount = [Int](repeating: 0, count: count + 1)
            var problems: [(job: Int, problem: ParentProblem)] = []
            // seenBy[p] == i: job i has already listed p. Finds repeats without hashing again.
            var seenBy = [Int](repeating: -1, count: count)
            for i in 0..<count {
                var problem: ParentProblem?
                for parent in lists[i] {
                    guard let p = position[parent] else {
                        if problem == nil { problem = .unknown(parent) }
                        continue
                    }
                    if p == i {
                        if problem == nil { problem = .selfDependency }
                    } else if seenBy[p] == i {
                        if problem == nil { problem = .duplicate(parent) }
                    } else {
                        seenBy[p] = i
                        parentList.append(p)
                        childCount[p] += 1
                    }
                }
                parentStart[i + 1] = parentList.count
                if let problem { problems.append((i, problem)) }
            }
            // Children: prefix sums of the counts give each job's slice; filling in job order
            // keeps each slice ascending.
            var childStart = [Int](repeating: 0, count: count + 1)
            for i in 0..<count { childStart[i + 1] = childStart[i] + childCount[i] }
            var fill = childStart
            var childList = [Int](repeating: 0, count: parentList.count)
            for i in 0..<count {
                for k in parentStart[i]..<parentStart[i + 1] {
                    let p = parentList[k]
                    childList[fill[p]] = i
                    fill[p] += 1
                }
            }
            self.sorted = sorted
            self.names = names
            self.position = position
            self.parentStart = parentStart
            self.parentList = parentList
            self.childStart = childStart
            self.childList = childList
            self.problems = problems
        }

        /// The known parents of job `i`.
        func parents(of i: Int) -> ArraySlice<Int> {
            parentList[parentStart[i]..<parentStart[i + 1]]
        }

        /// The children of job `i`.
        func children(of i: Int) -> ArraySlice<Int> {
            childList[childStart[i]..<childStart[i + 1]]
        }

        /// Whether job `a` comes before job `b` by name.
        func precedes(_ a: Int, _ b: Int) -> Bool {
            sorted ? a < b : names[a] < names[b]
        }

        /// Kahn's algorithm. Returns the order and, for each job, whether it is still waiting
        /// (it never became ready: it is on or after a cycle). When `sorted`, the ready job
        /// that sorts first goes next (a min-heap); otherwise any ready job does (a stack).
        func kahn() -> (order: [Int], blocked: [Bool]) {
            let count = names.count
            var waiting = [Int](repeating: 0, count: count)
            for i in 0..<count { waiting[i] = parentStart[i + 1] - parentStart[i] }
            var order: [Int] = []
            order.reserveCapacity(count)
            if sorted {
                // Each job enters the heap once, so `count` slots are enough.
                var heap = MinHeap(capacity: count)
                defer { heap.deallocate() }
                for i in 0..<count where waiting[i] == 0 { heap.push(i) }
                while let node = heap.pop() {
                    order.append(node)
                    for child in childList[childStart[node]..<childStart[node + 1]] {
                        waiting[child] -= 1
                        if waiting[child] == 0 { heap.push(child) }
                    }
                }
            } else {
                var ready: [Int] = []
                for i in 0..<count where waiting[i] == 0 { ready.append(i) }
                while let node = ready.popLast() {
                    order.append(node)
                    for child in childList[childStart[node]..<childStart[node + 1]] {
                        waiting[child] -= 1
                        if waiting[child] == 0 { ready.append(child) }
                    }
                }
            }
            return (order, waiting.map { $0 > 0 })
        }

        /// One cycle among the `blocked` jobs, in run order (each job waits for the one before
        /// it), starting at the job whose name sorts first.
        ///
        /// The walk starts at the blocked job that sorts first and steps to its blocked parent
        /// that sorts first. Every blocked job has a blocked parent, so the walk must revisit a
        /// job, and the jobs from that one on form the cycle. The choice depends only on names,
        /// so sorted and unsorted indexes report the same cycle.
        func findCycle(blocked: [Bool]) -> [Int] {
            var start: Int?
            for i in blocked.indices where blocked[i] {
                if let s = start, precedes(s, i) { continue }
                start = i
            }
            guard let start else { return [] }
            var step: [Int: Int] = [:]
            var path: [Int] = []
            var node = start
            while step[node] == nil {
                step[node] = path.count
                path.append(node)
                var next: Int?
                for p in parents(of: node) where blocked[p] {
                    if let n = next, precedes(n, p) { continue }
                    next = p
                }
                guard let next else { return [node] }  // unreachable: see above
                node = next
            }
            // `path` runs child -> parent; reverse it into run order, then rotate.
            let cycle = Array(path[step[node]!...].reversed())
            var smallest = 0
            for k in cycle.indices where precedes(cycle[k], cycle[smallest]) { smallest = k }
            return Array(cycle[smallest...] + cycle[..<smallest])
        }
    }

    /// A binary min-heap of job indices below a fixed capacity, on a raw buffer: in debug
    /// builds, array bounds and uniqueness checks made heap operations the slowest part of
    /// ordering a large graph. The owner must call ``deallocate()``.
    struct MinHeap {
        private let items: UnsafeMutablePointer<Int>
        private let capacity: Int
        private var count = 0

        init(capacity: Int) {
            self.capacity = Swift.max(capacity, 1)
            items = UnsafeMutablePointer<Int>.allocate(capacity: self.capacity)
        }

        func deallocate() { items.deallocate() }

        mutating func push(_ value: Int) {
            precondition(count < capacity, "MinHeap overflow")
            var i = count
            count += 1
            while i > 0 {
                let up = (i - 1) >> 1
                let parent = items[up]
                if parent <= value { break }
                items[i] = parent
                i = up
            }
            items[i] = value
        }

        mutating func pop() -> Int? {
            guard count > 0 else { return nil }
            let top = items[0]
            count -= 1
            if count == 0 { return top }
            let last = items[count]
            var i = 0
            while true {
                var child = 2 * i + 1
                if child >= count { break }
                if child + 1 < count, items[child + 1] < items[child] { child += 1 }
                if last <= items[child] { break }
                items[i] = items[child]
                i = child
            }
            items[i] = last
            return top
        }
    }
}
