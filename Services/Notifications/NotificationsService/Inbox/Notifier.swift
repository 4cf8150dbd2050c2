import Domain
import Foundation
import Postgres
import ServiceKit

/// Turns facts into messages: de-duplicated by the event that caused them, muted categories
/// skipped, non-urgent ones held through quiet hours, bursts of helps folded into one.
enum Notifier {
    /// Helps on one task within this window fold into one message.
    static let digestWindow: TimeInterval = 60

    /// One message's worth of a fact, before preferences, folding and caps.
    struct Message: Sendable {
        var user: UserID
        var category: String
        var values: [String: String]
        var cause: EventID
        var digestKey: String?
        var campaign: CampaignID?
        var correlation: String?
    }

    static func notify(
        _ user: UserID, _ category: String, _ values: [String: String], cause: EventID, digestKey: String? = nil,
        campaign: CampaignID? = nil, correlation: String?, on connection: PostgresConnection
    ) async throws {
        try await notify(
            [Message(user: user, category: category, values: values, cause: cause, digestKey: digestKey, campaign: campaign,
                     correlation: correlation)],
            on: connection)
    }

    /// Several facts in event order, with the outcome of taking them one at a time, in two round
    /// trips however many there are: one statement records every cause and reads what each
    /// message depends on (preferences, a recent message to fold into, the merchant's wording,
    /// the day's promotional count), one writes the messages, wakes their users' streams and
    /// appends their events. Messages of one digest fold here as they would have in turn (the
    /// consumer's batch is one transaction, so nobody saw the steps in between). Promotional
    /// categories take a turn on a per-user lock first: the consumer handles partitions
    /// concurrently, and the daily cap must see every earlier message of theirs.
    ///
    /// Under the assists benchmark a lane's batch of helps cost two statements per help before.
    static func notify(_ messages: [Message], on connection: PostgresConnection) async throws {
        guard !messages.isEmpty else { return }
        let promotionalUsers = Set(messages.filter { Templates.promotional.contains($0.category) }.map(\.user.rawValue)).sorted()
        if !promotionalUsers.isEmpty {
            // Its own statement: the counts below need a snapshot taken after the locks were granted.
            try await connection.query(
                """
                SELECT count(pg_advisory_xact_lock(hashtext(key)))
                FROM (SELECT 'fission.notify:' || u AS key FROM unnest(\(promotionalUsers)::text[]) AS u ORDER BY 1) AS ordered
                """)
        }
        let since = Date().addingTimeInterval(-digestWindow)
        // Planned once per connection: the server chose a custom plan each time (its estimates
        // for arrays of unknown length made the generic one look dearer), and planning was
        // three-quarters of the single-message statement's cost (258 µs of 330 µs a call under
        // the assists benchmark). The generic plan uses the same indexes.
        let contextQuery: PostgresQuery = """
            WITH input AS (
                SELECT i.user_id, i.cause_event_id, NULLIF(i.digest_key, '') AS digest_key, NULLIF(i.campaign_id, '')::uuid AS campaign_id,
                       i.category, i.n
                FROM unnest(\(messages.map(\.user.rawValue))::text[], \(messages.map(\.cause.rawValue))::uuid[],
                            \(messages.map { $0.digestKey ?? "" })::text[], \(messages.map { $0.campaign?.description ?? "" })::text[],
                            \(messages.map(\.category))::text[])
                     WITH ORDINALITY AS i(user_id, cause_event_id, digest_key, campaign_id, category, n)),
            fresh AS (
                INSERT INTO notification_causes (user_id, cause_event_id) SELECT user_id, cause_event_id FROM input
                ON CONFLICT DO NOTHING RETURNING user_id, cause_event_id)
            SELECT i.n, f.cause_event_id IS NOT NULL AS fresh, coalesce(p.locale, 'zh-CN') AS locale, coalesce(p.muted::text, '{}') AS muted,
                   p.quiet_start, p.quiet_end, coalesce(p.time_zone_offset_minutes, 0) AS time_zone_offset_minutes,
                   folded.id AS folded_id, folded.digest_count AS folded_count, custom.title AS custom_title, custom.body AS custom_body,
                   CASE WHEN i.category = ANY(\(Array(Templates.promotional))::text[]) THEN (
                       SELECT count(*) FROM notifications
                       WHERE user_id = i.user_id AND category = ANY(\(Array(Templates.promotional))::text[]) AND created_at >= date_trunc('day', now())
                   ) ELSE 0 END::int8 AS promotional_today
            FROM input i
            LEFT JOIN fresh f ON f.user_id = i.user_id AND f.cause_event_id = i.cause_event_id
            LEFT JOIN preferences p ON p.user_id = i.user_id
            LEFT JOIN LATERAL (
                SELECT id, digest_count FROM notifications
                WHERE i.digest_key IS NOT NULL AND user_id = i.user_id AND digest_key = i.digest_key AND read_at IS NULL
                  AND created_at > \(since)
                ORDER BY created_at DESC LIMIT 1 FOR UPDATE) AS folded ON true
            LEFT JOIN campaign_templates custom
                ON custom.campaign_id = i.campaign_id AND custom.category = i.category AND custom.locale = coalesce(p.locale, 'zh-CN')
            ORDER BY i.n
            """
        let contexts = try await connection.query(contextQuery.plannedOnce())

        /// A message as it will be written: new, or an existing one folded into.
        struct Written {
            var id: UUID
            var user: String
            var category: String
            var text: Templates.Text
            var digestKey: String?
            var count: Int
            var cause: UUID
            var visibleAt: Date
            /// The last message that changed it: taken one at a time, the last change gave its seq.
            var lastChange: Int
        }
        var written: [Written] = []
        var writtenIndex: [String: Int] = [:]  // by user and digest key
        var delivered: [Outbox.Record] = []
        struct Cause: Hashable {
            var user: String
            var event: UUID
        }
        var causesSeen: Set<Cause> = []
        var promotionalWritten: [String: Int] = [:]
        for (position, (message, context)) in zip(messages, contexts).enumerated() {
            // A cause twice in one batch: the insert above reports it fresh for both rows.
            guard try context.decode("fresh", as: Bool.self),
                  causesSeen.insert(Cause(user: message.user.rawValue, event: message.cause.rawValue)).inserted else { continue }
            let locale: String = try context.decode("locale")
            let muted: String = try context.decode("muted")
            if muted.trimmingCharacters(in: ["{", "}"]).split(separator: ",").map(String.init).contains(message.category) { continue }
            let promotional = Templates.promotional.contains(message.category)
            if promotional,
               try context.decode("promotional_today", as: Int.self) + promotionalWritten[message.user.rawValue, default: 0]
                >= Templates.promotionalDailyCap { continue }

            let digest = message.digestKey.map { message.user.rawValue + "\u{0}" + $0 }
            var index = digest.flatMap { writtenIndex[$0] }
            if index == nil, let foldedID = try context.decode("folded_id", as: UUID?.self) {
                // The recent message this digest folds into, as it stands in the table.
                written.append(Written(
                    id: foldedID, user: message.user.rawValue, category: message.category, text: Templates.Text(title: "", body: ""),
                    digestKey: message.digestKey, count: try context.decode("folded_count"), cause: message.cause.rawValue, visibleAt: Date(),
                    lastChange: position))
                index = written.count - 1
            }
            if let index {
                written[index].count += 1
                var digestValues = message.values
                digestValues["count"] = String(written[index].count)
                written[index].text = Templates.render(message.category + "Digest", locale: locale, digestValues)
                written[index].cause = message.cause.rawValue
                written[index].lastChange = position
            } else {
                var visibleAt = Date()
                if Templates.nonUrgent.contains(message.category),
                   let start = try context.decode("quiet_start", as: Int?.self), let end = try context.decode("quiet_end", as: Int?.self) {
                    visibleAt = quietHoursEnd(now: visibleAt, start: start, end: end, offsetMinutes: try context.decode("time_zone_offset_minutes"))
                }
                var text = Templates.render(message.category, locale: locale, message.values)
                if let title = try context.decode("custom_title", as: String?.self), let body = try context.decode("custom_body", as: String?.self) {
                    // The merchant's wording, with the same variables.
                    text = Templates.fill(Templates.Text(title: title, body: body), message.values)
                }
                written.append(Written(
                    id: UUID(), user: message.user.rawValue, category: message.category, text: text, digestKey: message.digestKey,
                    count: 1, cause: message.cause.rawValue, visibleAt: visibleAt, lastChange: position))
                if promotional { promotionalWritten[message.user.rawValue, default: 0] += 1 }
            }
            let target = index ?? written.count - 1
            if let digest { writtenIndex[digest] = target }
            delivered.append(try Outbox.Record(CloudEvent(
                NotificationDelivered(
                    notificationId: NotificationID(rawValue: written[target].id), userId: message.user, category: message.category,
                    channel: .inbox, causeEventId: message.cause, deliveredAt: Date()),
                correlationID: message.correlation)))
        }
        guard !written.isEmpty else { return }
        written.sort { $0.lastChange < $1.lastChange }

        // New messages are inserted; a folded one gets its new text, count and cause, and a new
        // seq, which puts it back at the top of the inbox and the stream. In the order of their
        // last changes, so seqs come out as they would have one at a time.
        try await connection.query(
            """
            WITH written AS (
                INSERT INTO notifications (id, user_id, category, title, body, digest_key, digest_count, cause_event_id, visible_at)
                SELECT w.id, w.user_id, w.category, w.title, w.body, NULLIF(w.digest_key, ''), w.digest_count::int, w.cause_event_id,
                       to_timestamp(w.visible_at_us::float8 / 1e6)
                FROM unnest(\(written.map(\.id))::uuid[], \(written.map(\.user))::text[], \(written.map(\.category))::text[],
                            \(written.map(\.text.title))::text[], \(written.map(\.text.body))::text[], \(written.map { $0.digestKey ?? "" })::text[],
                            \(written.map(\.count))::int8[], \(written.map(\.cause))::uuid[],
                            \(written.map { Int64(($0.visibleAt.timeIntervalSince1970 * 1e6).rounded()) })::int8[])
                     WITH ORDINALITY AS w(id, user_id, category, title, body, digest_key, digest_count, cause_event_id, visible_at_us, n)
                ORDER BY w.n
                ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, body = EXCLUDED.body, digest_count = EXCLUDED.digest_count,
                    seq = nextval('notifications_seq_seq'), cause_event_id = EXCLUDED.cause_event_id
                RETURNING user_id),
            appended AS (\(Outbox.insertion(of: delivered)))
            SELECT (SELECT count(*) FROM written) AS written, (SELECT count(*) FROM appended) AS appended
            """)
        InboxWakeups.changed(Set(written.map(\.user)), afterCommitOn: connection)
        Outbox.wakeRelay(afterCommitOn: connection)
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
