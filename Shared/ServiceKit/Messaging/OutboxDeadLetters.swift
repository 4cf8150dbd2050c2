import Foundation
import Postgres

/// The outbox events the relay could not publish because the producer or the broker refused them
/// for what they are (`outbox_dead_letters`, see `OutboxRelay`), and sending them again once the
/// cause is mended (a larger `message.max.bytes`, say). `fission outbox` runs these.
public enum OutboxDeadLetters {
    public struct Letter: Sendable, Equatable {
        public var eventID: UUID
        public var eventType: String
        public var topic: String
        public var key: String
        public var payloadBytes: Int
        public var error: String
        public var deadLetteredAt: Date
    }

    public struct UnknownEvents: Error, CustomStringConvertible {
        public var eventIDs: [UUID]
        public var description: String {
            "no outbox dead letter with event id \(eventIDs.map { $0.uuidString.lowercased() }.joined(separator: ", ")); nothing requeued"
        }
    }

    /// Every dead letter, oldest first.
    public static func list(on pool: PostgresPool) async throws -> [Letter] {
        try await pool.query(
            """
            SELECT event_id, event_type, topic, key, octet_length(payload) AS payload_bytes, error, dead_lettered_at
            FROM outbox_dead_letters ORDER BY id
            """
        ).map { row in
            Letter(
                eventID: try row.decode("event_id"), eventType: try row.decode("event_type"), topic: try row.decode("topic"),
                key: try row.decode("key"), payloadBytes: try row.decode("payload_bytes"), error: try row.decode("error"),
                deadLetteredAt: try row.decode("dead_lettered_at"))
        }
    }

    /// Moves these dead letters back into the outbox, in their original order and behind every
    /// row waiting there (so after the aggregate's later events, which were published meanwhile),
    /// and wakes the relay. All or nothing: an unknown id requeues none.
    @discardableResult
    public static func requeue(_ eventIDs: [UUID], on pool: PostgresPool) async throws -> Int {
        let wanted = Set(eventIDs)
        return try await pool.withTransaction { connection in
            let requeued = try await connection.query(
                """
                WITH moved AS (DELETE FROM outbox_dead_letters WHERE event_id = ANY(\(Array(wanted))) RETURNING *),
                requeued AS (
                    INSERT INTO outbox (event_id, topic, key, event_type, payload, headers, created_at)
                    SELECT event_id, topic, key, event_type, payload, headers, created_at FROM (SELECT * FROM moved ORDER BY id) AS ordered
                    RETURNING event_id)
                SELECT event_id, pg_notify(\(Outbox.channel), '') FROM requeued
                """
            ).map { try $0.decode("event_id", as: UUID.self) }
            let unknown = wanted.subtracting(requeued)
            guard unknown.isEmpty else { throw UnknownEvents(eventIDs: unknown.sorted(by: <)) }
            return requeued.count
        }
    }
}
