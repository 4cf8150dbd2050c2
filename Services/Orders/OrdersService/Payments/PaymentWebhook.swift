import Crypto
import Domain
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Postgres
import ServiceKit

/// The payment provider's webhook. The provider signs `"<timestamp>.<body>"` with HMAC-SHA256
/// under a shared secret and sends `X-Fission-Signature: t=<unix seconds>,v1=<hex>`.
/// A bad signature, a timestamp more than five minutes off, or an amount different from the
/// order total is refused, logged, and changes nothing.
struct PaymentWebhook: Sendable {
    let runtime: ServiceRuntime
    let secret: String
    static let tolerance: TimeInterval = 300
    static let signatureHeader = HTTPField.Name(WebhookSignature.headerName)!

    struct Notice: Codable, Sendable {
        var providerRef: String
        var paymentIntentId: String
        var amount: Money
        var status: String
    }

    struct Receipt: ResponseEncodable, Codable, Sendable {
        var received: Bool
        var orderId: OrderID
        var state: OrderState
    }

    func register(on api: RouterGroup<FissionRequestContext>) {
        api.post("/payments/webhook", use: receive)
    }

    static func signature(body: Data, timestamp: Int, secret: String) -> String {
        WebhookSignature.header(body: body, timestamp: timestamp, secret: secret)
    }

    @Sendable func receive(_ request: Request, context: FissionRequestContext) async throws -> Receipt {
        var request = request
        let body = Data(try await request.collectBody(upTo: context.maxUploadSize).readableBytesView)
        do {
            try verify(request.headers[Self.signatureHeader], body: body)
        } catch let problem as Problem {
            try await log("refused", problem.detail ?? problem.title, context: context)
            throw problem
        }
        let notice = try decodeBody(Notice.self, from: ByteBuffer(data: body))
        do {
            return try await runtime.pool.withTransaction { connection in
                try await apply(notice, correlation: context.requestID, on: connection)
            }
        } catch let problem as Problem {
            try await log("refused", problem.detail ?? problem.title, context: context)
            throw problem
        }
    }

    func verify(_ header: String?, body: Data, now: Date = Date()) throws {
        guard let header else { throw Self.refused("missing signature") }
        var timestamp: Int?
        var signatures: [String] = []
        for part in header.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2 else { continue }
            if pair[0] == "t" { timestamp = Int(pair[1]) }
            if pair[0] == "v1" { signatures.append(pair[1]) }
        }
        guard let timestamp, abs(now.timeIntervalSince1970 - Double(timestamp)) <= Self.tolerance else {
            throw Self.refused("timestamp missing or more than five minutes off (a replay?)")
        }
        let expected = Self.signature(body: body, timestamp: timestamp, secret: secret)
        let expectedHex = String(expected.split(separator: "=").last ?? "")
        // Constant-time comparison of equal-length hex strings.
        guard signatures.contains(where: { candidate in
            candidate.utf8.count == expectedHex.utf8.count
                && zip(candidate.utf8, expectedHex.utf8).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
        }) else { throw Self.refused("bad signature") }
    }

    static func refused(_ detail: String) -> Problem {
        Problem(.unauthorized, kind: "bad-webhook-signature", title: "The webhook could not be authenticated", detail: detail)
    }

    func apply(_ notice: Notice, correlation: String?, on connection: PostgresConnection) async throws -> Receipt {
        guard notice.status == "succeeded" else { throw Problem.invalidField("status", "only succeeded payments are reported") }
        guard let row = try await connection.query(
            "SELECT id FROM orders WHERE payment_intent = \(notice.paymentIntentId) FOR UPDATE").first,
              let order = try await OrderBook.find(OrderID(rawValue: try row.decode("id")), on: connection)
        else { throw Problem.notFound("no order for payment intent \(notice.paymentIntentId)") }
        guard notice.amount == order.total else {
            throw Problem(.unprocessableContent, kind: "amount-mismatch", title: "The paid amount is not the order total",
                          detail: "paid \(notice.amount), order total \(order.total)")
        }
        let fresh = try await connection.query(
            """
            INSERT INTO payments (provider_ref, order_id, amount, currency) VALUES (\(notice.providerRef), \(order.orderId.rawValue),
                \(notice.amount.amount), \(notice.amount.currency.rawValue)) ON CONFLICT DO NOTHING
            """).affectedRows == 1
        guard fresh else { return Receipt(received: true, orderId: order.orderId, state: order.state) }  // redelivered

        switch order.state {
        case .awaitingPayment:
            let groupBuy = order.purpose == .openTeam || order.purpose == .joinTeam
            try await OrderBook.transition(order.orderId, from: [.awaitingPayment], to: .paid, note: notice.providerRef, on: connection)
            try await Schedule.cancel(kind: OrderBook.paymentTimeoutJob, key: order.orderId.description, on: connection)
            let first = try await connection.query(
                "INSERT INTO first_purchases (user_id, order_id) VALUES (\(order.userId.rawValue), \(order.orderId.rawValue)) ON CONFLICT DO NOTHING"
            ).affectedRows == 1
            try await Outbox.append(
                OrderPaid(orderId: order.orderId, userId: order.userId, campaignId: order.campaignId, purpose: order.purpose,
                          teamId: order.teamId, taskId: order.taskId, amount: notice.amount, firstPurchase: first, paidAt: Date()),
                correlationID: correlation, on: connection)
            if groupBuy {
                try await OrderBook.transition(order.orderId, from: [.paid], to: .waitingForTeam, on: connection)
            } else {
                var paid = order
                paid.state = .paid
                try await OrderBook.confirm(paid, correlation: correlation, on: connection)
            }
        case .cancelled, .placed:
            // The money came after the order was cancelled (payment timeout): give it back.
            try await OrderBook.refund(order, reason: .latePayment, from: [.cancelled, .placed], correlation: correlation, causation: nil, on: connection)
        default:
            break  // already paid by another payment: the provider reconciles duplicates
        }
        return Receipt(received: true, orderId: order.orderId, state: try await OrderBook.find(order.orderId, on: connection)!.state)
    }

    private func log(_ outcome: String, _ reason: String, context: FissionRequestContext) async throws {
        context.logger.warning("payment webhook refused", metadata: ["reason": "\(reason)"])
        try await runtime.pool.query("INSERT INTO webhook_log (outcome, reason) VALUES (\(outcome), \(reason))")
    }
}
