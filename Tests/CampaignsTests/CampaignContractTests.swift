@testable import CampaignsService
import Domain
import FissionTesting
import Foundation
import Postgres
import ServiceKit
import Testing

@Suite("Campaigns contracts")
struct CampaignContractTests {
    static let contracts = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Shared/Contracts")

    @Test func whatTheServiceEmitsValidatesAgainstTheSchemas() async throws {
        try await withCampaignsDatabase { pool in
            // Flows that emit every campaigns event type.
            let campaign = try await publishedCampaign(groupBuyTerms(stock: 3, teamSize: 2, policy: .openNewTeam), on: pool)
            let placed = orderPlaced(campaign, user: "u-1")
            try await handle(placed, on: pool, StockHandlers.orderPlaced)
            try await handle(orderPlaced(campaign, user: "u-2", purpose: .joinTeam, team: TeamID()), on: pool, StockHandlers.orderPlaced)
            try await handle(
                OrderCancelled(orderId: placed.orderId, userId: placed.userId, campaignId: campaign, quantity: 1, reason: .shopper,
                               stockReserved: true, cancelledAt: Date()), on: pool, StockHandlers.orderCancelled)
            let leaderOrder = OrderID()
            try await handle(orderPaid(campaign, user: "u-1", purpose: .openTeam, order: leaderOrder), on: pool, TeamHandlers.orderPaid)
            let team = try #require(try await emitted(TeamOpened.self, on: pool).first?.teamId)
            try await handle(orderPaid(campaign, user: "u-2", purpose: .joinTeam, team: team), on: pool, TeamHandlers.orderPaid)
            try await handle(orderPaid(campaign, user: "u-3", purpose: .joinTeam, team: team), on: pool, TeamHandlers.orderPaid)
            let second = try #require(try await emitted(TeamJoinRejected.self, on: pool).first?.newTeamId)
            try await handle(orderPaid(campaign, user: "u-4", purpose: .joinTeam, team: second), on: pool, TeamHandlers.orderPaid)
            _ = second
            let lonely = OrderID()
            try await handle(orderPaid(campaign, user: "u-5", purpose: .openTeam, order: lonely), on: pool, TeamHandlers.orderPaid)
            try await handle(orderPaid(campaign, user: "u-6", purpose: .openTeam), on: pool, TeamHandlers.orderPaid)
            let lonelyTeam = try #require(try await emitted(TeamOpened.self, on: pool).first { $0.leaderOrderId == lonely }?.teamId)
            try await handle(orderPaid(campaign, user: "u-7", purpose: .joinTeam, team: lonelyTeam), on: pool, TeamHandlers.orderPaid)
            _ = try await pool.query("SELECT 1")
            try await pool.withTransaction { connection in
                try await Outbox.append(CampaignPaused(campaignId: campaign, pausedAt: Date()), correlationID: "x", on: connection)
            }

            let emitted = try await Contracts.validateEmitted(on: pool)
            let types = emitted.types
            #expect(types.isSuperset(of: [
                StockReserved.eventType, StockReservationRejected.eventType, StockReleased.eventType, TeamOpened.eventType,
                TeamMemberJoined.eventType, TeamCompleted.eventType, TeamJoinRejected.eventType,
            ]), "\(types)")
            #expect(emitted.problems == nil, "\(emitted.problems ?? "")")
        }
    }

    @Test func everyConsumedExampleIsHandled() async throws {
        try await withCampaignsDatabase { pool in
            let consumed = EventCatalog.all.filter { CampaignsService.consumedTopics.contains($0.topic.name) }
            let handled = Set(CampaignsService.eventHandlers.map(\.eventType))
            for type in consumed where type.topic.consumers.contains(.campaigns) {
                #expect(handled.contains(type.eventType) || ![OrderPlaced.eventType, OrderPaid.eventType].contains(type.eventType))
            }
            // The examples name a campaign; make it exist so the handlers take their full path.
            let exampleCampaign = try #require(CampaignID("0193a5c4-7d1e-7c3a-9b2f-1a2b3c4d5e6f"))
            try await pool.query(
                """
                INSERT INTO campaigns (id, merchant_id, status, audit_status, kind, terms, stock_left, published_at)
                VALUES (\(exampleCampaign.rawValue), 'm-tea', 'published', 'approved', 'groupBuy', \(PostgresJSON(groupBuyTerms())), 100, now())
                """)
            for handler in CampaignsService.eventHandlers {
                let example = try Data(contentsOf: Self.contracts.appendingPathComponent("examples/\(handler.eventType).example.json"))
                try await pool.withTransaction { connection in
                    try await handler(Array(example), on: connection)
                }
            }
        }
    }
}
