import Domain
import Foundation
import Hummingbird
import Kafka
import Logging
import Postgres
import ServiceKit
import ServiceLifecycle

/// The levels service: XP ledger, levels, benefits, verifiable weighted draws, leaderboards.
public enum LevelsService {
    public static let name = "levels"

    public static func migrations() throws -> [Migration] {
        guard let directory = Bundle.module.url(forResource: "Migrations", withExtension: nil) else {
            throw ServiceStartError("the Migrations folder is missing from the levels bundle")
        }
        return KitMigrations.all + (try Migration.load(directory: directory))
    }

    static func eventHandlers(_ handlers: XPHandlers) -> [EventHandler] {
        [
            .on(ShareClicked.self, handlers.shareClicked),
            .on(AssistRecorded.self, handlers.assistRecorded),
            .on(OrderConfirmed.self, handlers.orderConfirmed),
            .on(OrderRefunded.self, handlers.orderRefunded),
        ]
    }

    static let consumedTopics = [Topics.share.name, Topics.task.name, Topics.order.name]

    public static func makeApplication(settings: ServiceSettings, rules: LevelRules = LevelRules(), logger: Logger) async throws -> some ApplicationProtocol {
        let pool = PostgresPool(configuration: settings.database, options: .init(maxConnections: settings.databasePoolSize), logger: logger)
        _ = try await Migrator(migrations: try migrations(), logger: logger).migrate(pool)
        var producerConfiguration = KafkaProducerConfiguration(bootstrapServers: settings.kafkaBrokers)
        producerConfiguration.clientID = name
        let producer = try KafkaProducer(configuration: producerConfiguration, logger: logger)
        let metrics = ServiceMetrics()
        let runtime = ServiceRuntime(
            name: name, pool: pool, producer: producer, metrics: metrics, verifier: try await TokenVerifier(settings.tokenKeys), logger: logger)
        var consumerConfiguration = settings.localBroker
            ? KafkaConsumerConfiguration.local(bootstrapServers: settings.kafkaBrokers, groupID: name, topics: consumedTopics)
            : KafkaConsumerConfiguration(bootstrapServers: settings.kafkaBrokers, groupID: name, topics: consumedTopics)
        consumerConfiguration.clientID = name
        var relayOptions = OutboxRelay.Options()
        relayOptions.retention = settings.outboxRetention
        let services: [any Service] = [
            OutboxRelay(service: name, pool: pool, producer: producer, metrics: metrics, options: relayOptions, logger: logger),
            try InboxConsumer(
                consumer: consumerConfiguration, pool: pool, deadLetterProducer: producer,
                handlers: eventHandlers(XPHandlers(ledger: XPLedger(rules: rules))), metrics: metrics, logger: logger),
        ]
        return ServiceApplication.build(runtime: runtime, host: settings.host, port: settings.port, services: services) { api in
            MemberRoutes(runtime: runtime, rules: rules).register(on: api)
            DrawRoutes(runtime: runtime, rules: rules).register(on: api)
        }
    }
}
