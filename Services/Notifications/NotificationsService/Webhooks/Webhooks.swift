import Crypto
import Domain
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hummingbird
import Postgres
import ServiceKit

/// Merchant webhooks (their systems, chat-group bots): signed like the payment provider signs
/// ours (`X-Fission-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`), retried with
/// exponential backoff and jitter, every attempt recorded; a subscription that keeps failing is
/// disabled.
enum Webhooks {
    static let deliveryJob = "webhook-delivery"
    static let maxAttempts = 8
    static let disableAfterConsecutiveFailures = 20
    static let categories: Set<String> = ["orderPaid", "teamCompleted", "taskCompleted"]

    /// Queues a delivery for every subscription of the campaign's merchant that wants `category`.
    static func enqueue<Payload: DomainEvent>(category: String, campaign: CampaignID, event: CloudEvent<Payload>, on connection: PostgresConnection) async throws {
        let subscriptions = try await connection.query(
            """
            SELECT s.id FROM webhook_subscriptions s JOIN campaign_merchants c ON c.merchant_id = s.merchant_id
            WHERE c.campaign_id = \(campaign.rawValue) AND s.disabled_at IS NULL AND \(category) = ANY(s.categories)
            """)
        let payload = String(decoding: try EventCoding.encode(event), as: UTF8.self)
        for row in subscriptions {
            let delivery = UUID()
            let inserted = try await connection.query(
                """
                INSERT INTO webhook_deliveries (id, subscription_id, cause_event_id, category, payload, state)
                VALUES (\(delivery), \(try row.decode("id", as: UUID.self)), \(event.id.rawValue), \(category), \(payload), 'pending')
                ON CONFLICT DO NOTHING
                """).affectedRows == 1
            if inserted { try await Schedule.at(Date(), kind: deliveryJob, key: delivery.uuidString.lowercased(), on: connection) }
        }
    }

    /// One attempt of one delivery (a scheduled job). A failure reschedules with backoff.
    static func deliver(_ job: ScheduledJob, _ connection: PostgresConnection) async throws {
        guard let id = UUID(uuidString: job.key), let row = try await connection.query(
            """
            SELECT d.id, d.payload, d.attempts, d.cause_event_id, d.category, s.id AS subscription, s.merchant_id, s.url, s.secret,
                   s.disabled_at, s.consecutive_failures
            FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id
            WHERE d.id = \(id) AND d.state = 'pending' FOR UPDATE OF d
            """).first else { return }
        guard try row.decode("disabled_at", as: Date?.self) == nil else {
            try await connection.query("UPDATE webhook_deliveries SET state = 'failed' WHERE id = \(id)")
            return
        }
        let attempt = try row.decode("attempts", as: Int.self) + 1
        let body = Data(try row.decode("payload", as: String.self).utf8)
        var request = URLRequest(url: URL(string: try row.decode("url"))!)
        request.httpMethod = "POST"
        request.timeoutInterval = 5
        request.httpBody = body
        request.setValue("application/cloudevents+json", forHTTPHeaderField: "Content-Type")
        request.setValue(WebhookSignature.header(body: body, timestamp: Int(Date().timeIntervalSince1970), secret: try row.decode("secret")),
                         forHTTPHeaderField: WebhookSignature.headerName)
        var status: Int?
        var failure: String?
        do {
            let (_, response) = try await URLSession.shared.data(for: request)
            status = (response as? HTTPURLResponse)?.statusCode
            if !(200..<300).contains(status ?? 0) { failure = "HTTP \(status ?? 0)" }
        } catch {
            failure = String(describing: error).prefix(500).description
        }
        try await connection.query(
            "INSERT INTO webhook_attempts (delivery_id, attempt, status, error) VALUES (\(id), \(attempt), \(status), \(failure))")
        let subscription = try row.decode("subscription", as: UUID.self)
        if failure == nil {
            try await connection.query("UPDATE webhook_deliveries SET state = 'delivered', attempts = \(attempt) WHERE id = \(id)")
            try await connection.query("UPDATE webhook_subscriptions SET consecutive_failures = 0 WHERE id = \(subscription)")
            try await Outbox.append(
                NotificationDelivered(
                    notificationId: NotificationID(rawValue: id), userId: UserID(rawValue: try row.decode("merchant_id")),
                    category: try row.decode("category"), channel: .webhook,
                    causeEventId: EventID(rawValue: try row.decode("cause_event_id")), deliveredAt: Date()),
                correlationID: nil, on: connection)
            return
        }
        let failures = try await connection.query(
            "UPDATE webhook_subscriptions SET consecutive_failures = consecutive_failures + 1 WHERE id = \(subscription) RETURNING consecutive_failures"
        ).single().decode("consecutive_failures", as: Int.self)
        let disable = failures >= disableAfterConsecutiveFailures
        if disable { try await connection.query("UPDATE webhook_subscriptions SET disabled_at = now() WHERE id = \(subscription)") }
        if attempt >= maxAttempts || disable {
            try await connection.query("UPDATE webhook_deliveries SET state = 'failed', attempts = \(attempt) WHERE id = \(id)")
            try await Outbox.append(
                WebhookDeliveryFailed(
                    notificationId: NotificationID(rawValue: id), subscriptionId: SubscriptionID(rawValue: subscription), attempts: attempt,
                    lastStatus: status, disabled: disable, failedAt: Date()),
                correlationID: nil, on: connection)
            return
        }
        try await connection.query("UPDATE webhook_deliveries SET attempts = \(attempt) WHERE id = \(id)")
        // Exponential backoff with full jitter: 1 s, 2 s, 4 s, … capped at 10 minutes.
        let ceiling = min(pow(2.0, Double(attempt - 1)), 600)
        try await Schedule.at(Date().addingTimeInterval(ceiling / 2 + Double.random(in: 0...(ceiling / 2))),
                              kind: deliveryJob, key: job.key, on: connection)
    }
}

