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
        try await ServiceApplication.assemble(ServiceDefinition(name: name, migrations: try migrations(), consumedTopics: consumedTopics, eventHandlers: eventHandlers, scheduledJobs: scheduledJobs), settings: settings, logger: logger) { api, runtime in
            TaskRoutes(runtime: runtime, fraud: fraud).register(on: api)
            ReviewRoutes(runtime: runtime).register(on: api)
        }
    }
}
