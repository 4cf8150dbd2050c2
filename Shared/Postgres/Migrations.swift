import Crypto
import Foundation
import Logging

/// One schema change: an ordered `.sql` file of a service.
public struct Migration: Sendable, Equatable {
    /// The file name without `.sql`, e.g. `0001_campaigns`; order is by this name.
    public var version: String
    public var sql: String

    public init(version: String, sql: String) {
        self.version = version
        self.sql = sql
    }

    /// SHA-256 of the file's text: an applied migration must never change.
    public var checksum: String {
        SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Reads every `*.sql` file of a directory, ordered by name.
    public static func load(directory: URL) throws -> [Migration] {
        let files = try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "sql" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        return try files.map { file in
            Migration(version: file.deletingPathExtension().lastPathComponent, sql: try String(contentsOf: file, encoding: .utf8))
        }
    }
}

public struct MigrationError: Error, Sendable, CustomStringConvertible {
    public var version: String
    public var reason: String
    public var description: String { "migration \(version): \(reason)" }
}

/// Applies a service's migrations in order, each in its own transaction, recording version and
/// checksum in `schema_migrations`. A session advisory lock serialises concurrent starters (two
/// replicas booting at once): the second waits, then finds everything applied.
public struct Migrator: Sendable {
    public struct Report: Sendable, Equatable {
        public var applied: [String]
        public var skipped: [String]
    }

    public var migrations: [Migration]
    private let logger: Logger
    /// Any fixed number works as long as every Fission service uses the same one per database.
    static let lockKey: Int64 = 0x6669_7373_696F_6E01

    public init(migrations: [Migration], logger: Logger = Logger(label: "fission.migrations")) {
        self.migrations = migrations
        self.logger = logger
    }

    public func migrate(_ pool: PostgresPool) async throws -> Report {
        let versions = migrations.map(\.version)
        guard Set(versions).count == versions.count else {
            throw MigrationError(version: versions.first { v in versions.filter { $0 == v }.count > 1 } ?? "", reason: "appears twice")
        }
        return try await pool.withConnection { connection in
            try await connection.query("SELECT pg_advisory_lock(\(Self.lockKey))")
            do {
                let report = try await apply(on: connection)
                try await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))")
                return report
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))")
                throw error
            }
        }
    }

    private func apply(on connection: PostgresConnection) async throws -> Report {
        try await connection.runScript(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version text PRIMARY KEY,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """)
        var recorded: [String: String] = [:]
        for row in try await connection.query("SELECT version, checksum FROM schema_migrations") {
            recorded[try row.decode("version")] = try row.decode("checksum", as: String.self)
        }
        var report = Report(applied: [], skipped: [])
        for migration in migrations.sorted(by: { $0.version < $1.version }) {
            if let checksum = recorded[migration.version] {
                guard checksum == migration.checksum else {
                    throw MigrationError(
                        version: migration.version,
                        reason: "was changed after it was applied (recorded checksum \(checksum.prefix(12)), file now \(migration.checksum.prefix(12))); add a new migration instead")
                }
                report.skipped.append(migration.version)
                continue
            }
            do {
                try await connection.withTransaction {
                    try await connection.runScript(migration.sql)
                    try await connection.query(
                        "INSERT INTO schema_migrations (version, checksum) VALUES (\(migration.version), \(migration.checksum))")
                }
            } catch let error as PostgresError {
                throw MigrationError(version: migration.version, reason: "failed: \(error.debugDescription)")
            }
            logger.info("applied migration", metadata: ["version": "\(migration.version)"])
            report.applied.append(migration.version)
        }
        let known = Set(migrations.map(\.version))
        if let unknown = recorded.keys.sorted().first(where: { !known.contains($0) }) {
            // A newer release of the service migrated this database; running on is its call.
            logger.warning("database has a migration this build does not know", metadata: ["version": "\(unknown)"])
        }
        return report
    }
}
