import Domain
import Foundation
import Hummingbird
import Postgres
import ServiceKit

enum OrderState: String, Codable, Sendable {
    case placed
    case awaitingPayment = "awaiting_payment"
    case paid
    case waitingForTeam = "waiting_for_team"
    case confirmed, cancelled, refunded
}

struct OrderView: ResponseEncodable, Codable, Sendable {
    var orderId: OrderID
    var userId: UserID
    var campaignId: CampaignID
    var purpose: OrderPurpose
    var teamId: TeamID?
    var taskId: TaskID?
    var quantity: Int
    var total: Money
    var state: OrderState
    var paymentIntentId: String?
    var payBy: Date?
    var referrerId: UserID?
    var history: [HistoryEntry]?

    struct HistoryEntry: Codable, Sendable {
        var state: String
        var note: String
        var at: Date
    }
}

/// Orders and their guarded state machine. A transition names the states it may leave; a
/// duplicate or late event finds the order elsewhere and changes nothing.
enum OrderBook {
    static let paymentTimeoutJob = "payment-timeout"

    static let columns: PostgresSQLFragment = """
        id, user_id, campaign_id, purpose, team_id, task_id, quantity, total, currency, state, payment_intent, pay_by, share_id, referrer_id
        """

    static func view(_ row: PostgresRow) throws -> OrderView {
        let currency = Currency(rawValue: try row.decode("currency"))
        return OrderView(
            orderId: OrderID(rawValue: try row.decode("id")), userId: UserID(rawValue: try row.decode("user_id")),
            campaignId: CampaignID(rawValue: try row.decode("campaign_id")),
            purpose: OrderPurpose(rawValue: try row.decode("purpose")) ?? .plain,
            teamId: try row.decode("team_id", as: UUID?.self).map(TeamID.init(rawValue:)),
            taskId: try row.decode("task_id", as: UUID?.self).map(TaskID.init(rawValue:)),
            quantity: try row.decode("quantity"), total: Money(try row.decode("total"), currency),
            state: OrderState(rawValue: try row.decode("state")) ?? .placed, paymentIntentId: try row.decode("payment_intent"),
            payBy: try row.decode("pay_by"), referrerId: try row.decode("referrer_id", as: String?.self).map(UserID.init(rawValue:)))
    }

    static func find(_ id: OrderID, on connection: PostgresConnection, lock: Bool = false) async throws -> OrderView? {
        let rows = lock
            ? try await connection.query("SELECT \(columns) FROM orders WHERE id = \(id.rawValue) FOR UPDATE")
            : try await connection.query("SELECT \(columns) FROM orders WHERE id = \(id.rawValue)")
        return try rows.first.map(view)
    }

    /// Moves the order to `target` if it is in one of `from`; false (and nothing changed) otherwise.
    @discardableResult
    static func transition(_ id: OrderID, from: [OrderState], to target: OrderState, note: String = "", on connection: PostgresConnection) async throws -> Bool {
        let moved = try await connection.query(
            """
            UPDATE orders SET state = \(target.rawValue), updated_at = now()
            WHERE id = \(id.rawValue) AND state = ANY(\(from.map(\.rawValue)))
            """).affectedRows == 1
        if moved {
            try await connection.query("INSERT INTO order_history (order_id, state, note) VALUES (\(id.rawValue), \(target.rawValue), \(note))")
        }
        return moved
    }

    struct Placement: Codable, Sendable {
        var campaignId: CampaignID
        var purpose: OrderPurpose
        var teamId: TeamID?
        var taskId: TaskID?
        var quantity: Int?
        /// The share link the shopper arrived through, if any.
        var shareCode: String?
    }

    /// Places an order at the price orders computes from its own read models.
    static func place(_ placement: Placement, user: UserID, correlation: String?, on connection: PostgresConnection) async throws -> OrderView {
        let quantity = placement.quantity ?? 1
        guard (1...100).contains(quantity) else { throw Problem.invalidField("quantity", "must be between 1 and 100") }
        guard let row = try await connection.query(
            "SELECT status, terms FROM campaign_terms WHERE campaign_id = \(placement.campaignId.rawValue)").first
        else { throw Problem.invalidField("campaignId", "is not a campaign on sale") }
        let terms = try row.decode("terms", as: PostgresJSON<CampaignTerms>.self).value
        guard try row.decode("status", as: String.self) == "published" else {
            throw Problem.conflict(kind: "campaign-not-on-sale", "the campaign is not on sale")
        }
        guard quantity <= terms.perUserLimit else { throw Problem.invalidField("quantity", "above the per-user limit of \(terms.perUserLimit)") }
        let unit = try await unitPrice(placement, terms: terms, user: user, on: connection)
        var referrer: UserID?
        var shareID: ShareID?
        // A code whose share has not reached orders yet is kept; `ReadModels.shareCreated` fills
        // in the referrer when it arrives.
        var pendingCode: String?
        if let code = placement.shareCode {
            if let share = try await connection.query(
                "SELECT share_id, sharer_id FROM shares WHERE code = \(code) AND campaign_id = \(placement.campaignId.rawValue)").first {
                let sharer = UserID(rawValue: try share.decode("sharer_id"))
                if sharer != user {  // self-referral never counts
                    referrer = sharer
                    shareID = ShareID(rawValue: try share.decode("share_id"))
                }
            } else {
                pendingCode = String(code.prefix(64))
            }
        }
        let id = OrderID()
        let total = unit.multiplied(by: Int64(quantity))
        // Only a bargain or unlock order is the order of a task (a task id sent with another
        // purpose would otherwise hold that task's one order against its initiator).
        let taskID = placement.purpose == .bargain || placement.purpose == .unlock ? placement.taskId : nil
        do {
            try await connection.query(
                """
                INSERT INTO orders (id, user_id, campaign_id, purpose, team_id, task_id, quantity, total, currency, state, share_id, referrer_id,
                                    share_code)
                VALUES (\(id.rawValue), \(user.rawValue), \(placement.campaignId.rawValue), \(placement.purpose.rawValue),
                        \(placement.purpose == .joinTeam ? placement.teamId?.rawValue : nil), \(taskID?.rawValue), \(quantity),
                        \(total.amount), \(total.currency.rawValue), 'placed', \(shareID?.rawValue), \(referrer?.rawValue), \(pendingCode))
                """)
        } catch let error as PostgresError where error.sqlState == .uniqueViolation && error.constraint == "orders_one_per_task" {
            throw Problem.conflict(kind: "task-already-ordered", "this task already has an order (cancel it to order again)")
        }
        try await connection.query("INSERT INTO order_history (order_id, state) VALUES (\(id.rawValue), 'placed')")
        try await Outbox.append(
            OrderPlaced(
                orderId: id, userId: user, campaignId: placement.campaignId, purpose: placement.purpose,
                teamId: placement.purpose == .joinTeam ? placement.teamId : nil, taskId: taskID, quantity: quantity, total: total,
                shareId: shareID, referrerId: referrer, placedAt: Date()),
            correlationID: correlation, on: connection)
        return try await find(id, on: connection)!
    }

