import Foundation
import Overseer
import Testing

/// Headless Chromium, when installed (Debian's `chromium`; `scripts/setup.sh --extras`).
let chromiumPath: String? = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first {
    FileManager.default.isExecutableFile(atPath: $0)
}

/// Runs headless Chromium on `url` with `args`; returns stdout.
func chromium(_ args: [String], url: String, profile: String) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: chromiumPath!)
    p.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=\(profile)", "--virtual-time-budget=15000"] + args + [url]
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    let reader = Reader(out.fileHandleForReading)
    let deadline = Date().addingTimeInterval(90)
    while p.isRunning && Date() < deadline { usleep(20_000) }
    if p.isRunning {
        p.terminate()
        Issue.record("chromium timed out on \(url)")
    }
    p.waitUntilExit()
    return reader.text()
}

/// What the report's page shows, read from Chromium's DOM dump.
struct ShownReport {
    let body: [String: String]
    /// Job type → the status its table row shows.
    let statuses: [String: String]
    /// Job type → the row's cells as text.
    let cells: [String: [String]]
    let timeline: [String: String]

    init(dom: String) throws {
        func attributes(_ tag: Substring) -> [String: String] {
            var out: [String: String] = [:]
            for m in tag.matches(of: /([a-z-]+)="([^"]*)"/) { out[String(m.1)] = String(m.2) }
            return out
        }
        let bodyTag = try #require(dom.firstMatch(of: /<body([^>]*)>/))
        body = attributes(bodyTag.1)
        var statuses: [String: String] = [:]
        var cells: [String: [String]] = [:]
        for row in dom.matches(of: /<tr([^>]*data-job="[^"]*"[^>]*)>(.*?)<\/tr>/.dotMatchesNewlines()) {
            let a = attributes(row.1)
            guard let job = a["data-job"], a["style"]?.contains("none") != true else { continue }
            statuses[job] = a["data-status"]
            cells[job] = row.2.matches(of: /<td[^>]*>(.*?)<\/td>/.dotMatchesNewlines()).map {
                String($0.1).replacing(/<[^>]+>/, with: " ").replacingOccurrences(of: "&amp;", with: "&")
            }
        }
        self.statuses = statuses
        self.cells = cells
        let summary = try #require(dom.firstMatch(of: /<span id="tl-summary"([^>]*)>/))
        timeline = attributes(summary.1)
    }
}

/// An ETL pipeline with a job that fails once and then recovers, and one that fails for good.
func etlPipeline(_ box: Sandbox) -> String {
    box.write("etl.json", """
        { "name": "etl",
          "jobs": {
            "extract":   { "command": ["sh", "-c", "for i in 1 2 3; do echo row $i; done; echo 'extract done' >&2"] },
            "flaky":     { "command": ["sh", "-c", "if [ -f flag ]; then echo recovered; else touch flag; echo 'first try fails' >&2; exit 1; fi"],
                           "retries": 2, "backoff": 0.05 },
            "transform": { "after": ["extract", "flaky"], "command": ["sh", "-c", "echo transformed"] },
            "load":      { "after": ["transform"], "command": ["sh", "-c", "echo loaded 3 rows"] },
            "audit":     { "after": ["extract"], "command": ["sh", "-c", "echo 'audit: checksum mismatch' >&2; exit 3"] }
          } }
        """)
}

@Suite struct ReportCLITests {
    @Test func reportWritesOneHTMLFileAndMetricsPrintPrometheusText() throws {
        let box = Sandbox("report")
        let run = try box.run(["run", etlPipeline(box), "--run", "etl1", "--workers", "2"])
        #expect(run.status == 1, "the audit job fails, so the run fails: \(run.stderr)")
        let r = try box.run(["report", "etl1", "--output", box.path + "/etl1.html"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("wrote \(box.path)/etl1.html ("))
        let html = box.read("etl1.html")
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.contains("<h1>Run etl1 (etl)</h1>"))
        #expect(html.contains("id=\"verify\" class=\"ok\""))
        let stdout = try box.run(["report", "etl1", "--output", "-", "--no-dot", "--no-verify"])
        #expect(stdout.status == 0)
        #expect(stdout.stdout.contains("built-in layered layout"))
        #expect(stdout.stdout.contains("not run for this report"))

        let missing = try box.run(["report", "etl1"])
        #expect(missing.status == 2)
        #expect(missing.stderr.hasPrefix("overseer report: 'report' needs --output FILE.html\n"))
        let unknown = try box.run(["report", "nope", "--output", box.path + "/x.html"])
        #expect(unknown.status == 2)
        #expect(unknown.stderr.contains("no run 'nope'"))
        #expect(!FileManager.default.fileExists(atPath: box.path + "/x.html"))

        let m = try box.run(["metrics"])
        #expect(m.status == 0, "\(m.stderr)")
        for line in [
            "overseer_jobs{type=\"flaky\",status=\"finished\"} 1", "overseer_jobs{type=\"audit\",status=\"failed\"} 1",
            "overseer_job_attempts_total{type=\"flaky\"} 2", "overseer_job_retries_total{type=\"flaky\"} 1",
            "overseer_job_releases_total{type=\"flaky\",reason=\"error\"} 1", "overseer_job_claim_to_finish_seconds_count{type=\"load\"} 1",
            "overseer_runs{status=\"failed\"} 1", "# TYPE overseer_job_claim_to_finish_seconds histogram",
        ] {
            #expect(m.stdout.contains(line + "\n"), "metrics lack '\(line)'")
        }
        let store = try LogStore(path: box.db)
        #expect(m.stdout.contains("overseer_facts_appended_total \(try store.lastPosition())\n"))
        let noStore = try box.run(["metrics", "--db", box.path + "/absent"], db: false)
        #expect(noStore.status == 3)
    }

