import ArgumentParser
import Domain
import FissionTesting
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Kafka
import Logging
import Postgres
import ServiceKit

/// Start-up time and resident memory of each service executable (the build this command sits
/// next to): time from process start to `/health/ready` once migrations have run, resident
/// memory idle, and resident memory after a burst of authenticated reads from 32 clients.
struct ServicesBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "services", abstract: "Start-up time and resident memory of each service, idle and under read load.")

    @Option(help: "Seconds of read load per service.")
    var loadSeconds = 10

    @Option(help: "JSON results file (merged with what is there).")
    var output = "bench/results.json"

    static let services = ["campaigns", "assists", "orders", "levels", "notifications"]
    /// An authenticated read each service serves from its database.
    static let reads = ["campaigns": "/campaigns?limit=20", "assists": "/reviews", "orders": "/orders",
                        "levels": "/me/level", "notifications": "/inbox?limit=20"]

    func run() async throws {
        var logger = Logger(label: "fission.bench.services")
        logger.logLevel = .error
        let cluster = try await EphemeralPostgres.start(logger: logger)
        defer { try? cluster.stop() }
        let admin = PostgresPool(configuration: cluster.adminConfiguration, options: .init(maxConnections: 1))
        for service in Self.services { try await admin.query("CREATE DATABASE \(identifier: service)") }
        await admin.close()
        let broker = try KafkaLocalBroker(logger: logger)
        for topic in Topics.allWithDeadLetters { try broker.createTopic(topic.name, partitions: topic.partitions) }
        let logs = FileManager.default.temporaryDirectory.appendingPathComponent("fission-bench-services-\(UUID())")
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        let secret = "bench-secret-0123456789abcdef0123456789"
        let token = try await DevelopmentTokenIssuer(secret: secret).token(for: "u-bench", roles: [.shopper, .merchant, .operator])

        print("Services (\(try BenchProcesses.binaries.lastPathComponent) build): start-up after migrations, resident memory idle and under \(loadSeconds) s of reads")
        print(String(format: "%-14@ %12@ %12@ %12@ %14@ %12@", "service" as NSString, "ready ms" as NSString, "first ms" as NSString,
                     "idle MB" as NSString, "loaded MB" as NSString, "reads/s" as NSString))
        var figures: [(String, [String: Double])] = []
        for service in Self.services {
            let port = try freeTCPPort()
            let environment = BenchProcesses.environment(
                service: service, database: cluster.adminConfiguration.with(database: service).url, brokers: broker.bootstrapServers,
                secret: secret, port: port)
            let log = logs.appendingPathComponent("\(service).log").path
            // First start migrates the empty database; the second is the one the target is about.
            let (first, firstPID) = try await BenchProcesses.startUntilReady(service, environment: environment, log: log, port: port)
            await BenchProcesses.stop(firstPID)
            let (ready, pid) = try await BenchProcesses.startUntilReady(service, environment: environment, log: log, port: port)
            try await Task.sleep(for: .seconds(2))
            let idle = BenchProcesses.residentMegabytes(pid)
            let reads = try await load("http://127.0.0.1:\(port)\(Self.reads[service]!)", token: token)
            let loaded = BenchProcesses.residentMegabytes(pid)
            await BenchProcesses.stop(pid)
            print(String(format: "%-14@ %12.0f %12.0f %12.1f %14.1f %12.0f", service as NSString, ready * 1000, first * 1000, idle, loaded, reads))
            figures.append(("services.\(service)", ["ready_ms": ready * 1000, "first_start_ms": first * 1000, "idle_rss_mb": idle,
                                                    "loaded_rss_mb": loaded, "reads_per_s": reads, "target_ready_ms": 1000,
                                                    "target_idle_rss_mb": 50, "target_loaded_rss_mb": 200]))
        }
        try? FileManager.default.removeItem(at: logs)
        try BenchResults.record(figures, to: output)
    }

    /// 32 clients reading for `loadSeconds`; returns reads/s (any non-200 stops the run).
    private func load(_ url: String, token: String) async throws -> Double {
        let deadline = ContinuousClock.now.advanced(by: .seconds(loadSeconds))
        let start = ContinuousClock.now
        let count = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<32 {
                group.addTask {
                    var done = 0
                    var request = URLRequest(url: URL(string: url)!)
                    request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
                    while ContinuousClock.now < deadline {
                        let (_, response) = try await URLSession.shared.data(for: request)
                        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                        guard status == 200 else { throw ValidationError("\(url) answered \(status)") }
                        done += 1
                    }
                    return done
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = ContinuousClock.now - start
        return Double(count) / elapsed.inSeconds
    }
}
