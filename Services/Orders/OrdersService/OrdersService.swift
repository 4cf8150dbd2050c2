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
            .on(TeamMemberJoined.self, sagas.memberJoined),
            .on(TeamMemberLeft.self, sagas.memberLeft),
            .on(TeamCompleted.self, sagas.teamCompleted),
            .on(TeamExpired.self, sagas.teamExpired),
            .on(TeamJoinRejected.self, sagas.joinRejected),
            .on(AssistTaskCompleted.self, ReadModels.taskCompleted),
            .on(ShareCreated.self, ReadModels.shareCreated),
        ]
    }

    static let consumedTopics = [Topics.campaign.name, Topics.team.name, Topics.task.name, Topics.share.name]

    public static func makeApplication(settings: ServiceSettings, options: Options, logger: Logger) async throws -> some ApplicationProtocol {
        let sagas = OrderSagas(paymentTimeout: options.paymentTimeout)
        let definition = ServiceDefinition(
            name: name, migrations: try migrations(), consumedTopics: consumedTopics, eventHandlers: eventHandlers(sagas),
            scheduledJobs: [OrderBook.paymentTimeoutJob: sagas.paymentTimedOut])
        return try await ServiceApplication.assemble(definition, settings: settings, logger: logger) { api, runtime in
            OrderRoutes(runtime: runtime).register(on: api)
            PaymentWebhook(runtime: runtime, secret: options.webhookSecret).register(on: api)
        }
    }
}
