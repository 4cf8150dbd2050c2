@testable import OrdersService
import Domain
import FissionTesting
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Postgres
import ServiceKit
import Testing

let webhookSecret = "whsec-test-0123456789abcdef0123456789"
let tokenSecret = "orders-test-secret-0123456789abcdefghij"

func groupBuy() -> CampaignTerms {
    CampaignTerms(
        kind: .groupBuy, product: Product(sku: "TEA", title: "龙井"), listPrice: Money(3990, .cny), stock: 100, perUserLimit: 3,
        startsAt: Date().addingTimeInterval(-3600), endsAt: Date().addingTimeInterval(86_400),
        groupBuy: GroupBuyRules(teamSize: 3, groupPrice: Money(2990, .cny), leaderPrice: Money(2490, .cny), teamTimeLimitSeconds: 3600))
}

struct OrdersFixture: Sendable {
    let client: any TestClientProtocol
    let pool: PostgresPool
    let issuer: DevelopmentTokenIssuer
    let sagas = OrderSagas(paymentTimeout: .seconds(900))

    func publish(_ terms: CampaignTerms = groupBuy()) async throws -> CampaignID {
        let id = CampaignID()
        try await pool.withTransaction { connection in
            try await ReadModels.campaignPublished(
                CloudEvent(CampaignPublished(campaignId: id, merchantId: "m-tea", terms: terms, publishedAt: Date())), connection)
        }
        return id
    }

    func call(_ method: HTTPRequest.Method, _ uri: String, as user: String = "u-li", roles: [Role] = [.shopper], json: String? = nil,
              headers extra: HTTPFields = [:]) async throws -> TestResponse {
        var headers = extra
        headers[.authorization] = "Bearer \(try await issuer.token(for: UserID(rawValue: user), roles: roles))"
        if json != nil { headers[.contentType] = "application/json" }
        return try await client.execute(uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) })
    }

    /// Places an order over HTTP and lets campaigns' reservation arrive.
    func placeAndReserve(_ campaign: CampaignID, purpose: String = "openTeam", user: String = "u-li", team: TeamID? = nil) async throws -> OrderView {
        let teamField = team.map { ",\"teamId\":\"\($0)\"" } ?? ""
        let response = try await call(
            .post, "/orders", as: user, json: "{\"campaignId\":\"\(campaign)\",\"purpose\":\"\(purpose)\"\(teamField)}",
            headers: [.idempotencyKey: UUID().uuidString])
        let order = try JSONDecoder.fission.decode(OrderView.self, from: Data(response.body.readableBytesView))
        try await pool.withTransaction { connection in
            try await sagas.stockReserved(
                CloudEvent(StockReserved(campaignId: campaign, orderId: order.orderId, userId: order.userId, quantity: 1, stockLeft: 50)), connection)
        }
        return try await pool.withConnection { try await OrderBook.find(order.orderId, on: $0)! }
    }

    func pay(_ order: OrderView, amount: Money? = nil, reference: String = UUID().uuidString, secret: String = webhookSecret,
             at time: Date = Date()) async throws -> TestResponse {
        let body = try JSONEncoder.fission.encode(PaymentWebhook.Notice(
            providerRef: reference, paymentIntentId: order.paymentIntentId ?? "", amount: amount ?? order.total, status: "succeeded"))
        let signature = PaymentWebhook.signature(body: body, timestamp: Int(time.timeIntervalSince1970), secret: secret)
        return try await client.execute(
            uri: "/payments/webhook", method: .post, headers: [PaymentWebhook.signatureHeader: signature, .contentType: "application/json"],
            body: ByteBuffer(data: body))
    }

    func state(_ order: OrderView) async throws -> OrderState {
        try await pool.withConnection { try await OrderBook.find(order.orderId, on: $0)!.state }
    }

    func emitted<Payload: DomainEvent>(_ type: Payload.Type) async throws -> [Payload] {
        try await FissionTesting.emitted(type, on: pool)
    }
}

func withOrders(_ body: @escaping @Sendable (OrdersFixture) async throws -> Void) async throws {
    try await withTestDatabase { database in
        var logger = Logger(label: "orders-test")
        logger.logLevel = .warning
        let settings = ServiceSettings(
            serviceName: "orders", port: 0, database: database, databasePoolSize: 8,
            kafkaBrokers: try await TestKafka.shared.bootstrapServers(), tokenKeys: .sharedSecret(tokenSecret), localBroker: true)
        let app = try await OrdersService.makeApplication(settings: settings, options: .init(webhookSecret: webhookSecret), logger: logger)
        let pool = PostgresPool(configuration: database, options: .init(maxConnections: 8))
        let issuer = await DevelopmentTokenIssuer(secret: tokenSecret)
        try await app.test(.live) { client in
            try await body(OrdersFixture(client: client, pool: pool, issuer: issuer))
        }
        await pool.close()
    }
}

