import Domain
import Foundation
import Hummingbird
import Kafka
import Logging
import Postgres
import ServiceKit
import ServiceLifecycle

/// The campaigns service: campaigns and stock, group-buy teams, share links and funnels.
public enum CampaignsService {
    public static let name = "campaigns"

    /// The kit's tables, then this service's own `Migrations/*.sql`.
    public static func migrations() throws -> [Migration] {
        guard let directory = Bundle.module.url(forResource: "Migrations", withExtension: nil) else {
            throw ServiceStartError("the Migrations folder is missing from the campaigns bundle")
        }
        return KitMigrations.all + (try Migration.load(directory: directory))
    }

    /// What campaigns does with the events it consumes.
    static var eventHandlers: [EventHandler] {
        [
            .on(OrderPlaced.self, StockHandlers.orderPlaced),
            .on(OrderCancelled.self, StockHandlers.orderCancelled),
            .on(OrderRefunded.self, StockHandlers.orderRefunded),
            .on(OrderPaid.self, TeamHandlers.orderPaid),
            .on(AssistTaskStarted.self, Statistics.taskStarted),
            .on(AssistTaskCompleted.self, Statistics.taskCompleted),
            .on(AssistRecorded.self, Statistics.assistRecorded),
        ]
    }

    static var scheduledJobs: [String: Scheduler.Handler] {
        [TeamHandlers.deadlineJob: TeamHandlers.deadlinePassed]
    }

    /// Builds the whole service (HTTP, outbox relay, consumer, scheduler) on a migrated database.
    public static func makeApplication(settings: ServiceSettings, logger: Logger) async throws -> some ApplicationProtocol {
        let pool = PostgresPool(configuration: settings.database, options: .init(maxConnections: settings.databasePoolSize), logger: logger)
        _ = try await Migrator(migrations: try migrations(), logger: logger).migrate(pool)
        var producerConfiguration = KafkaProducerConfiguration(bootstrapServers: settings.kafkaBrokers)
        producerConfiguration.clientID = name
        let producer = try KafkaProducer(configuration: producerConfiguration, logger: logger)
        let metrics = ServiceMetrics()
        let runtime = ServiceRuntime(
            name: name, pool: pool, producer: producer, metrics: metrics,
            verifier: try await TokenVerifier(settings.tokenKeys), logger: logger)
        var consumerConfiguration = settings.localBroker
            ? KafkaConsumerConfiguration.local(bootstrapServers: settings.kafkaBrokers, groupID: name, topics: consumedTopics)
            : KafkaConsumerConfiguration(bootstrapServers: settings.kafkaBrokers, groupID: name, topics: consumedTopics)
        consumerConfiguration.clientID = name
        var relayOptions = OutboxRelay.Options()
        relayOptions.retention = settings.outboxRetention
        let services: [any Service] = [
            OutboxRelay(service: name, pool: pool, producer: producer, metrics: metrics, options: relayOptions, logger: logger),
            try InboxConsumer(
                consumer: consumerConfiguration, pool: pool, deadLetterProducer: producer, handlers: eventHandlers,
                metrics: metrics, logger: logger),
            Scheduler(pool: pool, handlers: scheduledJobs, logger: logger),
        ]
        return ServiceApplication.build(runtime: runtime, host: settings.host, port: settings.port, services: services) { api in
            CampaignRoutes(runtime: runtime).register(on: api)
            TeamRoutes(runtime: runtime).register(on: api)
            ShareRoutes(runtime: runtime).register(on: api)
            StatisticsRoutes(runtime: runtime).register(on: api)
        }
    }

    static let consumedTopics = [Topics.order.name, Topics.task.name]
}
