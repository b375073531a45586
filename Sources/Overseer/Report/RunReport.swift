import Foundation

/// How ``RunReport`` draws and checks.
public struct ReportOptions: Sendable {
    public enum Layout: Sendable, Hashable {
        /// Graphviz `dot` when it is installed, else the built-in layered layout.
        case automatic
        /// Always the built-in layered layout.
        case builtIn
    }

    public var layout: Layout = .automatic
    /// The `dot` executable; nil searches PATH.
    public var dotPath: String?
    /// Seconds `dot` may take before the built-in layout is used instead.
    public var dotTimeout: Double = 120
    /// Run ``LogStore/verify()`` and show its result (the whole store is checked).
    public var verify = true
    /// Bytes for error messages, results and output tails in all; each is shortened evenly when
    /// they would need more.
    public var textBudget = 3 << 20

    public init() {}
}

/// A run as one self-contained HTML file: the graph coloured by status, a timeline of every
/// attempt by worker, a table of jobs, and a time-travel slider over the run's log positions that
/// redraws all three by folding the embedded facts in the page (the fold of docs/log-format.md).
///
/// ```swift
/// let html = try RunReport.html(store: store, run: "nightly-42")
/// try html.write(toFile: "nightly-42.html", atomically: true, encoding: .utf8)
/// ```
///
/// The page needs no network and no other file. Open it at a position with `#@N`.
public enum RunReport {
    public static func html(store: LogStore, run: String) throws -> String {
        try html(store: store, run: run, options: ReportOptions())
    }

    public static func html(store: LogStore, run: String, options: ReportOptions) throws -> String {
        try build(store: store, run: run, options: options).html
    }

    /// A generated report, with what went into it.
    public struct Output: Sendable {
        public let html: String
        /// The store's verification, unless ``ReportOptions/verify`` was false.
        public let verify: VerifyReport?
        /// Who drew the graph: "Graphviz dot 2.43.0" or "built-in layered layout".
        public let layout: String
        /// Why the built-in layout was used, when it was.
        public let layoutNote: String?
        /// Facts of the run embedded for time travel.
        public let facts: Int
    }

    public static func build(store: LogStore, run: String, options: ReportOptions = ReportOptions()) throws -> Output {
        let facts = try store.history(ofRun: run)
        guard let first = facts.first, first.kind == .runCreated else {
            throw StoreError(.invalid, path: store.path, "no run '\(run)' in the store")
        }
        let headPosition = try store.lastPosition()
        let headHash = try store.headHash()
        let verify = options.verify ? try store.verify() : nil
        let model = ReportModel(run: run, facts: facts, textBudget: options.textBudget)
        let drawing = GraphLayout.layout(
            labels: model.jobTypes, parents: model.jobParents, useDot: options.layout == .automatic, dotPath: options.dotPath,
            timeout: options.dotTimeout)
        let html = ReportPage(
            model: model, drawing: drawing, storePath: store.path, headPosition: headPosition, headHash: headHash,
            verify: verify
        ).render()
        return Output(html: html, verify: verify, layout: drawing.engine, layoutNote: drawing.fallbackReason, facts: model.factCount)
    }
}

/// The run's facts in the compact form the page folds. Strings are interned (`s`, short names;
/// `l`, long texts shortened to a budget); each fact is nine integers.
struct ReportModel {
    /// Codes shared with the page's script.
    static let kinds: [FactKind] = [.runCreated, .runAborted, .jobCreated, .jobClaimed, .jobFinished, .jobFailed, .jobReleased, .jobAborted, .jobRetried, .jobRejected]
    static let fieldsPerFact = 9

    let run: String
    var name: String?
    var jobIDs: [String] = []
    var jobTypes: [String] = []
    var jobParents: [[Int]] = []
    var jobPriorities: [Int] = []
    var short: [String] = []
    private var shortIndex: [String: Int] = [:]
    /// Long texts, already shortened.
    var long: [String] = []
    var records: [Int64] = []
    let startTime: Instant
    let lastFact: Fact
    let factCount: Int
    /// The longest text kept, in characters, when the budget shortened them.
    var textCap: Int?

