// swift-tools-version:6.1
import PackageDescription

/// Project code is strict: Swift 6 mode (complete concurrency checking) and warnings are errors.
/// Dependencies keep their own settings.
let strict: [SwiftSetting] = [
    .unsafeFlags(["-warnings-as-errors"]),
]

let package = Package(
    name: "Fission",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "fission", targets: ["FissionCommand"]),
        .executable(name: "campaigns", targets: ["campaigns"]),
        .executable(name: "assists", targets: ["assists"]),
        .executable(name: "orders", targets: ["orders"]),
        .executable(name: "levels", targets: ["levels"]),
        .executable(name: "notifications", targets: ["notifications"]),
        .executable(name: "fission-broker", targets: ["FissionBroker"]),
        .executable(name: "fission-bench", targets: ["FissionBench"]),
        .library(name: "Postgres", targets: ["Postgres"]),
        .library(name: "Kafka", targets: ["Kafka"]),
        .library(name: "Domain", targets: ["Domain"]),
        .library(name: "ServiceKit", targets: ["ServiceKit"]),
        .library(name: "FissionTesting", targets: ["FissionTesting"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // Benchmarks only: an open-loop HTTP load generator (already in the graph through Hummingbird's tests).
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
    ],
    targets: [
        // MARK: C boundary: only Postgres imports CLibPQ, only Kafka imports CRdKafka.
        .systemLibrary(
            name: "CLibPQ",
            path: "Shared/CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .systemLibrary(
            name: "CRdKafka",
            path: "Shared/CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),

        // MARK: Shared libraries
        // The text forms several layers write and read (UUIDs, JSON strings), without Foundation's
        // formatters.
        .target(
            name: "TextCoding",
            path: "Shared/TextCoding",
            swiftSettings: strict
        ),
        .target(
            name: "Postgres",
            dependencies: [
                "CLibPQ", "TextCoding",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Shared/Postgres",
            swiftSettings: strict
        ),
        .target(
            name: "Kafka",
            dependencies: [
                "CRdKafka",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Shared/Kafka",
            swiftSettings: strict
        ),
        .target(
            name: "Domain",
            dependencies: ["TextCoding", .product(name: "Crypto", package: "swift-crypto")],
            path: "Shared/Domain",
            swiftSettings: strict
        ),
        .target(
            name: "ServiceKit",
            dependencies: [
                "Postgres", "Kafka", "Domain",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Shared/ServiceKit",
            swiftSettings: strict
        ),
        .target(
            name: "FissionTesting",
            dependencies: [
                "Postgres", "Domain",
                "Kafka",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Shared/Testing",
            swiftSettings: strict
        ),

        // MARK: Services
        .target(
            name: "CampaignsService",
            dependencies: [
                "ServiceKit", "Domain", "Postgres", "Kafka",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Campaigns/CampaignsService",
            resources: [.copy("Migrations")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "campaigns",
            dependencies: [
                "CampaignsService", "ServiceKit",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Services/Campaigns/campaigns",
            swiftSettings: strict
        ),

        .target(
            name: "AssistsService",
            dependencies: [
                "ServiceKit", "Domain", "Postgres", "Kafka",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Assists/AssistsService",
            resources: [.copy("Migrations")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "assists",
            dependencies: [
                "AssistsService", "ServiceKit",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Services/Assists/assists",
            swiftSettings: strict
        ),

        .target(
            name: "OrdersService",
            dependencies: [
                "ServiceKit", "Domain", "Postgres", "Kafka",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Orders/OrdersService",
            resources: [.copy("Migrations")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "orders",
            dependencies: [
                "OrdersService", "ServiceKit",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Services/Orders/orders",
            swiftSettings: strict
        ),

        .target(
            name: "LevelsService",
            dependencies: [
                "ServiceKit", "Domain", "Postgres", "Kafka",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Levels/LevelsService",
            resources: [.copy("Migrations")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "levels",
            dependencies: [
                "LevelsService", "ServiceKit",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Services/Levels/levels",
            swiftSettings: strict
        ),

        .target(
            name: "NotificationsService",
            dependencies: [
                "ServiceKit", "Domain", "Postgres", "Kafka",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Notifications/NotificationsService",
            resources: [.copy("Migrations")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "notifications",
            dependencies: [
                "NotificationsService", "ServiceKit",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Services/Notifications/notifications",
            swiftSettings: strict
        ),

        // MARK: Operator command
        .executableTarget(
            name: "FissionCommand",
            dependencies: [
                "Postgres", "ServiceKit", "Domain", "FissionTesting", "OrdersService",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tools/fission",
            swiftSettings: strict
        ),

        .executableTarget(
            name: "FissionBroker",
            dependencies: [
                "Kafka", "Domain",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tools/fission-broker",
            swiftSettings: strict
        ),

        .executableTarget(
            name: "FissionBench",
            dependencies: [
                "Kafka", "FissionTesting", "AssistsService", "ServiceKit", "Domain", "Postgres",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tools/fission-bench",
            swiftSettings: strict
        ),

        // MARK: Tests
        .testTarget(
            name: "PostgresTests",
            dependencies: ["Postgres", "FissionTesting", "FissionCommand"],
            path: "Tests/PostgresTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "ServiceKitTests",
            dependencies: [
                "ServiceKit", "Domain", "Kafka", "Postgres", "FissionTesting", "FissionCommand",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Tests/ServiceKitTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "CampaignsTests",
            dependencies: [
                "CampaignsService", "ServiceKit", "Domain", "Kafka", "Postgres", "FissionTesting", "campaigns",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            path: "Tests/CampaignsTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "AssistsTests",
            dependencies: [
                "AssistsService", "ServiceKit", "Domain", "Kafka", "Postgres", "FissionTesting", "assists",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            path: "Tests/AssistsTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "OrdersTests",
            dependencies: [
                "OrdersService", "ServiceKit", "Domain", "Kafka", "Postgres", "FissionTesting", "orders",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            path: "Tests/OrdersTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "LevelsTests",
            dependencies: [
                "LevelsService", "ServiceKit", "Domain", "Kafka", "Postgres", "FissionTesting", "levels",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            path: "Tests/LevelsTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["Domain", "ServiceKit", "FissionTesting", "FissionCommand", "FissionBroker", "campaigns", "assists", "orders", "levels", "notifications"],
            path: "Tests/EndToEndTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "NotificationsTests",
            dependencies: [
                "NotificationsService", "ServiceKit", "Domain", "Kafka", "Postgres", "FissionTesting", "notifications",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            path: "Tests/NotificationsTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "ContractTests",
            dependencies: ["Domain", "FissionTesting"],
            path: "Tests/ContractTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "DomainTests",
            dependencies: ["Domain", "TextCoding"],
            path: "Tests/DomainTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "KafkaTests",
            dependencies: ["Kafka", "Domain", "FissionTesting", "FissionBroker"],
            path: "Tests/KafkaTests",
            swiftSettings: strict
        ),
    ]
)
