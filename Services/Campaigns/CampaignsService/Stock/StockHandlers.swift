import Domain
import Foundation
import Postgres
import ServiceKit

/// Stock follows orders: reserved at placement, released on cancellation or refund.
///
/// Never oversold: the reservation is one conditional `UPDATE ... SET stock_left = stock_left - q
/// WHERE stock_left >= q` (the row lock orders concurrent ones, the CHECK constraint backs it).
/// Never twice: the reservation row is keyed by the order id, so a redelivered `OrderPlaced`
/// finds it, and a cancellation that overtakes its placement leaves a tombstone that the late
/// placement respects.
enum StockHandlers {
    static func orderPlaced(_ event: CloudEvent<OrderPlaced>, _ connection: PostgresConnection) async throws {
        let order = event.data
        let claimed = try await connection.query(
            """
            INSERT INTO reservations (order_id, campaign_id, user_id, quantity, state)
            SELECT \(order.orderId.rawValue), id, \(order.userId.rawValue), \(order.quantity), 'rejected' FROM campaigns WHERE id = \(order.campaignId.rawValue)
            ON CONFLICT (order_id) DO NOTHING
            """).affectedRows == 1
        guard claimed else { return }  // seen before, cancelled first, or an unknown campaign

        let rejection = try await reservationRefusal(order, connection)
        if let rejection {
            try await Outbox.append(
                StockReservationRejected(
                    campaignId: order.campaignId, orderId: order.orderId, userId: order.userId, quantity: order.quantity, reason: rejection),
                correlationID: event.correlationid, causationID: event.id.description, on: connection)
            return
        }
        let left = try await connection.query(
            """
            UPDATE campaigns SET stock_left = stock_left - \(order.quantity), updated_at = now()
            WHERE id = \(order.campaignId.rawValue) AND stock_left >= \(order.quantity) AND status = 'published'
            RETURNING stock_left
            """)
        guard let row = left.first else {
            try await Outbox.append(
                StockReservationRejected(
                    campaignId: order.campaignId, orderId: order.orderId, userId: order.userId, quantity: order.quantity, reason: .soldOut),
                correlationID: event.correlationid, causationID: event.id.description, on: connection)
            return
        }
        let stockLeft = try row.decode("stock_left", as: Int.self)
        try await connection.query("UPDATE reservations SET state = 'reserved', updated_at = now() WHERE order_id = \(order.orderId.rawValue)")
        try await Statistics.add(1, to: "orders_placed", of: order.campaignId, on: connection)
        try await Outbox.append(
            StockReserved(campaignId: order.campaignId, orderId: order.orderId, userId: order.userId, quantity: order.quantity, stockLeft: stockLeft),
            correlationID: event.correlationid, causationID: event.id.description, on: connection)
    }

    /// Why an order may not have stock, before touching the counter.
    private static func reservationRefusal(_ order: OrderPlaced, _ connection: PostgresConnection) async throws -> ReservationRejection? {
        guard let campaign = try await CampaignStore.find(order.campaignId, on: connection) else { return .notOnSale }
        let now = Date()
        guard campaign.status == .published, campaign.terms.startsAt <= now, now < campaign.terms.endsAt else { return .notOnSale }
        let held = try await connection.query(
            """
            SELECT coalesce(sum(quantity), 0)::int8 AS held FROM reservations
            WHERE campaign_id = \(order.campaignId.rawValue) AND user_id = \(order.userId.rawValue) AND state = 'reserved'
            """).single().decode("held", as: Int.self)
        if held + order.quantity > campaign.terms.perUserLimit { return .perUserLimit }
        if order.purpose == .joinTeam {
            guard let teamID = order.teamId else { return .teamUnavailable }
            let open = try await connection.query(
                "SELECT 1 FROM teams WHERE id = \(teamID.rawValue) AND status = 'open' AND campaign_id = \(order.campaignId.rawValue)")
            if open.isEmpty { return .teamUnavailable }
        }
        return nil
    }

    static func orderCancelled(_ event: CloudEvent<OrderCancelled>, _ connection: PostgresConnection) async throws {
        try await release(
            orderID: event.data.orderId, campaignID: event.data.campaignId, userID: event.data.userId, quantity: event.data.quantity,
            event: event.id, correlation: event.correlationid, on: connection)
    }

    static func orderRefunded(_ event: CloudEvent<OrderRefunded>, _ connection: PostgresConnection) async throws {
        try await release(
            orderID: event.data.orderId, campaignID: event.data.campaignId, userID: event.data.userId, quantity: event.data.quantity,
            event: event.id, correlation: event.correlationid, on: connection)
        try await Statistics.add(1, to: "orders_refunded", of: event.data.campaignId, on: connection)
        try await Statistics.add(-event.data.amount.amount, to: "gmv", of: event.data.campaignId, on: connection)
        try await TeamHandlers.memberRefunded(event, connection)
    }

    /// Gives a reservation's stock back, once. Without a reservation yet, leaves a tombstone.
    static func release(
        orderID: OrderID, campaignID: CampaignID, userID: UserID, quantity: Int, event: EventID, correlation: String?,
        on connection: PostgresConnection
    ) async throws {
        let tombstone = try await connection.query(
            """
            INSERT INTO reservations (order_id, campaign_id, user_id, quantity, state)
            SELECT \(orderID.rawValue), id, \(userID.rawValue), \(max(quantity, 1)), 'cancelled_before_placed' FROM campaigns WHERE id = \(campaignID.rawValue)
            ON CONFLICT (order_id) DO NOTHING
            """).affectedRows == 1
        if tombstone { return }
        let released = try await connection.query(
            """
            UPDATE reservations SET state = 'released', updated_at = now()
            WHERE order_id = \(orderID.rawValue) AND state = 'reserved' RETURNING quantity
            """)
        guard let row = released.first else { return }  // never reserved, or released already
        let returned = try row.decode("quantity", as: Int.self)
        let left = try await connection.query(
            "UPDATE campaigns SET stock_left = stock_left + \(returned), updated_at = now() WHERE id = \(campaignID.rawValue) RETURNING stock_left"
        ).single().decode("stock_left", as: Int.self)
        try await Outbox.append(
            StockReleased(campaignId: campaignID, orderId: orderID, quantity: returned, stockLeft: left),
            correlationID: correlation, causationID: event.description, on: connection)
    }
}
