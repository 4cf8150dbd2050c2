import Domain
import Foundation
import Hummingbird
import Postgres
import ServiceKit

struct OrderRoutes {
    let runtime: ServiceRuntime

    func register(on api: RouterGroup<FissionRequestContext>) {
        api.post("/orders", use: place)
        api.get("/orders", use: mine)
        api.get("/orders/{id}", use: read)
        api.post("/orders/{id}/cancel", use: cancel)
        api.post("/orders/{id}/refund", use: refund)
        api.get("/campaigns/{id}/orders", use: campaignOrders)
    }

    /// Places an order; an `Idempotency-Key` is required, and any price in the body is ignored.
    @Sendable func place(_ request: Request, context: FissionRequestContext) async throws -> Response {
        let shopper = try context.require(.shopper)
        try context.admit("order", request, limits: runtime.rateLimits)
        return try await runtime.idempotency.run(request, context: context, scope: shopper.userID.rawValue) { body, connection in
            let placement = try decodeBody(OrderBook.Placement.self, from: body)
            return try await OrderBook.place(placement, user: shopper.userID, correlation: context.requestID, on: connection)
        }
    }

    @Sendable func mine(_ request: Request, context: FissionRequestContext) async throws -> [OrderView] {
        let shopper = try context.require(.shopper)
        return try await runtime.pool.query(
            "SELECT \(OrderBook.columns) FROM orders WHERE user_id = \(shopper.userID.rawValue) ORDER BY placed_at DESC LIMIT 100"
        ).map(OrderBook.view)
    }

    @Sendable func read(_ request: Request, context: FissionRequestContext) async throws -> OrderView {
        let shopper = try context.require(.shopper)
        let id: OrderID = try context.pathID("id")
        return try await runtime.pool.withConnection { connection in
            guard var order = try await OrderBook.find(id, on: connection), order.userId == shopper.userID else {
                throw Problem.notFound("no order \(id) of yours")
            }
            order.history = try await connection.query(
                "SELECT state, note, at FROM order_history WHERE order_id = \(id.rawValue) ORDER BY id"
            ).map { .init(state: try $0.decode("state"), note: try $0.decode("note"), at: try $0.decode("at")) }
            return order
        }
    }

    /// The shopper cancels: before payment it is a cancellation (stock released); after payment,
    /// while a group-buy team is still forming, a refund.
    @Sendable func cancel(_ request: Request, context: FissionRequestContext) async throws -> OrderView {
        let shopper = try context.require(.shopper)
        let id: OrderID = try context.pathID("id")
        return try await runtime.pool.withTransaction { connection in
            guard let order = try await OrderBook.find(id, on: connection, lock: true), order.userId == shopper.userID else {
                throw Problem.notFound("no order \(id) of yours")
            }
            switch order.state {
            case .placed, .awaitingPayment:
                _ = try await OrderBook.cancel(order, reason: .shopper, from: [.placed, .awaitingPayment], correlation: context.requestID, on: connection)
            case .waitingForTeam:
                try await OrderBook.refund(order, reason: .shopper, correlation: context.requestID, causation: nil, on: connection)
            case .cancelled, .refunded:
                break  // already done: a retry changes nothing
            case .paid, .confirmed:
                throw Problem.conflict(kind: "not-cancellable", "a \(order.state.rawValue) order cannot be cancelled here")
            }
            return try await OrderBook.find(id, on: connection)!
        }
    }
    /// After-sales: the campaign's merchant refunds a paid or confirmed order (the buyer returned
    /// the goods). Levels revokes what the order awarded; campaigns puts the unit back.
    @Sendable func refund(_ request: Request, context: FissionRequestContext) async throws -> OrderView {
        let merchant = try context.require(.merchant)
        let id: OrderID = try context.pathID("id")
        return try await runtime.pool.withTransaction { connection in
            guard let order = try await OrderBook.find(id, on: connection, lock: true),
                  try await !connection.query(
                    "SELECT 1 FROM campaign_terms WHERE campaign_id = \(order.campaignId.rawValue) AND merchant_id = \(merchant.userID.rawValue)"
                  ).isEmpty
            else { throw Problem.notFound("no order \(id) in a campaign of yours") }
            switch order.state {
            case .paid, .waitingForTeam, .confirmed:
                try await OrderBook.refund(
                    order, reason: .merchant, from: [.paid, .waitingForTeam, .confirmed], correlation: context.requestID, causation: nil,
                    on: connection)
            case .refunded:
                break  // already refunded: a retry changes nothing
            case .placed, .awaitingPayment, .cancelled:
                throw Problem.conflict(kind: "not-refundable", "a \(order.state.rawValue) order has no payment to refund")
            }
            return try await OrderBook.find(id, on: connection)!
        }
    }

    @Sendable func campaignOrders(_ request: Request, context: FissionRequestContext) async throws -> [OrderView] {
        let merchant = try context.require(.merchant)
        let campaign: CampaignID = try context.pathID("id")
        return try await runtime.pool.withConnection { connection in
            guard try await !connection.query(
                "SELECT 1 FROM campaign_terms WHERE campaign_id = \(campaign.rawValue) AND merchant_id = \(merchant.userID.rawValue)").isEmpty
            else { throw Problem.notFound("no campaign \(campaign) of yours") }
            return try await connection.query(
                "SELECT \(OrderBook.columns) FROM orders WHERE campaign_id = \(campaign.rawValue) ORDER BY placed_at DESC LIMIT 500"
            ).map(OrderBook.view)
        }
    }
}
