import Crypto
import Domain
import Foundation
import HTTPTypes
import Hummingbird
import Postgres

/// Runs a mutating request at most once per `Idempotency-Key`.
///
/// The key row, the request's effect and its stored response commit in one transaction: a retry
/// with the same key and body gets the first response (with `Idempotent-Replayed: true`) and
/// has no second effect; a concurrent retry waits for the first to commit, then replays it; the
/// same key with a different body is refused with 422.
public struct IdempotentHandler: Sendable {
    public let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    /// - Parameters:
    ///   - scope: whose keys these are (the caller's user id), so callers cannot collide.
    ///   - keyRequired: refuse requests without a key (400) instead of running them unprotected.
    ///   - body: the effect, given the raw request body and the transaction's connection.
    public func run<Output: Encodable>(
        _ request: Request, context: FissionRequestContext, scope: String, keyRequired: Bool = true,
        status: HTTPResponse.Status = .created,
        _ body: @Sendable (ByteBuffer, PostgresConnection) async throws -> Output
    ) async throws -> Response {
        var request = request
        let bytes = try await request.collectBody(upTo: context.maxUploadSize)
        guard let key = request.headers[.idempotencyKey], !key.isEmpty else {
            if keyRequired {
                throw Problem(.badRequest, kind: "idempotency-key-required", title: "An Idempotency-Key header is required")
            }
            let output = try await pool.withTransaction { connection in try await body(bytes, connection) }
            return try Self.jsonResponse(status: status, body: try EventCoding.encode(output), replayed: false)
        }
        guard key.count <= 255 else { throw Problem.invalidField("Idempotency-Key", "at most 255 characters") }
        var hasher = SHA256()
        hasher.update(data: Data(request.method.rawValue.utf8))
        hasher.update(data: Data(request.uri.path.utf8))
        hasher.update(data: Data(bytes.readableBytesView))
        let requestHash = hasher.finalize().map { String(format: "%02x", $0) }.joined()

        return try await pool.withTransaction { connection in
            let fresh = try await connection.query(
                """
                INSERT INTO idempotency_keys (scope, key, request_hash, status, body)
                VALUES (\(scope), \(key), \(requestHash), 0, '') ON CONFLICT DO NOTHING
                """).affectedRows == 1
            if !fresh {
                let stored = try await connection.query(
                    "SELECT request_hash, status, body FROM idempotency_keys WHERE scope = \(scope) AND key = \(key)").single()
                guard try stored.decode("request_hash", as: String.self) == requestHash else {
                    throw Problem(
                        .unprocessableContent, kind: "idempotency-key-reused",
                        title: "This Idempotency-Key was used for a different request")
                }
                let code = try stored.decode("status", as: Int.self)
                return try Self.jsonResponse(
                    status: HTTPResponse.Status(code: code), body: Array(try stored.decode("body", as: String.self).utf8), replayed: true)
            }
            let encoded = try EventCoding.encode(try await body(bytes, connection))
            try await connection.query(
                """
                UPDATE idempotency_keys SET status = \(status.code), body = \(String(decoding: encoded, as: UTF8.self))
                WHERE scope = \(scope) AND key = \(key)
                """)
            return try Self.jsonResponse(status: status, body: encoded, replayed: false)
        }
    }

    static func jsonResponse(status: HTTPResponse.Status, body: [UInt8], replayed: Bool) throws -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if replayed { headers[HTTPField.Name("Idempotent-Replayed")!] = "true" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

extension JSONEncoder {
    /// How Fission's HTTP APIs write JSON (the same timestamps as events). The services write it
    /// with `EventCoding.encode` (same bytes, faster); this is for clients and tests.
    public static var fission: JSONEncoder { EventCoding.encoder() }
}

/// Route results written as `EventCoding.encode` writes them (what `JSONEncoder.fission` would
/// write, faster).
public struct FissionResponseEncoder: ResponseEncoder {
    public init() {}

    public func encode(_ value: some Encodable, from request: Request, context: some RequestContext) throws -> Response {
        let body = try EventCoding.encode(value)
        return Response(
            status: .ok, headers: [.contentType: "application/json; charset=utf-8", .contentLength: String(body.count)],
            body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

extension JSONDecoder {
    public static var fission: JSONDecoder { EventCoding.decoder() }
}

/// Decodes a JSON body; malformed JSON or a missing/mistyped field is a 400 naming the field.
public func decodeBody<T: Decodable>(_ type: T.Type, from bytes: ByteBuffer) throws -> T {
    do {
        return try JSONDecoder.fission.decode(T.self, from: Data(bytes.readableBytesView))
    } catch let DecodingError.keyNotFound(key, context) {
        throw Problem.invalidField((context.codingPath + [key]).map(\.stringValue).joined(separator: "."), "is required")
    } catch let DecodingError.typeMismatch(_, context) {
        throw Problem.invalidField(context.codingPath.map(\.stringValue).joined(separator: "."), "has the wrong type")
    } catch let DecodingError.valueNotFound(_, context) {
        throw Problem.invalidField(context.codingPath.map(\.stringValue).joined(separator: "."), "must not be null")
    } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
        throw Problem.invalidField(context.codingPath.map(\.stringValue).joined(separator: "."), context.debugDescription)
    } catch {
        throw Problem.badRequest("the body is not valid JSON")
    }
}
