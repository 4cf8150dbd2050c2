import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Table-driven checks of a running service against its OpenAPI document:
///
/// - every operation declares its roles (`x-fission-roles`: `[]` public, `[shopper]`, ...,
///   `[signed]` for a partner's signed webhook); called without a token it answers 401 unless
///   public, with a token lacking the role 403, with the role neither;
/// - hostile input never gets a 5xx: SQL meta-characters, a 10 MB body, deeply nested JSON,
///   negative and overflowing money, unknown enum values, emoji and right-to-left text, ids
///   that are not UUIDs;
/// - every error is `application/problem+json`.
///
/// Returns one line per broken expectation.
public enum AccessControl {
    public static let roles = ["shopper", "merchant", "operator"]

    /// `tokens`: a token per role holding only that role.
    public static func check(document: URL, baseURL: String, tokens: [String: String]) async throws -> [String] {
        var problems: [String] = []
        for operation in try OpenAPIDocument.declaredOperations(of: document) {
            let name = "\(operation.method.uppercased()) \(operation.path)"
            guard let roles = operation.roles else {
                problems.append("\(name) declares no x-fission-roles")
                continue
            }
            // Health and metrics are the kit's own; the stream never ends once admitted.
            if operation.path.hasPrefix("/health") || operation.path == "/metrics" { continue }
            let streams = operation.path.hasSuffix("/stream")
            let path = fill(operation.path)
            let hasBody = operation.takesBody

            // `[signed]`: called by a partner who signs the body instead of holding a token (the
            // payment provider's webhook): unsigned, it is 401 whatever token comes along.
            if roles == ["signed"] {
                for token in [nil] + Self.roles.map({ tokens[$0] }) {
                    let answer = try await call(operation.method, baseURL + path, token: token, body: "{}")
                    problems += expect(answer, name, "unsigned", .status(401), streams: false)
                }
                continue
            }
            let anonymous = try await call(operation.method, baseURL + path, token: nil, body: hasBody ? "{}" : nil)
            problems += expect(anonymous, name, "without a token", roles.isEmpty ? .admitted : .status(401), streams: streams)
            // An admitted stream never ends (keep-alives reset any idle timeout): only refusals
            // are checked there.
            for role in roles where !streams {
                let answer = try await call(operation.method, baseURL + path, token: tokens[role], body: hasBody ? "{}" : nil)
                problems += expect(answer, name, "as \(role)", .admitted, streams: streams)
            }
            if !roles.isEmpty {
                for role in Self.roles where !roles.contains(role) {
                    let answer = try await call(operation.method, baseURL + path, token: tokens[role], body: hasBody ? "{}" : nil)
                    problems += expect(answer, name, "as \(role)", .status(403), streams: streams)
                }
            }
            guard !streams else { continue }
            // Hostile input, as someone allowed to call.
            let token = roles.first.flatMap { tokens[$0] }
            // Ids are UUIDs (user ids and share codes are free text: nothing to refuse there).
            if operation.path.contains("{id}") {
                let bad = fill(operation.path.replacingOccurrences(of: "{id}", with: "not-a-uuid'%20OR%201=1--"))
                let answer = try await call(operation.method, baseURL + bad, token: token, body: hasBody ? "{}" : nil)
                problems += expect(answer, name, "with a path id that is no UUID", .refused, streams: false)
            }
            if hasBody {
                for (what, body) in hostileBodies {
                    let answer = try await call(operation.method, baseURL + path, token: token, body: body)
                    problems += expect(answer, name, "with \(what)", what == "emoji and right-to-left text" ? .noServerError : .refused, streams: false)
                }
            }
        }
        return problems
    }

