@testable import AssistsService
import Domain
import FissionTesting
import Foundation
import Postgres
import ServiceKit

func withAssistsDatabase<T>(
    isolation: isolated (any Actor)? = #isolation,
    _ body: (PostgresPool) async throws -> T
) async throws -> T {
    try await withTestPool(options: .init(maxConnections: 16, waitTimeout: .seconds(120))) { pool in
        _ = try await Migrator(migrations: try AssistsService.migrations()).migrate(pool)
        return try await body(pool)
    }
}

func bargainTerms(helpers: Int = 30, dailyLimit: Int = 0, deviceLimit: Int = 0, listPrice: Int64 = 3990) -> CampaignTerms {
    CampaignTerms(
        kind: .bargain, product: Product(sku: "TEA", title: "龙井"), listPrice: Money(listPrice, .cny), stock: 100, perUserLimit: 2,
        startsAt: Date().addingTimeInterval(-3600), endsAt: Date().addingTimeInterval(86_400),
        bargain: BargainRules(
            floorPrice: Money(0, .cny), maxHelpers: helpers, firstCutMin: Money(100, .cny), firstCutMax: Money(500, .cny),
            newUserCutPercent: 200, taskTimeLimitSeconds: 86_400, payWindowSeconds: 1_800, helperDailyLimit: dailyLimit,
            deviceLimit: deviceLimit))
}

/// A campaign assists knows of, as its consumer would have recorded it.
func knownCampaign(_ terms: CampaignTerms, on pool: PostgresPool) async throws -> CampaignID {
    let id = CampaignID()
    try await pool.withTransaction { try await ReadModels.upsert(id, terms: terms, status: "published", on: $0) }
    return id
}

func startTask(_ campaign: CampaignID, initiator: String = "u-initiator", on pool: PostgresPool) async throws -> TaskState {
    try await pool.withTransaction { try await TaskBook.start(campaign: campaign, initiator: UserID(rawValue: initiator), correlation: nil, on: $0) }
}

/// Every helper here has paid before unless said otherwise, so no one is a new user.
func markPaid(_ users: [String], on pool: PostgresPool) async throws {
    try await pool.query("INSERT INTO paid_users (user_id) SELECT unnest(\(users)) ON CONFLICT DO NOTHING")
}

/// A help on its own (`batcher` nil) or as the HTTP route runs it, through a batcher; the
/// refusal kind, or nil when counted or held.
func help(
    _ task: TaskID, by helper: String, device: String? = nil, network: String? = nil, fraud: FraudRules = FraudRules(),
    through batcher: HelpBatcher? = nil, on pool: PostgresPool
) async throws -> String? {
    let request = HelpRequest(task: task, helper: UserID(rawValue: helper), device: device, network: network)
    do {
        if let batcher {
            _ = try await batcher.help(request, correlation: nil)
        } else {
            _ = try await TaskBook.help(request, fraud: fraud, correlation: nil, pool: pool)
        }
        return nil
    } catch let problem as Problem {
        return problem.kind
    }
}

