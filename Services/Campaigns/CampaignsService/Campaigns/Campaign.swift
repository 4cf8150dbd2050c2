import Domain
import Foundation
import Postgres
import ServiceKit

enum CampaignStatus: String, Codable, Sendable {
    case draft, published, paused, ended
}

/// A campaign as the API shows it.
struct CampaignView: Codable, Sendable {
    var id: CampaignID
    var merchantId: UserID
    var status: CampaignStatus
    var auditStatus: String
    var terms: CampaignTerms
    var stockLeft: Int
    var attributionWindowSeconds: Int
    var createdAt: Date
    var publishedAt: Date?
}

/// The body of create and update: the terms plus campaign settings.
struct CampaignDraft: Codable, Sendable {
    var terms: CampaignTerms
    var attributionWindowSeconds: Int?

    init(from decoder: any Decoder) throws {
        // The terms are the body's top level (kind, product, listPrice, ...), plus the setting.
        terms = try CampaignTerms(from: decoder)
        let container = try decoder.container(keyedBy: Keys.self)
        attributionWindowSeconds = try container.decodeIfPresent(Int.self, forKey: .attributionWindowSeconds)
    }

    func encode(to encoder: any Encoder) throws {
        try terms.encode(to: encoder)
        var container = encoder.container(keyedBy: Keys.self)
        try container.encodeIfPresent(attributionWindowSeconds, forKey: .attributionWindowSeconds)
    }

    enum Keys: String, CodingKey { case attributionWindowSeconds }

    /// Every broken rule as one 422 naming the first field (all of them in `detail`).
    func validate() throws {
        var violations = terms.violations()
        if let window = attributionWindowSeconds, !(60...(90 * 86_400)).contains(window) {
            violations.append(.init(field: "attributionWindowSeconds", reason: "must be between 60 seconds and 90 days"))
        }
        guard let first = violations.first else { return }
        throw Problem(
            .unprocessableContent, kind: "invalid-field", title: "A field is invalid",
            detail: violations.map(\.description).joined(separator: "; "), extensions: ["field": first.field])
    }
}

enum CampaignStore {
    static let columns: PostgresSQLFragment = "id, merchant_id, status, audit_status, terms, stock_left, attribution_window_seconds, created_at, published_at"

    static func view(_ row: PostgresRow) throws -> CampaignView {
        CampaignView(
            id: CampaignID(rawValue: try row.decode("id")), merchantId: UserID(rawValue: try row.decode("merchant_id")),
            status: CampaignStatus(rawValue: try row.decode("status")) ?? .draft, auditStatus: try row.decode("audit_status"),
            terms: try row.decode("terms", as: PostgresJSON<CampaignTerms>.self).value, stockLeft: try row.decode("stock_left"),
            attributionWindowSeconds: try row.decode("attribution_window_seconds"), createdAt: try row.decode("created_at"),
            publishedAt: try row.decode("published_at"))
    }

    static func find(_ id: CampaignID, on connection: PostgresConnection, lock: Bool = false) async throws -> CampaignView? {
        let rows = lock
            ? try await connection.query("SELECT \(columns) FROM campaigns WHERE id = \(id.rawValue) FOR UPDATE")
            : try await connection.query("SELECT \(columns) FROM campaigns WHERE id = \(id.rawValue)")
        return try rows.first.map(view)
    }
}
