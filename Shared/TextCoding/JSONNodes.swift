/// JSON text read once into a flat list of nodes: strict RFC 8259 (no trailing commas, no
/// control characters in strings, well-formed numbers and escapes, UTF-8 throughout, at most 512
/// levels deep). Containers are followed by their members (an object's as key, value, key,
/// value...), and each node knows the index after its whole value, so a value is skipped in one
/// step. Strings are made only when asked for.
///
/// One reader for the project's hand-read JSON: the events' decoder (`EventJSONDecoder` in
/// Domain) and `jsonb` maps of strings (`PostgresStringMap`).
public struct JSONNodes: Sendable {
    /// One JSON value.
    public struct Node: Sendable {
        public enum Kind: UInt8, Sendable { case object, array, string, number, `true`, `false`, null }
        public var kind: Kind
        /// Strings: the bytes between the quotes; numbers: the number's bytes.
        public var start: Int
        public var end: Int
        /// Members of an object, elements of an array.
        public var count: Int
        /// The index after this value and everything in it.
        public var next: Int
        /// A string with a backslash in it: its text is not its bytes.
        public var escaped: Bool
    }

    /// Why the text is not JSON.
    public struct Invalid: Error, CustomStringConvertible {
        public var reason: String
        public var description: String { reason }
    }

    public let bytes: [UInt8]
    /// The document's values; the first is the whole document.
    public let nodes: [Node]

    public init(_ bytes: [UInt8]) throws(Invalid) {
        self.bytes = bytes
        self.nodes = try bytes.withUnsafeBufferPointer { (buffer) throws(Invalid) -> [Node] in
            var parser = JSONParser(buffer: buffer)
            return try parser.parse()
        }
    }

    /// The text of a string node.
    public func text(of index: Int) throws(Invalid) -> String {
        try bytes.withUnsafeBufferPointer { (buffer) throws(Invalid) -> String in try Self.text(of: nodes[index], in: buffer) }
    }

    /// The text of a string node of these bytes, for a reader already holding them.
    public static func text(of node: Node, in buffer: UnsafeBufferPointer<UInt8>) throws(Invalid) -> String {
        try JSONParser.text(of: node, in: buffer)
    }

    /// A number node's text.
    public func numberText(of index: Int) -> String {
        let node = nodes[index]
        return String(decoding: bytes[node.start..<node.end], as: UTF8.self)
    }
}

/// Reads the bytes into nodes, checking as it goes.
private struct JSONParser {
    let buffer: UnsafeBufferPointer<UInt8>
    var position = 0
    var nodes: [JSONNodes.Node] = []

    /// Foundation's limit too.
    static let maxDepth = 512

    init(buffer: UnsafeBufferPointer<UInt8>) {
        self.buffer = buffer
        nodes.reserveCapacity(64)
    }

    mutating func parse() throws(JSONNodes.Invalid) -> [JSONNodes.Node] {
        skipWhitespace()
        try parseValue(depth: 0)
        skipWhitespace()
        guard position == buffer.count else { throw Self.invalid("unexpected text after the value at offset \(position)") }
        return nodes
    }

    static func invalid(_ reason: String) -> JSONNodes.Invalid { JSONNodes.Invalid(reason: reason) }

