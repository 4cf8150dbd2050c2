@testable import CampaignsService
import Domain
import FissionTesting
import Foundation
import Postgres
import ServiceKit
import Testing

@Suite("Stock")
struct StockTests {
    @Test func thousandConcurrentOrdersForHundredUnitsReserveExactlyHundredEvenWithDuplicatesAndReordering() async throws {
        try await withCampaignsDatabase { pool in
            let campaign = try await publishedCampaign(groupBuyTerms(stock: 100), on: pool)
            let orders = (0..<1_000).map { orderPlaced(campaign, user: "u-\($0)") }
            // Every placement delivered twice (a producer retry), concurrently.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for order in orders + orders {
                    group.addTask { try await handle(order, on: pool, StockHandlers.orderPlaced) }
                }
                try await group.waitForAll()
            }
            let reserved = try await pool.query("SELECT count(*)::int8 AS n FROM reservations WHERE state = 'reserved'").single()
            #expect(try reserved.decode("n", as: Int.self) == 100)
            let left = try await pool.query("SELECT stock_left FROM campaigns WHERE id = \(campaign.rawValue)").single()
            #expect(try left.decode("stock_left", as: Int.self) == 0)
            #expect(try await emitted(StockReserved.self, on: pool).count == 100)
            let rejected = try await emitted(StockReservationRejected.self, on: pool)
            #expect(rejected.count == 900)
            #expect(rejected.allSatisfy { $0.reason == .soldOut })
        }
    }

    @Test func cancellationReleasesOnceAndOneOvertakingItsPlacementPreventsTheReservation() async throws {
        try await withCampaignsDatabase { pool in
            let campaign = try await publishedCampaign(groupBuyTerms(stock: 2), on: pool)
            let first = orderPlaced(campaign, user: "u-1")
            try await handle(first, on: pool, StockHandlers.orderPlaced)
            let cancel = OrderCancelled(
                orderId: first.orderId, userId: first.userId, campaignId: campaign, quantity: 1, reason: .shopper, stockReserved: true,
                cancelledAt: Date())
            try await handle(cancel, on: pool, StockHandlers.orderCancelled)
            try await handle(cancel, on: pool, StockHandlers.orderCancelled)
            #expect(try await emitted(StockReleased.self, on: pool).map(\.stockLeft) == [2])

            // The cancellation arrives before the placement it cancels.
            let late = orderPlaced(campaign, user: "u-2")
            try await handle(
                OrderCancelled(orderId: late.orderId, userId: late.userId, campaignId: campaign, quantity: 1, reason: .paymentTimeout,
                               stockReserved: false, cancelledAt: Date()),
                on: pool, StockHandlers.orderCancelled)
            try await handle(late, on: pool, StockHandlers.orderPlaced)
            let stock = try await pool.query("SELECT stock_left FROM campaigns WHERE id = \(campaign.rawValue)").single()
            #expect(try stock.decode("stock_left", as: Int.self) == 2)
            #expect(try await emitted(StockReserved.self, on: pool).count == 1)
        }
    }

    @Test func perUserLimitAndCampaignStateAreEnforced() async throws {
        try await withCampaignsDatabase { pool in
            var terms = groupBuyTerms(stock: 10)
            terms.perUserLimit = 1
            let campaign = try await publishedCampaign(terms, on: pool)
            try await handle(orderPlaced(campaign, user: "u-1"), on: pool, StockHandlers.orderPlaced)
            try await handle(orderPlaced(campaign, user: "u-1"), on: pool, StockHandlers.orderPlaced)
            try await pool.query("UPDATE campaigns SET status = 'paused' WHERE id = \(campaign.rawValue)")
            try await handle(orderPlaced(campaign, user: "u-2"), on: pool, StockHandlers.orderPlaced)
            try await handle(orderPlaced(campaign, user: "u-3", purpose: .joinTeam, team: TeamID()), on: pool, StockHandlers.orderPlaced)
            #expect(try await emitted(StockReservationRejected.self, on: pool).map(\.reason) == [.perUserLimit, .notOnSale, .notOnSale])
        }
    }
}
