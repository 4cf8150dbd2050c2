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
    /// nil in the demo and the tests: a healthy stack never refuses a connection or answers 5xx,
    /// so the first failure is final and surfaces at once.
    let resilience: Resilience?
    private let tokens: TokenBook

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// How shoppers behave while services crash and restart (`fission chaos`): like a phone app,
    /// they retry a refused connection, a timeout or a 5xx for up to `patience`, with the same
    /// Idempotency-Key where the API takes one; every request that was accepted (2xx) goes into
    /// the ledger, to be looked for in the services' databases afterwards.
    struct Resilience: Sendable {
        var patience: Duration
        var ledger: ChaosLedger
    }

    init(stack: LocalStack, resilience: Resilience? = nil) {
        self.resilience = resilience
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

    /// One request, retried under `resilience` while the service cannot answer: a refused
    /// connection or a timeout (the process is down or restarting) and a 5xx (its database is
    /// restarting). A 4xx is an answer and is returned; so is a 429 (a refusal spends nothing,
    /// and the shopper moves on). Without `resilience`, exactly `HTTP.call`.
    func call(_ method: String, _ url: String, token: String? = nil, json: String? = nil, headers: [String: String] = [:]) async throws -> (Int, [String: Any]) {
        guard let resilience else { return try await HTTP.call(method, url, token: token, json: json, headers: headers) }
        let deadline = ContinuousClock.now.advanced(by: resilience.patience)
        var backoff: Duration = .milliseconds(100)
        var attempts = 0
        while true {
            attempts += 1
            do {
                let (status, body) = try await HTTP.call(method, url, token: token, json: json, headers: headers)
                if status < 500 || ContinuousClock.now >= deadline {
                    if attempts > 1 { await resilience.ledger.retried() }
                    return (status, body)
                }
            } catch {
                if ContinuousClock.now >= deadline { throw error }
            }
            try await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(2))
        }
    }

    /// A 5xx is never an answer a shopper can act on: in the demo it is a bug to report (an
    /// unlock task that could not be started was once skipped silently); under chaos it is what
    /// was left after retrying for the whole patience, and the journey is given up.
    static func refuseServerError(_ status: Int, _ body: [String: Any], _ what: String) throws {
        guard status < 500 else { throw Failure(description: "could not \(what): \(status) \(body)") }
    }

    /// How long a shopper waits for something another service must first learn from events.
    private func patience(atLeast seconds: TimeInterval) -> TimeInterval {
        max(seconds, resilience.map { Double($0.patience.components.seconds) } ?? 0)
    }

    /// Creates a campaign from its JSON terms and publishes it; returns its id.
    func publish(_ terms: String, merchant: String) async throws -> String {
        let merchantToken = try await token(merchant, .merchant)
        // The key makes a retried creation return the first campaign rather than make a second.
        let (status, body) = try await call(
            "POST", "\(campaigns)/campaigns", token: merchantToken, json: terms, headers: ["Idempotency-Key": UUID().uuidString])
        guard status == 201, let id = body["id"] as? String else { throw Failure(description: "could not create a campaign: \(status) \(body)") }
        let (published, problem) = try await call("POST", "\(campaigns)/campaigns/\(id)/publish", token: merchantToken)
        guard published == 200 else { throw Failure(description: "could not publish campaign \(id): \(published) \(problem)") }
        await resilience?.ledger.published(campaign: id)
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
        // One key for every attempt: a retry after a lost answer gets the first order back.
        let key = UUID().uuidString
        let shopperToken = try await token(shopper)
        let deadline = Date().addingTimeInterval(patience(atLeast: 30))
        while true {
            let (status, body) = try await call(
                "POST", "\(orders)/orders", token: shopperToken, json: "{\(fields.joined(separator: ","))}", headers: ["Idempotency-Key": key])
            try Self.refuseServerError(status, body, "place an order")
            if status == 201, let id = body["orderId"] as? String {
                await resilience?.ledger.placed(ChaosLedger.PlacedOrder(id: id, shopper: shopper, campaign: campaign, purpose: purpose, team: team))
                return id
            }
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
        let deadline = Date().addingTimeInterval(patience(atLeast: timeout))
        while Date() < deadline {
            let (_, body) = try await call("GET", "\(orders)/orders/\(order)", token: shopperToken)
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

    /// The simulated payment provider: a signed webhook, as a real one would send. A provider
    /// redelivers the same notice (same reference) until it is acknowledged; orders records a
    /// reference once.
    func pay(intent: String, total: [String: Any]) async throws {
        let providerRef = "sim-\(UUID().uuidString.prefix(12))"
        let body = try JSONSerialization.data(withJSONObject: [
            "providerRef": providerRef, "paymentIntentId": intent, "amount": total, "status": "succeeded",
        ])
        let signature = WebhookSignature.header(body: body, timestamp: Int(Date().timeIntervalSince1970), secret: webhookSecret)
        let (status, answer) = try await call(
            "POST", "\(orders)/payments/webhook", json: String(decoding: body, as: UTF8.self), headers: [WebhookSignature.headerName: signature])
        guard status == 200 else { throw Failure(description: "payment webhook refused: \(status) \(answer)") }
        if let order = answer["orderId"] as? String { await resilience?.ledger.paid(order: order, providerRef: providerRef) }
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
