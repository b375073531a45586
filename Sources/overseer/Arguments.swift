import Foundation
import Overseer

/// A command-line option: `--name VALUE`, `--name=VALUE`, or a flag `--name`.
struct OptionSpec: Sendable {
    let name: String
    /// The value's placeholder in help (`PATH`), or nil for a flag.
    let value: String?
    let help: String
}

/// One subcommand: its options, positionals and help text.
struct CommandSpec: Sendable {
    let name: String
    let summary: String
    /// Positional arguments as shown in the usage line, e.g. `PIPELINE`, `[RUN]`.
    let positionals: [String]
    let options: [OptionSpec]
    let details: String
    let run: @Sendable (ParsedArguments) async throws -> Int32

    var minimumPositionals: Int { positionals.filter { !$0.hasPrefix("[") }.count }

    var usage: String {
        var parts = ["overseer", name]
        parts.append(contentsOf: positionals)
        if !options.isEmpty { parts.append("[OPTIONS]") }
        return parts.joined(separator: " ")
    }

    var help: String {
        var lines = ["Usage: \(usage)", "", summary]
        if !details.isEmpty { lines += ["", details] }
        let all = options + [OptionSpec(name: "help", value: nil, help: "Show this help.")]
        lines += ["", "Options:"]
        let width = all.map { optionLabel($0).count }.max() ?? 0
        for o in all {
            let label = optionLabel(o)
            lines.append("  \(label)\(String(repeating: " ", count: width - label.count + 2))\(o.help)")
        }
        lines += ["", "Exit codes: 0 success; 1 the run ended unsuccessfully or verification failed;", "2 usage error or invalid input; 3 the store cannot be opened or is damaged."]
        return lines.joined(separator: "\n")
    }

    private func optionLabel(_ o: OptionSpec) -> String {
        o.value.map { "--\(o.name) \($0)" } ?? "--\(o.name)"
    }
}

/// What the parser found.
struct ParsedArguments: Sendable {
    var values: [String: String] = [:]
    var flags: Set<String> = []
    var positionals: [String] = []

    func value(_ name: String) -> String? { values[name] }
    func flag(_ name: String) -> Bool { flags.contains(name) }
}

/// A usage error: exit code 2, with the command's usage line.
struct UsageError: Error, CustomStringConvertible {
    let message: String
    let command: String?
    var description: String { message }
}

/// Invalid input (a file, a value): exit code 2.
struct InputError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

enum ArgumentParser {
    /// Parses `args` (the words after the subcommand) against `spec`.
    static func parse(_ args: [String], spec: CommandSpec) throws -> ParsedArguments {
        var parsed = ParsedArguments()
        var i = 0
        var onlyPositionals = false
        while i < args.count {
            let word = args[i]
            i += 1
            if !onlyPositionals && word == "-h" {
                parsed.flags.insert("help")
                continue
            }
            if onlyPositionals || !word.hasPrefix("--") || word == "-" {
                if !onlyPositionals, word.hasPrefix("-"), word.count > 1, word != "-" {
                    throw UsageError(message: "unknown option '\(word)' (options are spelled with two dashes, e.g. --help)", command: spec.name)
                }
                parsed.positionals.append(word)
                continue
            }
            if word == "--" {
                onlyPositionals = true
                continue
            }
            var name = String(word.dropFirst(2))
            var inlineValue: String?
            if let eq = name.firstIndex(of: "=") {
                inlineValue = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            if name == "help" {
                parsed.flags.insert("help")
                continue
            }
            guard let option = spec.options.first(where: { $0.name == name }) else {
                let names = spec.options.map(\.name) + ["help"]
                let hint = closest(name, in: names).map { " (did you mean '--\($0)'?)" } ?? ""
                throw UsageError(message: "unknown option '--\(name)' for '\(spec.name)'\(hint)", command: spec.name)
            }
            if option.value == nil {
                if inlineValue != nil { throw UsageError(message: "option '--\(name)' takes no value", command: spec.name) }
                parsed.flags.insert(name)
                continue
            }
            let value: String
            if let inlineValue {
                value = inlineValue
            } else {
                guard i < args.count else {
                    throw UsageError(message: "option '--\(name)' needs a value (\(option.value!))", command: spec.name)
                }
                value = args[i]
                i += 1
            }
            if parsed.values[name] != nil {
                throw UsageError(message: "option '--\(name)' is given twice", command: spec.name)
            }
            parsed.values[name] = value
        }
        if parsed.flag("help") { return parsed }
        let maximum = spec.positionals.count
        if parsed.positionals.count < spec.minimumPositionals {
            let missing = spec.positionals[parsed.positionals.count]
            throw UsageError(message: "'\(spec.name)' needs \(missing)", command: spec.name)
        }
        if parsed.positionals.count > maximum {
            throw UsageError(message: "unexpected argument '\(parsed.positionals[maximum])' for '\(spec.name)'", command: spec.name)
        }
        return parsed
    }

    /// The candidate nearest to `word` by edit distance, when it is close enough.
    static func closest(_ word: String, in candidates: [String]) -> String? {
        var best: (String, Int)?
        for c in candidates {
            let d = distance(Array(word), Array(c))
            if d <= max(1, c.count / 3), d < (best?.1 ?? Int.max) { best = (c, d) }
        }
        return best?.0
    }

    /// Edit distance counting a swap of two neighbours as one edit (optimal string alignment).
    static func distance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }

    /// A positive integer option.
    static func integer(_ parsed: ParsedArguments, _ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = parsed.value(name) else { return value }
        guard let n = Int(text), range.contains(n) else {
            throw UsageError(message: "--\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound), got '\(text)'", command: nil)
        }
        return n
    }

    /// A duration in seconds (decimals allowed).
    static func seconds(_ parsed: ParsedArguments, _ name: String) throws -> Duration? {
        guard let text = parsed.value(name) else { return nil }
        guard let s = Double(text), s.isFinite, s > 0, s < 1e9 else {
            throw UsageError(message: "--\(name) must be a positive number of seconds, got '\(text)'", command: nil)
        }
        return .milliseconds(Int64((s * 1000).rounded()))
    }

    /// A log point: `@N` or an RFC 3339 time.
    static func point(_ parsed: ParsedArguments, _ name: String) throws -> LogPoint? {
        guard let text = parsed.value(name) else { return nil }
        guard let p = LogPoint(parsing: text) else {
            throw UsageError(message: "--\(name) must be an RFC 3339 time such as 2026-12-03T14:05:00.25Z, or @N for log position N; got '\(text)'", command: nil)
        }
        return p
    }

    /// `--args JSON`: a JSON object.
    static func jsonArguments(_ parsed: ParsedArguments) throws -> JSONValue {
        guard let text = parsed.value("args") else { return .object([:]) }
        let value: JSONValue
        do {
            value = try JSONValue.parse(text)
        } catch {
            throw InputError(message: "--args: not valid JSON: \(error)")
        }
        guard case .object = value else { throw InputError(message: "--args must be a JSON object, like '{\"org\": 42}'") }
        if value.canonicalBytes.count > 256 << 10 {
            throw InputError(message: "--args is \(value.canonicalBytes.count) bytes; the limit is 262144 (keep large inputs in files and pass their paths)")
        }
        return value
    }
}
