import Foundation
import FissionTesting
import Postgres
import Testing

@Suite("Migrations")
struct MigrationTests {
    static let first = Migration(version: "0001_campaigns", sql: """
        CREATE TABLE campaigns (id uuid PRIMARY KEY, title text NOT NULL);
        CREATE INDEX campaigns_title ON campaigns (title);
        """)
    static let second = Migration(version: "0002_stock", sql: "ALTER TABLE campaigns ADD COLUMN stock int8 NOT NULL DEFAULT 0;")

    @Test func migrationsApplyOnceAndAreSkippedTheSecondTime() async throws {
        try await withTestPool { pool in
            let migrator = Migrator(migrations: [Self.second, Self.first])
            let firstRun = try await migrator.migrate(pool)
            #expect(firstRun.applied == ["0001_campaigns", "0002_stock"])
            #expect(firstRun.skipped.isEmpty)
            let secondRun = try await migrator.migrate(pool)
            #expect(secondRun.applied.isEmpty)
            #expect(secondRun.skipped == ["0001_campaigns", "0002_stock"])
            try await pool.query("INSERT INTO campaigns (id, title, stock) VALUES (\(UUID()), 'tea', 5)")
        }
    }

    @Test func modifiedAppliedMigrationIsRefused() async throws {
        try await withTestPool { pool in
            _ = try await Migrator(migrations: [Self.first]).migrate(pool)
            var edited = Self.first
            edited.sql += "\nCREATE INDEX sneaky ON campaigns (id);"
            await #expect(throws: MigrationError.self) {
                _ = try await Migrator(migrations: [edited, Self.second]).migrate(pool)
            }
            // Nothing after the refusal was applied.
            let count = try await pool.query("SELECT count(*) AS c FROM schema_migrations").single().decode("c", as: Int.self)
            #expect(count == 1)
        }
    }

    @Test func failingMigrationLeavesNoPartialChange() async throws {
        try await withTestPool { pool in
            let broken = Migration(version: "0002_broken", sql: "CREATE TABLE half (id int); SELECT no_such_function();")
            await #expect(throws: MigrationError.self) {
                _ = try await Migrator(migrations: [Self.first, broken]).migrate(pool)
            }
            let half = try await pool.query("SELECT to_regclass('half') IS NULL AS gone").single().decode("gone", as: Bool.self)
            #expect(half)
            let versions = try await pool.query("SELECT version FROM schema_migrations").map { try $0.decode("version", as: String.self) }
            #expect(versions == ["0001_campaigns"])
        }
    }

    @Test func twoProcessesMigratingAtOnceEndWithOneAppliedSet() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // Slow migrations widen the window in which the two processes overlap.
        for (index, sql) in [
            "CREATE TABLE a (id int); SELECT pg_sleep(0.3);",
            "CREATE TABLE b (id int); SELECT pg_sleep(0.3);",
            "CREATE TABLE c (id int);",
        ].enumerated() {
            try sql.write(to: directory.appendingPathComponent(String(format: "%04d_step.sql", index + 1)), atomically: true, encoding: .utf8)
        }
        let command = try builtProduct("fission")
        try await withTestDatabase { configuration in
            let arguments = ["migrate", "--database-url", configuration.url, "--directory", directory.path]
            async let first = ChildProcess.execute(command.path, arguments, timeLimit: .seconds(120))
            async let second = ChildProcess.execute(command.path, arguments, timeLimit: .seconds(120))
            var outputs: [String] = []
            for outcome in try await [first, second] {
                #expect(outcome.status == 0, "\(outcome.output)\(outcome.errors)")
                outputs.append(outcome.output + outcome.errors)
            }
            // Exactly one process applied the three files; the other found them applied.
            #expect(outputs.filter { $0.hasPrefix("applied 3") }.count == 1, "\(outputs)")
            #expect(outputs.filter { $0.hasPrefix("applied 0 (), already applied 3") }.count == 1, "\(outputs)")
            let pool = PostgresPool(configuration: configuration)
            let versions = try await pool.query("SELECT version FROM schema_migrations ORDER BY version").map {
                try $0.decode("version", as: String.self)
            }
            await pool.close()
            #expect(versions == ["0001_step", "0002_step", "0003_step"])
        }
    }

    @Test func commandFailsWithOneReadableLine() async throws {
        let command = try builtProduct("fission")
        let outcome = try await ChildProcess.execute(
            command.path, ["migrate", "--database-url", "postgres://nobody@127.0.0.1:\(try freeTCPPort())/x", "--directory", "/nonexistent"],
            timeLimit: .seconds(120))
        let text = outcome.errors
        #expect(outcome.status != 0)
        #expect(text.split(separator: "\n").count == 1, "\(text)")
        #expect(text.hasPrefix("fission migrate:"))
    }
}
