import Foundation

/// The CloudEvents 1.0 JSON envelope every Fission event travels in. Correlation and causation
/// ids and the W3C `traceparent` are extension attributes. Unknown attributes and unknown
/// fields in `data` are ignored when decoding, so a newer producer never breaks an older
/// consumer.
public struct CloudEvent<Payload: DomainEvent>: Codable, Sendable, Hashable {
    public var specversion: String
    public var id: EventID
    /// `/fission/<service>`
    public var source: String
    public var type: String
    public var time: Date
    /// The aggregate id (also the Kafka key).
    public var subject: String
    public var datacontenttype: String?
    public var correlationid: String?
    public var causationid: String?
    public var traceparent: String?
    public var data: Payload

    public init(
        _ data: Payload, id: EventID = EventID(), time: Date = Date(), correlationID: String? = nil,
        causationID: String? = nil, traceparent: String? = nil
    ) {
        self.specversion = "1.0"
        self.id = id
        self.source = "/fission/\(Payload.topic.producer.rawValue)"
        self.type = Payload.eventType
        self.time = time
        self.subject = data.aggregateID
        self.datacontenttype = "application/json"
        self.correlationid = correlationID
        self.causationid = causationID
        self.traceparent = traceparent
        self.data = data
    }
}

/// The envelope without its data: enough to route, de-duplicate and dead-letter a message
/// without knowing its payload type.
public struct CloudEventHeader: Codable, Sendable, Hashable {
    public var specversion: String
    public var id: EventID
    public var source: String
    public var type: String
    public var time: Date
    public var subject: String
    public var correlationid: String?
    public var causationid: String?
    public var traceparent: String?
}

/// JSON coding shared by every producer and consumer: RFC 3339 times, with milliseconds when
/// there are any.
public enum EventCoding {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(formatTimestamp(date))
        }
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = parseTimestamp(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(text)' is not an RFC 3339 timestamp")
            }
            return date
        }
        return decoder
    }

    /// The bytes `encoder()` would write, written by `EventJSONEncoder` (a quarter less time).
    public static func encode(_ value: some Encodable) throws -> [UInt8] {
        try EventJSONEncoder.encode(value)
    }

    /// The value `decoder()` would read, read by `EventJSONDecoder` (half the time or less).
    public static func decode<Payload: DomainEvent>(_ type: Payload.Type, from bytes: [UInt8]) throws -> CloudEvent<Payload> {
        try EventJSONDecoder.decode(CloudEvent<Payload>.self, from: bytes)
    }

    /// The envelope of an event of any type.
    public static func decodeHeader(from bytes: [UInt8]) throws -> CloudEventHeader {
        try EventJSONDecoder.decode(CloudEventHeader.self, from: bytes)
    }

    /// `2026-11-23T08:00:00Z` or `2026-11-23T08:00:00.125Z`.
    public static func formatTimestamp(_ date: Date) -> String {
        Timestamp.format(date)
    }

    /// RFC 3339 with any offset and any number of fraction digits.
    public static func parseTimestamp(_ text: String) -> Date? {
        Timestamp.parse(text)
    }
}
