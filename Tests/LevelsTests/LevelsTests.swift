@testable import LevelsService
import Domain
import FissionTesting
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Postgres
import ServiceKit
import Testing

let levelsSecret = "levels-test-secret-0123456789abcdefghij"

func withLevelsDatabase<T>(isolation: isolated (any Actor)? = #isolation, _ body: (PostgresPool) async throws -> T) async throws -> T {
    try await withTestPool(options: .init(maxConnections: 16)) { pool in
        _ = try await Migrator(migrations: try LevelsService.migrations()).migrate(pool)
        return try await body(pool)
    }
}

func xp(_ user: String, on pool: PostgresPool) async throws -> (xp: Int, level: Int) {
    guard let row = try await pool.query("SELECT xp, earned_level FROM members WHERE user_id = \(user)").first else { return (0, 1) }
    return (try row.decode("xp"), try row.decode("earned_level"))
}

@Suite("XP ledger and levels")
struct LedgerTests {
    let handlers = XPHandlers(ledger: XPLedger(rules: LevelRules()))

    func run<Payload: DomainEvent>(_ event: CloudEvent<Payload>, on pool: PostgresPool,
                                   _ handler: @escaping @Sendable (CloudEvent<Payload>, PostgresConnection) async throws -> Void) async throws {
        try await pool.withTransaction { try await handler(event, $0) }
    }

    @Test func theSameEventDeliveredTwiceAwardsOnceAndEachOpenerCountsOncePerShare() async throws {
        try await withLevelsDatabase { pool in
            let share = ShareID()
            let campaign = CampaignID()
            let click = CloudEvent(ShareClicked(shareId: share, code: "abc", sharerId: "u-alice", campaignId: campaign, clickerId: "u-bob", clickedAt: Date()))
            try await run(click, on: pool, handlers.shareClicked)
            try await run(click, on: pool, handlers.shareClicked)
            // Bob opens the same link again later: a new event, but the same opener and share.
            try await run(CloudEvent(ShareClicked(shareId: share, code: "abc", sharerId: "u-alice", campaignId: campaign, clickerId: "u-bob", clickedAt: Date())),
                          on: pool, handlers.shareClicked)
            // Alice opening her own link and an anonymous open earn nothing.
            try await run(CloudEvent(ShareClicked(shareId: share, code: "abc", sharerId: "u-alice", campaignId: campaign, clickerId: "u-alice", clickedAt: Date())),
                          on: pool, handlers.shareClicked)
            try await run(CloudEvent(ShareClicked(shareId: share, code: "abc", sharerId: "u-alice", campaignId: campaign, clickedAt: Date())),
                          on: pool, handlers.shareClicked)
            #expect(try await xp("u-alice", on: pool).xp == 2)
            #expect(try await emitted(XPAwarded.self, on: pool).count == 1)
        }
    }

    @Test func aRefundAfterConfirmationRevokesExactlyItsAwardAndCanLowerTheLevel() async throws {
        try await withLevelsDatabase { pool in
            let order = OrderID()
            let campaign = CampaignID()
            // Alice is at 8 XP (level 1) from four opens; Bob's order through her link gives her 20.
            for index in 0..<4 {
                try await run(CloudEvent(ShareClicked(shareId: ShareID(), code: "c\(index)", sharerId: "u-alice", campaignId: campaign,
                                                      clickerId: UserID(rawValue: "u-\(index)"), clickedAt: Date())), on: pool, handlers.shareClicked)
            }
            let confirmed = CloudEvent(OrderConfirmed(orderId: order, userId: "u-bob", campaignId: campaign, total: Money(2990, .cny),
                                                      referrerId: "u-alice", confirmedAt: Date()))
            try await run(confirmed, on: pool, handlers.orderConfirmed)
            #expect(try await xp("u-alice", on: pool) == (28, 2))
            #expect(try await xp("u-bob", on: pool) == (5, 1))
            let refunded = CloudEvent(OrderRefunded(orderId: order, userId: "u-bob", campaignId: campaign, quantity: 1, amount: Money(2990, .cny),
                                                    reason: .shopper, referrerId: "u-alice", refundedAt: Date()))
            try await run(refunded, on: pool, handlers.orderRefunded)
            try await run(CloudEvent(refunded.data), on: pool, handlers.orderRefunded)  // redelivered as a new event: still once
            #expect(try await xp("u-alice", on: pool) == (8, 1))
            #expect(try await xp("u-bob", on: pool) == (0, 1))
            let revoked = try await emitted(XPRevoked.self, on: pool)
            #expect(revoked.count == 2)
            #expect(Set(revoked.map(\.points)) == [20, 5])
            let changes = try await emitted(LevelChanged.self, on: pool).filter { $0.userId == "u-alice" }.map { [$0.fromLevel, $0.toLevel] }
            #expect(changes == [[1, 2], [2, 1]])
            // The ledger keeps both the awards and their revocations.
            let entries = try await pool.query("SELECT count(*)::int8 AS n FROM xp_ledger").single().decode("n", as: Int.self)
            #expect(entries == 8)
        }
    }