    /// The price per unit, from the campaign's terms and (for bargains and unlocks) the task's
    /// outcome as orders recorded it.
    static func unitPrice(_ placement: Placement, terms: CampaignTerms, user: UserID, on connection: PostgresConnection) async throws -> Money {
        switch placement.purpose {
        case .plain:
            return terms.listPrice
        case .openTeam, .joinTeam:
            guard let rules = terms.groupBuy else { throw Problem.invalidField("purpose", "the campaign is not a group-buy") }
            if placement.purpose == .openTeam { return rules.leaderPrice ?? rules.groupPrice }
            guard let team = placement.teamId else { throw Problem.invalidField("teamId", "is required to join a team") }
            // Ladder pricing: the tier the team reaches with this member.
            let members = try await TeamSizes.members(of: team, on: connection) ?? 1
            let tier = (rules.ladder ?? []).filter { $0.minMembers <= members + 1 }.max { $0.minMembers < $1.minMembers }
            return tier?.price ?? rules.groupPrice
        case .bargain, .unlock:
            guard let taskID = placement.taskId else { throw Problem.invalidField("taskId", "is required") }
            guard let task = try await connection.query(
                "SELECT initiator_id, final_price, currency, pay_by FROM completed_tasks WHERE task_id = \(taskID.rawValue) AND campaign_id = \(placement.campaignId.rawValue)"
            ).first else { throw Problem.conflict(kind: "task-not-completed", "this task has not been completed") }
            guard try task.decode("initiator_id", as: String.self) == user.rawValue else {
                throw Problem.forbidden("only the task's initiator may order at its price")
            }
            guard try task.decode("pay_by", as: Date.self) > Date() else {
                throw Problem.conflict(kind: "pay-window-closed", "the window to order at the reached price has closed")
            }
            if placement.purpose == .unlock, let unlock = terms.unlock {
                return unlock.reward == .freeItem ? .zero(terms.listPrice.currency)
                    : Money(max(0, terms.listPrice.amount - (unlock.couponAmount?.amount ?? 0)), terms.listPrice.currency)
            }
            return Money(try task.decode("final_price"), Currency(rawValue: try task.decode("currency")))
        }
    }

    /// Refunds a paid order once: only from paid / waiting-for-team (or a cancelled order whose
    /// payment arrived late).
    static func refund(_ order: OrderView, reason: RefundReason, from: [OrderState] = [.paid, .waitingForTeam], correlation: String?, causation: String?,
                       on connection: PostgresConnection) async throws {
        guard try await transition(order.orderId, from: from, to: .refunded, note: reason.rawValue, on: connection) else { return }
        try await Outbox.append(
            OrderRefunded(
                orderId: order.orderId, userId: order.userId, campaignId: order.campaignId, teamId: order.teamId, quantity: order.quantity,
                amount: order.total, reason: reason, referrerId: order.referrerId, refundedAt: Date()),
            correlationID: correlation, causationID: causation, on: connection)
    }

    static func confirm(_ order: OrderView, correlation: String?, on connection: PostgresConnection) async throws {
        guard try await transition(order.orderId, from: [.paid, .waitingForTeam], to: .confirmed, on: connection) else { return }
        try await Outbox.append(
            OrderConfirmed(orderId: order.orderId, userId: order.userId, campaignId: order.campaignId, total: order.total,
                           referrerId: order.referrerId, confirmedAt: Date()),
            correlationID: correlation, on: connection)
    }

    static func cancel(_ order: OrderView, reason: CancellationReason, from: [OrderState], correlation: String?, on connection: PostgresConnection) async throws -> Bool {
        guard try await transition(order.orderId, from: from, to: .cancelled, note: reason.rawValue, on: connection) else { return false }
        try await Schedule.cancel(kind: paymentTimeoutJob, key: order.orderId.description, on: connection)
        try await Outbox.append(
            OrderCancelled(orderId: order.orderId, userId: order.userId, campaignId: order.campaignId, quantity: order.quantity,
                           reason: reason, stockReserved: order.state == .awaitingPayment, cancelledAt: Date()),
            correlationID: correlation, on: connection)
        return true
    }
}
