import Foundation
import Overseer

/// SplitMix64: small, seedable and the same on every platform, so a seed replays the same
/// pipelines, scripts and fault schedule.
struct TortureRNG {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `range` by rejection (no modulo bias).
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        let span = UInt64(range.upperBound - range.lowerBound) + 1
        let limit = UInt64.max - UInt64.max % span
        var x = next()
        while x >= limit { x = next() }
        return range.lowerBound + Int(x % span)
    }

    /// Uniform in [lo, hi).
    mutating func double(_ lo: Double, _ hi: Double) -> Double {
        lo + (hi - lo) * Double(next() >> 11) / Double(1 << 53)
    }

    mutating func chance(_ p: Double) -> Bool { double(0, 1) < p }

    mutating func pick<T>(_ items: [T]) -> T? { items.isEmpty ? nil : items[int(0...items.count - 1)] }

    mutating func shuffled<T>(_ items: [T]) -> [T] {
        var a = items
        if a.count < 2 { return a }
        for i in stride(from: a.count - 1, to: 0, by: -1) { a.swapAt(i, int(0...i)) }
        return a
    }

    /// A generator for one named stream of the seed (independent of how much other streams drew).
    static func stream(_ seed: UInt64, _ name: String) -> TortureRNG {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in name.utf8 {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        var r = TortureRNG(seed: seed ^ h)
        _ = r.next()
        return r
    }
}

/// One job type of the torture's fixed universe: its retry policy, timeout and limit. Every worker
/// process derives the same table from the seed.
struct TypeSpec: Sendable {
    let name: String
    let options: JobOptions
    var timeoutSeconds: Double? {
        guard let t = options.timeout else { return nil }
        let (s, a) = t.components
        return Double(s) + Double(a) / 1e18
    }
}

enum TypeTable {
    static let count = 48

    static func make(seed: UInt64) -> [TypeSpec] {
        var rng = TortureRNG.stream(seed, "types")
        return (0..<count).map { i in
            let retry = RetryPolicy(
                maximumAttempts: rng.int(1...4), initialDelay: rng.double(0.02, 0.25), multiplier: 2,
                maximumDelay: 1.0, jitter: 0.3, maximumFaults: rng.int(2...4))
            let timeout: Duration? = rng.chance(0.4) ? .milliseconds(rng.int(400...1200)) : nil
            let limit: Int? = rng.chance(0.25) ? rng.int(1...3) : nil
            return TypeSpec(name: String(format: "t%02d", i), options: JobOptions(retry: retry, timeout: timeout, maximumConcurrent: limit))
        }
    }

    static func limits(seed: UInt64) -> [String: Int] {
        var out: [String: Int] = [:]
        for t in make(seed: seed) { if let m = t.options.maximumConcurrent { out[t.name] = m } }
        return out
    }
}

/// One generated run: its graph and, per job type, the outcome script every worker follows.
struct RunSpec {
    let id: String
    let shape: String
    let graph: [String: [String]]
    let args: JSONValue
    let priority: Int
}

enum Scenario {
    static let shapes = ["chain", "diamond", "fanout", "deep", "random"]