    @Test func selfReferralNeverEarnsAndDailyCapsHold() async throws {
        try await withLevelsDatabase { pool in
            try await run(CloudEvent(OrderConfirmed(orderId: OrderID(), userId: "u-carol", campaignId: CampaignID(), total: Money(100, .cny),
                                                    referrerId: "u-carol", confirmedAt: Date())), on: pool, handlers.orderConfirmed)
            #expect(try await xp("u-carol", on: pool).xp == 5, "only the own-purchase award")
            var rules = LevelRules()
            rules.dailyCaps[.friendHelped] = 9
            let capped = XPHandlers(ledger: XPLedger(rules: rules))
            for index in 0..<5 {
                try await run(CloudEvent(AssistRecorded(
                    taskId: TaskID(), campaignId: CampaignID(), initiatorId: "u-dan", helpId: HelpID(), helperId: UserID(rawValue: "u-\(index)"),
                    cut: Money(10, .cny), priceNow: Money(100, .cny), amountLeft: Money(100, .cny), helperCount: index + 1,
                    helpersLeftAtMost: 10, newUser: false, recordedAt: Date())), on: pool, capped.assistRecorded)
            }
            #expect(try await xp("u-dan", on: pool).xp == 9)
        }
    }
}

@Suite("Draws")
struct DrawTests {
    @Test func levelWeightsShiftWinRatesAsConfigured() {
        // Weight 1 against weight 3 over many seeds: the heavier entry wins about 3 of 4.
        var heavyWins = 0
        let rounds = 4_000
        for round in 0..<rounds {
            let winners = WeightedDraw.winners(
                seed: "fixed-seed-\(round)", entries: [.init(userID: "light", weight: 1), .init(userID: "heavy", weight: 3)], prizes: 1)
            if winners == ["heavy"] { heavyWins += 1 }
        }
        let rate = Double(heavyWins) / Double(rounds)
        #expect(abs(rate - 0.75) < 0.03, "heavy won \(rate)")
    }

    @Test func moreEntriesThanPrizesAndMorePrizesThanEntrants() {
        let entries = (0..<10).map { WeightedDraw.Entry(userID: "u-\($0)", weight: $0 + 1) }
        let three = WeightedDraw.winners(seed: "s", entries: entries, prizes: 3)
        #expect(Set(three).count == 3)
        #expect(WeightedDraw.winners(seed: "s", entries: entries.shuffled(), prizes: 3) == three, "entry order does not matter")
        #expect(Set(WeightedDraw.winners(seed: "s", entries: entries, prizes: 50)) == Set(entries.map(\.userID)))
    }

