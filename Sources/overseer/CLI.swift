import Foundation
import Overseer
import OverseerPostgres

enum CLI {
    static let version = "0.1.0"

    static let commands: [CommandSpec] = [
        DemoCommand.spec, RunCommand.spec, SubmitCommand.spec, WorkerCommand.spec, StatusCommand.spec,
        HistoryCommand.spec, ReplayCommand.spec, ExportCommand.spec, VerifyCommand.spec, RetryCommand.spec,
        AbortCommand.spec, GraphCommand.spec, ReportCommand.spec, MetricsCommand.spec, MigrateCommand.spec,
        CopyCommand.spec,
    ]

    static var overview: String {
        var lines = [
            "overseer \(version) — durable DAG pipelines on an append-only log",
            "",
            "Usage: overseer COMMAND [ARGS] [OPTIONS]",
            "",
            "Commands:",
        ]
        let width = commands.map(\.name.count).max() ?? 0
        for c in commands {
            lines.append("  \(c.name)\(String(repeating: " ", count: width - c.name.count + 2))\(c.summary)")
        }
        lines += [
            "",
            "The store is --db PATH, else $OVERSEER_DB, else ./overseer.lmdb.",
            "Times are RFC 3339 (2026-12-03T14:05:00.25Z, or with an offset); @N means log position N.",
            "Run 'overseer COMMAND --help' for a command's options.",
            "",
            "Exit codes: 0 success; 1 the run ended unsuccessfully or verification failed;",
            "2 usage error or invalid input; 3 the store cannot be opened or is damaged.",
        ]
        return lines.joined(separator: "\n")
    }

    static func main(_ args: [String]) async -> Int32 {
        guard let first = args.first else {
            Console.error(overview)
            return 2
        }
        if first == "--help" || first == "-h" || first == "help" {
            if args.count > 1, let c = commands.first(where: { $0.name == args[1] }) {
                Console.out(c.help)
            } else {
                Console.out(overview)
            }
            return 0
        }
        if first == "--version" {
            Console.out("overseer \(version)")
            return 0
        }
        guard let command = commands.first(where: { $0.name == first }) else {
            let hint = ArgumentParser.closest(first, in: commands.map(\.name)).map { " (did you mean '\($0)'?)" } ?? ""
            Console.error("overseer: unknown command '\(first)'\(hint). Run 'overseer --help' for the list.")
            return 2
        }
        do {
            let parsed = try ArgumentParser.parse(Array(args.dropFirst()), spec: command)
            if parsed.flag("help") {
                Console.out(command.help)
                return 0
            }
            return try await command.run(parsed)
        } catch {
            return report(error, command: command)
        }
    }

    /// Prints an error for the user (never a stack trace) and returns its exit code.
    static func report(_ error: any Error, command: CommandSpec) -> Int32 {
        switch error {
        case let e as UsageError:
            Console.error("overseer \(command.name): \(e.message)\nUsage: \(command.usage)  (see 'overseer \(command.name) --help')")
            return 2
        case let e as InputError:
            Console.error("overseer \(command.name): \(e.message)")
            return 2
        case let e as StoreError:
            switch e.code {
            case .invalid:
                Console.error("overseer \(command.name): \(Redact.text(e.description))")
                return 2
            default:
                Console.error("overseer \(command.name): store \(Redact.text(e.description))")
                return 3
            }
        case is PipelineError, is GraphError, is SubmitError, is ExportError:
            // Invalid input: the error's own description names the file, job or field.
            Console.error("overseer \(command.name): \(error)")
            return 2
        case let e as FoldError:
            Console.error("overseer \(command.name): refused: \(e.description)")
            return 2
        default:
            Console.error("overseer \(command.name): \(Redact.text(String(describing: error)))")
            return 3
        }
    }
}

