@testable import CampaignsService
import Domain
import FissionTesting
import Foundation
import Postgres
import ServiceKit

/// A pool on a fresh database migrated like the campaigns service's own.
func withCampaignsDatabase<T>(
    isolation: isolated (any Actor)? = #isolation,
    _ body: (PostgresPool) async throws -> T
) async throws -> T {
    try await withTestPool(options: .init(maxConnections: 16, waitTimeout: .seconds(120))) { pool in
        _ = try await Migrator(migrations: try CampaignsService.migrations()).migrate(pool)
        return try await body(pool)
    }
}

let yuan = Currency.cny
let now = Date()

func groupBuyTerms(stock: Int = 100, teamSize: Int = 3, virtualPercent: Int = 0, policy: GroupBuyRules.LatePaymentPolicy = .openNewTeam) -> CampaignTerms {
    CampaignTerms(
        kind: .groupBuy, product: Product(sku: "TEA", title: "龙井"), listPrice: Money(3990, yuan), stock: stock, perUserLimit: 5,
        startsAt: now.addingTimeInterval(-3600), endsAt: now.addingTimeInterval(86_400),
        groupBuy: GroupBuyRules(
            teamSize: teamSize, groupPrice: Money(2990, yuan), leaderPrice: Money(2490, yuan), teamTimeLimitSeconds: 3600,
            virtualFillPercent: virtualPercent, latePaymentPolicy: policy))
}

/// A published campaign, written directly (the HTTP path has its own tests).
@discardableResult
func publishedCampaign(_ terms: CampaignTerms, on pool: PostgresPool, merchant: String = "m-tea") async throws -> CampaignID {
    let id = CampaignID()
    try await pool.query(
        """
        INSERT INTO campaigns (id, merchant_id, status, audit_status, kind, terms, stock_left, published_at)
        VALUES (\(id.rawValue), \(merchant), 'published', 'approved', \(terms.kind.rawValue), \(PostgresJSON(terms)), \(terms.stock), now())
        """)
    return id
}

/// Runs a handler as the inbox would: in a transaction.
func handle<Payload: DomainEvent>(
    _ data: Payload, on pool: PostgresPool,
    _ handler: @Sendable (CloudEvent<Payload>, PostgresConnection) async throws -> Void
) async throws {
    let event = CloudEvent(data)
    try await pool.withTransaction(retryingSerializationFailures: 5) { try await handler(event, $0) }
}

func orderPlaced(_ campaign: CampaignID, user: String, purpose: OrderPurpose = .plain, team: TeamID? = nil, order: OrderID = OrderID()) -> OrderPlaced {
    OrderPlaced(
        orderId: order, userId: UserID(rawValue: user), campaignId: campaign, purpose: purpose, teamId: team, quantity: 1,
        total: Money(2990, yuan), placedAt: Date())
}

func orderPaid(_ campaign: CampaignID, user: String, purpose: OrderPurpose, team: TeamID? = nil, order: OrderID = OrderID()) -> OrderPaid {
    OrderPaid(
        orderId: order, userId: UserID(rawValue: user), campaignId: campaign, purpose: purpose, teamId: team,
        amount: Money(2990, yuan), firstPurchase: true, paidAt: Date())
}