    private mutating func skipWhitespace() {
        while position < buffer.count {
            switch buffer[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    private mutating func parseValue(depth: Int) throws(JSONNodes.Invalid) {
        guard position < buffer.count else { throw Self.invalid("unexpected end") }
        switch buffer[position] {
        case UInt8(ascii: "{"): try parseContainer(.object, closing: UInt8(ascii: "}"), depth: depth)
        case UInt8(ascii: "["): try parseContainer(.array, closing: UInt8(ascii: "]"), depth: depth)
        case UInt8(ascii: "\""): try parseString()
        case UInt8(ascii: "t"): try parseLiteral("true", .true)
        case UInt8(ascii: "f"): try parseLiteral("false", .false)
        case UInt8(ascii: "n"): try parseLiteral("null", .null)
        default: try parseNumber()
        }
    }

    /// An object's members (key, `:`, value) or an array's elements, separated by commas.
    private mutating func parseContainer(_ kind: JSONNodes.Node.Kind, closing: UInt8, depth: Int) throws(JSONNodes.Invalid) {
        guard depth < Self.maxDepth else { throw Self.invalid("nested too deeply") }
        let index = nodes.count
        nodes.append(JSONNodes.Node(kind: kind, start: position, end: position, count: 0, next: 0, escaped: false))
        position += 1
        skipWhitespace()
        var count = 0
        if position < buffer.count, buffer[position] == closing {
            position += 1
        } else {
            while true {
                if kind == .object {
                    guard position < buffer.count, buffer[position] == UInt8(ascii: "\"") else { throw Self.invalid("expected a key at offset \(position)") }
                    try parseString()
                    skipWhitespace()
                    guard position < buffer.count, buffer[position] == UInt8(ascii: ":") else { throw Self.invalid("expected ':' at offset \(position)") }
                    position += 1
                    skipWhitespace()
                }
                try parseValue(depth: depth + 1)
                count += 1
                skipWhitespace()
                guard position < buffer.count else { throw Self.invalid("unexpected end") }
                if buffer[position] == UInt8(ascii: ",") {
                    position += 1
                    skipWhitespace()
                } else if buffer[position] == closing {
                    position += 1
                    break
                } else {
                    throw Self.invalid("expected ',' or '\(Character(Unicode.Scalar(closing)))' at offset \(position)")
                }
            }
        }
        nodes[index].count = count
        nodes[index].next = nodes.count
    }

    private mutating func parseLiteral(_ word: StaticString, _ kind: JSONNodes.Node.Kind) throws(JSONNodes.Invalid) {
        let length = word.utf8CodeUnitCount
        guard position + length <= buffer.count,
              UnsafeBufferPointer(rebasing: buffer[position..<(position + length)]).elementsEqual(UnsafeBufferPointer(start: word.utf8Start, count: length))
        else { throw Self.invalid("unexpected character at offset \(position)") }
        nodes.append(JSONNodes.Node(kind: kind, start: position, end: position + length, count: 0, next: nodes.count + 1, escaped: false))
        position += length
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    private mutating func parseNumber() throws(JSONNodes.Invalid) {
        let start = position
        func digits(_ position: inout Int, _ buffer: UnsafeBufferPointer<UInt8>) -> Int {
            let first = position
            while position < buffer.count, buffer[position] >= UInt8(ascii: "0"), buffer[position] <= UInt8(ascii: "9") { position += 1 }
            return position - first
        }
        if buffer[position] == UInt8(ascii: "-") { position += 1 }
        guard position < buffer.count, buffer[position] >= UInt8(ascii: "0"), buffer[position] <= UInt8(ascii: "9") else {
            throw Self.invalid("unexpected character at offset \(position)")
        }
        if buffer[position] == UInt8(ascii: "0") { position += 1 } else { _ = digits(&position, buffer) }
        if position < buffer.count, buffer[position] == UInt8(ascii: ".") {
            position += 1
            guard digits(&position, buffer) > 0 else { throw Self.invalid("a number's fraction has no digits at offset \(position)") }
        }
        if position < buffer.count, buffer[position] == UInt8(ascii: "e") || buffer[position] == UInt8(ascii: "E") {
            position += 1
            if position < buffer.count, buffer[position] == UInt8(ascii: "+") || buffer[position] == UInt8(ascii: "-") { position += 1 }
            guard digits(&position, buffer) > 0 else { throw Self.invalid("a number's exponent has no digits at offset \(position)") }
        }
        nodes.append(JSONNodes.Node(kind: .number, start: start, end: position, count: 0, next: nodes.count + 1, escaped: false))
    }

    /// Checks escapes, control characters and UTF-8; the text is made only when asked for.
    private mutating func parseString() throws(JSONNodes.Invalid) {
        position += 1
        let start = position
        var escaped = false
        var ascii = true
        while true {
            guard position < buffer.count else { throw Self.invalid("unterminated string") }
            let byte = buffer[position]
            if byte == UInt8(ascii: "\"") { break }
            if byte < 0x20 { throw Self.invalid("control character in a string at offset \(position)") }
            if byte >= 0x80 { ascii = false }
            if byte == UInt8(ascii: "\\") {
                escaped = true
                position += 1
                guard position < buffer.count else { throw Self.invalid("unterminated string") }
                switch buffer[position] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    break
                case UInt8(ascii: "u"):
                    // Surrogates must pair: the text is checked as a whole below.
                    guard position + 4 < buffer.count, (1...4).allSatisfy({ hexDigitValue(buffer[position + $0]) != nil }) else {
                        throw Self.invalid("bad \\u escape at offset \(position)")
                    }
                    position += 4
                default:
                    throw Self.invalid("bad escape at offset \(position)")
                }
            }
            position += 1
        }
        let end = position
        position += 1
        nodes.append(JSONNodes.Node(kind: .string, start: start, end: end, count: 0, next: nodes.count + 1, escaped: escaped))
        if escaped {
            _ = try Self.text(of: nodes[nodes.count - 1], in: buffer)
        } else if !ascii, String(validating: UnsafeBufferPointer(rebasing: buffer[start..<end]), as: UTF8.self) == nil {
            throw Self.invalid("a string is not UTF-8 at offset \(start)")
        }
    }

    /// The text of a string node: its bytes, or with its escapes undone (checked here: the
    /// parser calls this on every escaped string).
    static func text(of node: JSONNodes.Node, in buffer: UnsafeBufferPointer<UInt8>) throws(JSONNodes.Invalid) -> String {
        let raw = UnsafeBufferPointer(rebasing: buffer[node.start..<node.end])
        // Checked for UTF-8 when parsed.
        guard node.escaped else { return String(decoding: raw, as: UTF8.self) }
        var unescaped: [UInt8] = []
        unescaped.reserveCapacity(raw.count)
        var position = 0
        func hex4() -> UInt32 {
            (1...4).reduce(0) { $0 << 4 | UInt32(hexDigitValue(raw[position + $1])!) }
        }
        while position < raw.count {
            let byte = raw[position]
            guard byte == UInt8(ascii: "\\") else {
                unescaped.append(byte)
                position += 1
                continue
            }
            position += 1
            switch raw[position] {
            case UInt8(ascii: "b"): unescaped.append(0x08)
            case UInt8(ascii: "f"): unescaped.append(0x0C)
            case UInt8(ascii: "n"): unescaped.append(0x0A)
            case UInt8(ascii: "r"): unescaped.append(0x0D)
            case UInt8(ascii: "t"): unescaped.append(0x09)
            case UInt8(ascii: "u"):
                var value = hex4()
                position += 4
                if (0xD800...0xDBFF).contains(value) {
                    guard position + 6 < raw.count, raw[position + 1] == UInt8(ascii: "\\"), raw[position + 2] == UInt8(ascii: "u") else {
                        throw Self.invalid("unpaired surrogate in a string at offset \(node.start + position)")
                    }
                    position += 2
                    let low = hex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw Self.invalid("unpaired surrogate in a string at offset \(node.start + position)") }
                    position += 4
                    value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(value) {
                    throw Self.invalid("unpaired surrogate in a string at offset \(node.start + position)")
                }
                unescaped.append(contentsOf: String(Character(Unicode.Scalar(value)!)).utf8)
            default: unescaped.append(raw[position])
            }
            position += 1
        }
        guard let text = String(validating: unescaped, as: UTF8.self) else { throw Self.invalid("a string is not UTF-8 at offset \(node.start)") }
        return text
    }
}