    /// A long text before shortening: keep its start (errors) or its end (output tails).
    private struct Text: Hashable {
        var text: String
        var keepEnd: Bool
    }

    init(run: String, facts: [Fact], textBudget: Int) {
        self.run = run
        self.startTime = facts[0].time
        self.lastFact = facts[facts.count - 1]
        self.factCount = facts.count
        self.name = facts[0].data["name"]?.stringValue
        var jobIndex: [String: Int] = [:]
        var texts: [Text] = []
        var textIndex: [Text: Int] = [:]
        func text(_ s: String?, keepEnd: Bool = false) -> Int64 {
            guard let s, !s.isEmpty else { return 0 }
            let t = Text(text: s, keepEnd: keepEnd)
            if let i = textIndex[t] { return Int64(i + 1) }
            texts.append(t)
            textIndex[t] = texts.count - 1
            return Int64(texts.count)
        }
        var previousPosition: UInt64 = 0
        var previousTime = facts[0].time.microseconds
        records.reserveCapacity(facts.count * ReportModel.fieldsPerFact)
        for f in facts {
            guard let kind = ReportModel.kinds.firstIndex(of: f.kind) else { continue }
            var job: Int64 = 0
            if f.kind == .jobCreated, let id = f.job {
                jobIndex[id] = jobIDs.count
                jobIDs.append(id)
                jobTypes.append(f.data["type"]?.stringValue ?? id)
                jobParents.append((f.data["parents"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap { jobIndex[$0] } })
                jobPriorities.append(Int(f.data["priority"]?.intValue ?? 0))
            }
            if let id = f.job {
                guard let j = jobIndex[id] else { continue }
                job = Int64(j + 1)
            }
            var a: Int64 = 0
            var b: Int64 = 0
            switch f.kind {
            case .jobClaimed:
                a = f.data["lease_ms"]?.intValue ?? 0
            case .jobFinished:
                let result = f.data["result"] ?? .null
                if result["stdout_tail"] != nil || result["stderr_tail"] != nil {
                    a = text(result["stdout_tail"]?.stringValue, keepEnd: true)
                    b = text(result["stderr_tail"]?.stringValue, keepEnd: true)
                } else if !result.isNull {
                    a = text(result.canonicalString)
                }
            case .jobFailed:
                a = text(ReportModel.describe(error: f.data["error"]))
            case .jobReleased:
                a = text(ReportModel.describe(error: f.data["error"]))
                if let nb = f.data["not_before"]?.stringValue.flatMap(Instant.init(rfc3339:)) {
                    b = max(0, (nb.microseconds - f.time.microseconds) / 1000) + 1
                }
            case .jobAborted:
                a = f.data["cause"]?.stringValue.map { Int64(intern($0) + 1) } ?? 0
                b = text(ReportModel.describe(error: f.data["error"]))
            case .jobRetried:
                a = f.data["cause"]?.stringValue.map { Int64(intern($0) + 1) } ?? 0
            case .jobRejected:
                let outcome = f.data["outcome"]?.stringValue ?? "an outcome"
                let claimRev = f.data["claim_revision"]?.intValue.map(String.init) ?? "?"
                let rev = f.data["current_revision"]?.intValue.map(String.init) ?? "?"
                let status = f.data["current_status"]?.stringValue ?? "?"
                a = text("late \(outcome) result of attempt \(f.attempt.map(String.init) ?? "?") (claim revision \(claimRev)) refused: the job was at revision \(rev), \(status)")
            default:
                break
            }
            let fields: [Int64] = [
                Int64(f.position - previousPosition), f.time.microseconds - previousTime, Int64(kind), job,
                Int64(f.attempt ?? 0), f.worker.map { Int64(intern($0) + 1) } ?? 0, f.reason.map { Int64(intern($0) + 1) } ?? 0, a, b,
            ]
            records.append(contentsOf: fields)
            previousPosition = f.position
            previousTime = f.time.microseconds
        }
        // Shorten the long texts evenly so that they fit the budget.
        let lengths = texts.map { $0.text.utf8.count }
        let total = lengths.reduce(0, +)
        var cap = Int.max
        if total > textBudget {
            var lo = 16
            var hi = lengths.max() ?? 16
            while lo < hi {
                let mid = (lo + hi + 1) / 2
                if lengths.reduce(0, { $0 + min($1, mid) }) <= textBudget { lo = mid } else { hi = mid - 1 }
            }
            cap = lo
            textCap = lo
        }
        long = texts.map { t in
            guard t.text.utf8.count > cap else { return t.text }
            let chars = max(8, cap)
            return t.keepEnd ? "…" + String(t.text.suffix(chars)) : String(t.text.prefix(chars)) + "…"
        }
    }

    private mutating func intern(_ s: String) -> Int {
        if let i = shortIndex[s] { return i }
        short.append(s)
        shortIndex[s] = short.count - 1
        return short.count - 1
    }

    /// `{type, message}` → "Type: message" (the type without its module).
    static func describe(error: JSONValue?) -> String? {
        guard let error, !error.isNull else { return nil }
        let message = error["message"]?.stringValue
        let type = error["type"]?.stringValue.map { t in String(t.split(separator: ".").last ?? Substring(t)) }
        switch (type, message) {
        case (let t?, let m?): return t.isEmpty ? m : "\(t): \(m)"
        case (nil, let m?): return m
        case (let t?, nil): return t
        default: return error.canonicalString
        }
    }
}

/// Writes the page.
struct ReportPage {
    let model: ReportModel
    let drawing: GraphDrawing
    let storePath: String
    let headPosition: UInt64
    let headHash: Digest
    let verify: VerifyReport?

