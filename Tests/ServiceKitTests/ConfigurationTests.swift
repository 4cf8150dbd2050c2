import FissionTesting
import Foundation
import ServiceKit
import Testing

@Suite("Configuration")
struct ConfigurationTests {
    func checkConfig(_ environment: [String: String]) async throws -> (status: Int32, stderr: String) {
        let outcome = try await ChildProcess.execute(
            try builtProduct("fission").path, ["check-config", "--service", "campaigns"], environment: environment, timeLimit: .seconds(120))
        return (outcome.status, outcome.errors)
    }

    @Test func missingRequiredVariableExitsTwoNamingIt() async throws {
        let result = try await checkConfig([
            "FISSION_KAFKA_BROKERS": "127.0.0.1:9092", "FISSION_JWT_SECRET": "0123456789abcdef0123456789abcdef",
        ])
        #expect(result.status == 2)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(result.stderr)")
        #expect(result.stderr.contains("FISSION_DATABASE_URL is required"))
    }

    @Test func everyProblemIsOneLineAndValidSettingsPass() async throws {
        let bad = try await checkConfig(["FISSION_DATABASE_URL": "mysql://x", "FISSION_HTTP_PORT": "eighty", "FISSION_INBOX_RETENTION_SECONDS": "a month"])
        #expect(bad.status == 2)
        #expect(bad.stderr.split(separator: "\n").count == 5, "\(bad.stderr)")
        #expect(bad.stderr.contains("FISSION_INBOX_RETENTION_SECONDS must be a number of seconds, got 'a month'"))
        #expect(bad.stderr.contains("FISSION_DATABASE_URL is not a usable database URL"))
        #expect(bad.stderr.contains("FISSION_HTTP_PORT must be a whole number"))
        #expect(bad.stderr.contains("FISSION_KAFKA_BROKERS is required"))
        #expect(bad.stderr.contains("FISSION_JWT_SECRET or FISSION_JWT_PUBLIC_KEYS_FILE is required"))
        let good = try await checkConfig([
            "FISSION_DATABASE_URL": "postgres://u:p@127.0.0.1:5432/campaigns", "FISSION_KAFKA_BROKERS": "127.0.0.1:9092",
            "FISSION_JWT_SECRET": "0123456789abcdef0123456789abcdef",
        ])
        #expect(good.status == 0, "\(good.stderr)")
    }

    /// The retention sweeper's periods: the defaults (see `RetentionSweeper.Options`) unless set.
    @Test func retentionPeriodsAreReadInSeconds() {
        let base = [
            "FISSION_DATABASE_URL": "postgres://u:p@127.0.0.1:5432/campaigns", "FISSION_KAFKA_BROKERS": "127.0.0.1:9092",
            "FISSION_JWT_SECRET": "0123456789abcdef0123456789abcdef",
        ]
        var defaults = EnvironmentReader(base)
        let unset = ServiceSettings.read(service: "campaigns", from: &defaults)
        #expect(unset.inboxRetention == .seconds(45 * 24 * 3600) && unset.idempotencyRetention == .seconds(24 * 3600))
        var reader = EnvironmentReader(base.merging(
            ["FISSION_INBOX_RETENTION_SECONDS": "3888000", "FISSION_IDEMPOTENCY_RETENTION_SECONDS": "600"]) { $1 })
        let set = ServiceSettings.read(service: "campaigns", from: &reader)
        #expect(reader.problems.isEmpty)
        #expect(set.inboxRetention == .seconds(3_888_000) && set.idempotencyRetention == .seconds(600))
    }

    @Test func readerParsesTypedValues() {
        var reader = EnvironmentReader(["A": "5", "B": "1.5", "C": "x"])
        #expect(reader.integer("A", default: 1, in: 0...10) == 5)
        #expect(reader.seconds("B", default: .seconds(9)) == .milliseconds(1500))
        #expect(reader.integer("C", default: 1) == 1)
        #expect(reader.problems == ["C must be a whole number in \(Int.min)...\(Int.max), got 'x'"])
    }
}
