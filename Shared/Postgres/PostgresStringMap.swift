import TextCoding

/// A `jsonb` object whose values are all strings, such as an event's headers in the outbox,
/// written and read by hand instead of through Foundation's JSON coders: every event appended
/// and every event relayed goes through one, and `JSONEncoder`/`JSONDecoder` on these few
/// strings were 4% of the assists service's CPU per help and 6% of the notifications service's.
/// Keys are written in code-point order; anything but an object of strings fails to decode.
public struct PostgresStringMap: PostgresEncodable, PostgresDecodable, Hashable {
    public var value: [String: String]
    public init(_ value: [String: String]) { self.value = value }

    public static var postgresType: PostgresType { .jsonb }

    public var postgresText: String {
        var output: [UInt8] = [UInt8(ascii: "{")]
        for (index, entry) in value.sorted(by: { $0.key < $1.key }).enumerated() {
            if index > 0 { output.append(UInt8(ascii: ",")) }
            JSONStringText.write(entry.key, to: &output)
            output.append(UInt8(ascii: ":"))
            JSONStringText.write(entry.value, to: &output)
        }
        output.append(UInt8(ascii: "}"))
        return String(decoding: output, as: UTF8.self)
    }

    public static func decode(postgresText text: String, type: PostgresType) throws(PostgresDecodingFailure) -> PostgresStringMap {
        guard type == .json || type == .jsonb || type == .text else { throw .typeMismatch(Self.self, type) }
        var reader = Reader(bytes: Array(text.utf8))
        return PostgresStringMap(try reader.object())
    }

    /// JSON text as PostgreSQL prints `jsonb` (`{"a": "b", "c": "d"}`), or any other valid
    /// spelling of an object of strings.
    private struct Reader {
        let bytes: [UInt8]
        var at = 0

        mutating func object() throws(PostgresDecodingFailure) -> [String: String] {
            var map: [String: String] = [:]
            skipSpace()
            try expect(UInt8(ascii: "{"))
            skipSpace()
            if peek() == UInt8(ascii: "}") {
                at += 1
            } else {
                while true {
                    skipSpace()
                    let key = try string()
                    skipSpace()
                    try expect(UInt8(ascii: ":"))
                    skipSpace()
                    map[key] = try string()
                    skipSpace()
                    if peek() == UInt8(ascii: ",") {
                        at += 1
                        continue
                    }
                    try expect(UInt8(ascii: "}"))
                    break
                }
            }
            skipSpace()
            guard at == bytes.count else { throw failure("text after the object") }
            return map
        }

        private func peek() -> UInt8? { at < bytes.count ? bytes[at] : nil }

        private func failure(_ what: String) -> PostgresDecodingFailure {
            PostgresDecodingFailure("not a JSON object of strings: \(what) at byte \(at)")
        }

        private mutating func skipSpace() {
            while let byte = peek(), byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { at += 1 }
        }

        private mutating func expect(_ byte: UInt8) throws(PostgresDecodingFailure) {
            guard peek() == byte else { throw failure("expected '\(Character(Unicode.Scalar(byte)))'") }
            at += 1
        }

        private mutating func string() throws(PostgresDecodingFailure) -> String {
            try expect(UInt8(ascii: "\""))
            var output: [UInt8] = []
            while let byte = peek() {
                at += 1
                switch byte {
                case UInt8(ascii: "\""):
                    // The bytes came from a Swift string and escapes decode to whole scalars.
                    return String(decoding: output, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard let escaped = peek() else { break }
                    at += 1
                    switch escaped {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): output.append(escaped)
                    case UInt8(ascii: "b"): output.append(0x08)
                    case UInt8(ascii: "f"): output.append(0x0C)
                    case UInt8(ascii: "n"): output.append(0x0A)
                    case UInt8(ascii: "r"): output.append(0x0D)
                    case UInt8(ascii: "t"): output.append(0x09)
                    case UInt8(ascii: "u"): output += Array(String(try unicodeEscape()).utf8)
                    default: throw failure("unknown escape")
                    }
                case 0..<0x20:
                    throw failure("control character in a string")
                default:
                    output.append(byte)
                }
            }
            throw failure("unterminated string")
        }

        /// The scalar of `\uXXXX` (the `\u` read), joining a surrogate pair.
        private mutating func unicodeEscape() throws(PostgresDecodingFailure) -> Character {
            let first = try hex4()
            if (0xD800..<0xDC00).contains(first) {
                try expect(UInt8(ascii: "\\"))
                try expect(UInt8(ascii: "u"))
                let second = try hex4()
                guard (0xDC00..<0xE000).contains(second),
                      let scalar = Unicode.Scalar(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)) else {
                    throw failure("broken surrogate pair")
                }
                return Character(scalar)
            }
            guard let scalar = Unicode.Scalar(first) else { throw failure("lone surrogate") }
            return Character(scalar)
        }

        private mutating func hex4() throws(PostgresDecodingFailure) -> UInt32 {
            var value: UInt32 = 0
            for _ in 0..<4 {
                guard let byte = peek(), let digit = Self.hexDigit(byte) else { throw failure("bad \\u escape") }
                value = value << 4 | digit
                at += 1
            }
            return value
        }

        private static func hexDigit(_ byte: UInt8) -> UInt32? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
            default: nil
            }
        }
    }
}