    func render() -> String {
        var h = ""
        h.reserveCapacity(model.records.count * 4 + drawing.edges.count * 160 + 200_000)
        let title = "Run \(model.run)" + (model.name.map { " (\($0))" } ?? "")
        h += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        h += "<meta name=\"generator\" content=\"Overseer\">"
        h += "<title>\(esc(title)) — Overseer report</title>\n<style>\(ReportAssets.css)</style></head>\n"
        h += "<body data-position=\"\(model.lastFact.position)\" data-run-status=\"\">\n"
        h += "<header><h1>\(esc(title))</h1><div id=\"runline\"><span id=\"run-status\" class=\"badge\"></span> <span id=\"run-counts\"></span></div>"
        h += "<div class=\"meta\">Created \(esc(model.startTime.rfc3339)) · \(model.jobIDs.count) jobs · \(model.factCount) facts of this run (positions \(model.lastFactPositionRange)) · store \(esc(storePath))</div>"
        h += "</header>\n"
        h += "<noscript><p class=\"warn\">This report draws its graph colours, timeline and table with JavaScript; enable it to see them.</p></noscript>\n"
        h += "<div id=\"fold-error\" class=\"warn\" hidden></div>\n"
        // Time travel.
        h += "<section id=\"travel\"><div class=\"controls\">"
        h += "<button id=\"first\" title=\"First fact (Home)\">|◀</button><button id=\"prev\" title=\"Previous fact (←)\">◀</button>"
        h += "<button id=\"play\" title=\"Replay from here\">play</button><button id=\"next\" title=\"Next fact (→)\">▶</button><button id=\"last\" title=\"Last fact (End)\">▶|</button>"
        h += "<input id=\"slider\" type=\"range\" min=\"0\" max=\"\(max(0, model.factCount - 1))\" value=\"\(max(0, model.factCount - 1))\" aria-label=\"log position\">"
        h += "</div><div id=\"at\"><b id=\"at-pos\"></b> <span id=\"at-time\"></span> <span id=\"at-fact\"></span></div></section>\n"
        // Graph.
        h += "<section id=\"graph-sec\"><h2>Graph</h2><div class=\"note\" id=\"layout-note\">"
        if let reason = drawing.fallbackReason {
            h += "Drawn with the \(esc(drawing.engine)): \(esc(reason))."
        } else {
            h += "Laid out by \(esc(drawing.engine))."
        }
        h += " Colours show each job's status as of the slider's position; click a job to find it in the table.</div>"
        h += legend()
        h += "<div class=\"zoom\">Zoom <button data-gz=\"0\">fit</button><button data-gz=\"1\">100%</button></div>"
        h += "<div id=\"graph-wrap\" class=\"wrap\">"
        h += svg()
        h += "</div></section>\n"
        // Timeline.
        h += "<section id=\"timeline-sec\"><h2>Timeline</h2><div class=\"note\">Every attempt of every job, by worker, from claim to outcome. "
        h += "The blue line is the slider's moment. <span id=\"tl-summary\"></span></div>"
        h += "<div class=\"legend\"><span class=\"sw a-finished\"></span>finished <span class=\"sw a-failed\"></span>failed "
        h += "<span class=\"sw a-released\"></span>released for a retry <span class=\"sw a-expired\"></span>lease expired "
        h += "<span class=\"sw a-shutdown\"></span>released at shutdown <span class=\"sw a-aborted\"></span>aborted "
        h += "<span class=\"sw a-running\"></span>running <span class=\"mk\">◆</span> late result rejected. Hover for details; click to find the job.</div>"
        h += "<div class=\"zoom\">Width <button data-tz=\"1\" class=\"on\">1×</button><button data-tz=\"4\">4×</button><button data-tz=\"16\">16×</button></div>"
        h += "<div id=\"tl-wrap\" class=\"wrap\"><div id=\"tl-space\"><canvas id=\"timeline\"></canvas></div></div></section>\n"
        // Jobs.
        h += "<section id=\"jobs-sec\"><h2>Jobs</h2><div class=\"filters\" id=\"filters\"></div>"
        h += "<input id=\"search\" type=\"search\" placeholder=\"filter by name\"> <span id=\"shown\"></span>"
        h += "<div class=\"tablewrap\"><table id=\"jobs\"><thead><tr>"
        for (key, label) in [("name", "Job"), ("status", "Status"), ("attempts", "Attempts"), ("duration", "Duration"), ("worker", "Worker"), ("error", "Error"), ("output", "Output")] {
            h += "<th data-sort=\"\(key)\">\(label)</th>"
        }
        h += "</tr></thead><tbody id=\"rows\"></tbody></table></div>"
        h += "<div id=\"pager\"><button id=\"page-prev\">‹ previous</button> <button id=\"page-next\">next ›</button></div></section>\n"
        // Integrity.
        h += "<section id=\"chain\"><h2>Integrity</h2><table class=\"kv\">"
        h += "<tr><th>This run's chain head</th><td><code id=\"run-head\">@\(model.lastFact.position) \(model.lastFact.hash.hex)</code><div class=\"note\">The hash of the run's latest fact. Each fact's hash covers its body and the previous fact's hash, so it seals every fact of the log up to it.</div></td></tr>"
        h += "<tr><th>Store head</th><td><code id=\"store-head\">@\(headPosition) \(headHash.hex)</code></td></tr>"
        if let verify {
            h += "<tr><th>Verify</th><td><span id=\"verify\" class=\"\(verify.ok ? "ok" : "bad")\">\(esc(verify.description))</span>"
            for v in verify.violations.prefix(5).dropFirst() { h += "<div class=\"bad\">also: \(esc(v.description))</div>" }
            h += "</td></tr>"
        } else {
            h += "<tr><th>Verify</th><td><span id=\"verify\">not run for this report</span></td></tr>"
        }
        if let cap = model.textCap {
            h += "<tr><th>Texts</th><td>Errors, results and output tails were shortened to \(cap) bytes each to keep this file small; the store keeps them whole.</td></tr>"
        }
        h += "<tr><th>Generated</th><td>\(esc(Instant.now().rfc3339)) by Overseer</td></tr>"
        h += "</table></section>\n"
        h += "<div id=\"tip\" hidden></div>\n"
        h += "<script type=\"application/json\" id=\"overseer-data\">"
        h += dataJSON()
        h += "</script>\n<script>\(ReportAssets.script)</script>\n</body></html>\n"
        return h
    }

