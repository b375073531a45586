// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "Overseer",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Overseer", targets: ["Overseer"]),
        .library(name: "OverseerPostgres", targets: ["OverseerPostgres"]),
        .executable(name: "overseer", targets: ["overseer"]),
        .executable(name: "overseer-bench", targets: ["overseer-bench"]),
    ],
    targets: [
        .systemLibrary(name: "CLMDB", providers: [.apt(["liblmdb-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .target(name: "Overseer", dependencies: ["CLMDB", "CCrypto"], swiftSettings: strict),
        // The PostgreSQL store and its libpq layer (docs/postgres.md). The core target stays free of libpq.
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .target(name: "OverseerPostgres", dependencies: ["Overseer", "CLibPQ", "CCrypto"], swiftSettings: strict),
        .executableTarget(name: "overseer", dependencies: ["Overseer", "OverseerPostgres"], swiftSettings: strict),
        .executableTarget(
            name: "overseer-bench", dependencies: ["Overseer", "OverseerPostgres", "CLMDB"],
            path: "Benchmarks/overseer-bench", swiftSettings: strict),
        // The fault-injection harness and its independent checker (docs/reliability.md).
        .executableTarget(name: "overseer-torture", dependencies: ["Overseer", "OverseerPostgres"], path: "Tools/Torture", swiftSettings: strict),
        // Spawned by the tests as a separate process: claim races, crash loops.
        .executableTarget(
            name: "overseer-probe", dependencies: ["Overseer", "OverseerPostgres"], path: "Tests/Probe", swiftSettings: strict),
        // Child processes and build paths, shared by the test targets.
        .target(name: "OverseerTestSupport", path: "Tests/TestSupport", swiftSettings: strict),
        .testTarget(name: "OverseerTests", dependencies: ["Overseer", "OverseerTestSupport", "overseer-probe", "overseer"], swiftSettings: strict),
        .testTarget(name: "CLITests", dependencies: ["Overseer", "overseer"], swiftSettings: strict),
        // Needs a real server: OVERSEER_TEST_POSTGRES (make test starts one, scripts/with-pg-server.sh).
        .testTarget(name: "PostgresTests", dependencies: ["OverseerPostgres", "Overseer", "OverseerTestSupport", "overseer-probe", "overseer"], swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)
