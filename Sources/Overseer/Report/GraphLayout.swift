import Foundation

/// A drawn graph: node boxes and edge paths in SVG units (points), y pointing down.
struct GraphDrawing {
    struct Node {
        /// Centre and size.
        var x: Double, y: Double, width: Double, height: Double
    }

    struct Edge {
        var from: Int, to: Int
        /// An SVG path (`d`).
        var path: String
    }

    var width: Double
    var height: Double
    var nodes: [Node]
    var edges: [Edge]
    /// Which engine drew it ("Graphviz dot 2.43.0", "built-in layered layout").
    var engine: String
    /// Why the built-in layout was used, when it was.
    var fallbackReason: String?
}

/// Lays a DAG out from left to right: with Graphviz `dot` when it is installed, else with a
/// layered layout of its own (longest-path layers, dummy nodes for long edges, barycenter
/// ordering).
enum GraphLayout {
    /// Node label font size (points) and the box height.
    static let fontSize = 10.0
    static let nodeHeight = 22.0

    /// Labels longer than this are shortened in the drawing (the full name is in the tooltip).
    static func shortLabel(_ s: String) -> String {
        s.count <= 32 ? s : String(s.prefix(31)) + "…"
    }

    /// An estimate of a label's width in points (Helvetica-like, 10 pt).
    static func labelWidth(_ s: String) -> Double {
        var w = 0.0
        for c in s.unicodeScalars {
            switch c {
            case "i", "l", "j", "I", ".", ",", ":", ";", "|", "!", "'": w += 2.8
            case "m", "w", "M", "W": w += 8.3
            case "A"..."Z": w += 6.7
            default: w += 5.6
            }
        }
        return w
    }

