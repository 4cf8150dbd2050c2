import Domain
import Foundation
import HTTPTypes
import Hummingbird
import Postgres
import ServiceKit

struct InboxRoutes {
    let runtime: ServiceRuntime
    let wakeups: InboxWakeups
    let deliveries: StreamDeliveries

    struct Item: ResponseEncodable, Codable {
        var id: NotificationID
        var seq: Int64
        var category: String
        var title: String
        var body: String
        var count: Int
        var createdAt: Date
        var read: Bool
        var cause: EventID
    }

    struct Page: ResponseEncodable {
        var items: [Item]
        var nextCursor: Int64?
        var unread: Int
    }

    struct Preferences: ResponseEncodable, Codable {
        var locale: String
        var muted: [String]
        var quietStart: Int?
        var quietEnd: Int?
        var timeZoneOffsetMinutes: Int?
    }

    func register(on api: RouterGroup<FissionRequestContext>) {
        api.get("/inbox", use: list)
        api.get("/inbox/unread-count") { _, context -> [String: Int] in
            ["unread": try await unread(try context.require(.shopper).userID)]
        }
        api.post("/inbox/read-all", use: readAll)
        api.post("/inbox/{id}/read", use: read)
        api.get("/inbox/stream", use: stream)
        api.put("/preferences", use: setPreferences)
    }

    static let columns: PostgresSQLFragment = "id, seq, category, title, body, digest_count, created_at, read_at, cause_event_id"

    static func item(_ row: PostgresRow) throws -> Item {
        Item(id: NotificationID(rawValue: try row.decode("id")), seq: try row.decode("seq"), category: try row.decode("category"),
             title: try row.decode("title"), body: try row.decode("body"), count: try row.decode("digest_count"),
             createdAt: try row.decode("created_at"), read: try row.decode("read_at", as: Date?.self) != nil,
             cause: EventID(rawValue: try row.decode("cause_event_id")))
    }

    func unread(_ user: UserID) async throws -> Int {
        try await runtime.pool.query(
            "SELECT count(*)::int8 AS n FROM notifications WHERE user_id = \(user.rawValue) AND read_at IS NULL AND visible_at <= now()"
        ).single().decode("n")
    }

    /// Newest first; `cursor` is the last `seq` of the previous page.
    @Sendable func list(_ request: Request, context: FissionRequestContext) async throws -> Page {
        let user = try context.require(.shopper).userID
        let limit = min(max(request.uri.queryParameters.get("limit", as: Int.self) ?? 20, 1), 100)
        let cursor = request.uri.queryParameters.get("cursor", as: Int64.self) ?? .max
        let items = try await runtime.pool.query(
            """
            SELECT \(Self.columns) FROM notifications
            WHERE user_id = \(user.rawValue) AND seq < \(cursor) AND visible_at <= now() ORDER BY seq DESC LIMIT \(limit)
            """).map(Self.item)
        return Page(items: items, nextCursor: items.count == limit ? items.last?.seq : nil, unread: try await unread(user))
    }

    @Sendable func read(_ request: Request, context: FissionRequestContext) async throws -> [String: Int] {
        let user = try context.require(.shopper).userID
        let id: NotificationID = try context.pathID("id")
        let changed = try await runtime.pool.query(
            "UPDATE notifications SET read_at = coalesce(read_at, now()) WHERE id = \(id.rawValue) AND user_id = \(user.rawValue)")
        guard changed.affectedRows == 1 else { throw Problem.notFound("no notification \(id)") }
        return ["unread": try await unread(user)]
    }

    @Sendable func readAll(_ request: Request, context: FissionRequestContext) async throws -> [String: Int] {
        let user = try context.require(.shopper).userID
        try await runtime.pool.query("UPDATE notifications SET read_at = now() WHERE user_id = \(user.rawValue) AND read_at IS NULL")
        return ["unread": try await unread(user)]
    }

