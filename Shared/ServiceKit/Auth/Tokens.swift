import Domain
import Foundation
import JWTKit
import Synchronization

public enum Role: String, Sendable, Codable, CaseIterable {
    case shopper, merchant, `operator`
}

/// Who is calling: the token's subject and roles.
public struct Identity: Sendable, Hashable {
    public var userID: UserID
    public var roles: Set<Role>
    public init(userID: UserID, roles: Set<Role>) {
        self.userID = userID
        self.roles = roles
    }
}

struct FissionClaims: JWTPayload {
    var sub: SubjectClaim
    var exp: ExpirationClaim
    var iat: IssuedAtClaim?
    var roles: [Role]

    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
    }
}

/// Where token keys come from: an HS256 secret for local use, or PEM public keys (RSA for RS256,
/// P-256 for ES256) for production, where an identity provider signs.
public enum TokenKeys: Sendable {
    case sharedSecret(String)
    case publicKeysPEM([String])
}

/// Verifies bearer tokens.
///
/// A client sends the same token with every request until it expires, and verifying one (the
/// signature, then its JSON decoded twice by jwt-kit) was 3% of the assists service's CPU per
/// request. Tokens already verified are remembered by their exact text until their expiry: the
/// same text carries the same signature over the same claims, and the keys are fixed for the
/// verifier's life. The memory is bounded (`remembered` tokens, then it starts afresh).
public struct TokenVerifier: Sendable {
    private let keys: JWTKeyCollection
    private let verified: VerifiedTokens

    public init(_ source: TokenKeys, remembered: Int = 4_096) async throws {
        self.verified = VerifiedTokens(capacity: remembered)
        // The collection's parser reads the header (to find the key); each key's own parser reads
        // the claims, and jwt-kit gives every key Foundation's unless told otherwise.
        let parser = DefaultJWTParser(jsonDecoder: TokenJSONDecoder())
        let keys = JWTKeyCollection(defaultJWTParser: parser)
        switch source {
        case .sharedSecret(let secret):
            await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256, parser: parser)
        case .publicKeysPEM(let pems):
            for (index, pem) in pems.enumerated() {
                let kid = JWKIdentifier(string: "key-\(index)")
                if let rsa = try? Insecure.RSA.PublicKey(pem: pem) {
                    await keys.add(rsa: rsa, digestAlgorithm: .sha256, kid: kid, parser: parser)
                } else if let ecdsa = try? ES256PublicKey(pem: pem) {
                    await keys.add(ecdsa: ecdsa, kid: kid, parser: parser)
                } else {
                    throw TokenError("public key \(index) is neither an RSA nor a P-256 PEM public key")
                }
            }
        }
        self.keys = keys
    }

    /// The identity a token proves, or an error saying why not (expired, bad signature, ...).
    public func verify(_ token: String) async throws -> Identity {
        if let identity = verified.identity(for: token, at: Date()) { return identity }
        let claims = try await keys.verify(token, as: FissionClaims.self, iteratingKeys: true)
        let identity = Identity(userID: UserID(rawValue: claims.sub.value), roles: Set(claims.roles))
        verified.remember(token, as: identity, until: claims.exp.value)
        return identity
    }
}

/// Reads a token's header and claims with the services' JSON decoder: jwt-kit's default
/// (Foundation's `JSONDecoder`) reading the claims was 4.3% of the assists service's CPU at
/// saturation, where every helper's token is new. Times are seconds since 1970, as jwt-kit's
/// own decoder reads them.
struct TokenJSONDecoder: JWTJSONDecoder {
    func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        try EventJSONDecoder.decode(T.self, from: Array(data), dates: .secondsSince1970)
    }
}

/// Tokens verified before, by text, with the identity they prove and their expiry.
private final class VerifiedTokens: Sendable {
    private let capacity: Int
    private let entries = Mutex<[String: (identity: Identity, expires: Date)]>([:])

    init(capacity: Int) { self.capacity = capacity }

    func identity(for token: String, at now: Date) -> Identity? {
        entries.withLock { entries in
            guard let entry = entries[token] else { return nil }
            guard now < entry.expires else {
                entries[token] = nil
                return nil
            }
            return entry.identity
        }
    }

    func remember(_ token: String, as identity: Identity, until expires: Date) {
        guard capacity > 0 else { return }
        entries.withLock { entries in
            // Starting afresh keeps the bound without bookkeeping per hit; the clients still
            // active are remembered again on their next request.
            if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            entries[token] = (identity, expires)
        }
    }
}

/// Mints HS256 tokens for the local stack and tests (production tokens come from an identity
/// provider).
public struct DevelopmentTokenIssuer: Sendable {
    private let keys: JWTKeyCollection

    public init(secret: String) async {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        self.keys = keys
    }

    public func token(for user: UserID, roles: [Role], validFor lifetime: TimeInterval = 24 * 3600, issuedAt: Date = Date()) async throws -> String {
        try await keys.sign(FissionClaims(
            sub: SubjectClaim(value: user.rawValue), exp: ExpirationClaim(value: issuedAt.addingTimeInterval(lifetime)),
            iat: IssuedAtClaim(value: issuedAt), roles: roles))
    }
}

public struct TokenError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