    func legend() -> String {
        var h = "<div class=\"legend\">"
        for s in JobStatus.allCases { h += "<span class=\"sw s-\(s.rawValue)\"></span>\(s.rawValue) " }
        h += "<span class=\"sw s-unstarted ready\"></span>unstarted, ready <span class=\"sw s-unstarted waiting\"></span>unstarted, waiting for a retry delay</div>"
        return h
    }

    func svg() -> String {
        let f = GraphLayout.fmt
        var s = "<svg id=\"graph\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(f(drawing.width))\" height=\"\(f(drawing.height))\" viewBox=\"0 0 \(f(drawing.width)) \(f(drawing.height))\">"
        s += "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"0\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\" fill=\"#667\"/></marker></defs>"
        s += "<g class=\"edges\">"
        for e in drawing.edges {
            s += "<path d=\"\(e.path)\" data-e=\"\(e.from) \(e.to)\"/>"
        }
        s += "</g><g class=\"nodes\">"
        for (i, n) in drawing.nodes.enumerated() {
            s += "<g id=\"n\(i)\" class=\"node\" data-j=\"\(i)\"><rect x=\"\(f(n.x - n.width / 2))\" y=\"\(f(n.y - n.height / 2))\" width=\"\(f(n.width))\" height=\"\(f(n.height))\" rx=\"5\"/>"
            s += "<text x=\"\(f(n.x))\" y=\"\(f(n.y + 3.5))\">\(esc(GraphLayout.shortLabel(model.jobTypes[i])))</text></g>"
        }
        s += "</g></svg>"
        return s
    }