    /// Server-sent events: every notification as `id: <seq>`; a reconnecting client sends
    /// `Last-Event-ID` and gets what it missed first. The stream looks when the notifier says
    /// this user's inbox changed, and every two seconds regardless (held messages become
    /// visible with no event, and a wake-up can be lost while the listener reconnects).
    @Sendable func stream(_ request: Request, context: FissionRequestContext) async throws -> Response {
        let user = try context.require(.shopper).userID
        let lastSeen = request.headers[HTTPField.Name("Last-Event-ID")!].flatMap { Int64($0) } ?? 0
        let pool = runtime.pool
        let wakeups = self.wakeups
        let deliveries = self.deliveries
        let body = ResponseBody { writer in
            let wake = wakeups.follow(user.rawValue)
            defer { wakeups.unfollow(user.rawValue, wake) }
            var last = lastSeen
            var lastWrite = ContinuousClock.now
            try await writer.write(ByteBuffer(string: ": connected\n\n"))
            while !Task.isCancelled {
                let items = try await pool.query(
                    """
                    SELECT \(Self.columns) FROM notifications
                    WHERE user_id = \(user.rawValue) AND seq > \(last) AND visible_at <= now() ORDER BY seq LIMIT 100
                    """).map(Self.item)
                if !items.isEmpty {
                    var frames = ByteBuffer()
                    for item in items {
                        frames.writeString("id: \(item.seq)\nevent: notification\ndata: ")
                        frames.writeBytes(try EventCoding.encode(item))
                        frames.writeString("\n\n")
                    }
                    try await writer.write(frames)
                    last = items[items.count - 1].seq
                    lastWrite = .now
                    // Record the live deliveries (for audit and statistics).
                    let deliveredAt = Date()
                    try await deliveries.record(items.map { item in
                        CloudEvent(NotificationDelivered(
                            notificationId: item.id, userId: user, category: item.category, channel: .stream,
                            causeEventId: item.cause, deliveredAt: deliveredAt))
                    })
                }
                if items.count == 100 { continue }
                // A comment line now and then keeps proxies from closing the stream and makes
                // a vanished client fail the write, which ends this loop.
                if ContinuousClock.now - lastWrite >= .seconds(2) {
                    try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    lastWrite = .now
                }
                await wake.wait(timeout: .seconds(2))
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    @Sendable func setPreferences(_ request: Request, context: FissionRequestContext) async throws -> Preferences {
        let user = try context.require(.shopper).userID
        var request = request
        let wanted = try decodeBody(Preferences.self, from: try await request.collectBody(upTo: context.maxUploadSize))
        guard ["zh-CN", "en"].contains(wanted.locale) else { throw Problem.invalidField("locale", "zh-CN or en") }
        for hour in [wanted.quietStart, wanted.quietEnd].compactMap({ $0 }) where !(0...23).contains(hour) {
            throw Problem.invalidField("quietStart", "hours are 0...23")
        }
        guard (wanted.quietStart == nil) == (wanted.quietEnd == nil) else { throw Problem.invalidField("quietEnd", "give both ends of quiet hours") }
        // UTC−12:00 to UTC+14:00 are the offsets in use (anything else overflowed the column: a 500).
        if let offset = wanted.timeZoneOffsetMinutes, !(-720...840).contains(offset) {
            throw Problem.invalidField("timeZoneOffsetMinutes", "must be between -720 and 840")
        }
        try await runtime.pool.query(
            """
            INSERT INTO preferences (user_id, locale, muted, quiet_start, quiet_end, time_zone_offset_minutes)
            VALUES (\(user.rawValue), \(wanted.locale), \(wanted.muted), \(wanted.quietStart), \(wanted.quietEnd), \(wanted.timeZoneOffsetMinutes ?? 480))
            ON CONFLICT (user_id) DO UPDATE SET locale = EXCLUDED.locale, muted = EXCLUDED.muted, quiet_start = EXCLUDED.quiet_start,
                quiet_end = EXCLUDED.quiet_end, time_zone_offset_minutes = EXCLUDED.time_zone_offset_minutes
            """)
        return wanted
    }
}
