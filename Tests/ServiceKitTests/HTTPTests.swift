import Crypto
import Domain
import FissionTesting
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import JWTKit
import Kafka
import Logging
import Postgres
import ServiceKit
import Testing

@Suite("HTTP: auth, problems, idempotency, health")
struct HTTPTests {
    static let secret = "test-secret-0123456789abcdef-0123456789"

    struct NewItem: Codable, Sendable {
        var name: String
        var quantity: Int
    }

    struct CreatedItem: Codable, Sendable, Equatable {
        var id: Int
        var name: String
    }

    /// A service with a few routes, served over real HTTP on loopback.
    func withService(_ body: @escaping @Sendable (any TestClientProtocol, PostgresPool, DevelopmentTokenIssuer) async throws -> Void) async throws {
        try await withKitDatabase { pool in
            try await pool.query("CREATE TABLE items (id bigserial PRIMARY KEY, owner text NOT NULL, name text NOT NULL, quantity int NOT NULL)")
            var logger = Logger(label: "test-service")
            logger.logLevel = .warning
            let runtime = ServiceRuntime(
                name: "test", pool: pool,
                producer: try KafkaProducer(configuration: try await TestKafka.shared.producerConfiguration()),
                metrics: ServiceMetrics(), verifier: try await TokenVerifier(.sharedSecret(Self.secret)), logger: logger,
                // Budgets per hour: on a busy machine the requests of one test can be seconds apart,
                // and a per-minute budget refilled between them (a refill every 20 or 30 s).
                rateLimits: RateLimiter(perUser: RateBudget(2, per: .seconds(3600)), perAddress: RateBudget(3, per: .seconds(3600))))
            let app = ServiceApplication.build(runtime: runtime, port: 0, services: []) { api in
                api.get("/me") { _, context -> String in
                    try context.require(.shopper).userID.rawValue
                }
                api.post("/limited") { request, context -> String in
                    try context.admit("limited", request, limits: runtime.rateLimits)
                    return "ok"
                }
                api.get("/stored") { _, _ -> String in
                    // The service's own data failing to decode: not the client's fault.
                    _ = try JSONDecoder().decode(NewItem.self, from: Data("{\"name\":1}".utf8))
                    return "unreachable"
                }
                api.post("/merchant/things") { _, context -> String in
                    _ = try context.require(.merchant)
                    return "ok"
                }
                api.post("/items") { request, context -> Response in
                    let caller = try context.require(.shopper)
                    return try await runtime.idempotency.run(request, context: context, scope: caller.userID.rawValue) { body, connection in
                        let item = try decodeBody(NewItem.self, from: body)
                        guard item.quantity > 0 else { throw Problem.invalidField("quantity", "must be at least 1") }
                        let id = try await connection.query(
                            "INSERT INTO items (owner, name, quantity) VALUES (\(caller.userID.rawValue), \(item.name), \(item.quantity)) RETURNING id"
                        ).single().decode("id", as: Int.self)
                        return CreatedItem(id: id, name: item.name)
                    }
                }
            }
            let issuer = await DevelopmentTokenIssuer(secret: Self.secret)
            try await app.test(.live) { client in
                try await body(client, pool, issuer)
            }
        }
    }

    static func bearer(_ token: String) -> HTTPFields { [.authorization: "Bearer \(token)"] }

