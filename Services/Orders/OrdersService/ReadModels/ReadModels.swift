import Domain
import Foundation
import Postgres
import ServiceKit

/// Orders' copies of campaign terms and completed tasks: prices come from here, never from
/// the client.
enum ReadModels {
    static func campaignPublished(_ event: CloudEvent<CampaignPublished>, _ connection: PostgresConnection) async throws {
        try await connection.query(
            """
            INSERT INTO campaign_terms (campaign_id, merchant_id, status, terms)
            VALUES (\(event.data.campaignId.rawValue), \(event.data.merchantId.rawValue), 'published', \(PostgresJSON(event.data.terms)))
            ON CONFLICT (campaign_id) DO UPDATE SET terms = EXCLUDED.terms
            """)
    }

    static func campaignUpdated(_ event: CloudEvent<CampaignUpdated>, _ connection: PostgresConnection) async throws {
        try await connection.query(
            "UPDATE campaign_terms SET terms = \(PostgresJSON(event.data.terms)) WHERE campaign_id = \(event.data.campaignId.rawValue)")
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

    static func taskCompleted(_ event: CloudEvent<AssistTaskCompleted>, _ connection: PostgresConnection) async throws {
        let task = event.data
        try await connection.query(
            """
            INSERT INTO completed_tasks (task_id, campaign_id, initiator_id, kind, final_price, currency, pay_by)
            VALUES (\(task.taskId.rawValue), \(task.campaignId.rawValue), \(task.initiatorId.rawValue), \(task.kind.rawValue),
                    \(task.finalPrice.amount), \(task.finalPrice.currency.rawValue), \(task.payBy))
            ON CONFLICT DO NOTHING
            """)
    }

    static func status(_ campaign: CampaignID, _ status: String, on connection: PostgresConnection) async throws {
        try await connection.query(
            "UPDATE campaign_terms SET status = \(status) WHERE campaign_id = \(campaign.rawValue) AND status <> 'ended'")
    }
}

extension ReadModels {
    static func shareCreated(_ event: CloudEvent<ShareCreated>, _ connection: PostgresConnection) async throws {
        try await connection.query(
            """
            INSERT INTO shares (code, share_id, sharer_id, campaign_id)
            VALUES (\(event.data.code), \(event.data.shareId.rawValue), \(event.data.sharerId.rawValue), \(event.data.campaignId.rawValue))
            ON CONFLICT DO NOTHING
            """)
        // Orders placed through this link before it reached us get their referrer now, while
        // they can still be confirmed (which is when the referral XP is awarded).
        try await connection.query(
            """
            UPDATE orders SET share_id = \(event.data.shareId.rawValue), referrer_id = \(event.data.sharerId.rawValue), share_code = NULL
            WHERE share_code = \(event.data.code) AND campaign_id = \(event.data.campaignId.rawValue) AND referrer_id IS NULL
              AND user_id <> \(event.data.sharerId.rawValue) AND state IN ('placed', 'awaiting_payment', 'paid', 'waiting_for_team')
            """)
    }
}
