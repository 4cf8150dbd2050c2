import Domain
import Foundation
import Postgres
import ServiceKit

/// Turns facts into messages: de-duplicated by the event that caused them, muted categories
/// skipped, non-urgent ones held through quiet hours, bursts of helps folded into one.
enum Notifier {
    /// Helps on one task within this window fold into one message.
    static let digestWindow: TimeInterval = 60

    /// Two round trips for the common case: one statement records the cause and reads what the
    /// message depends on (preferences, a recent message to fold into, the merchant's wording),
    /// one writes the message, wakes the user's streams and appends its event. Promotional
    /// categories take a turn on a per-user lock first: the consumer handles partitions
    /// concurrently, and the daily cap must see every earlier message of theirs.
    static func notify(
        _ user: UserID, _ category: String, _ values: [String: String], cause: EventID, digestKey: String? = nil,
        campaign: CampaignID? = nil, correlation: String?, on connection: PostgresConnection
    ) async throws {
        let promotional = Templates.promotional.contains(category)
        if promotional {
            // Its own statement: the count below needs a snapshot taken after the lock was granted.
            try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\("fission.notify:" + user.rawValue)))")
        }
        // Planned once per connection: the server chose a custom plan each time (its estimate for
        // the array of promotional categories made the generic one look dearer), and planning
        // was three-quarters of this statement's cost (258 µs of 330 µs a call under the assists
        // benchmark). The generic plan uses the same indexes.
        let contextQuery: PostgresQuery = """
            WITH fresh AS (
                INSERT INTO notification_causes (user_id, cause_event_id) VALUES (\(user.rawValue), \(cause.rawValue))
                ON CONFLICT DO NOTHING RETURNING 1)
            SELECT (SELECT count(*) FROM fresh)::int8 AS fresh, coalesce(p.locale, 'zh-CN') AS locale, coalesce(p.muted::text, '{}') AS muted,
                   p.quiet_start, p.quiet_end, coalesce(p.time_zone_offset_minutes, 0) AS time_zone_offset_minutes,
                   folded.id AS folded_id, folded.digest_count AS folded_count, custom.title AS custom_title, custom.body AS custom_body,
                   CASE WHEN \(promotional) THEN (
                       SELECT count(*) FROM notifications
                       WHERE user_id = \(user.rawValue) AND category = ANY(\(Array(Templates.promotional))) AND created_at >= date_trunc('day', now())
                   ) ELSE 0 END::int8 AS promotional_today
            FROM (SELECT 1) AS one
            LEFT JOIN preferences p ON p.user_id = \(user.rawValue)
            LEFT JOIN LATERAL (
                SELECT id, digest_count FROM notifications
                WHERE \(digestKey)::text IS NOT NULL AND user_id = \(user.rawValue) AND digest_key = \(digestKey) AND read_at IS NULL
                  AND created_at > \(Date().addingTimeInterval(-digestWindow))
                ORDER BY created_at DESC LIMIT 1 FOR UPDATE) AS folded ON true
            LEFT JOIN campaign_templates custom
                ON custom.campaign_id = \(campaign?.rawValue) AND custom.category = \(category) AND custom.locale = coalesce(p.locale, 'zh-CN')
            """
        let context = try await connection.query(contextQuery.plannedOnce()).single()
        guard try context.decode("fresh", as: Int.self) == 1 else { return }
        let locale: String = try context.decode("locale")
        let muted: String = try context.decode("muted")
        if muted.trimmingCharacters(in: ["{", "}"]).split(separator: ",").map(String.init).contains(category) { return }
        if promotional, try context.decode("promotional_today", as: Int.self) >= Templates.promotionalDailyCap { return }
        var visibleAt = Date()
        if Templates.nonUrgent.contains(category),
           let start = try context.decode("quiet_start", as: Int?.self), let end = try context.decode("quiet_end", as: Int?.self) {
            visibleAt = quietHoursEnd(now: visibleAt, start: start, end: end, offsetMinutes: try context.decode("time_zone_offset_minutes"))
        }

        let notificationID: NotificationID
        let written: PostgresQuery
        if let foldedID = try context.decode("folded_id", as: UUID?.self) {
            notificationID = NotificationID(rawValue: foldedID)
            let count = try context.decode("folded_count", as: Int.self) + 1
            var digestValues = values
            digestValues["count"] = String(count)
            let text = Templates.render(category + "Digest", locale: locale, digestValues)
            // A new seq puts the folded message back at the top of the inbox and the stream.
            written = """
                UPDATE notifications SET title = \(text.title), body = \(text.body), digest_count = \(count),
                    seq = nextval('notifications_seq_seq'), cause_event_id = \(cause.rawValue)
                WHERE id = \(foldedID) RETURNING 1
                """
        } else {
            notificationID = NotificationID()
            var text = Templates.render(category, locale: locale, values)
            if let title = try context.decode("custom_title", as: String?.self), let body = try context.decode("custom_body", as: String?.self) {
                // The merchant's wording, with the same variables.
                text = Templates.fill(Templates.Text(title: title, body: body), values)
            }
            written = """
                INSERT INTO notifications (id, user_id, category, title, body, digest_key, cause_event_id, visible_at)
                VALUES (\(notificationID.rawValue), \(user.rawValue), \(category), \(text.title), \(text.body), \(digestKey),
                        \(cause.rawValue), \(visibleAt))
                RETURNING 1
                """
        }
        let delivered = try Outbox.Record(CloudEvent(
            NotificationDelivered(
                notificationId: notificationID, userId: user, category: category, channel: .inbox, causeEventId: cause, deliveredAt: Date()),
            correlationID: correlation))
        try await connection.query(
            """
            WITH written AS (\(written)),
            appended AS (\(delivered.insertion(from: "written")))
            SELECT pg_notify(\(InboxWakeups.channel), \(user.rawValue)), pg_notify(\(Outbox.channel), '') FROM appended
            """)
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