    static func expectProblem(_ response: TestResponse, _ status: HTTPResponse.Status, kind: String? = nil) {
        #expect(response.status == status)
        #expect(response.headers[.contentType] == "application/problem+json")
        let json = try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
        #expect((json?["status"] as? Int) == status.code)
        if let kind { #expect((json?["type"] as? String) == Problem.typeBase + kind, "\(String(describing: json))") }
    }

    @Test func missingExpiredBadlySignedOrWrongRoleTokensAreRefused() async throws {
        try await withService { client, _, issuer in
            let shopper = try await issuer.token(for: "u-li-wei", roles: [.shopper])
            try await client.execute(uri: "/me", method: .get, headers: Self.bearer(shopper)) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "u-li-wei")
            }
            try await client.execute(uri: "/me", method: .get) { Self.expectProblem($0, .unauthorized, kind: "unauthenticated") }
            let expired = try await issuer.token(for: "u-li-wei", roles: [.shopper], validFor: 60, issuedAt: Date().addingTimeInterval(-3600))
            try await client.execute(uri: "/me", method: .get, headers: Self.bearer(expired)) { Self.expectProblem($0, .unauthorized, kind: "invalid-token") }
            let forged = try await DevelopmentTokenIssuer(secret: "another-secret-0123456789-abcdefghijk").token(for: "u-li-wei", roles: [.shopper])
            try await client.execute(uri: "/me", method: .get, headers: Self.bearer(forged)) { Self.expectProblem($0, .unauthorized, kind: "invalid-token") }
            try await client.execute(uri: "/me", method: .get, headers: Self.bearer("not.a.jwt")) { Self.expectProblem($0, .unauthorized) }
            try await client.execute(uri: "/merchant/things", method: .post, headers: Self.bearer(shopper)) {
                Self.expectProblem($0, .forbidden, kind: "forbidden")
            }
            let merchant = try await issuer.token(for: "m-tea", roles: [.merchant])
            try await client.execute(uri: "/merchant/things", method: .post, headers: Self.bearer(merchant)) { #expect($0.status == .ok) }
        }
    }

