import Domain
import Foundation
import Postgres

/// The platform's promises, checked on the final state of every service's own database after a
/// run has settled. Each check lists what breaks it; an empty list means it holds.
struct InvariantChecker {
    let databases: [String: PostgresConfiguration]

    struct Outcome: Sendable {
        var promise: String
        var kind: Kind
        var checked: Int
        var violations: [String]
    }

    /// Which of `fission chaos`'s figures a broken promise counts in.
    enum Kind: Sendable {
        case stockOversold, cutsNotExact, duplicateEffect, inconsistent
    }

    func checkAll() async throws -> [Outcome] {
        try await withPools { pools in
            [
                try await stock(pools),
                try await teamSizes(pools),
                try await exactCuts(pools),
                try await oneRefundPerExpiredMember(pools),
                try await xpEqualsLedger(pools),
                try await oneNotificationPerCause(pools),
                try await oneAwardPerCause(pools),
                try await onceInATeam(pools),
                try await onePaymentPerOrder(pools),
                try await oneOutcomePerTeamAndOrder(pools),
            ]
        }
    }

    /// Stock never goes below zero, and what campaigns holds reserved is exactly what orders
    /// still counts on: the two services agree unit for unit.
    private func stock(_ pools: [String: PostgresPool]) async throws -> Outcome {
        var violations: [String] = []
        let campaigns = try await pools["campaigns"]!.query(
            """
            SELECT c.id::text AS id, c.stock_left::int8 AS stock_left, (c.terms->>'stock')::int8 AS stock,
                   coalesce((SELECT sum(quantity) FROM reservations r WHERE r.campaign_id = c.id AND r.state = 'reserved'), 0)::int8 AS reserved
            FROM campaigns c WHERE c.kind = 'groupBuy' OR c.kind = 'bargain'
            """)
        for row in campaigns {
            let id: String = try row.decode("id")
            let left: Int64 = try row.decode("stock_left"), stock: Int64 = try row.decode("stock"), reserved: Int64 = try row.decode("reserved")
            if left < 0 { violations.append("campaign \(id): stock below zero (\(left))") }
            if left + reserved > stock { violations.append("campaign \(id): \(reserved) reserved + \(left) left exceeds the stock of \(stock)") }
            let holding = try await pools["orders"]!.query(
                """
                SELECT coalesce(sum(quantity), 0)::int8 AS units FROM orders
                WHERE campaign_id = \(UUID(uuidString: id)!) AND state IN ('awaiting_payment', 'paid', 'waiting_for_team', 'confirmed')
                """).single().decode("units", as: Int64.self)
            if holding != reserved {
                violations.append("campaign \(id): campaigns holds \(reserved) units reserved, orders counts on \(holding)")
            }
        }
        return Outcome(promise: "stock never oversold; reservations match live orders", kind: .stockOversold, checked: campaigns.count, violations: violations)
    }

    /// No team ever has more members than its size; a completed team is full (counting the
    /// virtual seats the merchant allowed); an expired one is not.
    private func teamSizes(_ pools: [String: PostgresPool]) async throws -> Outcome {
        let teams = try await pools["campaigns"]!.query(
            """
            SELECT t.id::text AS id, t.size, t.status, t.virtual_members,
                   (SELECT count(*) FROM team_members m WHERE m.team_id = t.id AND m.left_at IS NULL)::int AS members
            FROM teams t
            """)
        var violations: [String] = []
        for row in teams {
            let id: String = try row.decode("id"), status: String = try row.decode("status")
            let size: Int = try row.decode("size"), members: Int = try row.decode("members"), virtual: Int = try row.decode("virtual_members")
            if members > size { violations.append("team \(id): \(members) members in a team of \(size)") }
            if status == "completed" && members + virtual != size { violations.append("team \(id): completed with \(members)+\(virtual) of \(size)") }
            if status == "expired" && virtual != 0 { violations.append("team \(id): expired yet filled virtually") }
        }
        return Outcome(promise: "team sizes", kind: .inconsistent, checked: teams.count, violations: violations)
    }

