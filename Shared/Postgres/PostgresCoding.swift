import Foundation
import TextCoding

/// A PostgreSQL type OID. Only the types Fission binds or decodes are named.
public struct PostgresType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Lets the server infer the type from context, as a literal in quotes would.
    public static let unspecified = PostgresType(rawValue: 0)
    public static let bool = PostgresType(rawValue: 16)
    public static let bytea = PostgresType(rawValue: 17)
    public static let char = PostgresType(rawValue: 18)
    public static let name = PostgresType(rawValue: 19)
    public static let int8 = PostgresType(rawValue: 20)
    public static let int2 = PostgresType(rawValue: 21)
    public static let int4 = PostgresType(rawValue: 23)
    public static let text = PostgresType(rawValue: 25)
    public static let oid = PostgresType(rawValue: 26)
    public static let json = PostgresType(rawValue: 114)
    public static let float4 = PostgresType(rawValue: 700)
    public static let float8 = PostgresType(rawValue: 701)
    public static let unknown = PostgresType(rawValue: 705)
    public static let bpchar = PostgresType(rawValue: 1042)
    public static let varchar = PostgresType(rawValue: 1043)
    public static let date = PostgresType(rawValue: 1082)
    public static let timestamp = PostgresType(rawValue: 1114)
    public static let timestamptz = PostgresType(rawValue: 1184)
    public static let numeric = PostgresType(rawValue: 1700)
    public static let uuid = PostgresType(rawValue: 2950)
    public static let jsonb = PostgresType(rawValue: 3802)
    public static let textArray = PostgresType(rawValue: 1009)
    public static let int8Array = PostgresType(rawValue: 1016)
    public static let uuidArray = PostgresType(rawValue: 2951)

    /// Types created in a database (enums, extensions' types) get OIDs from here on.
    var isUserDefined: Bool { rawValue >= 16384 }

    public var description: String {
        switch self {
        case .bool: "bool"
        case .bytea: "bytea"
        case .char: "char"
        case .name: "name"
        case .int8: "int8"
        case .int2: "int2"
        case .int4: "int4"
        case .text: "text"
        case .oid: "oid"
        case .json: "json"
        case .float4: "float4"
        case .float8: "float8"
        case .unknown: "unknown"
        case .bpchar: "bpchar"
        case .varchar: "varchar"
        case .date: "date"
        case .timestamp: "timestamp"
        case .timestamptz: "timestamptz"
        case .numeric: "numeric"
        case .uuid: "uuid"
        case .jsonb: "jsonb"
        case .textArray: "text[]"
        case .int8Array: "int8[]"
        case .uuidArray: "uuid[]"
        default: "oid \(rawValue)"
        }
    }
}

/// A Swift value that can be bound as a parameter, in PostgreSQL's text format.
public protocol PostgresEncodable: Sendable {
    static var postgresType: PostgresType { get }
    var postgresText: String { get }
}

/// A Swift value that a column can be decoded into.
public protocol PostgresDecodable: Sendable {
    /// Decodes the column's text form; throws `PostgresDecodingFailure` when the column's type
    /// or text does not fit. The row adds the column name to the error.
    static func decode(postgresText text: String, type: PostgresType) throws(PostgresDecodingFailure) -> Self
    /// What SQL NULL decodes to; `nil` means NULL is not acceptable for this type.
    static var postgresNull: Self? { get }
}

extension PostgresDecodable {
    public static var postgresNull: Self? { nil }
}

/// Why a column did not decode; turned into a `PostgresError` naming the column by the row.
public struct PostgresDecodingFailure: Error, Sendable {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }

    static func typeMismatch(_ swiftType: Any.Type, _ type: PostgresType) -> PostgresDecodingFailure {
        PostgresDecodingFailure("column of type \(type) cannot be decoded as \(swiftType)")
    }
}

extension Optional: PostgresEncodable where Wrapped: PostgresEncodable {
    public static var postgresType: PostgresType { Wrapped.postgresType }
    /// Only reached through a generic context; interpolation of an optional binds NULL directly.
    public var postgresText: String { self?.postgresText ?? "" }
}

