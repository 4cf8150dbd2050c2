import ArgumentParser
import AssistsService
import Domain
import FissionTesting
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hummingbird
import Kafka
import Logging
import Postgres
import ServiceKit

/// Helps/s through the real HTTP API on one hot task against the same number of helps spread
/// over many tasks, on the same database, same client, same run.
struct AssistsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "assists", abstract: "Hot task versus spread helps through the assists HTTP API.")

    @Option(help: "Helps per measurement.")
    var helps = 2_000

    @Option(help: "Concurrent clients.")
    var concurrency = 32

    @Option(help: "Tasks the spread measurement uses.")
    var tasks = 200

    @Option(help: "JSON results file (merged with what is there).")
    var output = "bench/results.json"

    @Option(help: "Seconds of the pgbench -N reference run.")
    var pgbenchSeconds = 15

    func run() async throws {
        var logger = Logger(label: "fission.bench.assists")
        logger.logLevel = .error
        let cluster = try await EphemeralPostgres.start(logger: logger)
        defer { try? cluster.stop() }
        let admin = PostgresPool(configuration: cluster.adminConfiguration, options: .init(maxConnections: 1))
        try await admin.query("CREATE DATABASE assists")
        await admin.close()
        let broker = try KafkaLocalBroker(logger: logger)
        for topic in Topics.allWithDeadLetters { try broker.createTopic(topic.name, partitions: topic.partitions) }
        let secret = "bench-secret-0123456789abcdef0123456789"
        let port = try freeTCPPort()
        let settings = ServiceSettings(
            serviceName: "assists", port: port, database: cluster.adminConfiguration.with(database: "assists"), databasePoolSize: 32,
            kafkaBrokers: broker.bootstrapServers, tokenKeys: .sharedSecret(secret), logLevel: "error", localBroker: true)
        let app = try await AssistsService.makeApplication(settings: settings, logger: logger)
        let serving = Task { try await app.runService(gracefulShutdownSignals: []) }
        defer { serving.cancel() }
        let base = "http://127.0.0.1:\(port)"
        try await waitUntilReady(base)

        // A bargain campaign with room for every help: the promise is larger than any run.
        let campaign = CampaignID()
        let terms = CampaignTerms(
            kind: .bargain, product: Product(sku: "BENCH", title: "bench"), listPrice: Money(10_000_000, .cny), stock: 1_000_000,
            perUserLimit: 1, startsAt: Date().addingTimeInterval(-60), endsAt: Date().addingTimeInterval(86_400),
            bargain: BargainRules(floorPrice: Money(0, .cny), maxHelpers: 100_000, firstCutMin: Money(1, .cny), firstCutMax: Money(10, .cny),
                                  taskTimeLimitSeconds: 86_400, payWindowSeconds: 600))
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: broker.bootstrapServers), logger: logger)
        let event = CloudEvent(CampaignPublished(campaignId: campaign, merchantId: "m-bench", terms: terms, publishedAt: Date()))
        try await producer.send(KafkaOutgoingMessage(
            topic: Topics.campaign.name, key: event.subject, value: try EventCoding.encode(event),
            headers: [KafkaHeader(key: "ce_type", value: event.type)]))
        await producer.shutdown()

        let issuer = await DevelopmentTokenIssuer(secret: secret)
        var taskIDs: [String] = []
        for index in 0..<(tasks + 1) {
            let token = try await issuer.token(for: UserID(rawValue: "initiator-\(index)"), roles: [.shopper])
            let body = "{\"campaignId\":\"\(campaign)\"}"
            var started: [String: Any]?
            for _ in 0..<300 where started == nil {
                let (status, object) = try await Self.post("\(base)/tasks", token: token, body: body)
                if status == 201 { started = object } else { try await Task.sleep(for: .milliseconds(50)) }
            }
            guard let id = started?["taskId"] as? String else { throw ValidationError("could not start tasks: has assists seen the campaign?") }
            taskIDs.append(id)
        }
        let hot = taskIDs[0]
        let spread = Array(taskIDs.dropFirst())
        var helperTokens: [String] = []
        for index in 0..<(helps * 2) {
            helperTokens.append(try await issuer.token(for: UserID(rawValue: "helper-\(index)"), roles: [.shopper]))
        }

        // The reference: what the same server does with pgbench's simple-update transaction
        // (`-N`, 32 clients), measured in this run before the helps.
        let reference = try await pgbenchTPS(cluster)
        let spreadRun = try await measure(base: base, tokens: Array(helperTokens.prefix(helps))) { spread[$0 % spread.count] }
        let hotRun = try await measure(base: base, tokens: Array(helperTokens.suffix(helps))) { _ in hot }

        print("Assists helps through HTTP: \(helps) helps each, \(concurrency) concurrent clients, pool of 32")
        print(String(format: "%-30@ %12@ %10@ %10@", "figure" as NSString, "helps/s" as NSString, "p50 ms" as NSString, "p99 ms" as NSString))
        for (name, run) in [("spread over \(spread.count) tasks", spreadRun), ("one hot task", hotRun)] {
            print(String(format: "%-30@ %12.0f %10.1f %10.1f", name as NSString, run.rate, run.p50, run.p99))
        }
        let ratio = hotRun.rate / spreadRun.rate
        print(String(format: "hot ÷ spread = %.2f (target ≥ 0.50)", ratio))
        let versusReference = spreadRun.rate / reference
        print(String(format: "pgbench -N, 32 clients, same server: %.0f tps; spread helps ÷ pgbench = %.2f (target ≥ 0.80)", reference, versusReference))
        try BenchResults.record([
            ("assists.helps_vs_pgbench", ["value": spreadRun.rate, "reference": reference, "ratio": versusReference, "target_ratio": 0.8]),
            ("assists.hot_task_helps_per_s", ["value": hotRun.rate, "reference": spreadRun.rate, "ratio": ratio, "target_ratio": 0.5,
                                              "p50_ms": hotRun.p50, "p99_ms": hotRun.p99]),
            ("assists.spread_helps_per_s", ["value": spreadRun.rate, "p50_ms": spreadRun.p50, "p99_ms": spreadRun.p99]),
        ], to: output)
    }

    /// pgbench -N (simple update) tps against the cluster, scale 10, 32 clients on 2 threads.
    func pgbenchTPS(_ cluster: EphemeralPostgres) async throws -> Double {
        let admin = PostgresPool(configuration: cluster.adminConfiguration, options: .init(maxConnections: 1))
        try await admin.query("CREATE DATABASE pgbench")
        await admin.close()
        let pgbench = cluster.binDirectory.appendingPathComponent("pgbench").path
        let connection = ["-h", "127.0.0.1", "-p", String(cluster.port), "-U", EphemeralPostgres.superuser]
        let environment = ["PGPASSWORD": EphemeralPostgres.superuserPassword, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        try await ChildProcess.run(pgbench, connection + ["-i", "-q", "-s", "10", "pgbench"], environment: environment, timeLimit: .seconds(300))
        let output = try await ChildProcess.run(
            pgbench, connection + ["-N", "-c", "32", "-j", "2", "-T", String(pgbenchSeconds), "pgbench"],
            environment: environment, timeLimit: .seconds(Double(pgbenchSeconds) + 120))
        // "tps = 1234.5 (without initial connection time)"
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("tps = ") }),
              let tps = Double(line.dropFirst("tps = ".count).prefix { $0 != " " }) else {
            throw ValidationError("pgbench printed no tps: \(output.suffix(400))")
        }
        return tps
    }

    struct Run {
        var rate: Double
        var p50: Double
        var p99: Double
    }

    func measure(base: String, tokens: [String], task: @escaping @Sendable (Int) -> String) async throws -> Run {
        let start = ContinuousClock.now
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for worker in 0..<concurrency {
                group.addTask {
                    var own: [Double] = []
                    var index = worker
                    while index < tokens.count {
                        let began = ContinuousClock.now
                        let (status, _) = try await Self.post("\(base)/tasks/\(task(index))/helps", token: tokens[index], body: nil)
                        guard status == 200 else { throw ValidationError("a help failed with \(status)") }
                        let elapsed = ContinuousClock.now - began
                        own.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
                        index += concurrency
                    }
                    return own
                }
            }
            return try await group.reduce(into: [Double]()) { $0 += $1 }
        }
        let elapsed = ContinuousClock.now - start
        let seconds = elapsed.inSeconds
        let sorted = latencies.sorted()
        return Run(rate: Double(latencies.count) / seconds, p50: sorted[sorted.count / 2], p99: sorted[Int(Double(sorted.count) * 0.99)])
    }

    static func post(_ url: String, token: String, body: String?) async throws -> (Int, [String: Any]) {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = "POST"
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:])
    }

    func waitUntilReady(_ base: String) async throws {
        for _ in 0..<600 {
            var request = URLRequest(url: URL(string: "\(base)/health/ready")!)
            request.timeoutInterval = 2
            if let (_, response) = try? await URLSession.shared.data(for: request), (response as? HTTPURLResponse)?.statusCode == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ValidationError("assists did not become ready")
    }
}

/// bench/results.json: every figure of every benchmark, merged run by run.
enum BenchResults {
    static func record(_ figures: [(String, [String: Double])], to output: String) throws {
        let url = URL(fileURLWithPath: output)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        var results = (try? JSONSerialization.jsonObject(with: Data(contentsOf: url))) as? [String: Any] ?? [:]
        for (name, figure) in figures { results[name] = figure }
        results["recorded_at"] = ISO8601DateFormatter().string(from: Date())
        try JSONSerialization.data(withJSONObject: results, options: [.prettyPrinted, .sortedKeys]).write(to: url)
    }
}