    /// The `index`-th run of the seed. `pad` bytes of filler go into the args (the disk-full scenario).
    static func run(seed: UInt64, index: Int, pad: Int = 0) -> RunSpec {
        var rng = TortureRNG.stream(seed, "run-\(index)")
        let table = TypeTable.make(seed: seed)
        let shape = shapes[rng.int(0...shapes.count - 1)]
        let names = rng.shuffled(table.map(\.name))
        var graph: [String: [String]] = [:]
        switch shape {
        case "chain":
            let n = rng.int(3...14)
            for i in 0..<n { graph[names[i]] = i == 0 ? [] : [names[i - 1]] }
        case "diamond":
            let w = rng.int(2...8)
            graph[names[0]] = []
            for i in 1...w { graph[names[i]] = [names[0]] }
            graph[names[w + 1]] = (1...w).map { names[$0] }
        case "fanout":
            let w = rng.int(8...36)
            graph[names[0]] = []
            for i in 1...w { graph[names[i]] = [names[0]] }
            if rng.chance(0.5) { graph[names[w + 1]] = (1...w).filter { _ in rng.chance(0.5) }.map { names[$0] } }
        case "deep":
            // Layers; each node waits for one to three nodes of the previous layers.
            let layers = rng.int(6...14)
            var placed: [[String]] = []
            var next = 0
            for l in 0..<layers {
                let width = rng.int(1...3)
                var layer: [String] = []
                for _ in 0..<width where next < names.count {
                    let name = names[next]
                    next += 1
                    if l == 0 {
                        graph[name] = []
                    } else {
                        var parents: Set<String> = [rng.pick(placed[l - 1])!]
                        for _ in 0..<rng.int(0...2) {
                            if let p = rng.pick(placed[rng.int(0...l - 1)]) { parents.insert(p) }
                        }
                        graph[name] = parents.sorted()
                    }
                    layer.append(name)
                }
                if layer.isEmpty { break }
                placed.append(layer)
            }
        default:
            let n = rng.int(5...28)
            for i in 0..<n {
                var parents: Set<String> = []
                if i > 0 { for _ in 0..<rng.int(0...3) { parents.insert(names[rng.int(0...i - 1)]) } }
                graph[names[i]] = parents.sorted()
            }
        }
        var scripts: [String: JSONValue] = [:]
        let byName = Dictionary(uniqueKeysWithValues: table.map { ($0.name, $0) })
        for type in graph.keys.sorted() {
            let spec = byName[type]!
            let n = rng.int(1...3)
            let steps = (0..<n).map { i in i == n - 1 ? lastStep(&rng, spec) : step(&rng, spec) }
            scripts[type] = .array(steps.map { .string($0) })
        }
        var args: [String: JSONValue] = ["script": .object(scripts), "shape": .string(shape)]
        if pad > 0 { args["pad"] = .string(String(repeating: "x", count: pad)) }
        return RunSpec(id: String(format: "r%04d", index), shape: shape, graph: graph, args: .object(args), priority: rng.int(-2...2))
    }

    /// The last step, repeated for every later attempt: mostly one that ends well, so that
    /// runs of a dozen jobs can finish.
    static func lastStep(_ rng: inout TortureRNG, _ spec: TypeSpec) -> String {
        let x = rng.int(0...99)
        switch x {
        case 0..<70: return "finish"
        case 70..<88:
            let cap = spec.timeoutSeconds.map { Int($0 * 500) } ?? 900
            return "slow:\(rng.int(50...max(60, cap)))"
        case 88..<93: return "fail"
        case 93..<96: return "fault"
        case 96..<97: return "abort"
        default: return spec.timeoutSeconds != nil ? "timeout" : "finish"
        }
    }

    /// One scripted attempt: finish, slow:MS, fail, fault, abort or timeout (only for types with a timeout).
    static func step(_ rng: inout TortureRNG, _ spec: TypeSpec) -> String {
        let x = rng.int(0...99)
        switch x {
        case 0..<42: return "finish"
        case 42..<62:
            let cap = spec.timeoutSeconds.map { Int($0 * 500) } ?? 900
            return "slow:\(rng.int(50...max(60, cap)))"
        case 62..<73: return "fail"
        case 73..<86: return "fault"
        case 86..<89: return "abort"
        default: return spec.timeoutSeconds != nil ? "timeout" : "slow:\(rng.int(100...700))"
        }
    }
}

/// A failure a script asked for.
struct ScriptedFailure: Error, CustomStringConvertible {
    let attempt: Int
    var description: String { "scripted failure (attempt \(attempt))" }
}

enum Script {
    /// The step for this attempt: the script's entry, or its last one past its end.
    static func step(for job: Job) -> String {
        guard let steps = job.arguments["script"]?[job.type]?.arrayValue, !steps.isEmpty else { return "finish" }
        return steps[min(job.attempt - 1, steps.count - 1)].stringValue ?? "finish"
    }

    static func perform(_ job: Job) async throws {
        let step = step(for: job)
        switch step {
        case "fail": throw ScriptedFailure(attempt: job.attempt)
        case "fault": throw Fault("scripted fault (attempt \(job.attempt))")
        case "abort": throw Abort("scripted abort (attempt \(job.attempt))")
        case "timeout": try await Task.sleep(for: .seconds(30))
        default:
            if step.hasPrefix("slow:"), let ms = Int(step.dropFirst(5)) { try await Task.sleep(for: .milliseconds(ms)) }
            job.setResult(json: ["attempt": .int(Int64(job.attempt)), "worker": .string(job.worker), "parents": .int(Int64(job.parentResults.count))])
        }
    }
}