    /// The executable `dot` on PATH (or at `path`), if any.
    static func findDot(_ path: String?) -> String? {
        if let path { return FileManager.default.isExecutableFile(atPath: path) ? path : nil }
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        return dirs.map { "\($0)/dot" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func layout(labels: [String], parents: [[Int]], useDot: Bool, dotPath: String?, timeout: Double) -> GraphDrawing {
        guard useDot else {
            return builtIn(labels: labels, parents: parents, reason: "the built-in layout was requested")
        }
        guard let dot = findDot(dotPath) else {
            return builtIn(labels: labels, parents: parents, reason: "Graphviz dot was not available (install Debian's graphviz for its layout)")
        }
        do {
            return try graphviz(dot, labels: labels, parents: parents, timeout: timeout)
        } catch {
            return builtIn(labels: labels, parents: parents, reason: "Graphviz dot failed: \(error)")
        }
    }

    struct DotFailure: Error, CustomStringConvertible {
        let description: String
    }

    // MARK: Graphviz

    static func graphviz(_ dot: String, labels: [String], parents: [[Int]], timeout: Double) throws -> GraphDrawing {
        var source = "digraph G {\n rankdir=LR; nodesep=0.12; ranksep=0.45;\n"
        source += " node [shape=box, style=rounded, fontname=\"Helvetica\", fontsize=\(Int(fontSize)), height=\(nodeHeight / 72), margin=\"0.08,0.02\"];\n edge [arrowsize=0.6];\n"
        for (i, label) in labels.enumerated() {
            source += " n\(i) [label=\"\(dotEscape(shortLabel(label)))\"];\n"
        }
        for (child, ps) in parents.enumerated() {
            for p in ps { source += " n\(p) -> n\(child);\n" }
        }
        source += "}\n"
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("overseer-report-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("graph.dot")
        let output = dir.appendingPathComponent("graph.plain")
        let errors = dir.appendingPathComponent("dot.err")
        try Data(source.utf8).write(to: input)
        _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
        let version = (try? run(dot, ["-V"], stderr: errors, timeout: 10)).map { _ in
            (try? String(contentsOf: errors, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        } ?? ""
        _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
        let status = try run(dot, ["-Tplain", "-o", output.path, input.path], stderr: errors, timeout: timeout)
        guard status == 0 else {
            let message = ((try? String(contentsOf: errors, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            throw DotFailure(description: "exit status \(status)\(message.isEmpty ? "" : ": \(message.prefix(300))")")
        }
        let plain = try String(contentsOf: output, encoding: .utf8)
        var drawing = try parsePlain(plain, count: labels.count)
        // "dot - graphviz version 2.43.0 (0)" → "Graphviz dot 2.43.0"
        if let r = version.range(of: "version ") {
            drawing.engine = "Graphviz dot " + (version[r.upperBound...].split(separator: " ").first.map(String.init) ?? "")
        }
        return drawing
    }

    /// Runs a program to completion (or kills it after `timeout` seconds); returns its status.
    static func run(_ exe: String, _ args: [String], stderr: URL, timeout: Double) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        let err = try FileHandle(forWritingTo: stderr)
        defer { try? err.close() }
        p.standardError = err
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(2000) }
        if p.isRunning {
            p.terminate()
            p.waitUntilExit()
            throw DotFailure(description: "it took longer than \(Int(timeout)) s")
        }
        p.waitUntilExit()
        return p.terminationStatus
    }

    static func dotEscape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: " ")
    }

    /// Reads `dot -Tplain`: `graph scale w h`, `node name x y w h ...`, `edge t h n x1 y1 ...`
    /// (inches, y up).
    static func parsePlain(_ text: String, count: Int) throws -> GraphDrawing {
        var nodes = [GraphDrawing.Node?](repeating: nil, count: count)
        var edges: [GraphDrawing.Edge] = []
        var height = 0.0
        var width = 0.0
        var rawEdges: [(Int, Int, [Double])] = []
        func index(_ name: Substring) -> Int? {
            guard name.hasPrefix("n"), let i = Int(name.dropFirst()), i >= 0, i < count else { return nil }
            return i
        }
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let head = f.first else { continue }
            switch head {
            case "graph":
                guard f.count >= 4, let w = Double(f[2]), let h = Double(f[3]) else { throw DotFailure(description: "unreadable output: \(line.prefix(80))") }
                width = w * 72
                height = h * 72
            case "node":
                guard f.count >= 6, let i = index(f[1]), let x = Double(f[2]), let y = Double(f[3]), let w = Double(f[4]), let h = Double(f[5]) else {
                    throw DotFailure(description: "unreadable output: \(line.prefix(80))")
                }
                nodes[i] = .init(x: x * 72, y: y * 72, width: w * 72, height: h * 72)
            case "edge":
                guard f.count >= 4, let a = index(f[1]), let b = index(f[2]), let n = Int(f[3]), f.count >= 4 + 2 * n else {
                    throw DotFailure(description: "unreadable output: \(line.prefix(80))")
                }
                var pts: [Double] = []
                for k in 0..<(2 * n) {
                    guard let v = Double(f[4 + k]) else { throw DotFailure(description: "unreadable output: \(line.prefix(80))") }
                    pts.append(v * 72)
                }
                rawEdges.append((a, b, pts))
            default:
                continue
            }
        }
        guard nodes.allSatisfy({ $0 != nil }) else { throw DotFailure(description: "its output lacks some nodes") }
        let margin = 4.0
        func sx(_ x: Double) -> Double { x + margin }
        func sy(_ y: Double) -> Double { height - y + margin }
        let flipped = nodes.map { n in GraphDrawing.Node(x: sx(n!.x), y: sy(n!.y), width: n!.width, height: n!.height) }
        for (a, b, pts) in rawEdges {
            var d = "M\(fmt(sx(pts[0]))),\(fmt(sy(pts[1])))"
            var k = 2
            // Cubic B-spline control points, in groups of three.
            while k + 5 < pts.count {
                d += "C\(fmt(sx(pts[k]))),\(fmt(sy(pts[k + 1]))) \(fmt(sx(pts[k + 2]))),\(fmt(sy(pts[k + 3]))) \(fmt(sx(pts[k + 4]))),\(fmt(sy(pts[k + 5])))"
                k += 6
            }
            while k + 1 < pts.count {
                d += "L\(fmt(sx(pts[k]))),\(fmt(sy(pts[k + 1])))"
                k += 2
            }
            edges.append(.init(from: a, to: b, path: d))
        }
        return GraphDrawing(width: width + 2 * margin, height: height + 2 * margin, nodes: flipped, edges: edges, engine: "Graphviz dot", fallbackReason: nil)
    }

    static func fmt(_ v: Double) -> String {
        let r = (v * 10).rounded() / 10
        return r == r.rounded() ? String(Int(r)) : String(r)
    }

    // MARK: Built-in layered layout

    /// Longest-path layering from the sources, a dummy node per layer crossed by a long edge,
    /// then barycenter ordering sweeps (down and up) to reduce crossings.
    static func builtIn(labels: [String], parents: [[Int]], reason: String) -> GraphDrawing {
        let n = labels.count
        // Layers. Jobs are in creation order, which is topological, but do not rely on it.
        var layer = [Int](repeating: -1, count: n)
        func layerOf(_ v: Int, _ depth: Int) -> Int {
            if layer[v] >= 0 { return layer[v] }
            if depth > n { return 0 }  // a cycle cannot happen in a run; stay finite anyway
            var l = 0
            for p in parents[v] { l = max(l, layerOf(p, depth + 1) + 1) }
            layer[v] = l
            return l
        }
        for v in 0..<n { _ = layerOf(v, 0) }
        let layerCount = (layer.max() ?? -1) + 1
        // Vertices: real nodes, then dummies. Each edge becomes a chain between adjacent layers.
        var vLayer = layer
        var up: [[Int]] = [[Int]](repeating: [], count: n)  // neighbours in the layer before
        var down: [[Int]] = [[Int]](repeating: [], count: n)  // neighbours in the layer after
        var chains: [(from: Int, to: Int, via: [Int])] = []
        for child in 0..<n {
            for p in parents[child] {
                var prev = p
                var via: [Int] = []
                if layer[child] - layer[p] > 1 {
                    for l in (layer[p] + 1)..<layer[child] {
                        let d = vLayer.count
                        vLayer.append(l)
                        up.append([])
                        down.append([])
                        up[d].append(prev)
                        down[prev].append(d)
                        via.append(d)
                        prev = d
                    }
                }
                up[child].append(prev)
                down[prev].append(child)
                chains.append((p, child, via))
            }
        }
        var layers = [[Int]](repeating: [], count: max(layerCount, 0))
        for v in 0..<vLayer.count where vLayer[v] >= 0 { layers[vLayer[v]].append(v) }
        var order = [Double](repeating: 0, count: vLayer.count)
        func renumber() {
            for l in layers { for (i, v) in l.enumerated() { order[v] = Double(i) } }
        }
        renumber()
        func sweep(_ l: Int, by neighbours: [[Int]]) {
            let keyed = layers[l].map { v -> (Int, Double) in
                let ns = neighbours[v]
                guard !ns.isEmpty else { return (v, order[v]) }
                return (v, ns.reduce(0.0) { $0 + order[$1] } / Double(ns.count))
            }
            layers[l] = keyed.enumerated().sorted { a, b in
                a.element.1 != b.element.1 ? a.element.1 < b.element.1 : a.offset < b.offset
            }.map { $0.element.0 }
            for (i, v) in layers[l].enumerated() { order[v] = Double(i) }
        }
        func crossings() -> Int {
            var total = 0
            for l in 1..<max(layers.count, 1) {
                // Edges between layer l-1 and l as (upper order, lower order), sorted; crossings
                // are the strict inversions of the lower orders (counted with a Fenwick tree).
                var pairs: [(Int, Int)] = []
                for v in layers[l] { for u in up[v] { pairs.append((Int(order[u]), Int(order[v]))) } }
                pairs.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
                let size = layers[l].count + 1
                var tree = [Int](repeating: 0, count: size + 1)
                var seen = 0
                for (_, lower) in pairs {
                    // Earlier edges whose lower end is strictly greater cross this one.
                    var i = lower + 1
                    var atMost = 0
                    while i > 0 { atMost += tree[i]; i -= i & -i }
                    total += seen - atMost
                    i = lower + 1
                    while i <= size { tree[i] += 1; i += i & -i }
                    seen += 1
                }
            }
            return total
        }
        var best = layers
        var bestCrossings = crossings()
        for _ in 0..<6 {
            for l in 1..<max(layers.count, 1) { sweep(l, by: up) }
            if layers.count > 1 { for l in stride(from: layers.count - 2, through: 0, by: -1) { sweep(l, by: down) } }
            let c = crossings()
            if c < bestCrossings {
                bestCrossings = c
                best = layers
            }
        }
        layers = best
        renumber()
        // Coordinates: a column per layer, as wide as its widest label; nodes stacked in order.
        let shown = labels.map(shortLabel)
        let nodeWidths = shown.map { labelWidth($0) + 16 }
        var columnX: [Double] = []
        var x = 6.0
        let gap = 42.0
        var columnWidth: [Double] = []
        for l in layers {
            let w = l.filter { $0 < n }.map { nodeWidths[$0] }.max() ?? 10
            columnX.append(x + w / 2)
            columnWidth.append(w)
            x += w + gap
        }
        let slot = nodeHeight + 10
        let dummySlot = 8.0
        var column: [[Double]] = []
        var tallest = 0.0
        for l in layers {
            var y = 0.0
            var ys: [Double] = []
            for v in l {
                let s = v < n ? slot : dummySlot
                ys.append(y + s / 2)
                y += s
            }
            column.append(ys)
            tallest = max(tallest, y)
        }
        var pos = [(x: Double, y: Double)](repeating: (0, 0), count: vLayer.count)
        for (li, l) in layers.enumerated() {
            let total = l.reduce(0.0) { $0 + ($1 < n ? slot : dummySlot) }
            let offset = (tallest - total) / 2 + 6
            for (i, v) in l.enumerated() { pos[v] = (columnX[li], column[li][i] + offset) }
        }
        let nodes = (0..<n).map { GraphDrawing.Node(x: pos[$0].x, y: pos[$0].y, width: nodeWidths[$0], height: nodeHeight) }
        var edges: [GraphDrawing.Edge] = []
        for chain in chains {
            var points: [(Double, Double)] = [(pos[chain.from].x + nodeWidths[chain.from] / 2, pos[chain.from].y)]
            for d in chain.via { points.append((pos[d].x, pos[d].y)) }
            // The arrowhead (6 points long) starts where the path ends.
            points.append((pos[chain.to].x - nodeWidths[chain.to] / 2 - 6, pos[chain.to].y))
            var d = "M\(fmt(points[0].0)),\(fmt(points[0].1))"
            for i in 1..<points.count {
                let (x0, y0) = points[i - 1]
                let (x1, y1) = points[i]
                let mid = (x1 - x0) / 2
                d += "C\(fmt(x0 + mid)),\(fmt(y0)) \(fmt(x1 - mid)),\(fmt(y1)) \(fmt(x1)),\(fmt(y1))"
            }
            edges.append(.init(from: chain.from, to: chain.to, path: d))
        }
        return GraphDrawing(width: x - gap + 12, height: tallest + 12, nodes: nodes, edges: edges, engine: "built-in layered layout", fallbackReason: reason)
    }
}
