import Foundation
import Overseer
import OverseerPostgres
import Testing

/// Which store a contract test runs over.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case lmdb, postgres
    var testDescription: String { rawValue }
}

/// Fresh stores for tests: LMDB in a temp directory, PostgreSQL in a fresh schema of the test
/// server (`OVERSEER_TEST_POSTGRES`, set by `make test`).
enum TestStores {
    static let diamond: JobGraph = ["start": [], "result1": ["start"], "result2": ["start"], "finish": ["result1", "result2"]]

    /// The server's URL. Without it the PostgreSQL cases fail when the run must cover them
    /// (`CI` or `OVERSEER_REQUIRE_POSTGRES` set), and are left out otherwise.
    static var postgresURL: String? { testPostgresURL }
    static var postgresRequired: Bool { PostgresTests.postgresRequired }

    static var kinds: [StoreKind] {
        if postgresURL != nil || postgresRequired { return StoreKind.allCases }
        print("note: \(noPostgres); the PostgreSQL contract cases are left out")
        return [.lmdb]
    }

    static func available(_ kind: StoreKind) -> Bool { kind == .lmdb || postgresURL != nil }

    /// A URL whose tables live in schema `schema` of the test database.
    static func url(schema: String) throws -> String {
        guard let base = postgresURL else {
            throw TestFailure("OVERSEER_TEST_POSTGRES is not set, and PostgreSQL tests must run here (CI)")
        }
        return base + (base.contains("?") ? "&" : "?") + "options=-csearch_path%3D\(schema)"
    }

    /// Makes a new empty schema and returns its name.
    static func makeSchema() throws -> String {
        let name = "t_" + UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: "")
        let c = try PGConnection(withConnectionDefaults(try #require(postgresURL)))
        defer { c.close() }
        try c.exec("CREATE SCHEMA \(name)")
        return name
    }

    static func dropSchema(_ name: String) {
        guard let base = postgresURL, let c = try? PGConnection(withConnectionDefaults(base)) else { return }
        defer { c.close() }
        _ = try? c.exec("DROP SCHEMA \(name) CASCADE")
    }

    /// Runs `body` over a fresh store of `kind`, then checks `verify()` on it.
    static func with(_ kind: StoreKind, _ body: (LogStore) async throws -> Void) async throws {
        switch kind {
        case .lmdb:
            let dir = FileManager.default.temporaryDirectory.path + "/contract-\(UUID().uuidString.prefix(8))"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let store = try LogStore(path: dir)
            try await body(store)
            let report = try store.verify()
            #expect(report.ok, "verify after test: \(report)")
        case .postgres:
            let schema = try makeSchema()
            defer { dropSchema(schema) }
            try await {
                let store = try LogStore.postgres(try url(schema: schema))
                try await body(store)
                let report = try store.verify()
                #expect(report.ok, "verify after test: \(report)")
            }()
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