    /// Every bargain's price is the list price less exactly the cuts it published (first cut
    /// and each counted help), never below the floor; a completed bargain sits at the floor.
    private func exactCuts(_ pools: [String: PostgresPool]) async throws -> Outcome {
        let tasks = try await pools["assists"]!.query(
            """
            SELECT t.id::text AS id, t.status, t.list_price, t.floor_price, t.price_now, t.helper_count, t.schedule::text AS schedule,
                   coalesce((SELECT sum(cut) FROM helps h WHERE h.task_id = t.id AND h.state = 'counted'), 0)::int8 AS cuts,
                   (SELECT count(*) FROM helps h WHERE h.task_id = t.id AND h.state = 'counted')::int AS counted
            FROM tasks t WHERE t.kind = 'bargain'
            """)
        var violations: [String] = []
        for row in tasks {
            let id: String = try row.decode("id"), status: String = try row.decode("status")
            let list: Int64 = try row.decode("list_price"), floor: Int64 = try row.decode("floor_price"), now: Int64 = try row.decode("price_now")
            let cuts: Int64 = try row.decode("cuts"), counted: Int = try row.decode("counted"), helpers: Int = try row.decode("helper_count")
            let schedule = try JSONDecoder().decode(CutSchedule.self, from: Data(try row.decode("schedule", as: String.self).utf8))
            if list - schedule.firstCut - cuts != now {
                violations.append("task \(id): \(list) - \(schedule.firstCut) - \(cuts) ≠ price now \(now)")
            }
            if now < floor { violations.append("task \(id): below the floor") }
            if status == "completed" && now != floor { violations.append("task \(id): completed at \(now), floor \(floor)") }
            if counted != helpers { violations.append("task \(id): \(counted) counted helps, helper count \(helpers)") }
        }
        return Outcome(promise: "bargain cuts sum exactly", kind: .cutsNotExact, checked: tasks.count, violations: violations)
    }

    /// Each paid member of an expired team got exactly one refund; no order anywhere was
    /// refunded twice.
    private func oneRefundPerExpiredMember(_ pools: [String: PostgresPool]) async throws -> Outcome {
        let expired = try await pools["campaigns"]!.query(
            "SELECT m.order_id FROM team_members m JOIN teams t ON t.id = m.team_id WHERE t.status = 'expired'"
        ).map { try $0.decode("order_id", as: UUID.self) }
        var violations: [String] = []
        let orders = pools["orders"]!
        for order in expired {
            let row = try await orders.query(
                """
                SELECT o.state, (SELECT count(*) FROM order_history h WHERE h.order_id = o.id AND h.state = 'refunded')::int AS refunds,
                       EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id) AS paid
                FROM orders o WHERE o.id = \(order)
                """).first
            guard let row else {
                violations.append("order \(order.uuidString.lowercased()) of an expired team is unknown to orders")
                continue
            }
            let paid: Bool = try row.decode("paid"), refunds: Int = try row.decode("refunds"), state: String = try row.decode("state")
            if paid && (refunds != 1 || state != "refunded") {
                violations.append("order \(order.uuidString.lowercased()) of an expired team: \(state), \(refunds) refunds")
            }
        }
        let doubled = try await orders.query(
            "SELECT order_id FROM order_history WHERE state = 'refunded' GROUP BY order_id HAVING count(*) > 1")
        for row in doubled { violations.append("order \(try row.decode("order_id", as: UUID.self).uuidString.lowercased()) refunded twice") }
        return Outcome(promise: "one refund per expired member", kind: .duplicateEffect, checked: expired.count, violations: violations)
    }

    /// A member's XP is the sum of their ledger, never negative.
    private func xpEqualsLedger(_ pools: [String: PostgresPool]) async throws -> Outcome {
        let members = try await pools["levels"]!.query(
            """
            SELECT m.user_id, m.xp, coalesce((SELECT sum(points) FROM xp_ledger l WHERE l.user_id = m.user_id), 0)::int8 AS ledger
            FROM members m
            """)
        var violations: [String] = []
        for row in members {
            let user: String = try row.decode("user_id"), xp: Int64 = try row.decode("xp", as: Int64.self), ledger: Int64 = try row.decode("ledger")
            if xp != ledger || xp < 0 { violations.append("\(user): \(xp) XP, ledger sums to \(ledger)") }
        }
        return Outcome(promise: "XP = ledger", kind: .inconsistent, checked: members.count, violations: violations)
    }

    /// An event notifies a user once, however often it was delivered.
    private func oneNotificationPerCause(_ pools: [String: PostgresPool]) async throws -> Outcome {
        let total = try await pools["notifications"]!.query("SELECT count(*)::int AS n FROM notifications").single().decode("n", as: Int.self)
        let doubled = try await pools["notifications"]!.query(
            "SELECT user_id, cause_event_id FROM notifications GROUP BY user_id, cause_event_id, category HAVING count(*) > 1")
        let violations = try doubled.map { "\(try $0.decode("user_id", as: String.self)) notified twice of \(try $0.decode("cause_event_id", as: UUID.self))" }
        return Outcome(promise: "one notification per event", kind: .duplicateEffect, checked: total, violations: violations)
    }

