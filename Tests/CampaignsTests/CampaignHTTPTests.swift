@testable import CampaignsService
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

@Suite("Campaigns over HTTP")
struct CampaignHTTPTests {
    static let secret = "campaigns-test-secret-0123456789abcdef"

    struct Client: Sendable {
        let client: any TestClientProtocol
        let issuer: DevelopmentTokenIssuer

        func call(_ method: HTTPRequest.Method, _ uri: String, as user: String? = nil, roles: [Role] = [.shopper], json: String? = nil,
                  headers extra: HTTPFields = [:]) async throws -> TestResponse {
            var headers = extra
            if let user { headers[.authorization] = "Bearer \(try await issuer.token(for: UserID(rawValue: user), roles: roles))" }
            if json != nil { headers[.contentType] = "application/json" }
            return try await client.execute(uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) })
        }
    }

    /// The real service application (routes, relay, consumer, scheduler) on a fresh database,
    /// over loopback HTTP.
    func withService(_ body: @escaping @Sendable (Client, PostgresPool) async throws -> Void) async throws {
        try await withTestDatabase { database in
            var logger = Logger(label: "campaigns-test")
            logger.logLevel = .warning
            let settings = ServiceSettings(
                serviceName: "campaigns", port: 0, database: database, databasePoolSize: 8,
                kafkaBrokers: try await TestKafka.shared.bootstrapServers(), tokenKeys: .sharedSecret(Self.secret), localBroker: true)
            let app = try await CampaignsService.makeApplication(settings: settings, logger: logger)
            let pool = PostgresPool(configuration: database, options: .init(maxConnections: 4))
            let issuer = await DevelopmentTokenIssuer(secret: Self.secret)
            try await app.test(.live) { client in
                try await body(Client(client: client, issuer: issuer), pool)
            }
            await pool.close()
        }
    }

    static func json(_ response: TestResponse) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]) ?? [:]
    }

    static func body(_ terms: CampaignTerms, changing: (inout [String: Any]) -> Void = { _ in }) throws -> String {
        var object = try JSONSerialization.jsonObject(with: JSONEncoder.fission.encode(terms)) as! [String: Any]
        changing(&object)
        return String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
    }

    @Test func eachInvalidCampaignFieldIsRejectedNamingTheField() async throws {
        try await withService { api, pool in
            let bargain = CampaignTerms(
                kind: .bargain, product: Product(sku: "TEA", title: "Tea"), listPrice: Money(3990, yuan), stock: 10, perUserLimit: 1,
                startsAt: now, endsAt: now.addingTimeInterval(86_400),
                bargain: BargainRules(floorPrice: Money(0, yuan), maxHelpers: 20, firstCutMin: Money(100, yuan),
                                      firstCutMax: Money(500, yuan), taskTimeLimitSeconds: 86_400, payWindowSeconds: 1_800))
            let cases: [(String, (inout [String: Any]) -> Void)] = [
                ("bargain.floorPrice", { var b = $0["bargain"] as! [String: Any]; b["floorPrice"] = ["amount": 3990, "currency": "CNY"]; $0["bargain"] = b }),
                ("bargain.maxHelpers", { var b = $0["bargain"] as! [String: Any]; b["maxHelpers"] = 4000; $0["bargain"] = b }),
                ("stock", { $0["stock"] = -1 }),
                ("endsAt", { $0["endsAt"] = "2020-01-01T00:00:00Z" }),
                ("listPrice", { $0["listPrice"] = ["amount": 0, "currency": "CNY"] }),
                ("perUserLimit", { $0["perUserLimit"] = 0 }),
                ("groupBuy", { $0["kind"] = "groupBuy" }),
                ("product", { $0["product"] = nil }),
            ]
            for (field, change) in cases {
                let response = try await api.call(.post, "/campaigns", as: "m-tea", roles: [.merchant], json: try Self.body(bargain, changing: change))
                #expect(response.status == .unprocessableContent, "\(field): \(String(buffer: response.body))")
                #expect(response.headers[.contentType] == "application/problem+json")
                #expect(Self.json(response)["field"] as? String == field, "\(String(buffer: response.body))")
            }
            var groupBuy = groupBuyTerms()
            groupBuy.groupBuy!.groupPrice = Money(3990, yuan)
            let response = try await api.call(.post, "/campaigns", as: "m-tea", roles: [.merchant], json: try Self.body(groupBuy))
            #expect(Self.json(response)["field"] as? String == "groupBuy.groupPrice")
            let count = try await pool.query("SELECT count(*)::int8 AS n FROM campaigns").single().decode("n", as: Int.self)
            #expect(count == 0, "a refused campaign changes nothing")
            let shopper = try await api.call(.post, "/campaigns", as: "u-1", roles: [.shopper], json: try Self.body(groupBuyTerms()))
            #expect(shopper.status == .forbidden)
        }
    }

    /// Found by `make fuzz`: a cursor of year 1 reached PostgreSQL, which refused it (a 500).
    @Test func aCursorBeforeAnyCampaignIsAnEmptyPage() async throws {
        try await withService { api, _ in
            let created = try await api.call(.post, "/campaigns", as: "m-tea", roles: [.merchant], json: try Self.body(groupBuyTerms()))
            let id = try #require(Self.json(created)["id"] as? String)
            #expect(try await api.call(.post, "/campaigns/\(id)/publish", as: "m-tea", roles: [.merchant]).status == .ok)
            for cursor in ["0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z"] {
                let page = try await api.call(.get, "/campaigns?cursor=\(cursor)")
                #expect(page.status == .ok, "\(cursor): \(String(buffer: page.body))")
                #expect((Self.json(page)["items"] as? [Any])?.isEmpty == true)
                let mine = try await api.call(.get, "/campaigns?mine=true&cursor=\(cursor)", as: "m-tea", roles: [.merchant])
                #expect(mine.status == .ok, "\(cursor): \(String(buffer: mine.body))")
                #expect((Self.json(mine)["items"] as? [Any])?.isEmpty == true)
            }
        }
    }

    @Test func merchantRunsACampaignThroughItsLifeAndShoppersSeeOnlyPublishedOnes() async throws {
        try await withService { api, pool in
            let created = try await api.call(.post, "/campaigns", as: "m-tea", roles: [.merchant], json: try Self.body(groupBuyTerms()))
            #expect(created.status == .created, "\(String(buffer: created.body))")
            let id = try #require(Self.json(created)["id"] as? String)
            #expect(try await api.call(.get, "/campaigns/\(id)", as: "u-1").status == .notFound, "drafts are private")
            var bigger = groupBuyTerms(stock: 500)
            bigger.product.title = "龙井 250g"
            #expect(try await api.call(.put, "/campaigns/\(id)", as: "m-tea", roles: [.merchant], json: try Self.body(bigger)).status == .ok)
            #expect(try await api.call(.put, "/campaigns/\(id)", as: "m-other", roles: [.merchant], json: try Self.body(bigger)).status == .notFound)
            #expect(try await api.call(.post, "/campaigns/\(id)/publish", as: "m-tea", roles: [.merchant]).status == .ok)
            #expect(try await api.call(.put, "/campaigns/\(id)", as: "m-tea", roles: [.merchant], json: try Self.body(bigger)).status == .conflict)
            let seen = try await api.call(.get, "/campaigns/\(id)", as: "u-1")
            #expect(seen.status == .ok)
            #expect(Self.json(seen)["stockLeft"] as? Int == 500)
            let listed = Self.json(try await api.call(.get, "/campaigns"))
            #expect((listed["items"] as? [[String: Any]])?.map { $0["id"] as? String } == [id])
            #expect(try await api.call(.post, "/campaigns/\(id)/publish", as: "m-tea", roles: [.merchant]).status == .ok, "a retry is a no-op")
            #expect(try await api.call(.post, "/campaigns/\(id)/pause", as: "m-tea", roles: [.merchant]).status == .ok)
            #expect(try await api.call(.post, "/campaigns/\(id)/resume", as: "m-tea", roles: [.merchant]).status == .ok)
            let stock = try await api.call(.post, "/campaigns/\(id)/stock", as: "m-tea", roles: [.merchant], json: "{\"add\":20}")
            #expect(Self.json(stock)["stockLeft"] as? Int == 520)
            #expect(try await api.call(.post, "/campaigns/\(id)/end", as: "m-tea", roles: [.merchant]).status == .ok)
            #expect(try await api.call(.post, "/campaigns/\(id)/resume", as: "m-tea", roles: [.merchant]).status == .conflict)
            let types = try await pool.query("SELECT event_type FROM outbox_history ORDER BY id").map { try $0.decode("event_type", as: String.self) }
            #expect(types == [
                "campaigns.CampaignPublished.v1", "campaigns.CampaignPaused.v1", "campaigns.CampaignResumed.v1",
                "campaigns.CampaignUpdated.v1", "campaigns.CampaignEnded.v1",
            ])
        }
    }

    @Test func shareLinksRecordClicksAndAttributeParticipantsToTheirSharer() async throws {
        try await withService { api, pool in
            let campaign = try await publishedCampaign(groupBuyTerms(), on: pool)
            let share = try await api.call(
                .post, "/shares", as: "u-alice",
                json: "{\"campaignId\":\"\(campaign)\",\"target\":{\"kind\":\"campaign\",\"id\":\"\(campaign)\"},\"channel\":\"wechat\"}")
            #expect(share.status == .created, "\(String(buffer: share.body))")
            let code = try #require(Self.json(share)["code"] as? String)
            let opened = try await api.call(.get, "/s/\(code)", as: "u-bob")
            #expect((Self.json(opened)["target"] as? [String: Any])?["id"] as? String == campaign.description)
            _ = try await api.call(.get, "/s/\(code)", headers: [HTTPField.Name("X-Visitor-ID")!: "visitor-1"])
            _ = try await api.call(.get, "/s/\(code)", as: "u-alice")  // self-click: recorded, never credited
            #expect(try await api.call(.get, "/s/nosuchcode").status == .notFound)
            // Bob pays an order: Alice brought him.
            try await handle(orderPaid(campaign, user: "u-bob", purpose: .openTeam), on: pool, TeamHandlers.orderPaid)
            try await handle(orderPaid(campaign, user: "u-alice", purpose: .openTeam), on: pool, TeamHandlers.orderPaid)
            let stats = Self.json(try await api.call(.get, "/campaigns/\(campaign)/statistics", as: "m-tea", roles: [.merchant]))
            #expect(stats["clicks"] as? Int == 3)
            #expect(stats["uniqueVisitors"] as? Int == 3)
            #expect(stats["broughtByFriends"] as? Int == 1)
            #expect((stats["sharesByChannel"] as? [String: Int])?["wechat"] == 1)
            #expect((stats["counters"] as? [String: Int])?["teams_opened"] == 2)
            let tree = try await api.call(.get, "/campaigns/\(campaign)/fission-tree", as: "m-tea", roles: [.merchant])
            let roots = try JSONSerialization.jsonObject(with: Data(tree.body.readableBytesView)) as? [[String: Any]]
            #expect(roots?.first?["userId"] as? String == "u-alice")
            #expect((roots?.first?["children"] as? [[String: Any]])?.first?["userId"] as? String == "u-bob")
            #expect(try await emitted(ShareClicked.self, on: pool).count == 3)
        }
    }
}
