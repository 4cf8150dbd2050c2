import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Postgres

/// Gives each request an id (the caller's `X-Request-ID` or a new one), echoes it, writes one
/// access log line, and counts the request in the service's metrics.
struct RequestObservationMiddleware: RouterMiddleware {
    typealias Context = FissionRequestContext
    let metrics: ServiceMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let incoming = request.headers[.requestID].flatMap { $0.count <= 128 ? $0 : nil }
        context.requestID = incoming ?? UUID().uuidString.lowercased()
        context.logger[metadataKey: "request_id"] = .string(context.requestID)
        let started = ContinuousClock.now
        var status = 500
        defer {
            let elapsed = ContinuousClock.now - started
            // Route templates, not raw paths: ids must not explode the label space.
            let route = context.endpointPath ?? "unmatched"
            metrics.recordRequest(method: request.method.rawValue, route: route, status: status, duration: elapsed)
            context.logger.info("request", metadata: [
                "method": .string(request.method.rawValue), "path": .string(request.uri.path), "route": .string(route),
                "status": .stringConvertible(status),
                "duration_ms": .stringConvertible(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000),
            ])
        }
        do {
            var response = try await next(request, context)
            status = response.status.code
            response.headers[.requestID] = context.requestID
            return response
        } catch let error as any HTTPResponseError {
            // Problems are thrown and become responses further out: log and count their status,
            // not a 500 that was never sent.
            status = error.status.code
            throw error
        }
    }
}

/// Turns every error into `application/problem+json`: a `Problem` as it is, Hummingbird's own
/// errors (413, 404, 400) with their status, anything else as a 500 that says nothing internal.
/// Request bodies are decoded by `decodeBody`, which answers bad input with a 400/422 problem;
/// a `DecodingError` that still gets here came from the service's own data (a stored row, a
/// read model), so it is a 500 and logged, not the client's fault.
struct ProblemMiddleware: RouterMiddleware {
    typealias Context = FissionRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let problem as Problem {
            throw problem
        } catch let error as HTTPError {
            throw Self.problem(status: error.status, detail: error.body)
        } catch let error as any HTTPResponseError {
            // NIO's body-size error and other library errors that know their status.
            throw Self.problem(status: error.status, detail: nil)
        } catch let error as PostgresError where error.summary == Self.nulRefusal {
            // PostgreSQL text cannot hold U+0000, and only a client sends one (in a body, path or
            // query): the statement was refused before it ran, and its transaction rolled back.
            throw Problem(
                .unprocessableContent, kind: "nul-character", title: "Text must not contain NUL characters",
                detail: "a value in the request contains U+0000")
        } catch {
            context.logger.error("unhandled error", metadata: ["error": "\(String(reflecting: error))"])
            throw Problem(.internalServerError, kind: "internal", title: "Something went wrong on our side")
        }
    }

    /// `PostgresError.summary` when a bound string contains NUL (Shared/Postgres refuses it).
    static let nulRefusal = "a bound string contains a NUL character"

    static func problem(status: HTTPResponse.Status, detail: String?) -> Problem {
        switch status {
        case .contentTooLarge:
            return Problem(.contentTooLarge, kind: "body-too-large", title: "The request body is too large")
        case .notFound:
            return Problem.notFound(detail ?? "no such resource")
        case .methodNotAllowed:
            return Problem(.methodNotAllowed, kind: "method-not-allowed", title: "Method not allowed")
        case .badRequest:
            return Problem.badRequest(detail ?? "malformed request")
        case .unauthorized:
            return Problem.unauthenticated
        default:
            return Problem(status, kind: "http-\(status.code)", title: status.reasonPhrase, detail: detail)
        }
    }
}

/// Reads `Authorization: Bearer <jwt>`. No header: the request goes on anonymous (routes that
/// need a caller ask with `context.require(role)`). A header with a bad, expired or foreign token
/// is refused here with 401.
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = FissionRequestContext
    let verifier: TokenVerifier

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization] else {
            return try await next(request, context)
        }
        guard header.prefix(7).lowercased() == "bearer " else {
            throw Problem(.unauthorized, kind: "unauthenticated", title: "A valid bearer token is required", detail: "use the Bearer scheme")
        }
        let token = String(header.dropFirst("bearer ".count).trimmingOptionalWhitespace)
        var context = context
        do {
            context.identity = try await verifier.verify(token)
        } catch {
            throw Problem(.unauthorized, kind: "invalid-token", title: "The bearer token is not valid", detail: "expired, badly signed or malformed")
        }
        context.logger[metadataKey: "user_id"] = .string(context.identity!.userID.rawValue)
        return try await next(request, context)
    }
}

extension HTTPField.Name {
    public static let requestID = HTTPField.Name("X-Request-ID")!
    public static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
}