    @Test func rateLimitedActionsAnswer429WithRetryAfterPerUserAndPerAddress() async throws {
        try await withService { client, _, issuer in
            let li = Self.bearer(try await issuer.token(for: "u-li", roles: [.shopper]))
            let zhang = Self.bearer(try await issuer.token(for: "u-zhang", roles: [.shopper]))
            for _ in 0..<2 {
                try await client.execute(uri: "/limited", method: .post, headers: li) { #expect($0.status == .ok) }
            }
            // Li's own budget (2 an hour) is spent; a refill takes up to 30 minutes.
            try await client.execute(uri: "/limited", method: .post, headers: li) { response in
                Self.expectProblem(response, .tooManyRequests, kind: "rate-limited")
                #expect((1...1800).contains(Int(response.headers[.retryAfter] ?? "") ?? 0))
            }
            // Zhang has budget of his own, but the shared address (3 an hour) runs out.
            try await client.execute(uri: "/limited", method: .post, headers: zhang) { #expect($0.status == .ok) }
            try await client.execute(uri: "/limited", method: .post, headers: zhang) { Self.expectProblem($0, .tooManyRequests, kind: "rate-limited") }
            // Behind an ingress, each forwarded client address has its own budget.
            var forwarded = zhang
            forwarded[HTTPField.Name("X-Forwarded-For")!] = "203.0.113.7, 10.0.0.1"
            try await client.execute(uri: "/limited", method: .post, headers: forwarded) { #expect($0.status == .ok) }
        }
    }

    /// Remembered tokens prove the same identity, stop working at their expiry like any other,
    /// and the bound on how many are remembered changes no answer.
    @Test func rememberedTokensProveTheSameIdentityAndStillExpire() async throws {
        let verifier = try await TokenVerifier(.sharedSecret(Self.secret), remembered: 2)
        let issuer = await DevelopmentTokenIssuer(secret: Self.secret)
        let users = ["u-a", "u-b", "u-c"]
        var tokens: [String] = []
        for user in users { tokens.append(try await issuer.token(for: UserID(rawValue: user), roles: [.shopper])) }
        for _ in 0..<3 {
            for (user, token) in zip(users, tokens) {
                #expect(try await verifier.verify(token) == Identity(userID: UserID(rawValue: user), roles: [.shopper]))
            }
        }
        let forged = String(tokens[0].dropLast(2)) + (tokens[0].hasSuffix("AA") ? "BB" : "AA")
        for _ in 0..<2 { await #expect(throws: (any Error).self) { try await verifier.verify(forged) } }

        let shortLived = try await issuer.token(for: "u-brief", roles: [.merchant], validFor: 3)
        #expect(try await verifier.verify(shortLived).roles == [.merchant])
        try await Task.sleep(for: .milliseconds(4_200))
        await #expect(throws: (any Error).self, "a remembered token expires with its claims") { try await verifier.verify(shortLived) }
    }

    /// A token's claims are read by the services' JSON decoder, as its header is: claims that
    /// are not JSON (a trailing comma, which Foundation's decoder lets through) prove nothing,
    /// although the signature over them is good.
    @Test func claimsThatAreNotJSONProveNothingUnderAGoodSignature() async throws {
        func token(claims: String) -> String {
            func base64URL(_ bytes: some Sequence<UInt8>) -> String {
                Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                    .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
            }
            let signed = base64URL(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8)) + "." + base64URL(Array(claims.utf8))
            let signature = HMAC<SHA256>.authenticationCode(for: Array(signed.utf8), using: SymmetricKey(data: Array(Self.secret.utf8)))
            return signed + "." + base64URL(signature)
        }
        let verifier = try await TokenVerifier(.sharedSecret(Self.secret))
        let expiry = Int(Date().timeIntervalSince1970) + 600
        #expect(try await verifier.verify(token(claims: #"{"sub":"u-json","exp":\#(expiry),"roles":["shopper"]}"#))
                == Identity(userID: "u-json", roles: [.shopper]), "the same token, made by hand, with JSON claims")
        await #expect(throws: (any Error).self) {
            try await verifier.verify(token(claims: #"{"sub":"u-comma","exp":\#(expiry),"roles":["shopper"],}"#))
        }
    }

    /// Production tokens: signed by an identity provider's key (ES256 here), named by `kid`, and
    /// verified against its public key; a token signed by another key proves nothing.
    @Test func tokensSignedByAnIdentityProvidersKeyAreVerifiedWithItsPublicKey() async throws {
        struct ProviderClaims: JWTPayload {
            var sub: SubjectClaim
            var exp: ExpirationClaim
            var iat: IssuedAtClaim
            var roles: [String]
            func verify(using algorithm: some JWTAlgorithm) async throws {}
        }
        let (providerKey, otherKey) = (ES256PrivateKey(), ES256PrivateKey())
        let provider = await JWTKeyCollection().add(ecdsa: providerKey, kid: "key-0")
        let impostor = await JWTKeyCollection().add(ecdsa: otherKey, kid: "key-0")
        let verifier = try await TokenVerifier(.publicKeysPEM([providerKey.publicKey.pemRepresentation]))
        let claims = ProviderClaims(
            sub: "u-provider", exp: ExpirationClaim(value: Date().addingTimeInterval(600)), iat: IssuedAtClaim(value: Date()), roles: ["merchant"])
        #expect(try await verifier.verify(try await provider.sign(claims, kid: "key-0")) == Identity(userID: "u-provider", roles: [.merchant]))
        await #expect(throws: (any Error).self) { try await verifier.verify(try await impostor.sign(claims, kid: "key-0")) }
        var expired = claims
        expired.exp = ExpirationClaim(value: Date().addingTimeInterval(-1))
        await #expect(throws: (any Error).self) { try await verifier.verify(try await provider.sign(expired, kid: "key-0")) }
    }

    @Test func headerValuesLoseOnlyTheirOptionalWhitespace() {
        #expect(" \t token.part \t".trimmingOptionalWhitespace == "token.part")
        #expect("a b".trimmingOptionalWhitespace == "a b")
        #expect(" \t ".trimmingOptionalWhitespace == "")
        #expect("".trimmingOptionalWhitespace == "")
        #expect("\u{3000}x".trimmingOptionalWhitespace == "\u{3000}x", "only SP and HTAB are HTTP's whitespace")
        func forwarded(_ value: String?) -> String? {
            var headers = HTTPFields()
            if let value { headers[HTTPField.Name("X-Forwarded-For")!] = value }
            return Request(head: HTTPRequest(method: .get, scheme: "http", authority: "x", path: "/", headerFields: headers), body: .init(buffer: .init()))
                .forwardedClientAddress
        }
        #expect(forwarded(" 203.0.113.7 , 10.0.0.1") == "203.0.113.7")
        #expect(forwarded("198.51.100.2") == "198.51.100.2")
        #expect(forwarded(nil) == nil)
        #expect(forwarded("") == nil)
    }

    @Test func budgetsRefillSmoothlyAndParseFromSettings() throws {
        let limiter = RateLimiter(perUser: RateBudget(3, per: .seconds(60)), perAddress: nil)
        let start = ContinuousClock.now
        for _ in 0..<3 { try limiter.admit("help", user: "u-a", address: nil, now: start) }
        #expect(throws: Problem.self) { try limiter.admit("help", user: "u-a", address: nil, now: start) }
        // Another action, another user: budgets of their own.
        try limiter.admit("share", user: "u-a", address: nil, now: start)
        try limiter.admit("help", user: "u-b", address: nil, now: start)
        // One request's worth returns every 20 s.
        try limiter.admit("help", user: "u-a", address: nil, now: start.advanced(by: .seconds(20)))
        #expect(throws: Problem.self) { try limiter.admit("help", user: "u-a", address: nil, now: start.advanced(by: .seconds(21))) }
        #expect(RateBudget.parse("30/60") == .some(RateBudget(30, per: .seconds(60))))
        #expect(RateBudget.parse("off") == .some(nil))
        #expect(RateBudget.parse("thirty") == nil)
        var reader = EnvironmentReader(["FISSION_RATE_LIMIT_PER_USER": "5/1", "FISSION_RATE_LIMIT_PER_ADDRESS": "lots"])
        #expect(reader.budget("FISSION_RATE_LIMIT_PER_USER", default: RateBudget(1, per: .seconds(1))) == RateBudget(5, per: .seconds(1)))
        _ = reader.budget("FISSION_RATE_LIMIT_PER_ADDRESS", default: RateBudget(1, per: .seconds(1)))
        #expect(reader.problems == ["FISSION_RATE_LIMIT_PER_ADDRESS must be count/seconds (like 30/60) or off, got 'lots'"])
    }

    @Test func oversizedMalformedOrInvalidBodiesGetProblemsAndChangeNothing() async throws {
        try await withService { client, pool, issuer in
            var headers = Self.bearer(try await issuer.token(for: "u-1", roles: [.shopper]))
            headers[.contentType] = "application/json"
            headers[.idempotencyKey] = "k1"
            let huge = ByteBuffer(string: "{\"name\":\"" + String(repeating: "x", count: 200_000) + "\",\"quantity\":1}")
            try await client.execute(uri: "/items", method: .post, headers: headers, body: huge) {
                Self.expectProblem($0, .contentTooLarge, kind: "body-too-large")
            }
            headers[.idempotencyKey] = "k2"
            try await client.execute(uri: "/items", method: .post, headers: headers, body: ByteBuffer(string: "{\"name\": ")) {
                Self.expectProblem($0, .badRequest, kind: "malformed-request")
            }
            headers[.idempotencyKey] = "k3"
            try await client.execute(uri: "/items", method: .post, headers: headers, body: ByteBuffer(string: "{\"name\":\"tea\"}")) {
                Self.expectProblem($0, .unprocessableContent, kind: "invalid-field")
            }
            headers[.idempotencyKey] = "k4"
            try await client.execute(uri: "/items", method: .post, headers: headers, body: ByteBuffer(string: "{\"name\":\"tea\",\"quantity\":0}")) {
                Self.expectProblem($0, .unprocessableContent, kind: "invalid-field")
            }
            headers[.idempotencyKey] = nil
            try await client.execute(uri: "/items", method: .post, headers: headers, body: ByteBuffer(string: "{\"name\":\"tea\",\"quantity\":1}")) {
                Self.expectProblem($0, .badRequest, kind: "idempotency-key-required")
            }
            try await client.execute(uri: "/no/such/route", method: .get) { Self.expectProblem($0, .notFound) }
            let rows = try await pool.query("SELECT count(*) AS c FROM items").single().decode("c", as: Int.self)
            #expect(rows == 0)
        }
    }

    @Test func idempotentRetryReturnsTheSameResponseAndHasOneEffect() async throws {
        try await withService { client, pool, issuer in
            var headers = Self.bearer(try await issuer.token(for: "u-1", roles: [.shopper]))
            headers[.idempotencyKey] = "order-attempt-1"
            let body = ByteBuffer(string: "{\"name\":\"龙井\",\"quantity\":2}")
            let first = try await client.execute(uri: "/items", method: .post, headers: headers, body: body)
            #expect(first.status == .created)
            var retries: [TestResponse] = []
            for _ in 0..<5 {
                retries.append(try await client.execute(uri: "/items", method: .post, headers: headers, body: body))
            }
            for retry in retries {
                #expect(retry.status == .created)
                #expect(String(buffer: retry.body) == String(buffer: first.body))
                #expect(retry.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
            }
            let rows = try await pool.query("SELECT count(*) AS c FROM items").single().decode("c", as: Int.self)
            #expect(rows == 1)
            try await client.execute(
                uri: "/items", method: .post, headers: headers, body: ByteBuffer(string: "{\"name\":\"龙井\",\"quantity\":3}")
            ) { Self.expectProblem($0, .unprocessableContent, kind: "idempotency-key-reused") }
            // Keys belong to their caller: another shopper may use the same key.
            var other = Self.bearer(try await issuer.token(for: "u-2", roles: [.shopper]))
            other[.idempotencyKey] = "order-attempt-1"
            try await client.execute(uri: "/items", method: .post, headers: other, body: body) { #expect($0.status == .created) }
        }
    }

    @Test func ownDataThatFailsToDecodeIsA500NotTheClientsFault() async throws {
        try await withService { client, _, _ in
            try await client.execute(uri: "/stored", method: .get) { Self.expectProblem($0, .internalServerError, kind: "internal") }
        }
    }

    /// Found by `make fuzz`: PostgreSQL text cannot hold U+0000, and a body carrying one was a 500.
    @Test func textWithANulCharacterIsA422AndChangesNothing() async throws {
        try await withService { client, pool, issuer in
            var headers = Self.bearer(try await issuer.token(for: "u-1", roles: [.shopper]))
            headers[.idempotencyKey] = "nul-1"
            try await client.execute(
                uri: "/items", method: .post, headers: headers, body: ByteBuffer(string: "{\"name\":\"tea\\u0000pot\",\"quantity\":1}")
            ) { Self.expectProblem($0, .unprocessableContent, kind: "nul-character") }
            #expect(try await pool.query("SELECT count(*)::int8 AS n FROM items").single().decode("n", as: Int.self) == 0)
            // The key was not spent: the same key with a clean body runs.
            try await client.execute(
                uri: "/items", method: .post, headers: headers, body: ByteBuffer(string: "{\"name\":\"teapot\",\"quantity\":1}")
            ) { #expect($0.status == .created) }
        }
    }

    @Test func refusedRequestsAreCountedWithTheStatusTheyGot() async throws {
        try await withService { client, _, _ in
            try await client.execute(uri: "/me", method: .get) { Self.expectProblem($0, .unauthorized, kind: "unauthenticated") }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let lines = String(buffer: response.body).split(separator: "\n")
                    .filter { $0.hasPrefix("http_requests_total") && $0.contains("route=\"/me\"") }
                #expect(lines.contains { $0.contains("status=\"401\"") }, "\(lines)")
                #expect(!lines.contains { $0.contains("status=\"500\"") }, "\(lines)")
            }
        }
    }

    @Test func healthAndMetricsAreServed() async throws {
        try await withService { client, _, issuer in
            try await client.execute(uri: "/health/live", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/health/ready", method: .get) { response in
                #expect(response.status == .ok, "\(String(buffer: response.body))")
            }
            let token = try await issuer.token(for: "u-1", roles: [.shopper])
            try await client.execute(uri: "/me", method: .get, headers: Self.bearer(token)) { response in
                #expect(response.headers[.requestID] != nil)
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(text.contains("http_requests_total"))
                #expect(text.contains("route=\"/me\""))
                #expect(text.contains("http_request_duration_seconds"))
            }
        }
    }
}
