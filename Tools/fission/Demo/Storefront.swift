import Domain
import Foundation
import OrdersService
import ServiceKit

/// The public APIs as a merchant, a shopper and the simulated payment provider use them: the
/// walkthrough and the viral simulation both go through here, never around the services.
struct Storefront: Sendable {
    let campaigns: String
    let assists: String
    let orders: String
    let levels: String
    let notifications: String
    let webhookSecret: String
    private let tokens: TokenBook

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    init(stack: LocalStack) {
        campaigns = stack.url("campaigns")
        assists = stack.url("assists")
        orders = stack.url("orders")
        levels = stack.url("levels")
        notifications = stack.url("notifications")
        webhookSecret = LocalStack.webhookSecret
        tokens = TokenBook(secret: LocalStack.jwtSecret)
    }

    func token(_ user: String, _ role: Role = .shopper) async throws -> String {
        try await tokens.token(user, role)
    }

    /// Creates a campaign from its JSON terms and publishes it; returns its id.
    func publish(_ terms: String, merchant: String) async throws -> String {
        let merchantToken = try await token(merchant, .merchant)
        let (status, body) = try await HTTP.call("POST", "\(campaigns)/campaigns", token: merchantToken, json: terms)
        guard status == 201, let id = body["id"] as? String else { throw Failure(description: "could not create a campaign: \(status) \(body)") }
        let (published, problem) = try await HTTP.call("POST", "\(campaigns)/campaigns/\(id)/publish", token: merchantToken)
        guard published == 200 else { throw Failure(description: "could not publish campaign \(id): \(published) \(problem)") }
        return id
    }

    /// Places an order; nil when it is refused (team full, limit reached, sold out). What orders
    /// has not learned yet (a new campaign, a just-completed task) is retried for 30 s.
    func placeOrder(
        campaign: String, purpose: String, team: String? = nil, task: String? = nil, shareCode: String? = nil, shopper: String
    ) async throws -> String? {
        var fields = ["\"campaignId\":\"\(campaign)\"", "\"purpose\":\"\(purpose)\""]
        if let team { fields.append("\"teamId\":\"\(team)\"") }
        if let task { fields.append("\"taskId\":\"\(task)\"") }
        if let shareCode { fields.append("\"shareCode\":\"\(shareCode)\"") }
        let key = UUID().uuidString
        let shopperToken = try await token(shopper)
        let deadline = Date().addingTimeInterval(30)
        while true {
            let (status, body) = try await HTTP.call(
                "POST", "\(orders)/orders", token: shopperToken, json: "{\(fields.joined(separator: ","))}", headers: ["Idempotency-Key": key])
            if status == 201, let id = body["orderId"] as? String { return id }
            guard Self.notKnownYet(status, body), Date() < deadline else { return nil }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// Orders and assists learn campaigns and completed tasks from events: until one arrives they
    /// refuse it (422 on the campaign field, 409 campaign-not-on-sale or task-not-completed), and
    /// a client that just saw it elsewhere retries.
    static func notKnownYet(_ status: Int, _ body: [String: Any]) -> Bool {
        let type = body["type"] as? String ?? ""
        let text = (try? JSONSerialization.data(withJSONObject: body)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        return type.hasSuffix("campaign-not-on-sale") || type.hasSuffix("task-not-completed")
            || (status == 422 && text.contains("not a campaign on sale"))
    }

    /// What a shopper is asked to pay once stock is reserved; nil when the order was cancelled.
    func payable(_ order: String, shopper: String, timeout: TimeInterval = 30) async throws -> (intent: String, total: [String: Any])? {
        let shopperToken = try await token(shopper)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let (_, body) = try await HTTP.call("GET", "\(orders)/orders/\(order)", token: shopperToken)
            switch body["state"] as? String {
            case "awaiting_payment":
                if let intent = body["paymentIntentId"] as? String, let total = body["total"] as? [String: Any] { return (intent, total) }
            case "cancelled", "refunded":
                return nil
            default:
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw Failure(description: "order \(order) was never ready for payment")
    }

    /// The simulated payment provider: a signed webhook, as a real one would send.
    func pay(intent: String, total: [String: Any]) async throws {
        let body = try JSONSerialization.data(withJSONObject: [
            "providerRef": "sim-\(UUID().uuidString.prefix(12))", "paymentIntentId": intent, "amount": total, "status": "succeeded",
        ])
        let signature = WebhookSignature.header(body: body, timestamp: Int(Date().timeIntervalSince1970), secret: webhookSecret)
        let (status, answer) = try await HTTP.call(
            "POST", "\(orders)/payments/webhook", json: String(decoding: body, as: UTF8.self), headers: [WebhookSignature.headerName: signature])
        guard status == 200 else { throw Failure(description: "payment webhook refused: \(status) \(answer)") }
    }
}

/// Development tokens, minted once per user.
actor TokenBook {
    private let secret: String
    private var issuer: DevelopmentTokenIssuer?
    private var minted: [String: String] = [:]

    init(secret: String) {
        self.secret = secret
    }

    func token(_ user: String, _ role: Role) async throws -> String {
        let key = "\(role.rawValue):\(user)"
        if let token = minted[key] { return token }
        if issuer == nil { issuer = await DevelopmentTokenIssuer(secret: secret) }
        let token = try await issuer!.token(for: UserID(rawValue: user), roles: [role])
        minted[key] = token
        return token
    }
}