/// Where the store is: --db, else $OVERSEER_DB, else ./overseer.lmdb. A `postgres://` (or
/// `postgresql://`) URL selects the PostgreSQL store; anything else is an LMDB directory.
enum StoreLocation {
    static func location(_ parsed: ParsedArguments, option: String = "db") throws -> String {
        let location = parsed.value(option) ?? (option == "db" ? ProcessInfo.processInfo.environment["OVERSEER_DB"] : nil) ?? "./overseer.lmdb"
        if location.isEmpty {
            throw InputError(message: parsed.value(option) != nil ? "--\(option) is empty" : "$OVERSEER_DB is set but empty")
        }
        return location
    }

    static func isPostgres(_ location: String) -> Bool {
        location.hasPrefix("postgres://") || location.hasPrefix("postgresql://")
    }

    /// Opens the store; `create` is false for commands that only read.
    /// `patient` is for workers: they wait out a database restart (the worker then keeps
    /// retrying on its own); other commands give up on an unreachable server after 5 seconds.
    static func open(_ parsed: ParsedArguments, create: Bool, patient: Bool = false, option: String = "db") throws -> LogStore {
        try open(location(parsed, option: option), create: create, patient: patient)
    }

    static func open(_ location: String, create: Bool, patient: Bool = false) throws -> LogStore {
        var options = StoreOptions()
        options.createIfMissing = create
        if isPostgres(location) {
            return try LogStore.postgres(location, options: options, retryWindow: .seconds(patient ? 60 : 5))
        }
        return try LogStore(path: location, options: options)
    }

    static let option = OptionSpec(name: "db", value: "PATH|URL", help: "The store: an LMDB directory or a postgres:// URL (default $OVERSEER_DB, else ./overseer.lmdb).")
}

/// Keeps passwords out of anything printed.
enum Redact {
    /// `postgres://user:secret@host/db` → `postgres://user:***@host/db`; a `password=` query
    /// parameter's value becomes `***` too. The user info ends at the last `@` before the path, so
    /// a password holding `@` is hidden whole.
    static func url(_ s: String) -> String {
        guard let scheme = s.range(of: "://") else { return s }
        var out = s
        let rest = out[scheme.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        if let at = rest[..<authorityEnd].lastIndex(of: "@"), let colon = rest[..<at].firstIndex(of: ":") {
            out.replaceSubrange(out.index(after: colon)..<at, with: "***")
        }
        if let q = out.firstIndex(of: "?") {
            let query = out[out.index(after: q)...].split(separator: "&", omittingEmptySubsequences: false).map { pair -> String in
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                if parts.count == 2, parts[0].lowercased() == "password" { return "\(parts[0])=***" }
                return String(pair)
            }
            out = String(out[...q]) + query.joined(separator: "&")
        }
        return out
    }

    static func text(_ s: String) -> String {
        var out = s
        for scheme in ["postgres://", "postgresql://"] {
            var search = out.startIndex
            while let r = out.range(of: scheme, range: search..<out.endIndex) {
                let end = out[r.lowerBound...].firstIndex(where: { $0 == " " || $0 == "'" || $0 == "\"" }) ?? out.endIndex
                let redacted = url(String(out[r.lowerBound..<end]))
                out.replaceSubrange(r.lowerBound..<end, with: redacted)
                search = out.index(r.lowerBound, offsetBy: redacted.count, limitedBy: out.endIndex) ?? out.endIndex
            }
        }
        return out
    }
}

/// Output with explicit flushing, so nothing is lost when stdout is a pipe.
enum Console {
    static func out(_ s: String) {
        FileHandle.standardOutput.write(Data((s + "\n").utf8))
    }

    static func write(_ s: String) {
        FileHandle.standardOutput.write(Data(s.utf8))
    }

    static func error(_ s: String, terminator: String = "\n") {
        FileHandle.standardError.write(Data((s + terminator).utf8))
    }

    static func flush() { fflush(nil) }

    static var isTerminal: Bool { isatty(STDOUT_FILENO) == 1 }
    static var useColor: Bool { isTerminal && ProcessInfo.processInfo.environment["NO_COLOR"] == nil }
}
