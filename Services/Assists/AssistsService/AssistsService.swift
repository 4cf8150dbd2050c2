import Domain
import Foundation
import Hummingbird
import Kafka
import Logging
import Postgres
import ServiceKit
import ServiceLifecycle

/// The assists service: bargain and unlock tasks, helps, the cut schedule, fraud limits.
public enum AssistsService {
    public static let name = "assists"

    public static func migrations() throws -> [Migration] {
        guard let directory = Bundle.module.url(forResource: "Migrations", withExtension: nil) else {
            throw ServiceStartError("the Migrations folder is missing from the assists bundle")
        }
        return KitMigrations.all + (try Migration.load(directory: directory))
    }

    static var eventHandlers: [EventHandler] {
        [
            .on(CampaignPublished.self, ReadModels.campaignPublished),
            .on(CampaignUpdated.self, ReadModels.campaignUpdated),
            .on(CampaignPaused.self, ReadModels.campaignPaused),
            .on(CampaignResumed.self, ReadModels.campaignResumed),
            .on(CampaignEnded.self, ReadModels.campaignEnded),
            .on(OrderPaid.self, ReadModels.orderPaid),
            .on(ShareClicked.self, ReadModels.shareClicked),
        ]
    }

    static let consumedTopics = [Topics.campaign.name, Topics.order.name, Topics.share.name]

    static var scheduledJobs: [String: Scheduler.Handler] {
        [TaskBook.expiryJob: TaskBook.deadlinePassed]
    }

    public static func makeApplication(settings: ServiceSettings, fraud: FraudRules = FraudRules(), logger: Logger) async throws -> some ApplicationProtocol {
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
                consumer: consumerConfiguration, pool: pool, deadLetterProducer: producer, handlers: eventHandlers, metrics: metrics, logger: logger),
            Scheduler(pool: pool, handlers: scheduledJobs, logger: logger),
        ]
        return ServiceApplication.build(runtime: runtime, host: settings.host, port: settings.port, services: services) { api in
            TaskRoutes(runtime: runtime, fraud: fraud).register(on: api)
            ReviewRoutes(runtime: runtime).register(on: api)
        }
    }
}