@Suite("Orders")
struct OrdersTests {
    @Test func sameIdempotencyKeyPlacedTwentyTimesConcurrentlyMakesOneOrder() async throws {
        try await withOrders { orders in
            let campaign = try await orders.publish()
            let port = try #require(orders.client.port)
            let token = try await orders.issuer.token(for: "u-li", roles: [.shopper])
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/orders")!)
                        request.httpMethod = "POST"
                        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
                        request.setValue("same-key-1", forHTTPHeaderField: "Idempotency-Key")
                        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                        request.httpBody = Data("{\"campaignId\":\"\(campaign)\",\"purpose\":\"plain\"}".utf8)
                        let (_, response) = try await URLSession.shared.data(for: request)
                        return (response as? HTTPURLResponse)?.statusCode ?? 0
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 201, count: 20))
            let count = try await orders.pool.query("SELECT count(*)::int8 AS n FROM orders").single().decode("n", as: Int.self)
            #expect(count == 1)
            #expect(try await orders.emitted(OrderPlaced.self).count == 1)
        }
    }

    @Test func aClientSuppliedPriceIsIgnored() async throws {
        try await withOrders { orders in
            let campaign = try await orders.publish()
            let response = try await orders.call(
                .post, "/orders",
                json: "{\"campaignId\":\"\(campaign)\",\"purpose\":\"plain\",\"total\":{\"amount\":1,\"currency\":\"CNY\"},\"price\":1}",
                headers: [.idempotencyKey: "k"])
            #expect(response.status == .created)
            let order = try JSONDecoder.fission.decode(OrderView.self, from: Data(response.body.readableBytesView))
            #expect(order.total == Money(3990, .cny))
            let leader = try await orders.call(.post, "/orders", json: "{\"campaignId\":\"\(campaign)\",\"purpose\":\"openTeam\"}", headers: [.idempotencyKey: "k2"])
            #expect(try JSONDecoder.fission.decode(OrderView.self, from: Data(leader.body.readableBytesView)).total == Money(2490, .cny))
            let noKey = try await orders.call(.post, "/orders", json: "{\"campaignId\":\"\(campaign)\",\"purpose\":\"plain\"}")
            #expect(noKey.status == .badRequest)
            let bargain = try await orders.call(
                .post, "/orders", json: "{\"campaignId\":\"\(campaign)\",\"purpose\":\"bargain\",\"taskId\":\"\(TaskID())\"}", headers: [.idempotencyKey: "k3"])
            #expect(bargain.status == .conflict, "no completed task: no bargain price")
        }
    }

    /// Found by `make fuzz`: a task id sent with another purpose was stored as the order's task,
    /// and a second order of a task failed on the one-order-per-task index with a 500.
    @Test func aTaskHasOneOrderAndOnlyTaskOrdersClaimIt() async throws {
        try await withOrders { orders in
            let bargain = CampaignTerms(
                kind: .bargain, product: Product(sku: "POT", title: "紫砂壶"), listPrice: Money(9900, .cny), stock: 10, perUserLimit: 3,
                startsAt: Date().addingTimeInterval(-3600), endsAt: Date().addingTimeInterval(86_400),
                bargain: BargainRules(floorPrice: Money(100, .cny), maxHelpers: 5, firstCutMin: Money(500, .cny), firstCutMax: Money(1500, .cny),
                                      taskTimeLimitSeconds: 3600, payWindowSeconds: 1800, allowBuyAboveFloor: true))
            let campaign = try await orders.publish(bargain)
            let task = TaskID()
            try await orders.pool.query(
                """
                INSERT INTO completed_tasks (task_id, campaign_id, initiator_id, kind, final_price, currency, pay_by)
                VALUES (\(task.rawValue), \(campaign.rawValue), 'u-li', 'bargain', 100, 'CNY', now() + interval '30 minutes')
                """)
            // Someone else's plain order naming the task does not take the task's order.
            let squatter = try await orders.call(
                .post, "/orders", as: "u-other", json: "{\"campaignId\":\"\(campaign)\",\"purpose\":\"plain\",\"taskId\":\"\(task)\"}",
                headers: [.idempotencyKey: "s1"])
            #expect(squatter.status == .created, "\(String(buffer: squatter.body))")
            #expect(try JSONDecoder.fission.decode(OrderView.self, from: Data(squatter.body.readableBytesView)).taskId == nil)
            let first = try await orders.call(
                .post, "/orders", json: "{\"campaignId\":\"\(campaign)\",\"purpose\":\"bargain\",\"taskId\":\"\(task)\"}",
                headers: [.idempotencyKey: "b1"])
            #expect(first.status == .created, "\(String(buffer: first.body))")
            #expect(try JSONDecoder.fission.decode(OrderView.self, from: Data(first.body.readableBytesView)).total == Money(100, .cny))
            let second = try await orders.call(
                .post, "/orders", json: "{\"campaignId\":\"\(campaign)\",\"purpose\":\"bargain\",\"taskId\":\"\(task)\"}",
                headers: [.idempotencyKey: "b2"])
            #expect(second.status == .conflict, "\(String(buffer: second.body))")
            #expect(second.headers[.contentType] == "application/problem+json")
            #expect(String(buffer: second.body).contains("task-already-ordered"))
        }
    }

    @Test func ladderTiersPriceAJoinByTheSizeTheTeamReaches() async throws {
        try await withOrders { orders in
            var terms = groupBuy()
            terms.groupBuy!.teamSize = 5
            terms.groupBuy!.ladder = [.init(minMembers: 3, price: Money(2590, .cny)), .init(minMembers: 5, price: Money(1990, .cny))]
            let campaign = try await orders.publish(terms)
            let team = TeamID()
            func joinPrice() async throws -> Money {
                let response = try await orders.call(
                    .post, "/orders", json: "{\"campaignId\":\"\(campaign)\",\"purpose\":\"joinTeam\",\"teamId\":\"\(team)\"}",
                    headers: [.idempotencyKey: UUID().uuidString])
                return try JSONDecoder.fission.decode(OrderView.self, from: Data(response.body.readableBytesView)).total
            }
            try await orders.pool.withTransaction { connection in
                try await orders.sagas.teamOpened(CloudEvent(TeamOpened(
                    teamId: team, campaignId: campaign, leaderId: "u-lead", leaderOrderId: OrderID(), teamSize: 5,
                    price: Money(2490, .cny), deadline: Date().addingTimeInterval(3600), openedAt: Date())), connection)
            }
            #expect(try await joinPrice() == Money(2990, .cny), "the second member: no tier yet")
            try await orders.pool.withTransaction { connection in
                try await orders.sagas.memberJoined(CloudEvent(TeamMemberJoined(
                    teamId: team, campaignId: campaign, userId: "u-2", orderId: OrderID(), memberCount: 2, teamSize: 5, joinedAt: Date())), connection)
            }
            #expect(try await joinPrice() == Money(2590, .cny), "the third member reaches the 3-member tier")
            try await orders.pool.withTransaction { connection in
                try await orders.sagas.memberJoined(CloudEvent(TeamMemberJoined(
                    teamId: team, campaignId: campaign, userId: "u-4", orderId: OrderID(), memberCount: 4, teamSize: 5, joinedAt: Date())), connection)
            }
            #expect(try await joinPrice() == Money(1990, .cny))
        }
    }

    @Test func webhookWithBadSignatureStaleTimestampOrWrongAmountChangesNothing() async throws {
        try await withOrders { orders in
            let campaign = try await orders.publish()
            let order = try await orders.placeAndReserve(campaign)
            #expect(order.state == .awaitingPayment)
            #expect(try await orders.pay(order, secret: "not-the-secret-0123456789abcdef").status == .unauthorized)
            #expect(try await orders.pay(order, at: Date().addingTimeInterval(-600)).status == .unauthorized)
            #expect(try await orders.pay(order, amount: Money(1, .cny)).status == .unprocessableContent)
            #expect(try await orders.state(order) == .awaitingPayment)
            #expect(try await orders.emitted(OrderPaid.self).isEmpty)
            let logged = try await orders.pool.query("SELECT count(*)::int8 AS n FROM webhook_log").single().decode("n", as: Int.self)
            #expect(logged == 3)
            let good = try await orders.pay(order, reference: "pay-1")
            #expect(good.status == .ok, "\(String(buffer: good.body))")
            #expect(try await orders.state(order) == .waitingForTeam)
            #expect(try await orders.pay(order, reference: "pay-1").status == .ok, "a redelivered webhook is harmless")
            let paid = try await orders.emitted(OrderPaid.self)
            #expect(paid.count == 1)
            #expect(paid.first?.firstPurchase == true)
        }
    }

    @Test func teamExpiredDeliveredThreeTimesRefundsEachMemberOnce() async throws {
        try await withOrders { orders in
            let campaign = try await orders.publish()
            let team = TeamID()
            var members: [OrderView] = []
            for (index, purpose) in ["openTeam", "joinTeam"].enumerated() {
                let order = try await orders.placeAndReserve(campaign, purpose: purpose, user: "u-\(index)", team: purpose == "joinTeam" ? team : nil)
                _ = try await orders.pay(order)
                members.append(order)
            }
            let expired = CloudEvent(TeamExpired(
                teamId: team, campaignId: campaign,
                members: members.map { TeamMember(userId: $0.userId, orderId: $0.orderId, leader: $0.purpose == .openTeam, virtual: false) },
                expiredAt: Date()))
            for _ in 0..<3 {
                try await orders.pool.withTransaction { try await orders.sagas.teamExpired(expired, $0) }
            }
            let refunds = try await orders.emitted(OrderRefunded.self)
            #expect(refunds.count == 2)
            #expect(Set(refunds.map(\.orderId)) == Set(members.map(\.orderId)))
            #expect(refunds.allSatisfy { $0.reason == .teamExpired })
            for member in members { #expect(try await orders.state(member) == .refunded) }
        }
    }

    @Test func paymentArrivingAfterTheTimeoutCancelledTheOrderIsRefundedNotLost() async throws {
        try await withOrders { orders in
            let campaign = try await orders.publish()
            let order = try await orders.placeAndReserve(campaign, purpose: "plain")
            try await orders.pool.query("UPDATE scheduled_jobs SET due_at = now() - interval '1 second'")
            // The service's own scheduler may take the job first; either way it runs once.
            try await Scheduler(pool: orders.pool, handlers: [OrderBook.paymentTimeoutJob: orders.sagas.paymentTimedOut]).runDueJobs()
            for _ in 0..<200 where try await orders.state(order) != .cancelled {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(try await orders.state(order) == .cancelled)
            let cancelled = try #require(try await orders.emitted(OrderCancelled.self).first)
            #expect(cancelled.reason == .paymentTimeout)
            #expect(cancelled.stockReserved, "campaigns must release the stock")
            #expect(try await orders.pay(order).status == .ok)
            #expect(try await orders.state(order) == .refunded)
            #expect(try await orders.emitted(OrderRefunded.self).map(\.reason) == [.latePayment])
        }
    }

    @Test func plainOrdersConfirmOnPaymentAndTeamsConfirmTheirMembersOnCompletion() async throws {
        try await withOrders { orders in
            let campaign = try await orders.publish()
            let plain = try await orders.placeAndReserve(campaign, purpose: "plain")
            _ = try await orders.pay(plain)
            #expect(try await orders.state(plain) == .confirmed)
            let leader = try await orders.placeAndReserve(campaign, purpose: "openTeam", user: "u-lead")
            _ = try await orders.pay(leader)
            let team = TeamID()
            try await orders.pool.withTransaction { try await orders.sagas.teamCompleted(CloudEvent(TeamCompleted(
                teamId: team, campaignId: campaign,
                members: [TeamMember(userId: leader.userId, orderId: leader.orderId, leader: true, virtual: false), TeamMember(leader: false, virtual: true)],
                virtualMembers: 1, completedAt: Date())), $0) }
            #expect(try await orders.state(leader) == .confirmed)
            let history = try await orders.call(.get, "/orders/\(leader.orderId)", as: "u-lead")
            let view = try JSONDecoder.fission.decode(OrderView.self, from: Data(history.body.readableBytesView))
            #expect(view.history?.map(\.state) == ["placed", "awaiting_payment", "paid", "waiting_for_team", "confirmed"])
            #expect(try await orders.call(.get, "/orders/\(leader.orderId)", as: "u-other").status == .notFound)
            let merchant = try await orders.call(.get, "/campaigns/\(campaign)/orders", as: "m-tea", roles: [.merchant])
            #expect(merchant.status == .ok)
        }
    }

    @Test func stockRejectionCancelsAndCancellationAfterPaymentRefunds() async throws {
        try await withOrders { orders in
            let campaign = try await orders.publish()
            let response = try await orders.call(.post, "/orders", json: "{\"campaignId\":\"\(campaign)\",\"purpose\":\"plain\"}", headers: [.idempotencyKey: "x"])
            let rejected = try JSONDecoder.fission.decode(OrderView.self, from: Data(response.body.readableBytesView))
            try await orders.pool.withTransaction { try await orders.sagas.stockRejected(CloudEvent(StockReservationRejected(
                campaignId: campaign, orderId: rejected.orderId, userId: rejected.userId, quantity: 1, reason: .soldOut)), $0) }
            #expect(try await orders.state(rejected) == .cancelled)
            let waiting = try await orders.placeAndReserve(campaign, purpose: "openTeam")
            _ = try await orders.pay(waiting)
            let cancel = try await orders.call(.post, "/orders/\(waiting.orderId)/cancel")
            #expect(cancel.status == .ok)
            #expect(try await orders.state(waiting) == .refunded)
            #expect(try await orders.emitted(OrderRefunded.self).map(\.reason) == [.shopper])
        }
    }
}
