import Domain
import Foundation
import Hummingbird
import Postgres
import ServiceKit

/// Free-gift draws (免费抽奖), weighted by level and verifiable: the seed's hash is published
/// when the draw opens, the seed when it is drawn; `WeightedDraw.winners` recomputes the result
/// from the seed and the entry list (docs/draws.md). A draw is drawn exactly once.
struct DrawRoutes {
    let runtime: ServiceRuntime
    let rules: LevelRules

    struct NewDraw: Codable {
        var prize: String
        var prizeCount: Int
        var closesAt: Date
        var campaignId: CampaignID?
    }

    struct DrawView: ResponseEncodable, Codable {
        var drawId: DrawID
        var merchantId: UserID
        var prize: String
        var prizeCount: Int
        var closesAt: Date
        var status: String
        var seedHash: String
        var seed: String?
        var entries: [WeightedDraw.Entry]?
        var winners: [String]
    }

    func register(on api: RouterGroup<FissionRequestContext>) {
        api.post("/draws", use: create)
        api.get("/draws/{id}", use: read)
        api.post("/draws/{id}/entries", use: enter)
        api.post("/draws/{id}/draw", use: draw)
    }

    @Sendable func create(_ request: Request, context: FissionRequestContext) async throws -> Response {
        let merchant = try context.require(.merchant)
        return try await runtime.idempotency.run(request, context: context, scope: merchant.userID.rawValue, keyRequired: false) { body, connection in
            let draw = try decodeBody(NewDraw.self, from: body)
            guard (1...10_000).contains(draw.prizeCount) else { throw Problem.invalidField("prizeCount", "must be between 1 and 10000") }
            guard !draw.prize.isEmpty else { throw Problem.invalidField("prize", "must not be empty") }
            guard draw.closesAt > Date() else { throw Problem.invalidField("closesAt", "must be in the future") }
            let id = DrawID()
            let seed = CommittedRandomness.newSeed()
            try await connection.query(
                """
                INSERT INTO draws (id, merchant_id, campaign_id, prize, prize_count, closes_at, seed, seed_hash, status)
                VALUES (\(id.rawValue), \(merchant.userID.rawValue), \(draw.campaignId?.rawValue), \(draw.prize), \(draw.prizeCount),
                        \(draw.closesAt), \(seed), \(CommittedRandomness.commitment(to: seed)), 'open')
                """)
            return try await view(id, on: connection)
        }
    }

    @Sendable func read(_ request: Request, context: FissionRequestContext) async throws -> DrawView {
        let id: DrawID = try context.pathID("id")
        return try await runtime.pool.withConnection { try await view(id, on: $0) }
    }

    /// A shopper enters while the draw is open; their weight is their level's at entry.
    @Sendable func enter(_ request: Request, context: FissionRequestContext) async throws -> DrawView {
        let shopper = try context.require(.shopper)
        let id: DrawID = try context.pathID("id")
        return try await runtime.pool.withTransaction { connection in
            guard let row = try await connection.query("SELECT status, closes_at FROM draws WHERE id = \(id.rawValue)").first else {
                throw Problem.notFound("no draw \(id)")
            }
            guard try row.decode("status", as: String.self) == "open", try row.decode("closes_at", as: Date.self) > Date() else {
                throw Problem.conflict(kind: "draw-closed", "entries are closed")
            }
            let level = try await connection.query(
                "SELECT coalesce(granted_level, earned_level) AS level FROM members WHERE user_id = \(shopper.userID.rawValue)"
            ).first?.decode("level", as: Int.self) ?? 1
            try await connection.query(
                """
                INSERT INTO draw_entries (draw_id, user_id, weight) VALUES (\(id.rawValue), \(shopper.userID.rawValue), \(rules.drawWeight(level: level)))
                ON CONFLICT DO NOTHING
                """)
            return try await view(id, on: connection)
        }
    }

    /// Draws the winners, once: the row lock and the status guard make a second call a no-op.
    @Sendable func draw(_ request: Request, context: FissionRequestContext) async throws -> DrawView {
        let merchant = try context.require(.merchant)
        let id: DrawID = try context.pathID("id")
        return try await runtime.pool.withTransaction { connection in
            guard let row = try await connection.query(
                "SELECT merchant_id, status, seed, prize, prize_count, campaign_id FROM draws WHERE id = \(id.rawValue) FOR UPDATE"
            ).first, try row.decode("merchant_id", as: String.self) == merchant.userID.rawValue else {
                throw Problem.notFound("no draw \(id) of yours")
            }
            guard try row.decode("status", as: String.self) == "open" else { return try await view(id, on: connection) }
            let entries = try await Self.entries(id, on: connection)
            let winners = WeightedDraw.winners(seed: try row.decode("seed"), entries: entries, prizes: try row.decode("prize_count"))
            try await connection.query("UPDATE draws SET status = 'drawn', drawn_at = now() WHERE id = \(id.rawValue)")
            try await connection.query("UPDATE draw_entries SET won = true WHERE draw_id = \(id.rawValue) AND user_id = ANY(\(winners))")
            for winner in winners {
                try await Outbox.append(
                    DrawWon(userId: UserID(rawValue: winner), drawId: id, merchantId: merchant.userID,
                            campaignId: try row.decode("campaign_id", as: UUID?.self).map(CampaignID.init(rawValue:)),
                            prize: try row.decode("prize"), wonAt: Date()),
                    correlationID: context.requestID, on: connection)
            }
            return try await view(id, on: connection)
        }
    }

    static func entries(_ id: DrawID, on connection: PostgresConnection) async throws -> [WeightedDraw.Entry] {
        try await connection.query("SELECT user_id, weight FROM draw_entries WHERE draw_id = \(id.rawValue) ORDER BY user_id").map {
            WeightedDraw.Entry(userID: try $0.decode("user_id"), weight: try $0.decode("weight"))
        }
    }

    func view(_ id: DrawID, on connection: PostgresConnection) async throws -> DrawView {
        guard let row = try await connection.query(
            "SELECT merchant_id, prize, prize_count, closes_at, status, seed, seed_hash FROM draws WHERE id = \(id.rawValue)"
        ).first else { throw Problem.notFound("no draw \(id)") }
        let drawn = try row.decode("status", as: String.self) == "drawn"
        let winners = try await connection.query(
            "SELECT user_id FROM draw_entries WHERE draw_id = \(id.rawValue) AND won ORDER BY user_id").map { try $0.decode("user_id", as: String.self) }
        return DrawView(
            drawId: id, merchantId: UserID(rawValue: try row.decode("merchant_id")), prize: try row.decode("prize"),
            prizeCount: try row.decode("prize_count"), closesAt: try row.decode("closes_at"), status: try row.decode("status"),
            seedHash: try row.decode("seed_hash"), seed: drawn ? try row.decode("seed") : nil,
            entries: drawn ? try await Self.entries(id, on: connection) : nil, winners: winners)
    }
}
