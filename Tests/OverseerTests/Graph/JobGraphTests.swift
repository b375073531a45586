import Foundation
import Testing

@testable import Overseer

/// The graph from the Overseer quickstart: `start` fans out to two results that `finish` joins.
private let diamond: JobGraph = [
    "start": [],
    "result1": ["start"],
    "result2": ["start"],
    "finish": ["result1", "result2"],
]

/// The error `body` throws, or `nil` (and a test failure) when it does not throw.
private func graphError(_ body: () throws(GraphError) -> Void, sourceLocation: SourceLocation = #_sourceLocation)
    -> GraphError?
{
    do {
        try body()
    } catch {
        return error
    }
    Issue.record("expected a GraphError, nothing was thrown", sourceLocation: sourceLocation)
    return nil
}

@Suite struct JobGraphTests {
    // MARK: The diamond

    @Test func diamondValidates() throws {
        try diamond.validate()
        try diamond.validate(handledTypes: ["start", "result1", "result2", "finish"])
        #expect(diamond.types == ["finish", "result1", "result2", "start"])
        #expect(diamond.parents["finish"] == ["result1", "result2"])
    }

    @Test func diamondOrder() {
        #expect(diamond.topologicalOrder() == ["start", "result1", "result2", "finish"])
    }

    @Test func diamondChildren() {
        #expect(diamond.children(of: "start") == ["result1", "result2"])
        #expect(diamond.children(of: "result2") == ["finish"])
        #expect(diamond.children(of: "finish") == [])
        #expect(diamond.children(of: "nope") == [])
    }

    @Test func diamondDescendants() {
        #expect(diamond.descendants(of: "start") == ["result1", "result2", "finish"])
        #expect(diamond.descendants(of: "result1") == ["finish"])
        #expect(diamond.descendants(of: "finish") == [])
        #expect(diamond.descendants(of: "nope") == [])
    }

    // MARK: Order

    @Test func orderBreaksTiesByName() {
        // Ready at first: m and z. m goes first, which makes b ready, and b sorts before z.
        let graph: JobGraph = ["z": [], "a": ["z"], "m": [], "b": ["m"]]
        #expect(graph.topologicalOrder() == ["m", "b", "z", "a"])
    }

    @Test func orderDoesNotDependOnConstruction() {
        var pairs: [(String, [String])] = (0..<50).map { i in ("job\(i)", i == 0 ? [] : ["job\(i / 3)"]) }
        let first = JobGraph(Dictionary(uniqueKeysWithValues: pairs)).topologicalOrder()
        pairs.reverse()
        let second = JobGraph(Dictionary(uniqueKeysWithValues: pairs)).topologicalOrder()
        #expect(first == second)
        #expect(first.count == 50)
        #expect(Array(first.prefix(4)) == ["job0", "job1", "job2", "job3"])
        // Every job comes after its parent.
        let rank = Dictionary(uniqueKeysWithValues: first.enumerated().map { ($1, $0) })
        for i in 1..<50 { #expect(rank["job\(i / 3)"]! < rank["job\(i)"]!) }
    }

    @Test func descendantsAreInTopologicalOrder() {
        let graph: JobGraph = [
            "a": [], "b": ["a"], "c": ["b", "x"], "d": ["a"], "x": [], "e": ["c", "d"], "other": ["x"],
        ]
        #expect(graph.topologicalOrder() == ["a", "b", "d", "x", "c", "e", "other"])
        #expect(graph.descendants(of: "a") == ["b", "d", "c", "e"])
        #expect(graph.descendants(of: "x") == ["c", "e", "other"])
        #expect(graph.children(of: "x") == ["c", "other"])
    }

    @Test func orderLeavesOutJobsOnACycle() {
        let graph: JobGraph = ["s": [], "a": ["s", "b"], "b": ["a"], "after": ["b"], "free": ["s"]]
        #expect(graph.topologicalOrder() == ["s", "free"])
        #expect(graph.descendants(of: "s") == ["free"])
        #expect(graph.descendants(of: "a") == [])
    }

    // MARK: Validation rules

    @Test func emptyGraph() {
        let error = graphError { () throws(GraphError) in try JobGraph([:]).validate() }
        #expect(error == GraphError(code: .empty, job: nil, message: "job graph is empty: add at least one job type"))
    }

    @Test(arguments: [
        ("", "invalid job type name '': it must not be empty"),
        ("   ", "invalid job type name '   ': it must not be only whitespace"),
        ("\u{3000}", "invalid job type name '\u{3000}': it must not be only whitespace"),
        ("a/b", "invalid job type name 'a/b': it must not contain '/'"),
        ("bell\u{7}", "invalid job type name 'bell\\u{0007}': it must not contain the control character \\u{0007}"),
        (
            "line\nbreak",
            "invalid job type name 'line\\u{000A}break': it must not contain the control character \\u{000A}"
        ),
        ("del\u{7F}", "invalid job type name 'del\\u{007F}': it must not contain the control character \\u{007F}"),
        ("c1\u{85}", "invalid job type name 'c1\\u{0085}': it must not contain the control character \\u{0085}"),
    ])
    func invalidNames(name: String, message: String) {
        let graph = JobGraph([name: [], "ok": []])
        let error = graphError { () throws(GraphError) in try graph.validate() }
        #expect(error == GraphError(code: .invalidName, job: name, message: message))
    }

    @Test func nameLengthLimit() throws {
        let longest = String(repeating: "é", count: 100)  // 200 bytes of UTF-8
        try JobGraph([longest: []]).validate()
        let tooLong = longest + "x"
        let error = graphError { () throws(GraphError) in try JobGraph([tooLong: []]).validate() }
        #expect(error?.code == .invalidName)
        #expect(
            error?.message
                == "invalid job type name '\(String(repeating: "é", count: 40))…': it is 201 bytes long, and the limit is 200 bytes of UTF-8"
        )
    }

    @Test func unicodeNamesAreFine() throws {
        let graph: JobGraph = ["résumé": [], "日本語": ["résumé"], "🚀 launch": ["日本語"], " padded ": ["🚀 launch"]]
        try graph.validate()
        #expect(graph.topologicalOrder() == ["résumé", "日本語", "🚀 launch", " padded "])
    }

    @Test func unknownParentWithSuggestion() {
        let graph: JobGraph = [
            "start": [], "result1": ["start"], "result2": ["start"], "finish": ["result1", "reslt2"],
        ]
        let error = graphError { () throws(GraphError) in try graph.validate() }
        #expect(
            error
                == GraphError(
                    code: .unknownParent, job: "finish",
                    message: "job 'finish' depends on unknown job 'reslt2' (did you mean 'result2'?)"))
    }

    @Test func unknownParentWithoutSuggestion() {
        let graph: JobGraph = ["start": [], "finish": ["publish"]]
        let error = graphError { () throws(GraphError) in try graph.validate() }
        #expect(error?.message == "job 'finish' depends on unknown job 'publish'")
        #expect(error?.code == .unknownParent)
    }

    @Test func unknownParentNameIsEscaped() {
        let graph: JobGraph = ["start": [], "finish": ["start\u{1B}"]]
        let error = graphError { () throws(GraphError) in try graph.validate() }
        #expect(error?.message == "job 'finish' depends on unknown job 'start\\u{001B}' (did you mean 'start'?)")
    }

    @Test func selfDependency() {
        let graph: JobGraph = ["start": [], "a": ["start", "a"]]
        let error = graphError { () throws(GraphError) in try graph.validate() }
        #expect(error == GraphError(code: .selfDependency, job: "a", message: "job 'a' depends on itself"))
    }

    @Test func duplicateParent() {
        let graph: JobGraph = ["start": [], "b": [], "a": ["start", "b", "start"]]
        let error = graphError { () throws(GraphError) in try graph.validate() }
        #expect(
            error
                == GraphError(
                    code: .duplicateParent, job: "a",
                    message: "job 'a' lists 'start' more than once in the jobs it waits for"))
    }

    @Test func duplicateTypeInLiteral() {
        let graph: JobGraph = ["x": [], "y": ["x"], "x": ["y"], "x": []]
        #expect(graph.parents["x"] == [])  // the first entry is kept
        let error = graphError { () throws(GraphError) in try graph.validate() }
        #expect(
            error
                == GraphError(
                    code: .duplicateType, job: "x",
                    message: "duplicate job type 'x': it is given 3 times; give each job type once"))
        #expect(graph != JobGraph(["x": [], "y": ["x"]]))
    }

    @Test func cycleIsNamedInOrder() {
        let graph: JobGraph = ["a": ["c"], "b": ["a"], "c": ["b"]]
        let error = graphError { () throws(GraphError) in try graph.validate() }
        #expect(error == GraphError(code: .cycle, job: "a", message: "cycle: a -> b -> c -> a"))
    }

    @Test func cycleStartsAtSmallestNameAndIgnoresOtherJobs() {
        // Two cycles, a tail leading in and a job hanging off: the cycle with the first name wins.
        let graph: JobGraph = [
            "s": [], "p": ["s", "r"], "q": ["p"], "r": ["q"], "tail": ["q"],
            "y": ["z"], "z": ["y"], "k": ["z"],
        ]
        let error = graphError { () throws(GraphError) in try graph.validate() }
        #expect(error == GraphError(code: .cycle, job: "y", message: "cycle: y -> z -> y"))
        let other: JobGraph = ["s": [], "p": ["s", "r"], "q": ["p"], "r": ["q"], "tail": ["q"]]
        let second = graphError { () throws(GraphError) in try other.validate() }
        #expect(second?.message == "cycle: p -> q -> r -> p")
    }

    @Test func missingHandlers() {
        let error = graphError { () throws(GraphError) in
            try diamond.validate(handledTypes: ["start", "result1", "reslt2", "cleanup"])
        }
        #expect(
            error
                == GraphError(
                    code: .missingHandler, job: "finish",
                    message:
                        "no handler for 2 job types: 'finish', 'result2' (did you mean 'reslt2'?); handlers that match no job type: 'cleanup', 'reslt2'"
                ))
    }

    @Test func oneMissingHandler() {
        let error = graphError { () throws(GraphError) in
            try diamond.validate(handledTypes: ["start", "result1", "result2"])
        }
        #expect(error == GraphError(code: .missingHandler, job: "finish", message: "no handler for job type 'finish'"))
    }

    @Test func extraHandlersAloneAreFine() throws {
        try diamond.validate(handledTypes: ["start", "result1", "result2", "finish", "unused"])
    }

    @Test func handlerCheckComesAfterGraphCheck() {
        let graph: JobGraph = ["a": ["a"]]
        let error = graphError { () throws(GraphError) in try graph.validate(handledTypes: []) }
        #expect(error?.code == .selfDependency)
    }

    // MARK: Size

    @Test func deepChain() throws {
        let depth = 10_000
        var parents: [String: [String]] = [:]
        for i in 0..<depth { parents["step\(i)"] = i == 0 ? [] : ["step\(i - 1)"] }
        let graph = JobGraph(parents)
        let clock = ContinuousClock()
        let elapsed = try clock.measure {
            try graph.validate()
            let order = graph.topologicalOrder()
            #expect(order == (0..<depth).map { "step\($0)" })
            #expect(graph.descendants(of: "step0").count == depth - 1)
        }
        // Generous: this guards against quadratic work, not a benchmark.
        _ = elapsed  // no timing assertions in tests: docs/performance.md has the figures
    }

    @Test func deepCycleIsReportedWithoutRecursion() {
        let depth = 10_000
        var parents: [String: [String]] = [:]
        for i in 0..<depth { parents["n\(i)"] = ["n\((i + depth - 1) % depth)"] }
        let error = graphError { () throws(GraphError) in try JobGraph(parents).validate() }
        #expect(error?.code == .cycle)
        #expect(error?.job == "n0")
        #expect(error?.message.hasPrefix("cycle: n0 -> n1 -> n2 -> ") == true)
        #expect(error?.message.hasSuffix(" -> n9999 -> n0") == true)
    }

    @Test func wideGraph() throws {
        let width = 99_998
        var parents: [String: [String]] = ["root": []]
        var middle: [String] = []
        middle.reserveCapacity(width)
        for i in 0..<width {
            let name = "job\(i)"
            parents[name] = ["root"]
            middle.append(name)
        }
        parents["end"] = middle
        let graph = JobGraph(parents)
        #expect(graph.types.count == 100_000)
        let clock = ContinuousClock()
        let elapsed = try clock.measure {
            try graph.validate()
            let order = graph.topologicalOrder()
            #expect(order.first == "root")
            #expect(order.last == "end")
            #expect(order.count == 100_000)
        }
        _ = elapsed  // no timing assertions in tests: docs/performance.md has the figures
        #expect(graph.children(of: "job5") == ["end"])
    }

    @Test func wideGraphUnknownParentStillSuggests() {
        var parents: [String: [String]] = [:]
        for i in 0..<100_000 { parents["job\(i)"] = [] }
        parents["end"] = ["jbo42"]
        let error = graphError { () throws(GraphError) in try JobGraph(parents).validate() }
        #expect(error?.message == "job 'end' depends on unknown job 'jbo42' (did you mean 'job42'?)")
    }

    // MARK: Randomized

    /// Random small graphs, some with cycles, checked against brute force.
    @Test func randomGraphsAgreeWithBruteForce() throws {
        let seed: UInt64 = 0x5EED_0F_6_AF
        var random = SplitMixRNG(seed: seed)
        for round in 0..<300 {
            let count = Int(random.next() % 12) + 1
            let names = (0..<count).map { "n\($0)" }
            var parents: [String: [String]] = [:]
            for (i, name) in names.enumerated() {
                // Mostly edges to earlier jobs (a DAG); now and then a back edge makes a cycle.
                var list: [String] = []
                for j in 0..<count where j != i && random.next() % 4 == 0 {
                    if j < i || random.next() % 8 == 0 { list.append(names[j]) }
                }
                parents[name] = list
            }
            let graph = JobGraph(parents)
            let order = graph.topologicalOrder()
            let rank = Dictionary(uniqueKeysWithValues: order.enumerated().map { ($1, $0) })
            #expect(rank.count == order.count, "seed \(seed) round \(round): repeated job in order")
            for (child, list) in parents where rank[child] != nil {
                for parent in list {
                    #expect(rank[parent].map { $0 < rank[child]! } == true, "seed \(seed) round \(round)")
                }
            }
            do {
                try graph.validate()
                #expect(order.count == count, "seed \(seed) round \(round): valid graph with a short order")
            } catch {
                #expect(error.code == .cycle, "seed \(seed) round \(round): \(error)")
                #expect(order.count < count, "seed \(seed) round \(round): cycle reported in a DAG")
                let cycle = error.message.dropFirst("cycle: ".count).components(separatedBy: " -> ")
                #expect(cycle.first == cycle.last && cycle.count >= 3, "seed \(seed) round \(round)")
                for k in 1..<cycle.count {
                    #expect(parents[cycle[k]]?.contains(cycle[k - 1]) == true, "seed \(seed) round \(round): \(error)")
                }
            }
            for name in names {
                // Brute-force reachability, kept in topological order.
                var reached: Set<String> = []
                var frontier = [name]
                while let node = frontier.popLast() {
                    for (child, list) in parents where list.contains(node) && !reached.contains(child) {
                        reached.insert(child)
                        frontier.append(child)
                    }
                }
                let expected = order.filter { reached.contains($0) && $0 != name }
                #expect(graph.descendants(of: name) == expected, "seed \(seed) round \(round) job \(name)")
            }
        }
    }

    // MARK: Codable and equality

    @Test func codableRoundTrip() throws {
        let data = try JSONEncoder().encode(diamond)
        let object = try JSONSerialization.jsonObject(with: data) as? [String: [String]]
        #expect(object == diamond.parents)
        let decoded = try JSONDecoder().decode(JobGraph.self, from: data)
        #expect(decoded == diamond)
        #expect(decoded.hashValue == diamond.hashValue)
    }

    // MARK: Suggestions

    @Test func distances() {
        #expect(Suggest.distance("reslt2", "result2") == 1)
        #expect(Suggest.distance("retires", "retries") == 1)  // one swap
        #expect(Suggest.distance("kitten", "sitting") == 3)
        #expect(Suggest.distance("", "abc") == 3)
        #expect(Suggest.distance("same", "same") == 0)
        #expect(Suggest.distance("🚀a", "a🚀") == 1)
    }

    @Test func suggestionThreshold() {
        #expect(Suggest.threshold(for: "ab") == 1)
        #expect(Suggest.threshold(for: "reslt2") == 2)
        #expect(Suggest.closest(to: "ab", among: ["xy", "ac"]) == "ac")
        #expect(Suggest.closest(to: "abc", among: ["xyz"]) == nil)
        // Ties go to the name that sorts first, whatever the candidate order.
        #expect(Suggest.closest(to: "cat", among: ["hat", "bat"]) == "bat")
        #expect(Suggest.closest(to: "cat", among: ["bat", "hat"]) == "bat")
        #expect(Suggest.closest(to: "result", among: ["resul", "result12"]) == "resul")
    }
}