    @Test(.enabled(if: chromiumPath != nil, "headless Chromium is not installed (apt-get install chromium, or scripts/setup.sh --extras)"))
    func aBrowserShowsTheRunAsOfTheSliderPosition() throws {
        let box = Sandbox("report-browser")
        _ = try box.run(["run", etlPipeline(box), "--run", "etl2", "--workers", "2"])
        let file = box.path + "/etl2.html"
        let r = try box.run(["report", "etl2", "--output", file])
        #expect(r.status == 0, "\(r.stderr)")

        let store = try LogStore(path: box.db)
        let history = try store.history(ofRun: "etl2")
        // Just after flaky's first attempt failed (it is waiting for its retry), and the end.
        let released = try #require(history.first { $0.kind == .jobReleased && $0.job == "etl2/flaky" })
        let last = history.last!
        var shown: [UInt64: ShownReport] = [:]
        for position in [released.position, last.position] {
            let dom = try chromium(["--dump-dom"], url: "file://\(file)#@\(position)", profile: box.path + "/chrome")
            let page = try ShownReport(dom: dom)
            #expect(page.body["data-ready"] == "1", "the page's script did not finish at @\(position)")
            #expect(page.body["data-position"] == String(position))
            // Every job's status cell equals the library's fold as of that position.
            let expected = try #require(try store.run("etl2", asOf: .position(position)))
            #expect(page.body["data-run-status"] == expected.run.status.rawValue)
            #expect(page.statuses == Dictionary(uniqueKeysWithValues: expected.jobs.map { ($0.type, $0.status.rawValue) }), "at @\(position)")
            for job in expected.jobs {
                #expect(page.cells[job.type]?[2].trimmingCharacters(in: .whitespaces).hasPrefix(String(job.attempt)) == true, "attempts of \(job.type) at @\(position)")
            }
            // The timeline shows every attempt claimed so far.
            let claims = history.filter { $0.kind == .jobClaimed && $0.position <= position }.count
            #expect(page.timeline["data-attempts"] == String(claims))
            shown[position] = page
        }
        let before = try #require(shown[released.position]), after = try #require(shown[last.position])
        #expect(before.statuses["flaky"] == "unstarted")
        #expect(before.cells["flaky"]?[1].contains("retry after") == true || before.cells["flaky"]?[1].contains("ready") == true)
        #expect(before.cells["flaky"]?[5].contains("first try fails") == true || before.cells["flaky"]?[5].contains("status 1") == true)
        #expect(before.statuses["load"] == "unstarted")
        #expect(after.statuses["flaky"] == "finished")
        #expect(after.statuses["load"] == "finished")
        #expect(after.statuses["audit"] == "failed")
        #expect(after.cells["audit"]?[5].contains("status 3") == true)
        #expect(after.cells["load"]?[6].contains("loaded 3 rows") == true)
        #expect(after.body["data-run-status"] == "failed")
        #expect(after.timeline["data-retries"] == "1")

        // A screenshot renders (and can refresh docs/report.png).
        let png = box.path + "/report.png"
        _ = try chromium(["--screenshot=\(png)", "--window-size=1280,1700", "--hide-scrollbars"], url: "file://\(file)", profile: box.path + "/chrome")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: png))
        #expect(bytes.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        #expect(bytes.count > 20_000)
        if let keep = ProcessInfo.processInfo.environment["OVERSEER_REPORT_SCREENSHOT"] {
            try? FileManager.default.removeItem(atPath: keep)
            try FileManager.default.copyItem(atPath: png, toPath: keep)
        }
    }
}
