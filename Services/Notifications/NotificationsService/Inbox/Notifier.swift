import Domain
import Foundation
import Postgres
import ServiceKit

/// Turns facts into messages: de-duplicated by the event that caused them, muted categories
/// skipped, non-urgent ones held through quiet hours, bursts of helps folded into one.
enum Notifier {
    /// Helps on one task within this window fold into one message.
    static let digestWindow: TimeInterval = 60

    static func notify(
        _ user: UserID, _ category: String, _ values: [String: String], cause: EventID, digestKey: String? = nil,
        campaign: CampaignID? = nil, correlation: String?, on connection: PostgresConnection
    ) async throws {
        // The consumer handles partitions concurrently: one user's notifications take turns (a
        // lock held to commit, taken in the same round trip), so the daily cap and the digest
        // see every earlier message of theirs.
        let fresh = try await connection.query(
            """
            WITH turn AS (SELECT pg_advisory_xact_lock(hashtext(\("fission.notify:" + user.rawValue))))
            INSERT INTO notification_causes (user_id, cause_event_id) SELECT \(user.rawValue), \(cause.rawValue) FROM turn
            ON CONFLICT DO NOTHING
            """).affectedRows == 1
        guard fresh else { return }
        let preferences = try await connection.query(
            "SELECT locale, muted::text AS muted, quiet_start, quiet_end, time_zone_offset_minutes FROM preferences WHERE user_id = \(user.rawValue)").first
        let locale = try preferences?.decode("locale", as: String.self) ?? "zh-CN"
        let muted = try preferences?.decode("muted", as: String.self) ?? "{}"
        if muted.trimmingCharacters(in: ["{", "}"]).split(separator: ",").map(String.init).contains(category) { return }
        if Templates.promotional.contains(category) {
            let today = try await connection.query(
                """
                SELECT count(*)::int8 AS n FROM notifications
                WHERE user_id = \(user.rawValue) AND category = ANY(\(Array(Templates.promotional))) AND created_at >= date_trunc('day', now())
                """).single().decode("n", as: Int.self)
            if today >= Templates.promotionalDailyCap { return }
        }
        var visibleAt = Date()
        if Templates.nonUrgent.contains(category), let preferences,
           let start = try preferences.decode("quiet_start", as: Int?.self), let end = try preferences.decode("quiet_end", as: Int?.self) {
            visibleAt = quietHoursEnd(now: visibleAt, start: start, end: end, offsetMinutes: try preferences.decode("time_zone_offset_minutes"))
        }
        var notificationID = NotificationID()
        if let digestKey, let folded = try await connection.query(
            """
            SELECT id, digest_count FROM notifications
            WHERE user_id = \(user.rawValue) AND digest_key = \(digestKey) AND read_at IS NULL
              AND created_at > \(Date().addingTimeInterval(-digestWindow))
            ORDER BY created_at DESC LIMIT 1 FOR UPDATE
            """).first {
            notificationID = NotificationID(rawValue: try folded.decode("id"))
            let count = try folded.decode("digest_count", as: Int.self) + 1
            var digestValues = values
            digestValues["count"] = String(count)
            let text = Templates.render(category + "Digest", locale: locale, digestValues)
            // A new seq puts the folded message back at the top of the inbox and the stream.
            try await connection.query(
                """
                UPDATE notifications SET title = \(text.title), body = \(text.body), digest_count = \(count),
                    seq = nextval('notifications_seq_seq'), cause_event_id = \(cause.rawValue)
                WHERE id = \(notificationID.rawValue)
                """)
        } else {
            var text = Templates.render(category, locale: locale, values)
            if let campaign, let custom = try await connection.query(
                "SELECT title, body FROM campaign_templates WHERE campaign_id = \(campaign.rawValue) AND category = \(category) AND locale = \(locale)"
            ).first {
                // The merchant's wording, with the same variables.
                text = Templates.fill(Templates.Text(title: try custom.decode("title"), body: try custom.decode("body")), values)
            }
            try await connection.query(
                """
                INSERT INTO notifications (id, user_id, category, title, body, digest_key, cause_event_id, visible_at)
                VALUES (\(notificationID.rawValue), \(user.rawValue), \(category), \(text.title), \(text.body), \(digestKey),
                        \(cause.rawValue), \(visibleAt))
                """)
        }
        try await InboxWakeups.changed(user.rawValue, on: connection)
        try await Outbox.append(
            NotificationDelivered(
                notificationId: notificationID, userId: user, category: category, channel: .inbox, causeEventId: cause, deliveredAt: Date()),
            correlationID: correlation, on: connection)
    }

    /// When quiet hours (local hours `start`..<`end`, possibly over midnight) end, or `now`.
    static func quietHoursEnd(now: Date, start: Int, end: Int, offsetMinutes: Int) -> Date {
        let local = now.addingTimeInterval(Double(offsetMinutes) * 60)
        let secondsIntoDay = Int(local.timeIntervalSince1970) % 86_400
        let hour = secondsIntoDay / 3600
        let inQuiet = start <= end ? (hour >= start && hour < end) : (hour >= start || hour < end)
        guard inQuiet else { return now }
        var wait = (end * 3600) - secondsIntoDay
        if wait <= 0 { wait += 86_400 }
        return now.addingTimeInterval(Double(wait))
    }
}