    static let hostileBodies: [(String, String)] = [
        ("SQL meta-characters", #"{"campaignId":"'; DROP TABLE campaigns; --","title":"' OR '1'='1","name":"\"; SELECT pg_sleep(10); --"}"#),
        ("a 10 MB body", "{\"blob\":\"" + String(repeating: "x", count: 10 * 1024 * 1024) + "\"}"),
        ("JSON nested 100,000 deep", String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)),
        ("overflowing money", #"{"listPrice":{"amount":99999999999999999999999999,"currency":"CNY"},"stock":1e400,"amount":{"amount":9223372036854775808,"currency":"CNY"}}"#),
        ("negative money", #"{"listPrice":{"amount":-100,"currency":"CNY"},"stock":-5,"amount":{"amount":-1,"currency":"CNY"},"quantity":-3}"#),
        ("unknown enum values", #"{"kind":"🚀","channel":"carrier-pigeon","purpose":"steal","decision":"maybe","period":"forever","target":{"kind":"moon","id":"x"}}"#),
        ("emoji and right-to-left text", #"{"product":{"sku":"‮🙂","title":"مرحبا بالعالم 🙂"},"title":"שלום 🙂","name":"‮evil‬"}"#),
    ]

    enum Expectation {
        case admitted   // neither 401 nor 403, and no 5xx
        case status(Int)
        case refused    // some 4xx
        case noServerError
    }

    struct Answer {
        var status: Int
        var contentType: String
        var timedOut: Bool
        /// The server closed the connection before answering (it may, mid-upload, for a body
        /// far over its limit).
        var dropped = false
    }

    static func expect(_ answer: Answer, _ name: String, _ how: String, _ expectation: Expectation, streams: Bool) -> [String] {
        if answer.dropped {
            return how == "with a 10 MB body" ? [] : ["\(name) \(how): the connection was dropped without an answer"]
        }
        if answer.timedOut {
            // An admitted stream stays open: that is the answer.
            if streams, case .admitted = expectation { return [] }
            return ["\(name) \(how): no answer in time"]
        }
        var problems: [String] = []
        if answer.status >= 500 { problems.append("\(name) \(how): \(answer.status)") }
        if answer.status >= 400, !answer.contentType.hasPrefix("application/problem+json") {
            problems.append("\(name) \(how): \(answer.status) as \(answer.contentType.isEmpty ? "no content type" : answer.contentType), not problem+json")
        }
        switch expectation {
        case .admitted where answer.status == 401 || answer.status == 403:
            problems.append("\(name) \(how): \(answer.status), expected to be let in")
        case .status(let wanted) where answer.status != wanted:
            problems.append("\(name) \(how): \(answer.status), expected \(wanted)")
        case .refused where !(400..<500).contains(answer.status):
            problems.append("\(name) \(how): \(answer.status), expected a 4xx")
        default:
            break
        }
        return problems
    }

    static func fill(_ path: String) -> String {
        path.replacingOccurrences(of: "{code}", with: "nosuchcode")
            .replacingOccurrences(of: "{user}", with: "u-access-check")
            .replacingOccurrences(of: #"\{[^}]+\}"#, with: UUID().uuidString.lowercased(), options: .regularExpression)
    }

    static func call(_ method: String, _ url: String, token: String?, body: String?) async throws -> Answer {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method.uppercased()
        request.timeoutInterval = 10
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.setValue(UUID().uuidString, forHTTPHeaderField: "Idempotency-Key")
        }
        let prepared = request
        do {
            // A hard limit besides URLSession's idle timeout, which a trickling server can keep
            // from ever firing.
            let answer = try await withThrowingTaskGroup(of: Answer?.self) { group in
                group.addTask {
                    let (_, response) = try await URLSession.shared.data(for: prepared)
                    let http = response as? HTTPURLResponse
                    return Answer(status: http?.statusCode ?? 0, contentType: http?.value(forHTTPHeaderField: "Content-Type") ?? "", timedOut: false)
                }
                group.addTask {
                    try await Task.sleep(for: .seconds(30))
                    return nil
                }
                let first = try await group.next() ?? nil
                group.cancelAll()
                return first
            }
            return answer ?? Answer(status: 0, contentType: "", timedOut: true)
        } catch let error as URLError where error.code == .timedOut {
            return Answer(status: 0, contentType: "", timedOut: true)
        } catch is URLError {
            return Answer(status: 0, contentType: "", timedOut: false, dropped: true)
        }
    }
}
