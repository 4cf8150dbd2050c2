import Domain
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// The request context of every Fission service: request id (also the correlation id of events
/// the request causes) and the caller's identity once authenticated.
public struct FissionRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var requestID: String
    public var identity: Identity?
    /// The peer's IP address (the ingress, behind one: see `clientAddress(of:)`).
    public var peerAddress: String?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        requestID = ""
        identity = nil
        peerAddress = source.channel.remoteAddress?.ipAddress
    }

    /// Bodies above this are refused with 413 before decoding.
    public var maxUploadSize: Int { 64 * 1024 }

    /// Same JSON conventions as events: RFC 3339 times.
    public var responseEncoder: FissionResponseEncoder { FissionResponseEncoder() }
    public var requestDecoder: JSONDecoder { .fission }

    /// The caller, who must hold `role`: 401 without a valid token, 403 without the role.
    public func require(_ role: Role) throws -> Identity {
        guard let identity else { throw Problem.unauthenticated }
        guard identity.roles.contains(role) else {
            throw Problem.forbidden("this needs the \(role.rawValue) role")
        }
        return identity
    }
}

extension FissionRequestContext {
    /// Who is calling, as an address for per-address limits: the first `X-Forwarded-For` hop
    /// (the ingress must set it and drop the client's own), else the peer.
    public func clientAddress(of request: Request) -> String? {
        request.forwardedClientAddress ?? peerAddress
    }

    /// Spends one `action` from the caller's per-user and per-address budgets, or throws 429.
    public func admit(_ action: String, _ request: Request, limits: RateLimiter) throws {
        try limits.admit(action, user: identity?.userID, address: clientAddress(of: request))
    }

    /// An id from the path; one that is not a UUID names nothing, so 404.
    public func pathID<ID: EntityID>(_ name: String) throws -> ID {
        guard let text = parameters.get(name), let id = ID(text) else {
            throw Problem.notFound("no such \(name)")
        }
        return id
    }
}
