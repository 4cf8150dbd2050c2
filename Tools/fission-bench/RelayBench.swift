import ArgumentParser
import FissionTesting
import Foundation
import Kafka
import Logging
import Postgres
import ServiceKit

/// Events/s from committed outbox rows to acknowledged Kafka deliveries (the relay reads, sends,
/// awaits the reports and marks the rows), next to the bare producer sending the same records
/// to the same broker in the same run.
struct RelayBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay", abstract: "Outbox relay throughput against the bare producer on the same broker.")

    /// 50,000 × 300 B over 8 partitions stays under the local broker's 5 MiB per partition.
    @Option(help: "Outbox rows per run.")
    var events = 50_000

    @Option(help: "Batches the relay keeps in flight.")
    var batchesInFlight = OutboxRelay.Options().batchesInFlight

    @Option(help: "JSON results file (merged with what is there).")
    var output = "bench/results.json"

    func run() async throws {
        var logger = Logger(label: "fission.bench.relay")
        logger.logLevel = .error
        let cluster = try await EphemeralPostgres.start(logger: logger)
        defer { try? cluster.stop() }
        let admin = PostgresPool(configuration: cluster.adminConfiguration, options: .init(maxConnections: 1))
        try await admin.query("CREATE DATABASE relay")
        await admin.close()
        let pool = PostgresPool(configuration: cluster.adminConfiguration.with(database: "relay"), options: .init(maxConnections: 4))
        _ = try await Migrator(migrations: KitMigrations.all, logger: logger).migrate(pool)
        let broker = try KafkaLocalBroker(logger: logger)
        for topic in ["bench.relay", "bench.producer"] { try broker.createTopic(topic, partitions: 8) }

        // Rows as services commit them: 1,000 keys, 300-byte payloads.
        try await pool.query(
            """
            INSERT INTO outbox (event_id, topic, key, event_type, payload)
            SELECT gen_random_uuid(), 'bench.relay', 'key-' || (i % 1000), 'bench.event', repeat('x', 300)
            FROM generate_series(1, \(events)) AS i
            """)

        var configuration = KafkaProducerConfiguration(bootstrapServers: broker.bootstrapServers)
        configuration.lingerMilliseconds = 5
        // The reference: the same records straight from our producer (warmed up, batches of 1,000,
        // as many in flight as the relay keeps), without the database on either side.
        let bare = try KafkaProducer(configuration: configuration, logger: logger)
        try await bare.send(KafkaOutgoingMessage(topic: "bench.producer", key: "warm-up", value: Array("x".utf8)))
        let payload = Array(String(repeating: "x", count: 300).utf8)
        let bareStart = ContinuousClock.now
        var inFlight: [KafkaDeliveries] = []
        func settle(_ deliveries: KafkaDeliveries) async throws {
            guard await deliveries.outcomes().allSatisfy({ if case .success = $0 { true } else { false } }) else {
                throw ValidationError("bare sends failed")
            }
        }
        for start in stride(from: 0, to: events, by: 1_000) {
            if inFlight.count == batchesInFlight { try await settle(inFlight.removeFirst()) }
            inFlight.append(await bare.enqueue((start..<min(start + 1_000, events)).map {
                KafkaOutgoingMessage(topic: "bench.producer", key: Array("key-\($0 % 1000)".utf8), value: payload)
            }))
        }
        for deliveries in inFlight { try await settle(deliveries) }
        let bareRate = Double(events) / (ContinuousClock.now - bareStart).inSeconds
        await bare.shutdown()

        let producer = try KafkaProducer(configuration: configuration, logger: logger)
        try await producer.send(KafkaOutgoingMessage(topic: "bench.relay", key: "warm-up", value: Array("x".utf8)))
        var options = OutboxRelay.Options()
        options.batchesInFlight = batchesInFlight
        let relay = OutboxRelay(service: "bench", pool: pool, producer: producer, options: options, logger: logger)
        let start = ContinuousClock.now
        let running = Task { try await relay.run() }
        // The lowest id left, through the primary key: a count scanned the whole outbox every 20 ms
        // and took about a third of the server's time in the relay's window.
        while try await pool.query("SELECT min(id) AS first FROM outbox").single().decode("first", as: Int64?.self) != nil {
            try await Task.sleep(for: .milliseconds(20))
        }
        let relayRate = Double(events) / (ContinuousClock.now - start).inSeconds
        running.cancel()
        _ = try? await running.value
        await producer.shutdown()
        await pool.close()

        print("Outbox relay: \(events) committed rows of 300 bytes, 1000 keys, 8 partitions, local broker")
        print(String(format: "relay %.0f events/s; bare producer %.0f msg/s; relay ÷ producer = %.2f (target ≥ 20000 events/s)",
                     relayRate, bareRate, relayRate / bareRate))
        try BenchResults.record([
            ("relay.events_per_s", ["value": relayRate, "reference": bareRate, "ratio": relayRate / bareRate, "target": 20_000]),
        ], to: output)
    }
}
