import Foundation
import TextCoding

/// A UUID whose first 48 bits are the creation time in milliseconds (RFC 9562 version 7):
/// ids sort by creation, which keeps B-tree inserts local and makes logs readable.
extension UUID {
    public static func timeOrdered(at date: Date = Date()) -> UUID {
        let milliseconds = UInt64(max(0, date.timeIntervalSince1970 * 1000))
        // Two draws of 64 bits, not sixteen of 8: each draw is a `getrandom` system call, and
        // sixteen made id generation 1.6% of the assists service's CPU.
        var generator = SystemRandomNumberGenerator()
        let random = [generator.next(), generator.next()] as [UInt64]
        var bytes = (0..<16).map { UInt8(truncatingIfNeeded: random[$0 / 8] >> (8 * UInt64($0 % 8))) }
        for index in 0..<6 { bytes[index] = UInt8(truncatingIfNeeded: milliseconds >> (40 - 8 * UInt64(index))) }
        bytes[6] = 0x70 | (bytes[6] & 0x0f)  // version 7
        bytes[8] = 0x80 | (bytes[8] & 0x3f)  // RFC 4122 variant
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }

    /// Below every time-ordered id made at `date` or later, in PostgreSQL's `uuid` order (bytes
    /// compared in turn): the ids made before it are a range of an index on them.
    public static func timeOrderedLowerBound(at date: Date) -> UUID {
        let milliseconds = UInt64(max(0, date.timeIntervalSince1970 * 1000))
        let time = (0..<6).map { UInt8(truncatingIfNeeded: milliseconds >> (40 - 8 * UInt64($0))) }
        return UUID(uuid: (time[0], time[1], time[2], time[3], time[4], time[5], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    }
}

/// An id of one kind of entity; distinct types so a team id can never be passed as an order id.
/// Encoded as the bare UUID string.
public protocol EntityID: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible
where RawValue == UUID {
    init(rawValue: UUID)
}

extension EntityID {
    /// A new time-ordered id.
    public init() { self.init(rawValue: .timeOrdered()) }

    public init?(_ text: String) {
        guard let uuid = UUID(hyphenatedHex: text) else { return nil }
        self.init(rawValue: uuid)
    }

    public var description: String { rawValue.lowercasedText }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let uuid = UUID(hyphenatedHex: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "'\(text)' is not a UUID"))
        }
        self.init(rawValue: uuid)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

public struct CampaignID: EntityID { public let rawValue: UUID; public init(rawValue: UUID) { self.rawValue = rawValue } }
public struct TeamID: EntityID { public let rawValue: UUID; public init(rawValue: UUID) { self.rawValue = rawValue } }
public struct TaskID: EntityID { public let rawValue: UUID; public init(rawValue: UUID) { self.rawValue = rawValue } }
public struct HelpID: EntityID { public let rawValue: UUID; public init(rawValue: UUID) { self.rawValue = rawValue } }
public struct OrderID: EntityID { public let rawValue: UUID; public init(rawValue: UUID) { self.rawValue = rawValue } }
public struct ShareID: EntityID { public let rawValue: UUID; public init(rawValue: UUID) { self.rawValue = rawValue } }
public struct DrawID: EntityID { public let rawValue: UUID; public init(rawValue: UUID) { self.rawValue = rawValue } }
public struct EventID: EntityID { public let rawValue: UUID; public init(rawValue: UUID) { self.rawValue = rawValue } }
public struct NotificationID: EntityID { public let rawValue: UUID; public init(rawValue: UUID) { self.rawValue = rawValue } }
public struct LedgerEntryID: EntityID { public let rawValue: UUID; public init(rawValue: UUID) { self.rawValue = rawValue } }
public struct SubscriptionID: EntityID { public let rawValue: UUID; public init(rawValue: UUID) { self.rawValue = rawValue } }

/// A person (shopper, merchant or operator): the subject of their token. Identity providers
/// choose the format, so it is text, not a UUID.
public struct UserID: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
