import Domain
import Foundation
import Hummingbird
import Kafka
import Logging
import Postgres
import ServiceKit
import ServiceLifecycle

/// The notifications service: inbox, live stream, merchant webhooks, digests, quiet hours,
/// preferences.
public enum NotificationsService {
    public static let name = "notifications"

    public static func migrations() throws -> [Migration] {
        guard let directory = Bundle.module.url(forResource: "Migrations", withExtension: nil) else {
            throw ServiceStartError("the Migrations folder is missing from the notifications bundle")
        }
        return KitMigrations.all + (try Migration.load(directory: directory))
    }

    static var eventHandlers: [EventHandler] {
        [
            .on(AssistRecorded.self, batched: NotificationHandlers.assistsRecorded),
            .on(AssistTaskStarted.self, NotificationHandlers.taskStarted),
            .on(AssistTaskCompleted.self, NotificationHandlers.taskCompleted),
            .on(AssistTaskExpired.self, NotificationHandlers.taskExpired),
            .on(TeamOpened.self, NotificationHandlers.teamOpened),
            .on(TeamLeaderChanged.self, NotificationHandlers.teamLeaderChanged),
            .on(TeamMemberJoined.self, NotificationHandlers.teamMemberJoined),
            .on(TeamCompleted.self, NotificationHandlers.teamCompleted),
            .on(OrderPaid.self, NotificationHandlers.orderPaid),
            .on(OrderRefunded.self, NotificationHandlers.orderRefunded),
            .on(LevelChanged.self, NotificationHandlers.levelChanged),
            .on(DrawWon.self, NotificationHandlers.drawWon),
            .on(XPAwarded.self, NotificationHandlers.xpAwarded),
            .on(CampaignPublished.self, NotificationHandlers.campaignPublished),
        ]
    }

    /// Partitions are handled concurrently: each notification is keyed by the event that caused
    /// it and one user's messages take turns (see `Notifier`); what a handler reads from another
    /// stream (a campaign's merchant, a team's leader) was written long before in any real flow.
    static var consumerOptions: InboxConsumer.Options {
        var options = InboxConsumer.Options()
        options.concurrentPartitions = 8
        return options
    }

    static let consumedTopics = [Topics.campaign.name, Topics.team.name, Topics.task.name, Topics.order.name, Topics.member.name]

    static var scheduledJobs: [String: Scheduler.Handler] {
        [NotificationHandlers.reminderJob: NotificationHandlers.taskExpiring, Webhooks.deliveryJob: Webhooks.deliver]
    }

    public static func makeApplication(settings: ServiceSettings, logger: Logger) async throws -> some ApplicationProtocol {
        let wakeups = InboxWakeups(configuration: settings.database, logger: logger)
        let definition = ServiceDefinition(
            name: name, migrations: try migrations(), consumedTopics: consumedTopics, eventHandlers: eventHandlers,
            scheduledJobs: scheduledJobs, services: [wakeups], consumerOptions: Self.consumerOptions)
        return try await ServiceApplication.assemble(definition, settings: settings, logger: logger) { api, runtime in
            InboxRoutes(runtime: runtime, wakeups: wakeups, deliveries: StreamDeliveries(pool: runtime.pool)).register(on: api)
            WebhookRoutes(runtime: runtime).register(on: api)
            TemplateRoutes(runtime: runtime).register(on: api)
        }
    }
}
