@testable import AssistsService
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

@Suite("Assists over HTTP")
struct AssistsHTTPTests {
    static let secret = "assists-test-secret-0123456789abcdefgh"

    struct Client: Sendable {
        let client: any TestClientProtocol
        let issuer: DevelopmentTokenIssuer

        func call(_ method: HTTPRequest.Method, _ uri: String, as user: String, roles: [Role] = [.shopper], json: String? = nil,
                  headers extra: HTTPFields = [:]) async throws -> TestResponse {
            var headers = extra
            headers[.authorization] = "Bearer \(try await issuer.token(for: UserID(rawValue: user), roles: roles))"
            if json != nil { headers[.contentType] = "application/json" }
            return try await client.execute(uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) })
        }
    }

    func withService(fraud: FraudRules = FraudRules(), _ body: @escaping @Sendable (Client, PostgresPool) async throws -> Void) async throws {
        try await withTestDatabase { database in
            var logger = Logger(label: "assists-test")
            logger.logLevel = .warning
            let settings = ServiceSettings(
                serviceName: "assists", port: 0, database: database, databasePoolSize: 8,
                kafkaBrokers: try await TestKafka.shared.bootstrapServers(), tokenKeys: .sharedSecret(Self.secret), localBroker: true)
            let app = try await AssistsService.makeApplication(settings: settings, fraud: fraud, logger: logger)
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

    static func kind(_ response: TestResponse) -> String? {
        (json(response)["type"] as? String)?.replacingOccurrences(of: Problem.typeBase, with: "")
    }

    @Test func shopperStartsATaskFriendsHelpAndHeldHelpsAreReviewedWithAnAudit() async throws {
        var fraud = FraudRules()
        fraud.deviceBurst = 1
        try await withService(fraud: fraud) { api, pool in
            let campaign = try await knownCampaign(bargainTerms(helpers: 5), on: pool)
            let started = try await api.call(.post, "/tasks", as: "u-li", json: "{\"campaignId\":\"\(campaign)\"}")
            #expect(started.status == .created, "\(String(buffer: started.body))")
            let task = try #require(Self.json(started)["taskId"] as? String)
            #expect((Self.json(started)["seedHash"] as? String)?.count == 64)
            #expect(Self.json(started)["seed"] == nil, "the seed stays secret while the task runs")
            #expect(Self.json(started)["helpersLeftAtMost"] as? Int == 5)

            let own = try await api.call(.post, "/tasks/\(task)/helps", as: "u-li")
            #expect(own.status == .forbidden)
            #expect(Self.kind(own) == "own-task")

            let helped = try await api.call(.post, "/tasks/\(task)/helps", as: "u-zhang", headers: [HTTPField.Name("X-Device-ID")!: "p1"])
            #expect(helped.status == .ok, "\(String(buffer: helped.body))")
            let state = Self.json(helped)["task"] as? [String: Any]
            #expect(state?["helpersLeftAtMost"] as? Int == 4)
            #expect((Self.json(helped)["cut"] as? [String: Any])?["amount"] as? Int ?? 0 >= 1)
            let again = try await api.call(.post, "/tasks/\(task)/helps", as: "u-zhang")
            #expect(again.status == .conflict)
            #expect(Self.kind(again) == "already-helped")

            // A second help from the same device within the window is held.
            let held = try await api.call(.post, "/tasks/\(task)/helps", as: "u-wang", headers: [HTTPField.Name("X-Device-ID")!: "p1"])
            #expect(held.status == .accepted)
            let queue = try await api.call(.get, "/reviews", as: "op-1", roles: [.operator])
            let items = try JSONSerialization.jsonObject(with: Data(queue.body.readableBytesView)) as? [[String: Any]]
            let helpID = try #require(items?.first?["helpId"] as? String)
            #expect(try await api.call(.get, "/reviews", as: "u-zhang").status == .forbidden)
            let noReason = try await api.call(.post, "/reviews/\(helpID)", as: "op-1", roles: [.operator], json: "{\"decision\":\"approved\",\"reason\":\" \"}")
            #expect(noReason.status == .unprocessableContent)
            let approved = try await api.call(
                .post, "/reviews/\(helpID)", as: "op-1", roles: [.operator], json: "{\"decision\":\"approved\",\"reason\":\"known family device\"}")
            #expect(approved.status == .ok, "\(String(buffer: approved.body))")
            #expect(Self.json(approved)["helperCount"] as? Int == 2, "an approved help counts as of the decision")
            let audit = try await pool.query("SELECT operator_id, reason FROM review_decisions").single()
            #expect(try audit.decode("operator_id", as: String.self) == "op-1")
            #expect(try audit.decode("reason", as: String.self) == "known family device")
            let twice = try await api.call(
                .post, "/reviews/\(helpID)", as: "op-1", roles: [.operator], json: "{\"decision\":\"rejected\",\"reason\":\"changed my mind\"}")
            #expect(Self.kind(twice) == "already-decided")
            let verification = try await api.call(.get, "/tasks/\(task)/verification", as: "u-li")
            #expect(Self.kind(verification) == "task-open")
        }
    }
}
