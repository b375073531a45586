import Foundation
import Overseer
import OverseerPostgres

/// `overseer migrate [--db URL]`
enum MigrateCommand {
    static let spec = CommandSpec(
        name: "migrate", summary: "Create or check a PostgreSQL store's schema (idempotent).",
        positionals: [],
        options: [StoreLocation.option],
        details: "Creates the tables of a PostgreSQL store (overseer_schema, overseer_facts, overseer_kv) when\nthey are missing, and records the schema version; on a store that has them it only checks the\nversion. Safe to run again and from several hosts at once. A newer or foreign schema is refused\nand left unchanged (exit 3). Stores are also created on first use, so this is for deployment\nscripts that want the schema in place before any worker starts. For an LMDB path it creates or\nchecks the store the same way.",
        run: run)

    static func run(_ args: ParsedArguments) async throws -> Int32 {
        let location = try StoreLocation.location(args)
        if StoreLocation.isPostgres(location) {
            let (version, created) = try PostgresSchema.migrate(url: location)
            Console.out("\(Redact.url(location)): schema version \(version) \(created ? "created" : "already in place")")
            return 0
        }
        let store = try StoreLocation.open(location, create: true)
        Console.out("\(store.path): LMDB store ready (\(try store.lastPosition()) facts)")
        return 0
    }
}
