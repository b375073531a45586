import Foundation
import Overseer

/// `overseer metrics [--db PATH]`
enum MetricsCommand {
    static let spec = CommandSpec(
        name: "metrics", summary: "Print the store's metrics in the Prometheus text format (for a textfile collector).",
        positionals: [],
        options: [StoreLocation.option],
        details: "Jobs by type and status, attempts, retries, lease expiries, rejected results, claim-to-finish\nhistograms, facts appended and store size, computed from the store at this moment. Never listens\non a port: write it where node_exporter's textfile collector reads, e.g.\n  overseer metrics > DIR/overseer.prom.tmp && mv DIR/overseer.prom.tmp DIR/overseer.prom\nSee docs/report.md for every metric.",
        run: run)

    static func run(_ args: ParsedArguments) async throws -> Int32 {
        let store = try StoreLocation.open(args, create: false)
        Console.write(try store.metrics().prometheusText)
        return 0
    }
}
