import Domain
import Foundation
import Postgres

/// Writing events: `Outbox.append` in the same transaction as the state change, so the change
/// and its event commit together or not at all. The relay publishes them afterwards.
public enum Outbox {
    /// The LISTEN/NOTIFY channel that wakes the relay when rows commit.
    public static let channel = "fission_outbox"

    /// An event as its outbox row: for a statement that writes it together with the state change
    /// it records (see `TaskBook` in assists), where a separate `append` would cost a round trip.
    public struct Record: Sendable {
        public let eventID: UUID
        public let topic: String
        public let key: String
        public let type: String
        public let payload: String
        public let headers: PostgresStringMap

        public init<Payload: DomainEvent>(_ event: CloudEvent<Payload>) throws {
            var headers: [String: String] = ["ce_type": event.type, "ce_id": event.id.description]
            if let correlation = event.correlationid { headers["ce_correlationid"] = correlation }
            if let traceparent = event.traceparent { headers["traceparent"] = traceparent }
            self.eventID = event.id.rawValue
            self.topic = Payload.topic.name
            self.key = event.subject
            self.type = event.type
            self.payload = String(decoding: try EventCoding.encode(event), as: UTF8.self)
            self.headers = PostgresStringMap(headers)
        }
    }

    /// `INSERT INTO outbox ... RETURNING 1` of several events, in order, for a data-modifying
    /// common table expression in the statement that makes the change they record. The caller
    /// wakes the relay with `wakeRelay(afterCommitOn:)`.
    public static func insertion(of records: [Record]) -> PostgresQuery {
        """
        INSERT INTO outbox (event_id, topic, key, event_type, payload, headers)
        SELECT e.event_id, e.topic, e.key, e.event_type, e.payload, e.headers::jsonb
        FROM unnest(\(records.map(\.eventID))::uuid[], \(records.map(\.topic))::text[], \(records.map(\.key))::text[],
                    \(records.map(\.type))::text[], \(records.map(\.payload))::text[], \(records.map(\.headers.postgresText))::text[])
             WITH ORDINALITY AS e(event_id, topic, key, event_type, payload, headers, n)
        ORDER BY e.n
        RETURNING 1
        """
    }

    /// Appends an event on `connection` (which must be inside the caller's transaction).
    public static func append<Payload: DomainEvent>(_ event: CloudEvent<Payload>, on connection: PostgresConnection) async throws {
        try await append(try Record(event), on: connection)
    }

    /// Appends an event already made into its row.
    public static func append(_ record: Record, on connection: PostgresConnection) async throws {
        try await append([record], on: connection)
    }

    /// Appends several events in order in one statement, which is atomic on its own: `connection`
    /// may be outside a transaction. The relay is woken once the transaction commits, and only
    /// if it does.
    public static func append(_ records: [Record], on connection: PostgresConnection) async throws {
        guard !records.isEmpty else { return }
        try await connection.query(insertion(of: records))
        wakeRelay(afterCommitOn: connection)
    }

    /// Wakes the relay once the transaction on `connection` has committed (see `ChannelWakeups`
    /// for why not a `NOTIFY` in the transaction).
    public static func wakeRelay(afterCommitOn connection: PostgresConnection) {
        ChannelWakeups.announce(channel, afterCommitOn: connection)
    }

    /// Appends the event a request or handler caused, carrying its correlation id.
    public static func append<Payload: DomainEvent>(
        _ data: Payload, correlationID: String?, causationID: String? = nil, on connection: PostgresConnection
    ) async throws {
        try await append(CloudEvent(data, correlationID: correlationID, causationID: causationID), on: connection)
    }
}
