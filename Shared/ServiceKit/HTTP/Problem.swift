import Foundation
import Hummingbird

/// An RFC 9457 problem: every 4xx/5xx body of Fission, as `application/problem+json`.
///
/// `type` is stable per error kind (`https://fission.dev/problems/already-helped`) so clients can
/// branch on it; `detail` is for people. Extra members (`field`, `retryAfter`, ...) go in
/// `extensions`.
public struct Problem: HTTPResponseError, Sendable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    /// The last path segment of `type`, e.g. `already-helped`.
    public var kind: String
    public var title: String
    public var detail: String?
    public var extensions: [String: String]
    /// Sent as `Retry-After` (429 and 503).
    public var retryAfterSeconds: Int?

    public static let typeBase = "https://fission.dev/problems/"

    public init(_ status: HTTPResponse.Status, kind: String, title: String, detail: String? = nil, extensions: [String: String] = [:]) {
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.extensions = extensions
    }

    public var description: String { "\(status.code) \(kind): \(detail ?? title)" }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var body: [String: String] = extensions
        body["type"] = Self.typeBase + kind
        body["title"] = title
        if let detail { body["detail"] = detail }
        body["instance"] = request.uri.path
        var json = "{"
        json += body.sorted { $0.key < $1.key }.map { "\(Self.quote($0.key)):\(Self.quote($0.value))" }.joined(separator: ",")
        json += ",\"status\":\(status.code)}"
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        if let retryAfterSeconds { headers[.retryAfter] = String(retryAfterSeconds) }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: json)))
    }

    private static func quote(_ text: String) -> String {
        let data = (try? JSONEncoder().encode(text)) ?? Data("\"\"".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    // MARK: Kinds every service uses

    public static func badRequest(_ detail: String) -> Problem {
        Problem(.badRequest, kind: "malformed-request", title: "The request could not be read", detail: detail)
    }

    /// A field breaks a rule; names the field.
    public static func invalidField(_ field: String, _ reason: String) -> Problem {
        Problem(.unprocessableContent, kind: "invalid-field", title: "A field is invalid", detail: "\(field): \(reason)", extensions: ["field": field])
    }

    public static let unauthenticated = Problem(
        .unauthorized, kind: "unauthenticated", title: "A valid bearer token is required")

    public static func forbidden(_ detail: String) -> Problem {
        Problem(.forbidden, kind: "forbidden", title: "Not allowed", detail: detail)
    }

    public static func notFound(_ what: String) -> Problem {
        Problem(.notFound, kind: "not-found", title: "Not found", detail: what)
    }

    public static func conflict(kind: String, _ detail: String) -> Problem {
        Problem(.conflict, kind: kind, title: "Conflict", detail: detail)
    }
}
