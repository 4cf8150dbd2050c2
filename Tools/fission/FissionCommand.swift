import ArgumentParser
import Domain
import Foundation
import Logging
import Postgres
import ServiceKit

/// Operator commands. Every failure ends with a non-zero exit and one readable line.
@main
struct FissionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fission",
        abstract: "Operate a Fission deployment.",
        subcommands: [Dev.self, Chaos.self, DeadLetters.self, OutboxCommand.self, Migrate.self, Token.self, CheckConfig.self]
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

struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mint a development bearer token (HS256) for the local stack and tests.")

    @Option(help: "The shared secret the services verify with (FISSION_JWT_SECRET).")
    var secret: String = ProcessInfo.processInfo.environment["FISSION_JWT_SECRET"] ?? ""

    @Option(help: "The user id (token subject).")
    var user: String

    @Option(name: .customLong("role"), help: "shopper, merchant or operator (repeatable).")
    var roles: [String] = ["shopper"]

    @Option(help: "Lifetime in hours.")
    var hours: Double = 24

    func run() async throws {
        guard secret.utf8.count >= 32 else {
            FileHandle.standardError.write(Data("fission token: --secret (or FISSION_JWT_SECRET) of at least 32 bytes is required\n".utf8))
            throw ExitCode.failure
        }
        var parsed: [Role] = []
        for role in roles {
            guard let value = Role(rawValue: role) else {
                FileHandle.standardError.write(Data("fission token: unknown role '\(role)' (shopper, merchant, operator)\n".utf8))
                throw ExitCode.failure
            }
            parsed.append(value)
        }
        let token = try await DevelopmentTokenIssuer(secret: secret).token(for: UserID(rawValue: user), roles: parsed, validFor: hours * 3600)
        print(token)
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Check a service's environment variables as the service would at start-up (exit 2 on problems).")

    @Option(help: "The service whose environment to check.")
    var service: String

    func run() throws {
        var environment = EnvironmentReader()
        _ = ServiceSettings.read(service: service, from: &environment)
        environment.exitOnProblems(service: service)
        print("\(service): configuration ok")
    }
}
