import Domain
import Foundation
import Hummingbird
import Kafka
import Logging
import Postgres
import ServiceKit
import ServiceLifecycle

/// The orders service: orders, payments, refunds, and the sagas with stock, teams and tasks.
public enum OrdersService {
    public static let name = "orders"

    public struct Options: Sendable {
        /// The payment provider's webhook signing secret.
        public var webhookSecret: String
        /// An unpaid order is cancelled after this.
        public var paymentTimeout: Duration
        public init(webhookSecret: String, paymentTimeout: Duration = .seconds(15 * 60)) {
            self.webhookSecret = webhookSecret
            self.paymentTimeout = paymentTimeout
        }

        /// `FISSION_PAYMENT_WEBHOOK_SECRET` (required), `FISSION_PAYMENT_TIMEOUT_SECONDS`.
        public static func read(from environment: inout EnvironmentReader) -> Options {
            Options(
                webhookSecret: environment.required("FISSION_PAYMENT_WEBHOOK_SECRET", "the payment provider's webhook signing secret"),
                paymentTimeout: environment.seconds("FISSION_PAYMENT_TIMEOUT_SECONDS", default: .seconds(15 * 60)))
        }
    }

    public static func migrations() throws -> [Migration] {
        guard let directory = Bundle.module.url(forResource: "Migrations", withExtension: nil) else {
            throw ServiceStartError("the Migrations folder is missing from the orders bundle")
        }
        return KitMigrations.all + (try Migration.load(directory: directory))
    }

    static func eventHandlers(_ sagas: OrderSagas) -> [EventHandler] {
        [
            .on(CampaignPublished.self, ReadModels.campaignPublished),
            .on(CampaignUpdated.self, ReadModels.campaignUpdated),
            .on(CampaignPaused.self, ReadModels.campaignPaused),
            .on(CampaignResumed.self, ReadModels.campaignResumed),
            .on(CampaignEnded.self, ReadModels.campaignEnded),
            .on(StockReserved.self, sagas.stockReserved),
            .on(StockReservationRejected.self, sagas.stockRejected),
            .on(TeamOpened.self, sagas.teamOpened),
            .on(TeamCompleted.self, sagas.teamCompleted),
            .on(TeamExpired.self, sagas.teamExpired),
            .on(TeamJoinRejected.self, sagas.joinRejected),
            .on(AssistTaskCompleted.self, ReadModels.taskCompleted),
            .on(ShareCreated.self, ReadModels.shareCreated),
        ]
    }

    static let consumedTopics = [Topics.campaign.name, Topics.team.name, Topics.task.name, Topics.share.name]

    public static func makeApplication(settings: ServiceSettings, options: Options, logger: Logger) async throws -> some ApplicationProtocol {
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
        let sagas = OrderSagas(paymentTimeout: options.paymentTimeout)
        let services: [any Service] = [
            OutboxRelay(service: name, pool: pool, producer: producer, metrics: metrics, options: relayOptions, logger: logger),
            try InboxConsumer(
                consumer: consumerConfiguration, pool: pool, deadLetterProducer: producer, handlers: eventHandlers(sagas), metrics: metrics, logger: logger),
            Scheduler(pool: pool, handlers: [OrderBook.paymentTimeoutJob: sagas.paymentTimedOut], logger: logger),
        ]
        return ServiceApplication.build(runtime: runtime, host: settings.host, port: settings.port, services: services) { api in
            OrderRoutes(runtime: runtime).register(on: api)
            PaymentWebhook(runtime: runtime, secret: options.webhookSecret).register(on: api)
        }
    }
}
