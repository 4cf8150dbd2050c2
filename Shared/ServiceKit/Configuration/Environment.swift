import Foundation
import Postgres

/// Reads a service's configuration from environment variables, collecting every problem so
/// that start-up reports all of them at once, one line each, and exits with status 2.
public struct EnvironmentReader {
    public let variables: [String: String]
    public private(set) var problems: [String] = []

    public init(_ variables: [String: String] = ProcessInfo.processInfo.environment) {
        self.variables = variables
    }

    private func value(_ name: String) -> String? {
        guard let value = variables[name]?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        return value
    }

    public mutating func required(_ name: String, _ meaning: String) -> String {
        guard let value = value(name) else {
            problems.append("\(name) is required (\(meaning))")
            return ""
        }
        return value
    }

    public func optional(_ name: String) -> String? { value(name) }

    public func string(_ name: String, default fallback: String) -> String { value(name) ?? fallback }

    public mutating func integer(_ name: String, default fallback: Int, in range: ClosedRange<Int> = Int.min...Int.max) -> Int {
        guard let text = value(name) else { return fallback }
        guard let number = Int(text), range.contains(number) else {
            problems.append("\(name) must be a whole number in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
            return fallback
        }
        return number
    }

    public mutating func seconds(_ name: String, default fallback: Duration) -> Duration {
        guard let text = value(name) else { return fallback }
        guard let number = Double(text), number >= 0 else {
            problems.append("\(name) must be a number of seconds, got '\(text)'")
            return fallback
        }
        return .milliseconds(Int64(number * 1000))
    }

    public mutating func database(_ name: String) -> PostgresConfiguration? {
        let text = required(name, "postgres://user:password@host:port/database of this service")
        guard !text.isEmpty else { return nil }
        do {
            return try PostgresConfiguration(url: text)
        } catch {
            problems.append("\(name) is not a usable database URL: \(error.summary)")
            return nil
        }
    }

    public mutating func problem(_ line: String) { problems.append(line) }

    /// A rate budget as `count/seconds` ("30/60"), or "off".
    public mutating func budget(_ name: String, default fallback: RateBudget) -> RateBudget? {
        guard let text = value(name) else { return fallback }
        guard let budget = RateBudget.parse(text) else {
            problem("\(name) must be count/seconds (like 30/60) or off, got '\(text)'")
            return fallback
        }
        return budget
    }

    /// Prints each problem as one line on stderr and exits 2 when there are any.
    public func exitOnProblems(service: String) {
        guard !problems.isEmpty else { return }
        for problem in problems {
            FileHandle.standardError.write(Data("\(service): configuration: \(problem)\n".utf8))
        }
        exit(2)
    }
}

/// What every service process needs, from `FISSION_*` variables.
public struct ServiceSettings: Sendable {
    public var serviceName: String
    public var host: String
    public var port: Int
    public var database: PostgresConfiguration
    public var databasePoolSize: Int
    public var kafkaBrokers: String
    public var tokenKeys: TokenKeys
    public var logLevel: String
    public var outboxRetention: Duration
    /// How long inbox rows and idempotency keys are kept (`RetentionSweeper`).
    public var inboxRetention: Duration
    public var idempotencyRetention: Duration
    /// Tuning for librdkafka's mock broker (short fetch waits and sessions).
    public var localBroker: Bool
    /// Limits on helps, share links and order placement, per user and per client address.
    public var rateLimits: RateLimiter

    public init(
        serviceName: String, host: String = "127.0.0.1", port: Int, database: PostgresConfiguration, databasePoolSize: Int = 16,
        kafkaBrokers: String, tokenKeys: TokenKeys, logLevel: String = "info", outboxRetention: Duration = .seconds(7 * 24 * 3600),
        inboxRetention: Duration = RetentionSweeper.Options().inboxRetention,
        idempotencyRetention: Duration = RetentionSweeper.Options().idempotencyRetention, localBroker: Bool = false, rateLimits: RateLimiter = .unlimited
    ) {
        self.serviceName = serviceName
        self.host = host
        self.port = port
        self.database = database
        self.databasePoolSize = databasePoolSize
        self.kafkaBrokers = kafkaBrokers
        self.tokenKeys = tokenKeys
        self.logLevel = logLevel
        self.outboxRetention = outboxRetention
        self.inboxRetention = inboxRetention
        self.idempotencyRetention = idempotencyRetention
        self.localBroker = localBroker
        self.rateLimits = rateLimits
    }

    /// Reads the settings; problems are collected in `environment`.
    public static func read(service: String, from environment: inout EnvironmentReader) -> ServiceSettings {
        let database = environment.database("FISSION_DATABASE_URL")
        let brokers = environment.required("FISSION_KAFKA_BROKERS", "Kafka bootstrap servers, host:port[,host:port]")
        let keys: TokenKeys
        if let secret = environment.optional("FISSION_JWT_SECRET") {
            if secret.utf8.count < 32 { environment.problem("FISSION_JWT_SECRET must be at least 32 bytes") }
            keys = .sharedSecret(secret)
        } else if let path = environment.optional("FISSION_JWT_PUBLIC_KEYS_FILE") {
            let pems = (try? String(contentsOfFile: path, encoding: .utf8)).map(Self.splitPEMs) ?? []
            if pems.isEmpty { environment.problem("FISSION_JWT_PUBLIC_KEYS_FILE '\(path)' holds no PEM public key") }
            keys = .publicKeysPEM(pems)
        } else {
            environment.problem("FISSION_JWT_SECRET or FISSION_JWT_PUBLIC_KEYS_FILE is required (how bearer tokens are verified)")
            keys = .sharedSecret("")
        }
        return ServiceSettings(
            serviceName: service,
            host: environment.string("FISSION_HTTP_HOST", default: "0.0.0.0"),
            port: environment.integer("FISSION_HTTP_PORT", default: 8080, in: 0...65535),
            database: database ?? PostgresConfiguration(user: "", database: ""),
            databasePoolSize: environment.integer("FISSION_DATABASE_POOL_SIZE", default: 16, in: 1...500),
            kafkaBrokers: brokers,
            tokenKeys: keys,
            logLevel: environment.string("FISSION_LOG_LEVEL", default: "info"),
            outboxRetention: environment.seconds("FISSION_OUTBOX_RETENTION_SECONDS", default: .seconds(7 * 24 * 3600)),
            inboxRetention: environment.seconds("FISSION_INBOX_RETENTION_SECONDS", default: RetentionSweeper.Options().inboxRetention),
            idempotencyRetention: environment.seconds(
                "FISSION_IDEMPOTENCY_RETENTION_SECONDS", default: RetentionSweeper.Options().idempotencyRetention),
            localBroker: environment.string("FISSION_KAFKA_LOCAL", default: "false") == "true",
            rateLimits: RateLimiter(
                perUser: environment.budget("FISSION_RATE_LIMIT_PER_USER", default: RateBudget(30, per: .seconds(60))),
                perAddress: environment.budget("FISSION_RATE_LIMIT_PER_ADDRESS", default: RateBudget(600, per: .seconds(60)))))
    }

    static func splitPEMs(_ text: String) -> [String] {
        text.components(separatedBy: "-----END PUBLIC KEY-----")
            .compactMap { chunk in
                guard let start = chunk.range(of: "-----BEGIN PUBLIC KEY-----") else { return nil }
                return String(chunk[start.lowerBound...]) + "-----END PUBLIC KEY-----\n"
            }
    }
}

/// A service could not start for a reason of its own making (a missing resource, ...).
public struct ServiceStartError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension Duration {
    /// Seconds as a floating-point number: for rates, and for dates that far apart.
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