    /// XP is awarded once per cause: one entry per user, rule and causing event, and one
    /// purchase award of each kind per order (a redelivered or re-emitted event adds nothing).
    private func oneAwardPerCause(_ pools: [String: PostgresPool]) async throws -> Outcome {
        let levels = pools["levels"]!
        let awards = try await levels.query("SELECT count(*)::int AS n FROM xp_ledger WHERE revokes IS NULL").single().decode("n", as: Int.self)
        var violations = try await levels.query(
            """
            SELECT user_id, rule, cause_event_id::text AS cause, count(*)::int AS n FROM xp_ledger
            WHERE revokes IS NULL GROUP BY user_id, rule, cause_event_id HAVING count(*) > 1
            """).map { "\(try $0.decode("user_id", as: String.self)): \(try $0.decode("n", as: Int.self)) \(try $0.decode("rule", as: String.self)) awards for event \(try $0.decode("cause", as: String.self))" }
        violations += try await levels.query(
            """
            SELECT rule, order_id::text AS order_id, count(*)::int AS n FROM xp_ledger
            WHERE revokes IS NULL AND order_id IS NOT NULL GROUP BY rule, order_id HAVING count(*) > 1
            """).map { "order \(try $0.decode("order_id", as: String.self)): \(try $0.decode("n", as: Int.self)) \(try $0.decode("rule", as: String.self)) awards" }
        return Outcome(promise: "one XP award per cause", kind: .duplicateEffect, checked: awards, violations: violations)
    }

    /// A shopper is in a team once: one seat per shopper among its current members.
    private func onceInATeam(_ pools: [String: PostgresPool]) async throws -> Outcome {
        let campaigns = pools["campaigns"]!
        let members = try await campaigns.query("SELECT count(*)::int AS n FROM team_members WHERE left_at IS NULL").single().decode("n", as: Int.self)
        let violations = try await campaigns.query(
            """
            SELECT team_id::text AS team, user_id, count(*)::int AS n FROM team_members WHERE left_at IS NULL
            GROUP BY team_id, user_id HAVING count(*) > 1
            """).map { "team \(try $0.decode("team", as: String.self)): \(try $0.decode("user_id", as: String.self)) holds \(try $0.decode("n", as: Int.self)) seats" }
        return Outcome(promise: "a shopper is in a team once", kind: .duplicateEffect, checked: members, violations: violations)
    }

    /// One payment per order: the provider's redelivered notices (same reference) count once, and
    /// no order took two different payments.
    private func onePaymentPerOrder(_ pools: [String: PostgresPool]) async throws -> Outcome {
        let orders = pools["orders"]!
        let payments = try await orders.query("SELECT count(*)::int AS n FROM payments").single().decode("n", as: Int.self)
        let violations = try await orders.query(
            "SELECT order_id::text AS order_id, count(*)::int AS n FROM payments GROUP BY order_id HAVING count(*) > 1"
        ).map { "order \(try $0.decode("order_id", as: String.self)) paid \(try $0.decode("n", as: Int.self)) times" }
        return Outcome(promise: "one payment per order", kind: .duplicateEffect, checked: payments, violations: violations)
    }

    /// A team is completed or expired once, and an order confirmed once and refunded once: the
    /// services announced each outcome a single time (counted in their outboxes, where every
    /// event they ever decided on is kept).
    private func oneOutcomePerTeamAndOrder(_ pools: [String: PostgresPool]) async throws -> Outcome {
        var violations: [String] = []
        var checked = 0
        for (service, types, what) in [
            ("campaigns", [TeamCompleted.eventType, TeamExpired.eventType], "team"),
            ("orders", [OrderConfirmed.eventType], "order confirmed"),
            ("orders", [OrderRefunded.eventType], "order refunded"),
        ] {
            let pool = pools[service]!
            checked += try await pool.query("SELECT count(*)::int AS n FROM outbox_history WHERE event_type = ANY(\(types))").single().decode("n", as: Int.self)
            violations += try await pool.query(
                "SELECT key, count(*)::int AS n FROM outbox_history WHERE event_type = ANY(\(types)) GROUP BY key HAVING count(*) > 1"
            ).map { "\(what) \(try $0.decode("key", as: String.self)): \(try $0.decode("n", as: Int.self)) outcomes announced" }
        }
        return Outcome(promise: "one outcome per team, one confirmation and one refund per order", kind: .duplicateEffect, checked: checked, violations: violations)
    }

    private func withPools<T>(_ body: ([String: PostgresPool]) async throws -> T) async throws -> T {
        var pools: [String: PostgresPool] = [:]
        for (service, configuration) in databases { pools[service] = PostgresPool(configuration: configuration, options: .init(maxConnections: 2)) }
        do {
            let value = try await body(pools)
            for pool in pools.values { await pool.close() }
            return value
        } catch {
            for pool in pools.values { await pool.close() }
            throw error
        }
    }
}
