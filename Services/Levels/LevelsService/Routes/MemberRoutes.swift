import Domain
import Foundation
import Hummingbird
import Postgres
import ServiceKit

struct MemberRoutes {
    let runtime: ServiceRuntime
    let rules: LevelRules

    struct LevelView: ResponseEncodable, Codable {
        var userId: UserID
        var xp: Int
        /// What the member has: the operator's grant when there is one, else what XP earned.
        var level: Int
        var earnedLevel: Int
        var grant: Grant?
        var nextLevelAt: Int?
        var xpToNextLevel: Int?
        var benefits: Benefits
    }

    struct Grant: Codable {
        var level: Int
        var reason: String
        var grantedBy: UserID
    }

    struct Benefits: ResponseEncodable, Codable {
        var level: Int
        var drawWeight: Int
        var badges: [String]
        var coupons: [String]
    }

    struct LedgerLine: ResponseEncodable, Codable {
        var entryId: LedgerEntryID
        var rule: String
        var points: Int
        var causeEventId: EventID
        var revokes: LedgerEntryID?
        var at: Date
    }

    struct Leader: ResponseEncodable, Codable {
        var rank: Int
        var userId: UserID
        var xp: Int
    }

    func register(on api: RouterGroup<FissionRequestContext>) {
        api.get("/me/level") { _, context in try await level(of: try context.require(.shopper).userID) }
        api.get("/me/ledger", use: ledger)
        api.get("/users/{user}/level") { _, context -> LevelView in
            guard let user = context.parameters.get("user"), !user.isEmpty else { throw Problem.notFound("no such user") }
            return try await level(of: UserID(rawValue: user))
        }
        api.put("/users/{user}/level-grant", use: grant)
        api.get("/levels/benefits") { _, _ in (1...rules.thresholds.count).map(benefits) }
        api.get("/leaderboards", use: leaderboard)
    }

    func benefits(_ level: Int) -> Benefits {
        Benefits(
            level: level, drawWeight: rules.drawWeight(level: level),
            badges: (1...level).compactMap { [3: "sharer", 5: "connector", 8: "ambassador", 10: "legend"][$0] },
            coupons: level >= 4 ? ["¥\(level * 2) off orders above ¥\(level * 20)"] : [])
    }

    func level(of user: UserID) async throws -> LevelView {
        let row = try await runtime.pool.query(
            "SELECT xp, earned_level, granted_level, grant_reason, granted_by FROM members WHERE user_id = \(user.rawValue)").first
        let xp = try row?.decode("xp", as: Int.self) ?? 0
        let earned = try row?.decode("earned_level", as: Int.self) ?? 1
        let granted = try row?.decode("granted_level", as: Int?.self)
        let grant = try granted.map {
            Grant(level: $0, reason: try row!.decode("grant_reason", as: String?.self) ?? "",
                  grantedBy: UserID(rawValue: try row!.decode("granted_by", as: String?.self) ?? ""))
        }
        let next = earned < rules.thresholds.count ? rules.thresholds[earned] : nil
        let level = granted ?? earned
        return LevelView(
            userId: user, xp: xp, level: level, earnedLevel: earned, grant: grant, nextLevelAt: next,
            xpToNextLevel: next.map { max(0, $0 - xp) }, benefits: benefits(level))
    }

    @Sendable func ledger(_ request: Request, context: FissionRequestContext) async throws -> [LedgerLine] {
        let user = try context.require(.shopper).userID
        return try await runtime.pool.query(
            "SELECT id, rule, points, cause_event_id, revokes, created_at FROM xp_ledger WHERE user_id = \(user.rawValue) ORDER BY created_at DESC LIMIT 200"
        ).map { row in
            LedgerLine(entryId: LedgerEntryID(rawValue: try row.decode("id")), rule: try row.decode("rule"), points: try row.decode("points"),
                       causeEventId: EventID(rawValue: try row.decode("cause_event_id")),
                       revokes: try row.decode("revokes", as: UUID?.self).map(LedgerEntryID.init(rawValue:)), at: try row.decode("created_at"))
        }
    }

    struct GrantRequest: Codable {
        /// nil removes a grant.
        var level: Int?
        var reason: String
    }

    /// An operator grants a level by hand, with a reason; it shows as a grant, not as earned XP.
    @Sendable func grant(_ request: Request, context: FissionRequestContext) async throws -> LevelView {
        let reviewer = try context.require(.operator)
        guard let user = context.parameters.get("user"), !user.isEmpty else { throw Problem.notFound("no such user") }
        var request = request
        let body = try decodeBody(GrantRequest.self, from: try await request.collectBody(upTo: context.maxUploadSize))
        if let level = body.level, !(1...rules.thresholds.count).contains(level) {
            throw Problem.invalidField("level", "must be between 1 and \(rules.thresholds.count)")
        }
        guard !body.reason.trimmingCharacters(in: .whitespaces).isEmpty else { throw Problem.invalidField("reason", "must say why") }
        let member = UserID(rawValue: user)
        try await runtime.pool.withTransaction { connection in
            let before = try await connection.query(
                """
                INSERT INTO members (user_id) VALUES (\(user)) ON CONFLICT (user_id) DO UPDATE SET updated_at = now()
                RETURNING xp, earned_level, granted_level
                """).single()
            let previous = try before.decode("granted_level", as: Int?.self) ?? before.decode("earned_level", as: Int.self)
            try await connection.query(
                """
                UPDATE members SET granted_level = \(body.level), grant_reason = \(body.level == nil ? nil : body.reason),
                    granted_by = \(body.level == nil ? nil : reviewer.userID.rawValue) WHERE user_id = \(user)
                """)
            let earned = try before.decode("earned_level", as: Int.self)
            let now = body.level ?? earned
            if now != previous {
                try await Outbox.append(
                    LevelChanged(userId: member, fromLevel: previous, toLevel: now, totalXP: try before.decode("xp"),
                                 grantedBy: reviewer.userID, reason: body.reason, changedAt: Date()),
                    correlationID: context.requestID, on: connection)
            }
        }
        return try await level(of: member)
    }

    /// Top sharers by XP earned (`period=week` or `all`), overall or for one campaign; ties go to
    /// whoever got there first.
    @Sendable func leaderboard(_ request: Request, context: FissionRequestContext) async throws -> [Leader] {
        let week = request.uri.queryParameters.get("period") == "week"
        // No lower bound for "all" (Date.distantPast is year 0 in the proleptic calendar, which
        // PostgreSQL refuses).
        let since: Date? = week ? Date().addingTimeInterval(-7 * 86_400) : nil
        let campaign = request.uri.queryParameters.get("campaignId").flatMap { CampaignID(String($0)) }
        let rows = try await runtime.pool.query(
            """
            SELECT user_id, sum(points)::int8 AS xp, max(created_at) AS reached FROM xp_ledger
            WHERE (\(since)::timestamptz IS NULL OR created_at >= \(since)) AND (\(campaign?.rawValue)::uuid IS NULL OR campaign_id = \(campaign?.rawValue))
            GROUP BY user_id HAVING sum(points) > 0
            ORDER BY xp DESC, reached ASC LIMIT 50
            """)
        return try rows.enumerated().map { index, row in
            Leader(rank: index + 1, userId: UserID(rawValue: try row.decode("user_id")), xp: try row.decode("xp"))
        }
    }
}