extension Optional: PostgresDecodable where Wrapped: PostgresDecodable {
    public static func decode(postgresText text: String, type: PostgresType) throws(PostgresDecodingFailure) -> Self {
        try Wrapped.decode(postgresText: text, type: type)
    }
    public static var postgresNull: Self? { .some(.none) }
}

// MARK: Integers

private let integerTypes: Set<PostgresType> = [.int2, .int4, .int8, .oid]

extension Int64: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .int8 }
    public var postgresText: String { String(self) }
    public static func decode(postgresText text: String, type: PostgresType) throws(PostgresDecodingFailure) -> Int64 {
        guard integerTypes.contains(type) else { throw .typeMismatch(Self.self, type) }
        guard let value = Int64(text) else { throw PostgresDecodingFailure("'\(text)' is not an integer") }
        return value
    }
}

extension Int: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .int8 }
    public var postgresText: String { String(self) }
    public static func decode(postgresText text: String, type: PostgresType) throws(PostgresDecodingFailure) -> Int {
        Int(try Int64.decode(postgresText: text, type: type))
    }
}

extension Int32: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .int4 }
    public var postgresText: String { String(self) }
    public static func decode(postgresText text: String, type: PostgresType) throws(PostgresDecodingFailure) -> Int32 {
        guard type == .int2 || type == .int4 else { throw .typeMismatch(Self.self, type) }
        guard let value = Int32(text) else { throw PostgresDecodingFailure("'\(text)' is not a 32-bit integer") }
        return value
    }
}

// MARK: Text, booleans, floating point

extension String: PostgresEncodable, PostgresDecodable {
    /// Left to the server, so a string can be compared with or inserted into any column type.
    public static var postgresType: PostgresType { .unspecified }
    public var postgresText: String { self }
    private static let textual: Set<PostgresType> = [.text, .varchar, .bpchar, .name, .char, .unknown, .json, .jsonb]
    public static func decode(postgresText text: String, type: PostgresType) throws(PostgresDecodingFailure) -> String {
        guard textual.contains(type) || type.isUserDefined else { throw .typeMismatch(Self.self, type) }
        return text
    }
}

extension Bool: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .bool }
    public var postgresText: String { self ? "t" : "f" }
    public static func decode(postgresText text: String, type: PostgresType) throws(PostgresDecodingFailure) -> Bool {
        guard type == .bool else { throw .typeMismatch(Self.self, type) }
        switch text {
        case "t": return true
        case "f": return false
        default: throw PostgresDecodingFailure("'\(text)' is not a boolean")
        }
    }
}

extension Double: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .float8 }
    public var postgresText: String {
        if isNaN { return "NaN" }
        if isInfinite { return self < 0 ? "-Infinity" : "Infinity" }
        return String(self)
    }
    private static let numeric: Set<PostgresType> = [.float4, .float8, .numeric, .int2, .int4, .int8]
    public static func decode(postgresText text: String, type: PostgresType) throws(PostgresDecodingFailure) -> Double {
        guard numeric.contains(type) else { throw .typeMismatch(Self.self, type) }
        switch text {
        case "NaN": return .nan
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        default:
            guard let value = Double(text) else { throw PostgresDecodingFailure("'\(text)' is not a number") }
            return value
        }
    }
}

// MARK: UUID, bytea

/// UUIDs in PostgreSQL's text form, through `TextCoding`'s hand-written forms.
extension UUID: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .uuid }

    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lowercase, as PostgreSQL writes it.
    public var postgresText: String { lowercasedText }

    public static func decode(postgresText text: String, type: PostgresType) throws(PostgresDecodingFailure) -> UUID {
        guard type == .uuid else { throw .typeMismatch(Self.self, type) }
        guard let value = UUID(hyphenatedHex: text) else { throw PostgresDecodingFailure("'\(text)' is not a UUID") }
        return value
    }
}

