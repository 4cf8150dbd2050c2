@testable import NotificationsService
import Domain
import FissionTesting
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Postgres
import ServiceKit
import Synchronization
import Testing

func withNotificationsDatabase<T>(isolation: isolated (any Actor)? = #isolation, _ body: (PostgresPool) async throws -> T) async throws -> T {
    try await withTestPool(options: .init(maxConnections: 8)) { pool in
        _ = try await Migrator(migrations: try NotificationsService.migrations()).migrate(pool)
        return try await body(pool)
    }
}

func handle<Payload: DomainEvent>(_ event: CloudEvent<Payload>, on pool: PostgresPool,
                                  _ handler: @escaping @Sendable (CloudEvent<Payload>, PostgresConnection) async throws -> Void) async throws {
    try await pool.withTransaction { try await handler(event, $0) }
}

func inbox(_ user: String, on pool: PostgresPool) async throws -> [(title: String, body: String, count: Int)] {
    try await pool.query(
        "SELECT title, body, digest_count FROM notifications WHERE user_id = \(user) AND visible_at <= now() ORDER BY seq DESC"
    ).map { (try $0.decode("title"), try $0.decode("body"), try $0.decode("digest_count")) }
}

func help(task: TaskID, helper: String, cut: Int64, left: Int64, helpersLeft: Int) -> CloudEvent<AssistRecorded> {
    CloudEvent(AssistRecorded(
        taskId: task, campaignId: CampaignID(), initiatorId: "u-li", helpId: HelpID(), helperId: UserID(rawValue: helper),
        cut: Money(cut, .cny), priceNow: Money(left, .cny), amountLeft: Money(left, .cny), helperCount: 1, helpersLeftAtMost: helpersLeft,
        newUser: false, recordedAt: Date()))
}

@Suite("Notifications")
struct NotificationsTests {
    @Test func aHelpBecomesOneLocalizedMessageDeDuplicatedByItsEvent() async throws {
        try await withNotificationsDatabase { pool in
            let event = help(task: TaskID(), helper: "Li Wei", cut: 320, left: 410, helpersLeft: 3)
            try await handle(event, on: pool, NotificationHandlers.assistRecorded)
            try await handle(event, on: pool, NotificationHandlers.assistRecorded)
            let messages = try await inbox("u-li", on: pool)
            #expect(messages.count == 1)
            #expect(messages.first?.body == "Li Wei 帮你砍了 ¥3.20，还差 ¥4.10，最多还需 3 位好友")
            try await pool.query("INSERT INTO preferences (user_id, locale) VALUES ('u-li', 'en')")
            try await handle(help(task: TaskID(), helper: "Zhang Min", cut: 100, left: 310, helpersLeft: 2), on: pool, NotificationHandlers.assistRecorded)
            #expect(try await inbox("u-li", on: pool).first?.body == "Zhang Min helped you cut ¥1.00 — ¥3.10 and at most 2 friends to go")
        }
    }

