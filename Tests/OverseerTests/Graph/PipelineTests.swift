import Foundation
import Testing

@testable import Overseer

private let example = """
    { "name": "nightly",
      "jobs": {
        "start":   { "command": ["sh", "-c", "echo start"] },
        "result1": { "after": ["start"], "command": ["./compute", "1"], "retries": 2, "timeout": 60 },
        "result2": { "after": ["start"], "command": ["./compute", "2"] },
        "finish":  { "after": ["result1", "result2"], "command": ["./publish"] }
      } }
    """

private func parse(_ text: String, file: String = "pipeline.json") throws(PipelineError) -> Pipeline {
    try Pipeline.parse(Array(text.utf8), file: file)
}

/// The error parsing `text` throws, or `nil` (and a test failure) when it parses.
private func parseError(
    _ text: String, file: String = "pipeline.json", sourceLocation: SourceLocation = #_sourceLocation
)
    -> PipelineError?
{
    do {
        let pipeline = try parse(text, file: file)
        Issue.record("expected a PipelineError, got \(pipeline)", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

/// A pipeline whose job `result1` has the given fields (JSON object members), after a valid `start`.
private func withJob(_ members: String) -> String {
    #"{"name": "p", "jobs": {"start": {"command": ["x"]}, "result1": {"# + members + "}}}"
}

/// A fresh directory for one test, removed by the caller's `defer`.
private func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("pipeline-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

@Suite struct PipelineTests {
    // MARK: Valid files

    @Test func exampleParses() throws {
        let pipeline = try parse(example)
        let expected = Pipeline(
            name: "nightly",
            jobs: [
                "start": PipelineJob(command: ["sh", "-c", "echo start"]),
                "result1": PipelineJob(command: ["./compute", "1"], after: ["start"], retries: 2, timeout: 60),
                "result2": PipelineJob(command: ["./compute", "2"], after: ["start"]),
                "finish": PipelineJob(command: ["./publish"], after: ["result1", "result2"]),
            ])
        #expect(pipeline == expected)
        #expect(
            pipeline.graph == [
                "start": [], "result1": ["start"], "result2": ["start"], "finish": ["result1", "result2"],
            ])
        #expect(pipeline.graph.topologicalOrder() == ["start", "result1", "result2", "finish"])
    }

    @Test func everyField() throws {
        let text = """
            {"name": "all", "description": "every field",
             "jobs": {"a": {"command": ["run"]},
                      "b": {"after": ["a"], "command": ["run", ""], "retries": 1000, "backoff": {"initial": 2, "max": 10},
                            "timeout": 0.5, "priority": -1000, "max_concurrent": 3, "env": {"A": "1", "B_2": ""},
                            "cwd": "/tmp"}}}
            """
        let pipeline = try parse(text)
        #expect(pipeline.description == "every field")
        #expect(
            pipeline.jobs["b"]
                == PipelineJob(
                    command: ["run", ""], after: ["a"], retries: 1000,
                    backoff: Backoff(initial: 2, max: 10, multiplier: 2),
                    timeout: 0.5, priority: -1000, maxConcurrent: 3, env: ["A": "1", "B_2": ""], cwd: "/tmp"))
        #expect(pipeline.jobs["a"] == PipelineJob(command: ["run"]))
    }

    @Test func backoffForms() throws {
        #expect(try parse(withJob(#""command": ["x"], "backoff": 5"#)).jobs["result1"]?.backoff == Backoff(initial: 5))
        #expect(
            try parse(withJob(#""command": ["x"], "backoff": 600"#)).jobs["result1"]?.backoff
                == Backoff(initial: 600, max: 600))
        #expect(
            try parse(withJob(#""command": ["x"], "backoff": {"multiplier": 1.5}"#)).jobs["result1"]?.backoff
                == Backoff(initial: 1, max: 300, multiplier: 1.5))
        #expect(
            try parse(withJob(#""command": ["x"], "backoff": {"initial": 400}"#)).jobs["result1"]?.backoff
                == Backoff(initial: 400, max: 400))
    }

    @Test func integralNumbersAreIntegers() throws {
        #expect(try parse(withJob(#""command": ["x"], "retries": 2.0"#)).jobs["result1"]?.retries == 2)
    }

    @Test func unicodeJobNames() throws {
        let pipeline = try parse(
            #"{"name": "nächtlich", "jobs": {"début": {"command": ["x"]}, "🚀": {"after": ["début"], "command": ["y"]}}}"#
        )
        #expect(pipeline.name == "nächtlich")
        #expect(pipeline.graph.topologicalOrder() == ["début", "🚀"])
    }

    // MARK: Malformed JSON

    @Test func malformedReportsLineAndColumn() {
        let text = """
            {
              "name": "x",
              "jobs": {
                "a": { "command": ["x"], }
              }
            }
            """
        let error = parseError(text, file: "p.json")
        #expect(
            error
                == PipelineError(
                    code: .malformed, file: "p.json", line: 4, column: 30,
                    message: "p.json:4:30: unexpected '}', expected a string key"))
    }

    @Test func malformedColumnCountsCharacters() {
        let error = parseError(#"{"name": "é", x}"#, file: "p.json")
        #expect(error?.message == "p.json:1:15: unexpected 'x', expected a string key")
        #expect(error?.line == 1)
        #expect(error?.column == 15)
    }

    @Test func duplicateKeyIsMalformed() {
        let error = parseError(#"{"name":"a","name":"b"}"#, file: "p.json")
        #expect(error?.code == .malformed)
        #expect(error?.message == #"p.json:1:13: duplicate key "name""#)
    }

    @Test func emptyFileIsMalformed() {
        #expect(parseError("", file: "p.json")?.message == "p.json:1:1: unexpected end of input, expected a value")
    }

    // MARK: Top level

    @Test(arguments: [
        (
            "[]", PipelineError.Code.invalidField, nil as String?,
            "pipeline.json: the top level must be an object with the fields 'name' and 'jobs', got an array"
        ),
        (#"{"jobs": {}}"#, .missingField, "name", "pipeline.json: missing required field 'name' (the pipeline's name)"),
        (#"{"name": 3, "jobs": {}}"#, .invalidField, "name", "pipeline.json: field 'name' must be a string, got 3"),
        (
            #"{"name": "a/b", "jobs": {}}"#, .invalidField, "name",
            "pipeline.json: invalid pipeline name 'a/b' in field 'name': it must not contain '/'"
        ),
        (
            #"{"name": "a"}"#, .missingField, "jobs",
            "pipeline.json: missing required field 'jobs' (an object of job name to job)"
        ),
        (
            #"{"name": "a", "jobs": []}"#, .invalidField, "jobs",
            "pipeline.json: field 'jobs' must be an object of job name to job, got an array"
        ),
        (
            #"{"name": "a", "jbos": {}}"#, .unknownField, "jbos",
            "pipeline.json: unknown field 'jbos' (did you mean 'jobs'?)"
        ),
        (
            #"{"name": "a", "jobs": {}, "owner": "me"}"#, .unknownField, "owner",
            "pipeline.json: unknown field 'owner' (known fields: description, jobs, name)"
        ),
        (
            #"{"name": "a", "jobs": {}, "description": false}"#, .invalidField, "description",
            "pipeline.json: field 'description' must be a string, got false"
        ),
    ])
    func topLevelErrors(text: String, code: PipelineError.Code, field: String?, message: String) {
        let error = parseError(text)
        #expect(error == PipelineError(code: code, file: "pipeline.json", field: field, message: message))
    }

    // MARK: Job fields

    @Test(arguments: [
        // retries, priority, max_concurrent
        (#""command": ["x"], "retries": -1"#, "retries", "field 'retries' must be an integer from 0 to 1000, got -1"),
        (
            #""command": ["x"], "retries": 1001"#, "retries",
            "field 'retries' must be an integer from 0 to 1000, got 1001"
        ),
        (#""command": ["x"], "retries": 1.5"#, "retries", "field 'retries' must be an integer from 0 to 1000, got 1.5"),
        (
            #""command": ["x"], "retries": "2""#, "retries",
            #"field 'retries' must be an integer from 0 to 1000, got "2""#
        ),
        (
            #""command": ["x"], "priority": 5000"#, "priority",
            "field 'priority' must be an integer from -1000 to 1000, got 5000"
        ),
        (
            #""command": ["x"], "max_concurrent": 0"#, "max_concurrent",
            "field 'max_concurrent' must be an integer, 1 or more, got 0"
        ),
        // timeout
        (
            #""command": ["x"], "timeout": 0"#, "timeout",
            "field 'timeout' must be a number of seconds greater than 0 and at most 1000000000, got 0"
        ),
        (
            #""command": ["x"], "timeout": -5"#, "timeout",
            "field 'timeout' must be a number of seconds greater than 0 and at most 1000000000, got -5"
        ),
        (
            #""command": ["x"], "timeout": 1e300"#, "timeout",
            "field 'timeout' must be a number of seconds greater than 0 and at most 1000000000, got 1e+300"
        ),
        (
            #""command": ["x"], "timeout": null"#, "timeout",
            "field 'timeout' must be a number of seconds greater than 0 and at most 1000000000, got null"
        ),
        // backoff
        (
            #""command": ["x"], "backoff": "fast""#, "backoff",
            #"field 'backoff' must be a number of seconds or an object with 'initial', 'max' and 'multiplier', got "fast""#
        ),
        (
            #""command": ["x"], "backoff": -1"#, "backoff",
            "field 'backoff' must be a number of seconds from 0 to 1000000000, or an object with 'initial', 'max' and 'multiplier', got -1"
        ),
        (
            #""command": ["x"], "backoff": {"initial": 5, "max": 2}"#, "backoff.max",
            "field 'backoff.max' must not be less than 'backoff.initial' (5), got 2"
        ),
        (
            #""command": ["x"], "backoff": {"multiplier": 0.5}"#, "backoff.multiplier",
            "field 'backoff.multiplier' must be a number from 1 to 1000, got 0.5"
        ),
        (
            #""command": ["x"], "backoff": {"initial": true}"#, "backoff.initial",
            "field 'backoff.initial' must be a number of seconds from 0 to 1000000000, got true"
        ),
        // after
        (#""command": ["x"], "after": "start""#, "after", #"field 'after' must be an array of job names, got "start""#),
        (#""command": ["x"], "after": ["start", 1]"#, "after[1]", "field 'after[1]' must be a job name, got 1"),
        // command
        (
            #""command": []"#, "command",
            #"field 'command' must not be empty: give the program and its arguments, e.g. ["./publish"]"#
        ),
        (
            #""command": "echo hi""#, "command",
            #"field 'command' must be an array of strings (the program and its arguments), got "echo hi"; to run it with a shell, write ["sh","-c","echo hi"]"#
        ),
        (
            #""command": {"program": "x"}"#, "command",
            "field 'command' must be an array of strings (the program and its arguments), got an object"
        ),
        (#""command": ["", "a"]"#, "command[0]", #"field 'command[0]' must name the program to run, got """#),
        (#""command": ["x", 3]"#, "command[1]", "field 'command[1]' must be a string, got 3"),
        (
            #""command": ["x", "a\u0000b"]"#, "command[1]",
            "field 'command[1]' contains a NUL character, which a command, argument or environment value cannot hold"
        ),
        // env
        (
            #""command": ["x"], "env": {"A=B": "1"}"#, "env",
            "field 'env' has an invalid variable name 'A=B': it must not contain '='"
        ),
        (
            #""command": ["x"], "env": {"": "1"}"#, "env",
            "field 'env' has an invalid variable name '': it must not be empty"
        ),
        (
            #""command": ["x"], "env": {"A\u0000": "1"}"#, "env",
            "field 'env' has an invalid variable name 'A\\u{0000}': it must not contain a NUL character"
        ),
        (#""command": ["x"], "env": {"A": 1}"#, "env.A", "field 'env.A' must be a string, got 1"),
        (
            #""command": ["x"], "env": {"A": "\u0000"}"#, "env.A",
            "field 'env.A' contains a NUL character, which a command, argument or environment value cannot hold"
        ),
        (
            #""command": ["x"], "env": ["A=1"]"#, "env",
            "field 'env' must be an object of variable name to string value, got an array"
        ),
        // cwd
        (#""command": ["x"], "cwd": """#, "cwd", #"field 'cwd' must be a non-empty string (a directory), got """#),
        (#""command": ["x"], "cwd": 3"#, "cwd", "field 'cwd' must be a non-empty string (a directory), got 3"),
    ])
    func invalidFields(members: String, field: String, message: String) {
        let error = parseError(withJob(members))
        #expect(
            error
                == PipelineError(
                    code: .invalidField, file: "pipeline.json", job: "result1", field: field,
                    message: "pipeline.json: job 'result1': " + message))
    }

    @Test func longStringsAreCutShort() {
        let long = String(repeating: "x", count: 100)
        let error = parseError(withJob(#""command": ["x"], "retries": ""# + long + #"""#))
        #expect(
            error?.message
                == "pipeline.json: job 'result1': field 'retries' must be an integer from 0 to 1000, got \""
                + String(repeating: "x", count: 60) + "…\"")
    }

    @Test func missingCommand() {
        let error = parseError(withJob(#""after": ["start"]"#))
        #expect(
            error
                == PipelineError(
                    code: .missingField, file: "pipeline.json", job: "result1", field: "command",
                    message:
                        #"pipeline.json: job 'result1': missing required field 'command' (the program and its arguments, e.g. ["sh", "-c", "echo hi"])"#
                ))
    }

    @Test func jobMustBeAnObject() {
        let error = parseError(#"{"name": "p", "jobs": {"start": ["x"]}}"#)
        #expect(
            error
                == PipelineError(
                    code: .invalidField, file: "pipeline.json", job: "start",
                    message:
                        "pipeline.json: job 'start': must be an object with at least the field 'command', got an array")
        )
    }

    @Test func unknownFieldSuggests() {
        let error = parseError(withJob(#""command": ["x"], "retires": 2"#))
        #expect(
            error
                == PipelineError(
                    code: .unknownField, file: "pipeline.json", job: "result1", field: "retires",
                    message: "pipeline.json: job 'result1': unknown field 'retires' (did you mean 'retries'?)"))
        #expect(
            parseError(withJob(#""command": ["x"], "maxConcurrent": 2"#))?.message
                == "pipeline.json: job 'result1': unknown field 'maxConcurrent' (did you mean 'max_concurrent'?)")
        // An unknown field is reported before a missing command, since it is likely the command misspelt.
        #expect(
            parseError(withJob(#""comand": ["x"]"#))?.message
                == "pipeline.json: job 'result1': unknown field 'comand' (did you mean 'command'?)")
    }

    @Test func unknownFieldWithoutSuggestionListsFields() {
        #expect(
            parseError(withJob(#""command": ["x"], "owner": "me""#))?.message
                == "pipeline.json: job 'result1': unknown field 'owner' (known fields: after, backoff, command, cwd, env, max_concurrent, priority, retries, timeout)"
        )
    }

    @Test func unknownBackoffField() {
        let error = parseError(withJob(#""command": ["x"], "backoff": {"mutliplier": 3}"#))
        #expect(error?.code == .unknownField)
        #expect(error?.field == "backoff.mutliplier")
        #expect(
            error?.message
                == "pipeline.json: job 'result1': unknown field 'backoff.mutliplier' (did you mean 'backoff.multiplier'?)"
        )
    }

    @Test func firstBadJobByName() {
        let text = #"{"name": "p", "jobs": {"zeta": {"command": []}, "alpha": {"command": ["x"], "retries": -1}}}"#
        #expect(parseError(text)?.job == "alpha")
    }

    // MARK: Graph errors

    @Test func unknownJobInAfter() {
        let text = """
            {"name": "p", "jobs": {"start": {"command": ["x"]}, "result1": {"after": ["start"], "command": ["x"]},
             "result2": {"after": ["start"], "command": ["x"]}, "finish": {"after": ["result1", "reslt2"], "command": ["x"]}}}
            """
        let graphError = GraphError(
            code: .unknownParent, job: "finish",
            message: "job 'finish' depends on unknown job 'reslt2' (did you mean 'result2'?)")
        #expect(
            parseError(text)
                == PipelineError(
                    code: .graph, file: "pipeline.json", job: "finish", field: "after",
                    message: "pipeline.json: job 'finish' depends on unknown job 'reslt2' (did you mean 'result2'?)",
                    graphError: graphError))
    }

    @Test func cycleInPipeline() {
        let text =
            #"{"name": "p", "jobs": {"a": {"after": ["b"], "command": ["x"]}, "b": {"after": ["a"], "command": ["x"]}}}"#
        let error = parseError(text)
        #expect(error?.code == .graph)
        #expect(error?.message == "pipeline.json: cycle: a -> b -> a")
        #expect(error?.graphError?.code == .cycle)
    }

    @Test func noJobs() {
        let error = parseError(#"{"name": "p", "jobs": {}}"#)
        #expect(error?.message == "pipeline.json: job graph is empty: add at least one job type")
        #expect(error?.field == "jobs")
    }

    @Test func controlCharacterInJobName() {
        let error = parseError(#"{"name": "p", "jobs": {"bell\u0007": {"command": ["x"]}}}"#)
        #expect(error?.code == .graph)
        #expect(
            error?.message
                == "pipeline.json: invalid job type name 'bell\\u{0007}': it must not contain the control character \\u{0007}"
        )
    }

    // MARK: Files

    @Test func loadsFromDisk() throws {
        let directory = try temporaryDirectory()
        defer { _ = try? FileManager.default.removeItem(at: directory) }  // test cleanup, not a data path
        let path = directory.appendingPathComponent("nightly.json").path
        try Data(example.utf8).write(to: URL(fileURLWithPath: path))
        #expect(try Pipeline.load(path: path) == parse(example))
    }

    @Test func missingFile() throws {
        let directory = try temporaryDirectory()
        defer { _ = try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("missing.json").path
        #expect(
            throws: PipelineError(
                code: .unreadable, file: path, message: "\(path): cannot read pipeline file: No such file or directory")
        ) {
            try Pipeline.load(path: path)
        }
    }

    @Test func directoryIsUnreadable() throws {
        let directory = try temporaryDirectory()
        defer { _ = try? FileManager.default.removeItem(at: directory) }
        #expect(
            throws: PipelineError(
                code: .unreadable, file: directory.path,
                message: "\(directory.path): cannot read pipeline file: Is a directory")
        ) {
            try Pipeline.load(path: directory.path)
        }
    }

    @Test(.enabled(if: getuid() != 0, "root can read any file"))
    func permissionDenied() throws {
        let directory = try temporaryDirectory()
        defer { _ = try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("secret.json").path
        try Data(example.utf8).write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.posixPermissions: 0], ofItemAtPath: path)
        #expect(
            throws: PipelineError(
                code: .unreadable, file: path, message: "\(path): cannot read pipeline file: Permission denied")
        ) {
            try Pipeline.load(path: path)
        }
    }

    @Test func tooLargeFile() throws {
        let directory = try temporaryDirectory()
        defer { _ = try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("huge.json").path
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: UInt64(Pipeline.maximumFileSize + 1))  // sparse: nothing is written
        try handle.close()
        #expect(
            throws: PipelineError(
                code: .tooLarge, file: path,
                message: "\(path): pipeline file is 16777217 bytes; the limit is 16 MiB (16777216 bytes)")
        ) {
            try Pipeline.load(path: path)
        }
    }

    @Test func tooLargeBytes() {
        let bytes = [UInt8](repeating: 0x20, count: Pipeline.maximumFileSize + 1)
        #expect(
            throws: PipelineError(
                code: .tooLarge, file: "big.json",
                message: "big.json: pipeline file is 16777217 bytes; the limit is 16 MiB (16777216 bytes)")
        ) {
            try Pipeline.parse(bytes, file: "big.json")
        }
    }

    @Test func largestAcceptedSizeParses() throws {
        var bytes = Array(#"{"name": "p", "jobs": {"a": {"command": ["x"]}}}"#.utf8)
        bytes += [UInt8](repeating: 0x20, count: Pipeline.maximumFileSize - bytes.count)
        #expect(try Pipeline.parse(bytes, file: "edge.json").jobs.count == 1)
    }
}
