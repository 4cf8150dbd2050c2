@testable import AssistsService
import Domain
import FissionTesting
import Foundation
import Postgres
import ServiceKit
import Testing

@Suite("Assists contracts")
struct AssistsContractTests {
    static let contracts = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Shared/Contracts")

    @Test func whatTheServiceEmitsOnAssistsTaskValidates() async throws {
        try await withAssistsDatabase { pool in
            let campaign = try await knownCampaign(bargainTerms(helpers: 3), on: pool)
            let done = try await startTask(campaign, on: pool)
            for index in 0..<3 { _ = try await help(done.taskId, by: "u-\(index)", on: pool) }
            var fraud = FraudRules()
            fraud.deviceBurst = 0
            let other = try await startTask(campaign, initiator: "u-other", on: pool)
            _ = try await help(other.taskId, by: "u-9", device: "d", fraud: fraud, on: pool)
            try await pool.query("UPDATE scheduled_jobs SET due_at = now() - interval '1 second'")
            try await Scheduler(pool: pool, handlers: AssistsService.scheduledJobs).runDueJobs()

            let emitted = try await Contracts.validateEmitted(on: pool)
            let types = emitted.types
            #expect(types == Set(EventCatalog.types(on: Topics.task).map { $0.eventType }), "every assists.task.v1 type is emitted")
            #expect(emitted.problems == nil, "\(emitted.problems ?? "")")
        }
    }

    @Test func everyConsumedExampleIsHandled() async throws {
        try await withAssistsDatabase { pool in
            for handler in AssistsService.eventHandlers {
                let example = try Data(contentsOf: Self.contracts.appendingPathComponent("examples/\(handler.eventType).example.json"))
                try await pool.withTransaction { try await handler(Array(example), on: $0) }
            }
            // The published example became rules assists can start tasks from.
            let rules = try await pool.query("SELECT status FROM campaign_rules").map { try $0.decode("status", as: String.self) }
            #expect(rules.count == 1)
            #expect(try await pool.query("SELECT count(*)::int8 AS n FROM paid_users").single().decode("n", as: Int.self) == 1)
            #expect(try await pool.query("SELECT count(*)::int8 AS n FROM share_clicks").single().decode("n", as: Int.self) == 1)
            let handled = Set(AssistsService.eventHandlers.map(\.eventType))
            for topic in Topics.all where topic.consumers.contains(.assists) {
                #expect(AssistsService.consumedTopics.contains(topic.name))
            }
            #expect(handled.contains(CampaignPublished.eventType) && handled.contains(OrderPaid.eventType) && handled.contains(ShareClicked.eventType))
        }
    }
}
