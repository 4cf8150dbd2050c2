import Foundation
import Logging
import Postgres

/// The PostgreSQL server of a test run: one ephemeral cluster shared by every test in the
/// process (started on first use, stopped by its watchdog when the process ends), or the server
/// at `FISSION_TEST_DATABASE_URL` (whose user must be allowed to create databases).
/// Each test gets a database of its own.
public actor TestDatabases {
    public static let shared = TestDatabases()

    private var server: Task<PostgresConfiguration, any Error>?
    private var cluster: EphemeralPostgres?
    private var adminPool: PostgresPool?

    /// The admin configuration of the server tests run against.
    public func serverConfiguration() async throws -> PostgresConfiguration {
        if let server { return try await server.value }
        let task = Task<PostgresConfiguration, any Error> {
            var configuration: PostgresConfiguration
            if let url = ProcessInfo.processInfo.environment["FISSION_TEST_DATABASE_URL"], !url.isEmpty {
                configuration = try PostgresConfiguration(url: url)
            } else {
                let cluster = try await EphemeralPostgres.start()
                self.keep(cluster)
                configuration = cluster.adminConfiguration
            }
            // When a whole suite starts at once on a busy 2-core machine, a backend can take
            // longer than the 4 s a service would tolerate just to fork and authenticate.
            configuration.connectTimeoutSeconds = max(configuration.connectTimeoutSeconds, 30)
            return configuration
        }
        server = task
        return try await task.value
    }

    private func keep(_ cluster: EphemeralPostgres) { self.cluster = cluster }

    /// The ephemeral cluster, when this run started one (outage tests restart it).
    public var ephemeralCluster: EphemeralPostgres? { cluster }

    private func admin() async throws -> PostgresPool {
        if let adminPool { return adminPool }
        let pool = PostgresPool(configuration: try await serverConfiguration(), options: .init(maxConnections: 2, waitTimeout: .seconds(60)))
        adminPool = pool
        return pool
    }

    /// Creates an empty database and returns its configuration.
    public func createDatabase(prefix: String = "test") async throws -> PostgresConfiguration {
        let name = "\(prefix)_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16))"
        try await admin().query("CREATE DATABASE \(identifier: name)")
        return try await serverConfiguration().with(database: name)
    }

    /// Drops a database, disconnecting whoever still uses it.
    public func dropDatabase(_ configuration: PostgresConfiguration) async throws {
        try await admin().query("DROP DATABASE IF EXISTS \(identifier: configuration.database) WITH (FORCE)")
    }
}

/// Runs `body` with a fresh, empty database that is dropped afterwards.
public func withTestDatabase<T>(
    isolation: isolated (any Actor)? = #isolation,
    _ body: (PostgresConfiguration) async throws -> T
) async throws -> T {
    let configuration = try await TestDatabases.shared.createDatabase()
    do {
        let value = try await body(configuration)
        try await TestDatabases.shared.dropDatabase(configuration)
        return value
    } catch {
        try? await TestDatabases.shared.dropDatabase(configuration)
        throw error
    }
}

/// Built products (the `fission` command, service executables) sit next to the test binary.
public func builtProduct(_ name: String) throws -> URL {
    let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    var directory = URL(fileURLWithPath: executable).deletingLastPathComponent()
    // `swift test` runs `<build>/debug/FissionPackageTests.xctest`; some runners nest deeper.
    for _ in 0..<3 {
        let candidate = directory.appendingPathComponent(name)
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        directory.deleteLastPathComponent()
    }
    throw HarnessError("built product '\(name)' not found next to \(executable); build it first (swift build)")
}

/// Runs `body` with a pool on a fresh database; closes the pool and drops the database after.
public func withTestPool<T>(
    isolation: isolated (any Actor)? = #isolation,
    options: PostgresPool.Options = .init(),
    _ body: (PostgresPool) async throws -> T
) async throws -> T {
    try await withTestDatabase { configuration in
        try await PostgresPool.using(configuration, options: options, body)
    }
}