    @Test func aDrawOverHTTPIsDrawnOnceAndItsWinnersAreRecomputedFromTheRevealedSeed() async throws {
        try await withTestDatabase { database in
            var logger = Logger(label: "levels-test")
            logger.logLevel = .warning
            let settings = ServiceSettings(
                serviceName: "levels", port: 0, database: database, databasePoolSize: 8,
                kafkaBrokers: try await TestKafka.shared.bootstrapServers(), tokenKeys: .sharedSecret(levelsSecret), localBroker: true)
            let app = try await LevelsService.makeApplication(settings: settings, logger: logger)
            let issuer = await DevelopmentTokenIssuer(secret: levelsSecret)
            let pool = PostgresPool(configuration: database, options: .init(maxConnections: 4))
            try await app.test(.live) { client in
                func call(_ method: HTTPRequest.Method, _ uri: String, as user: String, roles: [Role], json: String? = nil) async throws -> TestResponse {
                    var headers: HTTPFields = [.authorization: "Bearer \(try await issuer.token(for: UserID(rawValue: user), roles: roles))"]
                    if json != nil { headers[.contentType] = "application/json" }
                    return try await client.execute(uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) })
                }
                let closes = EventCoding.formatTimestamp(Date().addingTimeInterval(3600))
                let created = try await call(.post, "/draws", as: "m-tea", roles: [.merchant], json: "{\"prize\":\"龙井 50g\",\"prizeCount\":2,\"closesAt\":\"\(closes)\"}")
                #expect(created.status == .created, "\(String(buffer: created.body))")
                let draw = try JSONDecoder.fission.decode(DrawRoutes.DrawView.self, from: Data(created.body.readableBytesView))
                #expect(draw.seed == nil && draw.seedHash.count == 64)
                // A granted level shows as a grant and weighs in the draw.
                let granted = try await call(.put, "/users/u-3/level-grant", as: "op-1", roles: [.operator], json: "{\"level\":5,\"reason\":\"launch partner\"}")
                #expect(granted.status == .ok)
                let level = try await call(.get, "/users/u-3/level", as: "u-1", roles: [.shopper])
                let view = try JSONSerialization.jsonObject(with: Data(level.body.readableBytesView)) as? [String: Any]
                #expect(view?["level"] as? Int == 5)
                #expect(view?["earnedLevel"] as? Int == 1)
                #expect((view?["grant"] as? [String: Any])?["reason"] as? String == "launch partner")
                for index in 0..<6 {
                    #expect(try await call(.post, "/draws/\(draw.drawId)/entries", as: "u-\(index)", roles: [.shopper]).status == .ok)
                }
                async let first = call(.post, "/draws/\(draw.drawId)/draw", as: "m-tea", roles: [.merchant])
                async let second = call(.post, "/draws/\(draw.drawId)/draw", as: "m-tea", roles: [.merchant])
                let responses = try await [first, second]
                let results = try responses.map { try JSONDecoder.fission.decode(DrawRoutes.DrawView.self, from: Data($0.body.readableBytesView)) }
                #expect(results[0].winners == results[1].winners)
                let drawn = results[0]
                let seed = try #require(drawn.seed)
                #expect(CommittedRandomness.commitment(to: seed) == draw.seedHash)
                let entries = try #require(drawn.entries)
                #expect(entries.first { $0.userID == "u-3" }?.weight == 5)
                #expect(Set(WeightedDraw.winners(seed: seed, entries: entries, prizes: 2)) == Set(drawn.winners))
                #expect(try await emitted(DrawWon.self, on: pool).count == 2, "drawn exactly once")
                let late = try await call(.post, "/draws/\(draw.drawId)/entries", as: "u-9", roles: [.shopper])
                #expect(late.status == .conflict)
            }
            await pool.close()
        }
    }
}

@Suite("Levels contracts")
struct LevelsContractTests {
    static let contracts = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Shared/Contracts")

    @Test func everyConsumedExampleIsHandledAndWhatIsEmittedValidates() async throws {
        try await withLevelsDatabase { pool in
            let handlers = LevelsService.eventHandlers(XPHandlers(ledger: XPLedger(rules: LevelRules())))
            for topic in Topics.all where topic.consumers.contains(.levels) {
                #expect(LevelsService.consumedTopics.contains(topic.name), "\(topic.name)")
            }
            for handler in handlers {
                let example = try Data(contentsOf: Self.contracts.appendingPathComponent("examples/\(handler.eventType).example.json"))
                try await pool.withTransaction { try await handler(Array(example), on: $0) }
            }
            let emitted = try await Contracts.validateEmitted(on: pool)
            let types = emitted.types
            #expect(types.isSuperset(of: [XPAwarded.eventType, XPRevoked.eventType]), "\(types)")
            #expect(emitted.problems == nil, "\(emitted.problems ?? "")")
        }
    }
}