    /// A consumer batch is notified in one call; what it leaves behind must be what taking its
    /// events one at a time leaves: the same messages in the same order, the same folds, caps,
    /// mutes and de-duplication, and an inbox event per message delivered.
    @Test func aBatchOfFactsEndsAsTheSameMessagesAsTakingThemOneAtATime() async throws {
        let taskA = TaskID(), taskB = TaskID(), campaign = CampaignID()
        func helpOn(_ task: TaskID, _ user: UserID, _ helper: String, left: Int64) -> CloudEvent<AssistRecorded> {
            CloudEvent(AssistRecorded(
                taskId: task, campaignId: campaign, initiatorId: user, helpId: HelpID(), helperId: UserID(rawValue: helper),
                cut: Money(10, .cny), priceNow: Money(left, .cny), amountLeft: Money(left, .cny), helperCount: 1, helpersLeftAtMost: 5,
                newUser: false, recordedAt: Date()))
        }
        let earlier = helpOn(taskB, "u-fold", "h-0", left: 900)
        let repeated = helpOn(taskA, "u-a", "h-2", left: 980)
        var messages: [Notifier.Message] = [
            helpOn(taskA, "u-a", "h-1", left: 990), repeated, repeated, helpOn(taskB, "u-fold", "h-3", left: 890),
            helpOn(taskA, "u-a", "h-4", left: 970), helpOn(TaskID(), "u-muted", "h-5", left: 500),
        ].map { event in
            Notifier.Message(user: event.data.initiatorId, category: "assistRecorded", values: ["helper": event.data.helperId.rawValue,
                             "left": event.data.amountLeft.formatted, "cut": "¥0.10", "helpers": "5"],
                             cause: event.id, digestKey: "task:\(event.data.taskId)", campaign: campaign, correlation: nil)
        }
        // Seven milestones against a daily cap of five, and another user's order in between.
        for index in 0..<7 {
            messages.append(Notifier.Message(user: "u-promo", category: "xpMilestone", values: ["xp": String(index * 100)], cause: EventID(),
                                             correlation: nil))
            if index == 3 {
                messages.append(Notifier.Message(user: "u-a", category: "orderPaid", values: ["amount": "¥9.90"], cause: EventID(), correlation: nil))
            }
        }

        func outcome(batched: Bool) async throws -> (inboxes: [String], delivered: [String]) {
            try await withNotificationsDatabase { pool in
                try await pool.query("INSERT INTO preferences (user_id, muted) VALUES ('u-muted', '{assistRecorded}')")
                try await pool.query(
                    """
                    INSERT INTO campaign_templates (campaign_id, category, locale, title, body)
                    VALUES (\(campaign.rawValue), 'assistRecorded', 'zh-CN', '助力', '{helper} 帮你砍了 {cut}')
                    """)
                try await handle(earlier, on: pool, NotificationHandlers.assistRecorded)
                if batched {
                    try await pool.withTransaction { try await Notifier.notify(messages, on: $0) }
                } else {
                    try await pool.withTransaction { connection in
                        for message in messages { try await Notifier.notify([message], on: connection) }
                    }
                }
                let inboxes = try await pool.query(
                    "SELECT user_id, category, title, body, digest_count FROM notifications ORDER BY seq"
                ).map { row -> String in
                    let user: String = try row.decode("user_id"), category: String = try row.decode("category")
                    let title: String = try row.decode("title"), body: String = try row.decode("body"), count: Int = try row.decode("digest_count")
                    return "\(user) \(category) \(title) | \(body) ×\(count)"
                }
                let delivered = try await emitted(NotificationDelivered.self, on: pool).map { "\($0.userId) \($0.category) \($0.causeEventId)" }
                return (inboxes, delivered)
            }
        }
        let alone = try await outcome(batched: false)
        let together = try await outcome(batched: true)
        #expect(together.inboxes == alone.inboxes)
        #expect(together.delivered == alone.delivered)
        // And what that is: u-fold's earlier message folded (2), task A's three distinct helps in
        // one digest, the order, five milestones, nothing for the muted user.
        #expect(alone.inboxes.count == 8, "\(alone.inboxes)")
        #expect(alone.inboxes.filter { $0.hasPrefix("u-promo") }.count == 5)
        #expect(alone.inboxes.contains { $0.hasPrefix("u-fold assistRecorded") && $0.hasSuffix("×2") })
        #expect(alone.inboxes.contains { $0.hasPrefix("u-a assistRecorded") && $0.hasSuffix("×3") })
        #expect(!alone.inboxes.contains { $0.hasPrefix("u-muted") })
        let expectedDeliveries = 11  // the earlier help, four helps (the repeated one once, the muted one not), the order, five milestones
        #expect(alone.delivered.count == expectedDeliveries)
    }