extension Data: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .bytea }
    public var postgresText: String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]("\\x".utf8)
        out.reserveCapacity(2 + count * 2)
        for byte in self {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
    public static func decode(postgresText text: String, type: PostgresType) throws(PostgresDecodingFailure) -> Data {
        guard type == .bytea else { throw .typeMismatch(Self.self, type) }
        let utf8 = Array(text.utf8)
        guard utf8.count >= 2, utf8[0] == UInt8(ascii: "\\"), utf8[1] == UInt8(ascii: "x"), utf8.count % 2 == 0 else {
            throw PostgresDecodingFailure("bytea is not in hex format")
        }
        func nibble(_ c: UInt8) throws(PostgresDecodingFailure) -> UInt8 {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: throw PostgresDecodingFailure("bytea has a non-hex digit")
            }
        }
        var data = Data(capacity: (utf8.count - 2) / 2)
        var index = 2
        while index < utf8.count {
            data.append(try nibble(utf8[index]) << 4 | nibble(utf8[index + 1]))
            index += 2
        }
        return data
    }
}

// MARK: Timestamps

extension Date: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .timestamptz }

    /// ISO 8601 in UTC with microseconds, PostgreSQL's own precision.
    public var postgresText: String {
        let totalMicros = (timeIntervalSince1970 * 1_000_000).rounded()
        var seconds = Int64((totalMicros / 1_000_000).rounded(.down))
        let micros = Int64(totalMicros) - seconds * 1_000_000
        let days = Int64((Double(seconds) / 86_400).rounded(.down))
        seconds -= days * 86_400
        let (year, month, day) = CivilDate.fromDays(days)
        func pad(_ value: Int64, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2)) \(pad(seconds / 3600, 2)):\(pad(seconds / 60 % 60, 2)):\(pad(seconds % 60, 2)).\(pad(micros, 6))+00"
    }

    public static func decode(postgresText text: String, type: PostgresType) throws(PostgresDecodingFailure) -> Date {
        guard type == .timestamptz || type == .timestamp || type == .date else { throw .typeMismatch(Self.self, type) }
        guard let date = CivilDate.parse(text) else {
            throw PostgresDecodingFailure("'\(text)' is not an ISO timestamp")
        }
        return date
    }
}

/// Calendar arithmetic without Foundation's Calendar: exact and fast for the ISO output the
/// connection asks for (`DateStyle=ISO`, `TimeZone=UTC`).
enum CivilDate {
    /// Howard Hinnant's days-from-civil algorithm (proleptic Gregorian).
    static func days(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func fromDays(_ z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (month <= 2 ? yoe + era * 400 + 1 : yoe + era * 400, month, day)
    }

    /// Parses `YYYY-MM-DD[ HH:MM:SS[.ffffff]][+HH[:MM[:SS]]]`, PostgreSQL's ISO output.
    static func parse(_ text: String) -> Date? {
        if text == "infinity" { return .distantFuture }
        if text == "-infinity" { return .distantPast }
        var bytes = Array(text.utf8)[...]
        func number(_ width: Int) -> Int64? {
            guard bytes.count >= width else { return nil }
            var value: Int64 = 0
            for byte in bytes.prefix(width) {
                guard byte >= 48, byte <= 57 else { return nil }
                value = value * 10 + Int64(byte - 48)
            }
            bytes = bytes.dropFirst(width)
            return value
        }
        func expect(_ char: Character) -> Bool {
            guard bytes.first == char.asciiValue else { return false }
            bytes = bytes.dropFirst()
            return true
        }
        guard let year = number(4), expect("-"), let month = number(2), expect("-"), let day = number(2) else {
            return nil
        }
        var seconds = days(year: year, month: month, day: day) * 86_400
        var micros: Int64 = 0
        if expect(" ") || expect("T") {
            guard let hour = number(2), expect(":"), let minute = number(2), expect(":"), let second = number(2) else {
                return nil
            }
            seconds += hour * 3600 + minute * 60 + second
            if expect(".") {
                var scale: Int64 = 100_000
                while let byte = bytes.first, byte >= 48, byte <= 57 {
                    micros += Int64(byte - 48) * scale
                    scale /= 10
                    bytes = bytes.dropFirst()
                }
            }
            if let sign = bytes.first, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
                bytes = bytes.dropFirst()
                guard let offsetHours = number(2) else { return nil }
                var offset = offsetHours * 3600
                if expect(":"), let offsetMinutes = number(2) { offset += offsetMinutes * 60 }
                if expect(":"), let offsetSeconds = number(2) { offset += offsetSeconds }
                seconds -= sign == UInt8(ascii: "+") ? offset : -offset
            }
        }
        if expect(" ") {
            // " BC" years are outside anything Fission stores.
            return nil
        }
        guard bytes.isEmpty else { return nil }
        return Date(timeIntervalSince1970: Double(seconds) + Double(micros) / 1_000_000)
    }
}

