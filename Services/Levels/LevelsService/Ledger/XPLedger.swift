import Domain
import Foundation
import Postgres
import ServiceKit

/// How much XP each rule gives, the daily caps, and the level thresholds; per deployment.
public struct LevelRules: Sendable {
    public var points: [XPRule: Int] = [.shareOpened: 2, .friendHelped: 3, .friendPurchase: 20, .ownPurchase: 5]
    public var dailyCaps: [XPRule: Int] = [.shareOpened: 100, .friendHelped: 150, .friendPurchase: 1_000, .ownPurchase: 100]
    /// XP needed for level 1, 2, …: L1 at 0.
    public var thresholds: [Int] = [0, 10, 30, 60, 100, 200, 400, 700, 1_100, 1_600]

    public init() {}

    public func level(for xp: Int) -> Int {
        (thresholds.lastIndex { $0 <= xp } ?? 0) + 1
    }

    /// Draw weight of a level: one ticket per level.
    public func drawWeight(level: Int) -> Int { max(1, level) }
}

/// The append-only XP ledger. Each award's `cause_key` is unique, so a redelivered event (or a
/// second click by the same opener on the same share) awards nothing more.
struct XPLedger: Sendable {
    let rules: LevelRules

    func award(
        _ points: Int? = nil, rule: XPRule, to user: UserID, causeKey: String, cause: EventID, order: OrderID? = nil,
        campaign: CampaignID?, correlation: String?, on connection: PostgresConnection
    ) async throws {
        let amount = points ?? rules.points[rule] ?? 0
        guard amount > 0 else { return }
        if let cap = rules.dailyCaps[rule] {
            let today = try await connection.query(
                """
                SELECT coalesce(sum(points), 0)::int8 AS today FROM xp_ledger
                WHERE user_id = \(user.rawValue) AND rule = \(rule.rawValue) AND points > 0 AND created_at >= date_trunc('day', now())
                """).single().decode("today", as: Int.self)
            guard today + amount <= cap else { return }
        }
        let entry = LedgerEntryID()
        let inserted = try await connection.query(
            """
            INSERT INTO xp_ledger (id, user_id, rule, points, cause_event_id, cause_key, order_id, campaign_id)
            VALUES (\(entry.rawValue), \(user.rawValue), \(rule.rawValue), \(amount), \(cause.rawValue), \(causeKey),
                    \(order?.rawValue), \(campaign?.rawValue))
            ON CONFLICT (cause_key) DO NOTHING
            """).affectedRows == 1
        guard inserted else { return }
        let total = try await apply(amount, to: user, correlation: correlation, on: connection)
        try await Outbox.append(
            XPAwarded(userId: user, entryId: entry, rule: rule, points: amount, causeEventId: cause, totalXP: total, awardedAt: Date()),
            correlationID: correlation, on: connection)
    }

    /// A refund revokes what the order awarded, each award once, by a revoking entry.
    func revoke(order: OrderID, cause: EventID, correlation: String?, on connection: PostgresConnection) async throws {
        let awards = try await connection.query(
            """
            SELECT a.id, a.user_id, a.rule, a.points, a.campaign_id FROM xp_ledger a
            WHERE a.order_id = \(order.rawValue) AND a.points > 0
              AND NOT EXISTS (SELECT 1 FROM xp_ledger r WHERE r.revokes = a.id)
            ORDER BY a.created_at
            """)
        for award in awards {
            let awardID = LedgerEntryID(rawValue: try award.decode("id"))
            let user = UserID(rawValue: try award.decode("user_id"))
            let rule = XPRule(rawValue: try award.decode("rule")) ?? .ownPurchase
            let points = try award.decode("points", as: Int.self)
            let entry = LedgerEntryID()
            let inserted = try await connection.query(
                """
                INSERT INTO xp_ledger (id, user_id, rule, points, cause_event_id, cause_key, order_id, campaign_id, revokes)
                VALUES (\(entry.rawValue), \(user.rawValue), \(rule.rawValue), \(-points), \(cause.rawValue), \("revoke:\(awardID)"),
                        \(order.rawValue), \(try award.decode("campaign_id", as: UUID?.self)), \(awardID.rawValue))
                ON CONFLICT DO NOTHING
                """).affectedRows == 1
            guard inserted else { continue }
            let total = try await apply(-points, to: user, correlation: correlation, on: connection)
            try await Outbox.append(
                XPRevoked(userId: user, entryId: entry, revokesEntryId: awardID, rule: rule, points: points, causeEventId: cause,
                          totalXP: total, revokedAt: Date()),
                correlationID: correlation, on: connection)
        }
    }

