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
        try await ServiceApplication.assemble(ServiceDefinition(name: name, migrations: try migrations(), consumedTopics: consumedTopics, eventHandlers: eventHandlers, scheduledJobs: scheduledJobs), settings: settings, logger: logger) { api, runtime in
            CampaignRoutes(runtime: runtime).register(on: api)
            TeamRoutes(runtime: runtime).register(on: api)
            ShareRoutes(runtime: runtime).register(on: api)
            StatisticsRoutes(runtime: runtime).register(on: api)
        }
    }

    static let consumedTopics = [Topics.order.name, Topics.task.name]
}