// MARK: JSON

/// A Codable value stored in a `jsonb` (or `json`) column.
public struct PostgresJSON<Value: Codable & Sendable>: PostgresEncodable, PostgresDecodable {
    public var value: Value
    public init(_ value: Value) { self.value = value }

    public static var postgresType: PostgresType { .jsonb }

    public var postgresText: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding a Codable value to JSON only fails for non-finite floats, which domain types
        // never hold; a NULL would hide such a bug, so fail loudly.
        guard let data = try? encoder.encode(value) else {
            preconditionFailure("value of type \(Value.self) is not representable as JSON")
        }
        return String(decoding: data, as: UTF8.self)
    }

    public static func decode(postgresText text: String, type: PostgresType) throws(PostgresDecodingFailure) -> PostgresJSON {
        guard type == .json || type == .jsonb || type == .text else { throw .typeMismatch(Self.self, type) }
        do {
            return PostgresJSON(try JSONDecoder().decode(Value.self, from: Data(text.utf8)))
        } catch {
            throw PostgresDecodingFailure("JSON does not decode as \(Value.self): \(error)")
        }
    }
}

// MARK: Arrays (for `= ANY(\(ids))`)

extension Array: PostgresEncodable where Element: PostgresArrayElement {
    public static var postgresType: PostgresType { Element.postgresArrayType }
    /// `{"a","b"}` with `"` and `\` escaped, written straight into the string's storage: the
    /// payloads of a batch's events go through here (Foundation's `replacingOccurrences` made
    /// this a quarter of a help's CPU; appending byte by byte to an array, 3–5% of a service's).
    @inlinable
    public var postgresText: String {
        let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        // A closure, not `\.postgresText`: in this generic context a key path is built at run
        // time on every call (3% of the notifications service's CPU under the assists benchmark).
        var texts = map { $0.postgresText }
        var length = 2 + Swift.max(0, texts.count - 1)
        for index in texts.indices {
            texts[index].withUTF8 { utf8 in
                length += utf8.count + 2
                for byte in utf8 where byte == quote || byte == backslash { length += 1 }
            }
        }
        return String(unsafeUninitializedCapacity: length) { output in
            var at = 0
            func put(_ byte: UInt8) {
                output[at] = byte
                at += 1
            }
            put(UInt8(ascii: "{"))
            for index in texts.indices {
                if index > 0 { put(UInt8(ascii: ",")) }
                put(quote)
                texts[index].withUTF8 { utf8 in
                    for byte in utf8 {
                        if byte == quote || byte == backslash { put(backslash) }
                        put(byte)
                    }
                }
                put(quote)
            }
            put(UInt8(ascii: "}"))
            return at
        }
    }
}

/// Element types that can be bound as a PostgreSQL array.
public protocol PostgresArrayElement: PostgresEncodable {
    static var postgresArrayType: PostgresType { get }
}

extension String: PostgresArrayElement { public static var postgresArrayType: PostgresType { .textArray } }
extension Int: PostgresArrayElement { public static var postgresArrayType: PostgresType { .int8Array } }
extension Int64: PostgresArrayElement { public static var postgresArrayType: PostgresType { .int8Array } }
extension UUID: PostgresArrayElement { public static var postgresArrayType: PostgresType { .uuidArray } }
