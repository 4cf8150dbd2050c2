import ArgumentParser
import Foundation
import Logging
import Postgres

/// Operator commands. Every failure ends with a non-zero exit and one readable line.
@main
struct FissionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fission",
        abstract: "Operate a Fission deployment.",
        subcommands: [Migrate.self]
    )
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply a service's SQL migrations to its database.")

    @Option(help: "postgres://user:pass@host:port/db of the service's database")
    var databaseURL: String

    @Option(help: "Directory of the service's ordered .sql migration files")
    var directory: String

    func run() async throws {
        var logger = Logger(label: "fission.migrate")
        logger.logLevel = .warning
        do {
            let configuration = try PostgresConfiguration(url: databaseURL)
            let migrations = try Migration.load(directory: URL(fileURLWithPath: directory))
            let pool = PostgresPool(configuration: configuration, options: .init(maxConnections: 1), logger: logger)
            let report = try await Migrator(migrations: migrations, logger: logger).migrate(pool)
            await pool.close()
            print("applied \(report.applied.count) (\(report.applied.joined(separator: ", "))), already applied \(report.skipped.count)")
        } catch {
            FileHandle.standardError.write(Data("fission migrate: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}
