/// A benchmark suite: one file per suite (LogSuite.swift, ...). To add one (for example a
/// `workers` suite), write a type conforming to `BenchSuite` in its own file and list it here.
protocol BenchSuite: Sendable {
    /// The command-line name, also the `suite` field of every result it emits.
    var name: String { get }
    /// Measures, and emits its results through `context.emit`.
    func run(_ context: BenchContext) async throws
}

enum BenchSuites {
    /// Every suite, in the order `overseer-bench all` runs them.
    static let all: [any BenchSuite] = [
        LogSuite(),
        WorkersSuite(),
    ]
}