    @Test func tenHelpsInAMinuteFoldIntoOneDigest() async throws {
        try await withNotificationsDatabase { pool in
            let task = TaskID()
            for index in 0..<10 {
                try await handle(help(task: task, helper: "u-\(index)", cut: 10, left: 1000 - Int64(index) * 10, helpersLeft: 20 - index),
                                 on: pool, NotificationHandlers.assistRecorded)
            }
            let messages = try await inbox("u-li", on: pool)
            #expect(messages.count == 1)
            #expect(messages.first?.count == 10)
            #expect(messages.first?.title == "10 位好友帮你砍价")
            #expect(try await pool.query("SELECT count(*)::int8 AS n FROM outbox_history").single().decode("n", as: Int.self) == 10,
                    "each help is still a delivery fact")
        }
    }

    @Test func mutedCategoriesAreSkippedAndQuietHoursHoldNonUrgentMessages() async throws {
        try await withNotificationsDatabase { pool in
            try await pool.query("INSERT INTO preferences (user_id, muted) VALUES ('u-li', '{orderPaid}')")
            try await handle(CloudEvent(OrderPaid(orderId: OrderID(), userId: "u-li", campaignId: CampaignID(), purpose: .plain,
                                                  amount: Money(2990, .cny), firstPurchase: true, paidAt: Date())), on: pool, NotificationHandlers.orderPaid)
            #expect(try await inbox("u-li", on: pool).isEmpty)
            // Quiet all day long (0–23 h local) for u-wang: helps wait, refunds do not.
            try await pool.query("INSERT INTO preferences (user_id, quiet_start, quiet_end) VALUES ('u-wang', 0, 0)")
            let now = Date()
            let end = Notifier.quietHoursEnd(now: now, start: 22, end: 8, offsetMinutes: 0)
            let hour = Int(now.timeIntervalSince1970) % 86_400 / 3600
            // Promotional messages stop at five a day.
            for total in stride(from: 100, through: 800, by: 100) {
                try await handle(CloudEvent(XPAwarded(userId: "u-promo", entryId: LedgerEntryID(), rule: .ownPurchase, points: 100,
                                                      causeEventId: EventID(), totalXP: total, awardedAt: Date())), on: pool, NotificationHandlers.xpAwarded)
            }
            #expect(try await inbox("u-promo", on: pool).count == 5)
            #expect((hour >= 22 || hour < 8) ? end > now : end == now)
            // Quiet from the hour before to two hours after the one the test started in: at least
            // an hour of margin however slowly a busy machine runs the test (with quiet hours
            // ending at the next hour, a run that crossed it found the level change not held).
            try await pool.query("UPDATE preferences SET quiet_start = \((hour + 23) % 24), quiet_end = \((hour + 2) % 24), time_zone_offset_minutes = 0 WHERE user_id = 'u-wang'")
            try await handle(CloudEvent(LevelChanged(userId: "u-wang", fromLevel: 1, toLevel: 2, totalXP: 12, changedAt: Date())),
                             on: pool, NotificationHandlers.levelChanged)
            try await handle(CloudEvent(OrderRefunded(orderId: OrderID(), userId: "u-wang", campaignId: CampaignID(), quantity: 1,
                                                      amount: Money(2990, .cny), reason: .teamExpired, refundedAt: Date())),
                             on: pool, NotificationHandlers.orderRefunded)
            let visible = try await inbox("u-wang", on: pool)
            #expect(visible.map(\.body) == ["你的团已过期，¥29.90 正在退回"], "the level change waits for quiet hours to end")
            let held = try await pool.query("SELECT count(*)::int8 AS n FROM notifications WHERE user_id = 'u-wang' AND visible_at > now()")
                .single().decode("n", as: Int.self)
            #expect(held == 1)
        }
    }

    @Test func merchantWebhooksAreSignedRetriedWithBackoffAndEveryAttemptRecorded() async throws {
        try await withNotificationsDatabase { pool in
            // A merchant endpoint that fails once, then accepts.
            let received = Mutex<[(signature: String, body: String)]>([])
            let calls = Mutex(0)
            let router = Router()
            router.post("/hook") { request, _ -> HTTPResponse.Status in
                let body = String(buffer: try await request.body.collect(upTo: 1 << 20))
                received.withLock { $0.append((request.headers[HTTPField.Name("X-Fission-Signature")!] ?? "", body)) }
                let call = calls.withLock { count in
                    count += 1
                    return count
                }
                return call <= 2 ? .internalServerError : .ok
            }
            let receiver = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
            try await receiver.test(.live) { client in
                let port = try #require(client.port)
                let campaign = CampaignID()
                let secret = "merchant-secret-0123456789"
                try await pool.query(
                    """
                    INSERT INTO campaign_merchants (campaign_id, merchant_id, title) VALUES (\(campaign.rawValue), 'm-tea', 'tea');
                    """)
                try await pool.query(
                    """
                    INSERT INTO webhook_subscriptions (id, merchant_id, url, secret, categories)
                    VALUES (\(UUID()), 'm-tea', \("http://127.0.0.1:\(port)/hook"), \(secret), \(["orderPaid"]))
                    """)
                let paid = CloudEvent(OrderPaid(orderId: OrderID(), userId: "u-li", campaignId: campaign, purpose: .plain,
                                                amount: Money(2990, .cny), firstPurchase: false, paidAt: Date()))
                try await handle(paid, on: pool, NotificationHandlers.orderPaid)
                try await handle(paid, on: pool, NotificationHandlers.orderPaid)  // redelivered: still one delivery
                let scheduler = Scheduler(pool: pool, handlers: NotificationsService.scheduledJobs)
                try await scheduler.runDueJobs()
                #expect(calls.withLock { $0 } == 1)
                // The retry waits its backoff; pretend the time has come.
                try await pool.query("UPDATE scheduled_jobs SET due_at = now() - interval '1 second'")
                try await scheduler.runDueJobs()
                #expect(calls.withLock { $0 } == 2)
                try await pool.query("UPDATE scheduled_jobs SET due_at = now() - interval '1 second'")
                try await scheduler.runDueJobs()
                #expect(calls.withLock { $0 } == 3)
                let attempts = try await pool.query("SELECT attempt, status FROM webhook_attempts ORDER BY id").map {
                    [try $0.decode("attempt", as: Int.self), try $0.decode("status", as: Int.self)]
                }
                #expect(attempts == [[1, 500], [2, 500], [3, 200]])
                #expect(received.withLock { $0.count } == 3, "two failed tries, then the message once")
                let delivered = try await pool.query("SELECT payload FROM outbox_history WHERE event_type = \(NotificationDelivered.eventType)").map {
                    try EventCoding.decode(NotificationDelivered.self, from: Array(try $0.decode("payload", as: String.self).utf8)).data.channel
                }
                #expect(delivered.contains(.webhook))
                let state = try await pool.query("SELECT state FROM webhook_deliveries").single().decode("state", as: String.self)
                #expect(state == "delivered")
                let (signature, body) = try #require(received.withLock { $0.last })
                let timestamp = Int(signature.split(separator: ",").first!.dropFirst(2))!
                #expect(WebhookSignature.header(body: Data(body.utf8), timestamp: timestamp, secret: secret) == signature)
                #expect(body.contains(paid.id.description))
            }
        }
    }

    /// Found by `make fuzz`: an offset beyond the column's range was a 500.
    @Test func preferencesRefuseATimeZoneOffsetNoZoneHas() async throws {
        try await withTestDatabase { database in
            let secret = "notifications-test-secret-0123456789abc"
            var logger = Logger(label: "notifications-test")
            logger.logLevel = .warning
            let settings = ServiceSettings(
                serviceName: "notifications", port: 0, database: database, databasePoolSize: 4,
                kafkaBrokers: try await TestKafka.shared.bootstrapServers(), tokenKeys: .sharedSecret(secret), localBroker: true)
            let app = try await NotificationsService.makeApplication(settings: settings, logger: logger)
            let token = try await DevelopmentTokenIssuer(secret: secret).token(for: "u-prefs", roles: [.shopper])
            try await app.test(.live) { client in
                let headers: HTTPFields = [.authorization: "Bearer \(token)", .contentType: "application/json"]
                for offset in [24_854_139_914, 841, -721] {
                    let response = try await client.execute(
                        uri: "/preferences", method: .put, headers: headers,
                        body: ByteBuffer(string: "{\"locale\":\"en\",\"muted\":[],\"timeZoneOffsetMinutes\":\(offset)}"))
                    #expect(response.status == .unprocessableContent, "\(offset): \(String(buffer: response.body))")
                    #expect(response.headers[.contentType] == "application/problem+json")
                }
                let fine = try await client.execute(
                    uri: "/preferences", method: .put, headers: headers,
                    body: ByteBuffer(string: "{\"locale\":\"en\",\"muted\":[],\"timeZoneOffsetMinutes\":-300}"))
                #expect(fine.status == .ok, "\(String(buffer: fine.body))")
            }
        }
    }

    @Test func inboxPagesCountsUnreadAndMarksRead() async throws {
        try await withTestDatabase { database in
            let secret = "notifications-test-secret-0123456789abc"
            // A reader of its own: other tests publish events for their users to the shared broker,
            // and this test's service consumes them into its inbox.
            let reader = UserID(rawValue: "u-reader-\(UUID().uuidString.prefix(8))")
            var logger = Logger(label: "notifications-test")
            logger.logLevel = .warning
            let settings = ServiceSettings(
                serviceName: "notifications", port: 0, database: database, databasePoolSize: 8,
                kafkaBrokers: try await TestKafka.shared.bootstrapServers(), tokenKeys: .sharedSecret(secret), localBroker: true)
            let app = try await NotificationsService.makeApplication(settings: settings, logger: logger)
            let pool = PostgresPool(configuration: database, options: .init(maxConnections: 4))
            for index in 0..<25 {
                try await handle(CloudEvent(LevelChanged(userId: reader, fromLevel: index, toLevel: index + 1, totalXP: index, changedAt: Date())),
                                 on: pool, NotificationHandlers.levelChanged)
            }
            let token = try await DevelopmentTokenIssuer(secret: secret).token(for: reader, roles: [.shopper])
            try await app.test(.live) { client in
                let headers: HTTPFields = [.authorization: "Bearer \(token)"]
                let first = try await client.execute(uri: "/inbox?limit=10", method: .get, headers: headers)
                let page = try JSONSerialization.jsonObject(with: Data(first.body.readableBytesView)) as! [String: Any]
                #expect((page["items"] as? [Any])?.count == 10)
                #expect(page["unread"] as? Int == 25)
                let cursor = try #require(page["nextCursor"] as? Int)
                let second = try await client.execute(uri: "/inbox?limit=10&cursor=\(cursor)", method: .get, headers: headers)
                let items = (try JSONSerialization.jsonObject(with: Data(second.body.readableBytesView)) as! [String: Any])["items"] as! [[String: Any]]
                #expect(items.count == 10)
                #expect((items.first?["seq"] as? Int ?? 0) < cursor)
                let id = try #require(items.first?["id"] as? String)
                let read = try await client.execute(uri: "/inbox/\(id)/read", method: .post, headers: headers)
                #expect(String(buffer: read.body).contains("24"))
                _ = try await client.execute(uri: "/inbox/read-all", method: .post, headers: headers)
                let count = try await client.execute(uri: "/inbox/unread-count", method: .get, headers: headers)
                #expect(String(buffer: count.body).contains("\"unread\":0"))
                let other = try await DevelopmentTokenIssuer(secret: secret).token(for: "u-zhang", roles: [.shopper])
                #expect(try await client.execute(uri: "/inbox/\(id)/read", method: .post, headers: [.authorization: "Bearer \(other)"]).status == .notFound)
            }
            await pool.close()
        }
    }
}

@Suite("Notifications contracts")
struct NotificationsContractTests {
    static let contracts = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Shared/Contracts")

    @Test func everyConsumedExampleIsHandledAndWhatIsEmittedValidates() async throws {
        try await withNotificationsDatabase { pool in
            for topic in Topics.all where topic.consumers.contains(.notifications) {
                #expect(NotificationsService.consumedTopics.contains(topic.name), "\(topic.name)")
            }
            for handler in NotificationsService.eventHandlers {
                let example = try Data(contentsOf: Self.contracts.appendingPathComponent("examples/\(handler.eventType).example.json"))
                try await pool.withTransaction { try await handler(Array(example), on: $0) }
            }
            #expect(try await pool.query("SELECT count(*)::int8 AS n FROM notifications").single().decode("n", as: Int.self) >= 6)
            let emitted = try await Contracts.validateEmitted(on: pool)
            #expect(emitted.types.contains(NotificationDelivered.eventType))
            #expect(emitted.problems == nil, "\(emitted.problems ?? "")")
        }
    }
}
