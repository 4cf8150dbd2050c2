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

    /// JSON text as PostgreSQL prints `jsonb` (`{"a": "b", "c": "d"}`), or any other valid
    /// spelling of an object of strings (read by `JSONNodes`; a key given twice keeps its last value).
    public static func decode(postgresText text: String, type: PostgresType) throws(PostgresDecodingFailure) -> PostgresStringMap {
        guard type == .json || type == .jsonb || type == .text else { throw .typeMismatch(Self.self, type) }
        do {
            let json = try JSONNodes(Array(text.utf8))
            guard json.nodes[0].kind == .object else { throw PostgresDecodingFailure("not a JSON object of strings: not an object") }
            var map: [String: String] = [:]
            var member = 1
            for _ in 0..<json.nodes[0].count {
                guard json.nodes[member + 1].kind == .string else {
                    throw PostgresDecodingFailure("not a JSON object of strings: '\(try json.text(of: member))' is not a string")
                }
                map[try json.text(of: member)] = try json.text(of: member + 1)
                member = json.nodes[member + 1].next
            }
            return PostgresStringMap(map)
        } catch let failure as PostgresDecodingFailure {
            throw failure
        } catch {
            throw PostgresDecodingFailure("not a JSON object of strings: \(error)")
        }
    }
}
