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
            return try .json(status, output)
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
                return .json(
                    HTTPResponse.Status(code: code), encoded: Array(try stored.decode("body", as: String.self).utf8),
                    headers: [HTTPField.Name("Idempotent-Replayed")!: "true"])
            }
            let encoded = try EventCoding.encode(try await body(bytes, connection))
            try await connection.query(
                """
                UPDATE idempotency_keys SET status = \(status.code), body = \(String(decoding: encoded, as: UTF8.self))
                WHERE scope = \(scope) AND key = \(key)
                """)
            return .json(status, encoded: encoded)
        }
    }
}
