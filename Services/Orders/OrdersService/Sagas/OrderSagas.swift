import Domain
import Foundation
import Postgres
import ServiceKit

/// How orders follow stock, teams and the payment clock.
struct OrderSagas: Sendable {
    let paymentTimeout: Duration

    func stockReserved(_ event: CloudEvent<StockReserved>, _ connection: PostgresConnection) async throws {
        guard var order = try await OrderBook.find(event.data.orderId, on: connection, lock: true),
              try await OrderBook.transition(order.orderId, from: [.placed], to: .awaitingPayment, on: connection)
        else { return }
        let intent = "pi_" + order.orderId.description.replacingOccurrences(of: "-", with: "")
        let payBy = Date().addingTimeInterval(Double(paymentTimeout.components.seconds))
        try await connection.query(
            "UPDATE orders SET payment_intent = \(intent), pay_by = \(payBy) WHERE id = \(order.orderId.rawValue)")
        order.paymentIntentId = intent
        try await Schedule.at(payBy, kind: OrderBook.paymentTimeoutJob, key: order.orderId.description, on: connection)
        try await Outbox.append(
            OrderStockReserved(orderId: order.orderId, userId: order.userId, campaignId: order.campaignId, reservedAt: Date()),
            correlationID: event.correlationid, causationID: event.id.description, on: connection)
        try await Outbox.append(
            OrderAwaitingPayment(orderId: order.orderId, userId: order.userId, campaignId: order.campaignId, total: order.total,
                                 paymentIntentId: intent, payBy: payBy),
            correlationID: event.correlationid, causationID: event.id.description, on: connection)
    }

    func stockRejected(_ event: CloudEvent<StockReservationRejected>, _ connection: PostgresConnection) async throws {
        guard let order = try await OrderBook.find(event.data.orderId, on: connection, lock: true) else { return }
        _ = try await OrderBook.cancel(order, reason: .stockRejected, from: [.placed], correlation: event.correlationid, on: connection)
    }

    /// The payment clock ran out: cancel (campaigns releases the stock). A payment that still
    /// arrives later is refunded by the webhook.
    func paymentTimedOut(_ job: ScheduledJob, _ connection: PostgresConnection) async throws {
        guard let id = OrderID(job.key), let order = try await OrderBook.find(id, on: connection, lock: true) else { return }
        _ = try await OrderBook.cancel(order, reason: .paymentTimeout, from: [.awaitingPayment], correlation: nil, on: connection)
    }

    func memberJoined(_ event: CloudEvent<TeamMemberJoined>, _ connection: PostgresConnection) async throws {
        try await TeamSizes.set(event.data.teamId, event.data.memberCount, on: connection)
    }

    func memberLeft(_ event: CloudEvent<TeamMemberLeft>, _ connection: PostgresConnection) async throws {
        try await TeamSizes.set(event.data.teamId, event.data.memberCount, on: connection)
    }

    func teamOpened(_ event: CloudEvent<TeamOpened>, _ connection: PostgresConnection) async throws {
        try await TeamSizes.set(event.data.teamId, 1, on: connection)
        try await connection.query(
            "UPDATE orders SET team_id = \(event.data.teamId.rawValue) WHERE id = \(event.data.leaderOrderId.rawValue) AND team_id IS NULL")
    }

    func teamCompleted(_ event: CloudEvent<TeamCompleted>, _ connection: PostgresConnection) async throws {
        for member in event.data.members {
            guard let orderID = member.orderId, let order = try await OrderBook.find(orderID, on: connection, lock: true) else { continue }
            try await OrderBook.confirm(order, correlation: event.correlationid, on: connection)
        }
    }

    /// Every member of an expired team is refunded, once: the state guard makes a redelivered
    /// `TeamExpired` a no-op.
    func teamExpired(_ event: CloudEvent<TeamExpired>, _ connection: PostgresConnection) async throws {
        for member in event.data.members {
            guard let orderID = member.orderId, let order = try await OrderBook.find(orderID, on: connection, lock: true) else { continue }
            try await OrderBook.refund(order, reason: .teamExpired, correlation: event.correlationid, causation: event.id.description, on: connection)
        }
    }

    func joinRejected(_ event: CloudEvent<TeamJoinRejected>, _ connection: PostgresConnection) async throws {
        guard let order = try await OrderBook.find(event.data.orderId, on: connection, lock: true) else { return }
        switch event.data.resolution {
        case .newTeamOpened:
            try await connection.query(
                "UPDATE orders SET team_id = \(event.data.newTeamId?.rawValue), purpose = 'openTeam' WHERE id = \(order.orderId.rawValue)")
            try await connection.query(
                "INSERT INTO order_history (order_id, state, note) VALUES (\(order.orderId.rawValue), \(order.state.rawValue), 'moved to a new team')")
        case .refund:
            try await OrderBook.refund(order, reason: .teamUnavailable, correlation: event.correlationid, causation: event.id.description, on: connection)
        }
    }
}

/// Team sizes as orders last heard them; events of one team arrive in order (keyed by team id).
enum TeamSizes {
    static func set(_ team: TeamID, _ members: Int, on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            INSERT INTO team_sizes (team_id, member_count) VALUES (\(team.rawValue), \(members))
            ON CONFLICT (team_id) DO UPDATE SET member_count = EXCLUDED.member_count
            """)
    }

    static func members(of team: TeamID, on connection: PostgresConnection) async throws -> Int? {
        try await connection.query("SELECT member_count FROM team_sizes WHERE team_id = \(team.rawValue)").first?.decode("member_count")
    }
}