    /// Adds to a member's XP and moves their earned level with it (down too), announcing a change.
    private func apply(_ delta: Int, to user: UserID, correlation: String?, on connection: PostgresConnection) async throws -> Int {
        let row = try await connection.query(
            """
            INSERT INTO members (user_id, xp) VALUES (\(user.rawValue), \(delta))
            ON CONFLICT (user_id) DO UPDATE SET xp = members.xp + EXCLUDED.xp, updated_at = now()
            RETURNING xp, earned_level, granted_level
            """).single()
        let xp = try row.decode("xp", as: Int.self)
        let before = try row.decode("earned_level", as: Int.self)
        let after = rules.level(for: xp)
        if after != before {
            try await connection.query("UPDATE members SET earned_level = \(after) WHERE user_id = \(user.rawValue)")
            // A granted level is what the member has; an earned change under it is still news.
            try await Outbox.append(
                LevelChanged(userId: user, fromLevel: before, toLevel: after, totalXP: xp, changedAt: Date()),
                correlationID: correlation, on: connection)
        }
        return xp
    }
}

/// What earns XP, from other services' events.
struct XPHandlers: Sendable {
    let ledger: XPLedger

    /// A share someone else opened: +2 to the sharer, once per opener per share.
    func shareClicked(_ event: CloudEvent<ShareClicked>, _ connection: PostgresConnection) async throws {
        guard let clicker = event.data.clickerId, clicker != event.data.sharerId else { return }
        try await ledger.award(
            rule: .shareOpened, to: event.data.sharerId, causeKey: "share:\(event.data.shareId):\(clicker)", cause: event.id,
            campaign: event.data.campaignId, correlation: event.correlationid, on: connection)
    }

    /// A friend's help on your task.
    func assistRecorded(_ event: CloudEvent<AssistRecorded>, _ connection: PostgresConnection) async throws {
        guard event.data.helperId != event.data.initiatorId else { return }
        try await ledger.award(
            rule: .friendHelped, to: event.data.initiatorId, causeKey: "help:\(event.data.helpId)", cause: event.id,
            campaign: event.data.campaignId, correlation: event.correlationid, on: connection)
    }

    /// A confirmed order: +5 to the buyer, +20 to whoever's link brought them (never themselves).
    func orderConfirmed(_ event: CloudEvent<OrderConfirmed>, _ connection: PostgresConnection) async throws {
        let order = event.data
        try await ledger.award(
            rule: .ownPurchase, to: order.userId, causeKey: "own:\(order.orderId)", cause: event.id, order: order.orderId,
            campaign: order.campaignId, correlation: event.correlationid, on: connection)
        if let referrer = order.referrerId, referrer != order.userId {
            try await ledger.award(
                rule: .friendPurchase, to: referrer, causeKey: "referral:\(order.orderId)", cause: event.id, order: order.orderId,
                campaign: order.campaignId, correlation: event.correlationid, on: connection)
        }
    }

    func orderRefunded(_ event: CloudEvent<OrderRefunded>, _ connection: PostgresConnection) async throws {
        try await ledger.revoke(order: event.data.orderId, cause: event.id, correlation: event.correlationid, on: connection)
    }
}
