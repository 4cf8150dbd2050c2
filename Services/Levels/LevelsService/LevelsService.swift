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
        let definition = ServiceDefinition(
            name: name, migrations: try migrations(), consumedTopics: consumedTopics,
            eventHandlers: eventHandlers(XPHandlers(ledger: XPLedger(rules: rules))))
        return try await ServiceApplication.assemble(definition, settings: settings, logger: logger) { api, runtime in
            MemberRoutes(runtime: runtime, rules: rules).register(on: api)
            DrawRoutes(runtime: runtime, rules: rules).register(on: api)
        }
    }
}
