import Synchronization
import Domain
import Foundation
import Postgres
import ServiceKit

/// Assists' own copies of what other services decide: campaign rules, who has paid, who
/// opened whose link.
enum ReadModels {
    static func campaignPublished(_ event: CloudEvent<CampaignPublished>, _ connection: PostgresConnection) async throws {
        try await upsert(event.data.campaignId, terms: event.data.terms, status: "published", on: connection)
    }

    static func campaignUpdated(_ event: CloudEvent<CampaignUpdated>, _ connection: PostgresConnection) async throws {
        try await connection.query(
            "UPDATE campaign_rules SET terms = \(PostgresJSON(event.data.terms)), updated_at = now() WHERE campaign_id = \(event.data.campaignId.rawValue)")
    }

    static func campaignPaused(_ event: CloudEvent<CampaignPaused>, _ connection: PostgresConnection) async throws {
        try await status(event.data.campaignId, "paused", on: connection)
    }

    static func campaignResumed(_ event: CloudEvent<CampaignResumed>, _ connection: PostgresConnection) async throws {
        try await status(event.data.campaignId, "published", on: connection)
    }

    static func campaignEnded(_ event: CloudEvent<CampaignEnded>, _ connection: PostgresConnection) async throws {
        try await status(event.data.campaignId, "ended", on: connection)
    }

    static func orderPaid(_ event: CloudEvent<OrderPaid>, _ connection: PostgresConnection) async throws {
        try await connection.query("INSERT INTO paid_users (user_id) VALUES (\(event.data.userId.rawValue)) ON CONFLICT DO NOTHING")
    }

    static func shareClicked(_ event: CloudEvent<ShareClicked>, _ connection: PostgresConnection) async throws {
        guard let clicker = event.data.clickerId else { return }
        try await connection.query(
            """
            INSERT INTO share_clicks (share_id, campaign_id, sharer_id, clicker_id, clicked_at)
            VALUES (\(event.data.shareId.rawValue), \(event.data.campaignId.rawValue), \(event.data.sharerId.rawValue),
                    \(clicker.rawValue), \(event.data.clickedAt))
            """)
    }

    static func upsert(_ campaign: CampaignID, terms: CampaignTerms, status: String, on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            INSERT INTO campaign_rules (campaign_id, status, terms) VALUES (\(campaign.rawValue), \(status), \(PostgresJSON(terms)))
            ON CONFLICT (campaign_id) DO UPDATE SET status = EXCLUDED.status, terms = EXCLUDED.terms, updated_at = now()
            """)
    }

    static func status(_ campaign: CampaignID, _ status: String, on connection: PostgresConnection) async throws {
        try await connection.query(
            "UPDATE campaign_rules SET status = \(status), updated_at = now() WHERE campaign_id = \(campaign.rawValue) AND status <> 'ended'")
    }

    static func rules(_ campaign: CampaignID, on connection: PostgresConnection) async throws -> (status: String, terms: CampaignTerms)? {
        guard let row = try await connection.query(
            "SELECT status, terms FROM campaign_rules WHERE campaign_id = \(campaign.rawValue)").first else { return nil }
        return (try row.decode("status"), try terms.decode(try row.decode("terms", as: String.self)))
    }

    /// Campaign terms and cut schedules are read on every help but change rarely: decoded once
    /// per distinct JSON text (decoding them was a tenth of a help's CPU).
    static let terms = DecodedJSON<CampaignTerms>()
    static let schedules = DecodedJSON<CutSchedule>()
}

/// JSON text → value, remembered; bounded by forgetting everything when full. Decodes the way
/// `PostgresJSON` stored the value (Foundation's default coding).
final class DecodedJSON<Value: Decodable & Sendable>: Sendable {
    private let values = Mutex<[String: Value]>([:])
    private let capacity = 10_000

    func decode(_ text: String) throws -> Value {
        if let value = values.withLock({ $0[text] }) { return value }
        let value = try JSONDecoder().decode(Value.self, from: Data(text.utf8))
        values.withLock { values in
            if values.count >= capacity { values.removeAll(keepingCapacity: true) }
            values[text] = value
        }
        return value
    }
}