struct WebhookRoutes {
    let runtime: ServiceRuntime

    struct NewSubscription: Codable {
        var url: String
        var categories: [String]
    }

    struct SubscriptionView: ResponseEncodable, Codable {
        var id: SubscriptionID
        var url: String
        var categories: [String]
        /// Shown once, at creation: the key to check signatures with.
        var secret: String?
        var disabled: Bool
    }

    struct Attempt: ResponseEncodable, Codable {
        var deliveryId: UUID
        var category: String
        var attempt: Int
        var status: Int?
        var error: String?
        var at: Date
    }

    func register(on api: RouterGroup<FissionRequestContext>) {
        api.post("/webhooks", use: subscribe)
        api.get("/webhooks/{id}/attempts", use: attempts)
    }

    @Sendable func subscribe(_ request: Request, context: FissionRequestContext) async throws -> Response {
        let merchant = try context.require(.merchant)
        return try await runtime.idempotency.run(request, context: context, scope: merchant.userID.rawValue, keyRequired: false) { body, connection in
            let subscription = try decodeBody(NewSubscription.self, from: body)
            guard let url = URL(string: subscription.url), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
                throw Problem.invalidField("url", "must be an http(s) URL")
            }
            guard !subscription.categories.isEmpty, Set(subscription.categories).isSubset(of: Webhooks.categories) else {
                throw Problem.invalidField("categories", "choose from \(Webhooks.categories.sorted().joined(separator: ", "))")
            }
            let id = SubscriptionID()
            let secret = CommittedRandomness.newSeed()
            try await connection.query(
                """
                INSERT INTO webhook_subscriptions (id, merchant_id, url, secret, categories)
                VALUES (\(id.rawValue), \(merchant.userID.rawValue), \(subscription.url), \(secret), \(subscription.categories))
                """)
            return SubscriptionView(id: id, url: subscription.url, categories: subscription.categories, secret: secret, disabled: false)
        }
    }

    @Sendable func attempts(_ request: Request, context: FissionRequestContext) async throws -> [Attempt] {
        let merchant = try context.require(.merchant)
        let id: SubscriptionID = try context.pathID("id")
        return try await runtime.pool.query(
            """
            SELECT a.delivery_id, d.category, a.attempt, a.status, a.error, a.at FROM webhook_attempts a
            JOIN webhook_deliveries d ON d.id = a.delivery_id JOIN webhook_subscriptions s ON s.id = d.subscription_id
            WHERE s.id = \(id.rawValue) AND s.merchant_id = \(merchant.userID.rawValue) ORDER BY a.id DESC LIMIT 200
            """).map {
            Attempt(deliveryId: try $0.decode("delivery_id"), category: try $0.decode("category"), attempt: try $0.decode("attempt"),
                    status: try $0.decode("status"), error: try $0.decode("error"), at: try $0.decode("at"))
        }
    }
}