    func dataJSON() -> String {
        var j = "{\"v\":1,\"run\":\(js(model.run)),\"t0\":\(model.startTime.microseconds),"
        j += "\"kinds\":[" + ReportModel.kinds.map { js($0.rawValue) }.joined(separator: ",") + "],"
        j += "\"jt\":[" + model.jobTypes.map(js).joined(separator: ",") + "],"
        j += "\"jp\":[" + model.jobParents.map { "[" + $0.map(String.init).joined(separator: ",") + "]" }.joined(separator: ",") + "],"
        j += "\"jr\":[" + model.jobPriorities.map(String.init).joined(separator: ",") + "],"
        j += "\"s\":[" + model.short.map(js).joined(separator: ",") + "],"
        j += "\"l\":[" + model.long.map(js).joined(separator: ",") + "],"
        var f = ""
        f.reserveCapacity(model.records.count * 3)
        for (i, v) in model.records.enumerated() {
            if i > 0 { f += "," }
            f += String(v)
        }
        j += "\"f\":[" + f + "]}"
        return j
    }

    /// A JSON string safe inside a `<script>` element: `<`, `>`, `&` and U+2028/9 escaped too.
    func js(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "<": out += "\\u003c"
            case ">": out += "\\u003e"
            case "&": out += "\\u0026"
            case "\u{2028}": out += "\\u2028"
            case "\u{2029}": out += "\\u2029"
            default:
                if u.value < 0x20 {
                    out += String(format: "\\u%04x", u.value)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    func esc(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}

extension ReportModel {
    var lastFactPositionRange: String { "\(startPosition)–\(lastFact.position)" }
    var startPosition: UInt64 {
        var p: UInt64 = 0
        if !records.isEmpty { p = UInt64(records[0]) }
        return p
    }
}
