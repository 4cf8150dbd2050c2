import Foundation
import TextCoding

/// Decodes a value as `EventCoding.decoder()` does (Foundation's `JSONDecoder` with RFC 3339
/// times): the same values from the same JSON, in less than half the time (`fission-bench
/// events`: 0.38–0.46 of Foundation's time for an `AssistRecorded`).
///
/// Every consumed event is decoded once; Foundation's decoder was 15% of the notifications
/// service's CPU under the assists benchmark, 64 µs an `AssistRecorded`, spread thin over
/// reference counting, generic metadata and hashing of keys. This one reads the bytes once into
/// a flat list of nodes (`JSONNodes`: no strings made for keys, no dictionaries), then hands out
/// containers that find a key by comparing bytes and make a string only for a value asked for.
///
/// It keeps Foundation's decoding rules: unknown keys ignored, the first of two equal keys wins,
/// `1.0` and `1e2` are integers but `1.5` is not, escaped keys match, null is missing for an
/// optional. It is stricter about what JSON is: Foundation accepts a trailing comma, control
/// characters in strings and malformed numbers, escapes or UTF-8 in values no one asks for;
/// here those are not JSON, so the event is undecodable (dead-lettered) rather than half read.
/// Tests compare the two on every contract example and on thousands of damaged copies.
public enum EventJSONDecoder {
    /// How times are written: RFC 3339 text in events and APIs; seconds since 1970 in tokens
    /// (JWT's `NumericDate`, Foundation's `.secondsSince1970`).
    public enum Dates: Sendable {
        case rfc3339
        case secondsSince1970
    }

    public static func decode<Value: Decodable>(_ type: Value.Type, from bytes: [UInt8], dates: Dates = .rfc3339) throws -> Value {
        let document = try JSONDocument(bytes, dates: dates)
        return try NodeDecoder.value(Value.self, at: 0, in: document, parent: nil, key: nil)
    }
}

private typealias JSONNode = JSONNodes.Node

/// The parsed document (`JSONNodes`, shared with the `jsonb` string maps' reader) and how its
/// times are written; the parser's errors as Foundation's decoder reports text that is not JSON.
private final class JSONDocument {
    let json: JSONNodes
    let dates: EventJSONDecoder.Dates
    var bytes: [UInt8] { json.bytes }
    var nodes: [JSONNode] { json.nodes }

    init(_ bytes: [UInt8], dates: EventJSONDecoder.Dates) throws {
        do {
            json = try JSONNodes(bytes)
        } catch {
            throw Self.notJSON(error)
        }
        self.dates = dates
    }

    static func notJSON(_ error: JSONNodes.Invalid) -> DecodingError {
        .dataCorrupted(.init(codingPath: [], debugDescription: "The given data was not valid JSON: \(error.reason).", underlyingError: error))
    }

    /// The text of a string node (checked when parsed: this does not fail).
    func text(of index: Int) throws -> String {
        do {
            return try json.text(of: index)
        } catch {
            throw Self.notJSON(error)
        }
    }

    func numberText(of index: Int) -> String { json.numberText(of: index) }
}

/// The decoder of one value of the document; also its single-value container.
private final class NodeDecoder: Decoder, SingleValueDecodingContainer {
    let document: JSONDocument
    let node: Int
    /// The coding path is put together only when asked for, as in `EventJSONEncoder`.
    let parent: NodeDecoder?
    let key: (any CodingKey)?
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(document: JSONDocument, node: Int, parent: NodeDecoder?, key: (any CodingKey)?) {
        self.document = document
        self.node = node
        self.parent = parent
        self.key = key
    }

    var codingPath: [any CodingKey] { Self.path(parent, key) }

    static func path(_ parent: NodeDecoder?, _ key: (any CodingKey)?) -> [any CodingKey] {
        var path = parent?.codingPath ?? []
        if let key { path.append(key) }
        return path
    }

    // MARK: Values

    /// The value at a node: the types Foundation decodes specially first, then the type's own
    /// `init(from:)`.
    static func value<Value: Decodable>(_ type: Value.Type, at node: Int, in document: JSONDocument, parent: NodeDecoder?, key: (any CodingKey)?) throws -> Value {
        if Value.self == String.self { return try string(at: node, in: document, parent, key) as! Value }
        if Value.self == Int.self { return try integer(Int.self, at: node, in: document, parent, key) as! Value }
        if Value.self == Bool.self { return try bool(at: node, in: document, parent, key) as! Value }
        if Value.self == Date.self {
            if document.dates == .secondsSince1970 {
                return Date(timeIntervalSince1970: try floating(Double.self, at: node, in: document, parent, key)) as! Value
            }
            let text = try string(at: node, in: document, parent, key)
            guard let date = EventCoding.parseTimestamp(text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: path(parent, key), debugDescription: "'\(text)' is not an RFC 3339 timestamp"))
            }
            return date as! Value
        }
        if Value.self == URL.self {
            let text = try string(at: node, in: document, parent, key)
            guard let url = URL(string: text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: path(parent, key), debugDescription: "Invalid URL string."))
            }
            return url as! Value
        }
        if Value.self == Data.self {
            guard let data = Data(base64Encoded: try string(at: node, in: document, parent, key)) else {
                throw DecodingError.dataCorrupted(.init(codingPath: path(parent, key), debugDescription: "Encountered Data is not valid Base64."))
            }
            return data as! Value
        }
        if Value.self == Decimal.self {
            try expect(.number, Decimal.self, at: node, in: document, parent, key)
            guard let decimal = Decimal(string: document.numberText(of: node), locale: Locale(identifier: "en_US_POSIX")) else {
                throw DecodingError.dataCorrupted(.init(codingPath: path(parent, key), debugDescription: "Parsed JSON number is not a Decimal."))
            }
            return decimal as! Value
        }
        return try Value(from: NodeDecoder(document: document, node: node, parent: parent, key: key))
    }

    static func expect(_ kind: JSONNode.Kind, _ type: Any.Type, at node: Int, in document: JSONDocument, _ parent: NodeDecoder?, _ key: (any CodingKey)?) throws {
        let found = document.nodes[node].kind
        guard found != kind else { return }
        let context = DecodingError.Context(codingPath: path(parent, key), debugDescription: "Expected to decode \(type) but found \(found) instead.")
        throw found == .null ? DecodingError.valueNotFound(type, context) : DecodingError.typeMismatch(type, context)
    }

    static func string(at node: Int, in document: JSONDocument, _ parent: NodeDecoder?, _ key: (any CodingKey)?) throws -> String {
        try expect(.string, String.self, at: node, in: document, parent, key)
        return try document.text(of: node)
    }

    static func bool(at node: Int, in document: JSONDocument, _ parent: NodeDecoder?, _ key: (any CodingKey)?) throws -> Bool {
        switch document.nodes[node].kind {
        case .true: return true
        case .false: return false
        default:
            try expect(.true, Bool.self, at: node, in: document, parent, key)
            return false
        }
    }

    /// Digits alone are read as they are; a fraction or an exponent is read as a `Double` and
    /// must be a whole number the type holds (`1.0`, `1e2`), as Foundation reads them.
    static func integer<Integer: FixedWidthInteger>(_ type: Integer.Type, at node: Int, in document: JSONDocument, _ parent: NodeDecoder?, _ key: (any CodingKey)?) throws -> Integer {
        try expect(.number, Integer.self, at: node, in: document, parent, key)
        let text = document.numberText(of: node)
        if let value = Integer(text) { return value }
        if let double = Double(text), let value = Integer(exactly: double) { return value }
        throw DecodingError.dataCorrupted(.init(codingPath: path(parent, key), debugDescription: "Parsed JSON number <\(text)> does not fit in \(Integer.self)."))
    }

    static func floating<Floating: BinaryFloatingPoint & LosslessStringConvertible>(_ type: Floating.Type, at node: Int, in document: JSONDocument, _ parent: NodeDecoder?, _ key: (any CodingKey)?) throws -> Floating {
        try expect(.number, Floating.self, at: node, in: document, parent, key)
        let text = document.numberText(of: node)
        guard let value = Floating(String(text)), value.isFinite else {
            throw DecodingError.dataCorrupted(.init(codingPath: path(parent, key), debugDescription: "Parsed JSON number <\(text)> does not fit in \(Floating.self)."))
        }
        return value
    }

    // MARK: Decoder

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        try Self.expect(.object, [String: Any].self, at: node, in: document, parent, key)
        return KeyedDecodingContainer(KeyedContainer<Key>(decoder: self))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try Self.expect(.array, [Any].self, at: node, in: document, parent, key)
        return UnkeyedContainer(decoder: self)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { self }

    // MARK: SingleValueDecodingContainer

    func decodeNil() -> Bool { document.nodes[node].kind == .null }
    func decode(_ type: Bool.Type) throws -> Bool { try Self.bool(at: node, in: document, parent, key) }
    func decode(_ type: String.Type) throws -> String { try Self.string(at: node, in: document, parent, key) }
    func decode(_ type: Double.Type) throws -> Double { try Self.floating(Double.self, at: node, in: document, parent, key) }
    func decode(_ type: Float.Type) throws -> Float { try Self.floating(Float.self, at: node, in: document, parent, key) }
    func decode(_ type: Int.Type) throws -> Int { try Self.integer(Int.self, at: node, in: document, parent, key) }
    func decode(_ type: Int8.Type) throws -> Int8 { try Self.integer(Int8.self, at: node, in: document, parent, key) }
    func decode(_ type: Int16.Type) throws -> Int16 { try Self.integer(Int16.self, at: node, in: document, parent, key) }
    func decode(_ type: Int32.Type) throws -> Int32 { try Self.integer(Int32.self, at: node, in: document, parent, key) }
    func decode(_ type: Int64.Type) throws -> Int64 { try Self.integer(Int64.self, at: node, in: document, parent, key) }
    func decode(_ type: UInt.Type) throws -> UInt { try Self.integer(UInt.self, at: node, in: document, parent, key) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try Self.integer(UInt8.self, at: node, in: document, parent, key) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try Self.integer(UInt16.self, at: node, in: document, parent, key) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try Self.integer(UInt32.self, at: node, in: document, parent, key) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try Self.integer(UInt64.self, at: node, in: document, parent, key) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try Self.value(T.self, at: node, in: document, parent: parent, key: key) }
}

private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: NodeDecoder
    var document: JSONDocument { decoder.document }
    var codingPath: [any CodingKey] { decoder.codingPath }

    /// The value node of `key`: the first member with that name, as in Foundation. Compares
    /// bytes through pointers: keys are looked up for every field of every event.
    private func find(_ key: some CodingKey) throws -> Int? {
        var name = key.stringValue
        let document = decoder.document
        let object = decoder.node
        return try name.withUTF8 { wanted in
            try document.nodes.withUnsafeBufferPointer { nodes in
                try document.bytes.withUnsafeBufferPointer { bytes in
                    var member = object + 1
                    for _ in 0..<nodes[object].count {
                        let node = nodes[member]
                        if node.escaped {
                            if try JSONNodes.text(of: node, in: bytes).utf8.elementsEqual(wanted) { return member + 1 }
                        } else if node.end - node.start == wanted.count,
                                  wanted.isEmpty || memcmp(bytes.baseAddress! + node.start, wanted.baseAddress!, wanted.count) == 0 {
                            return member + 1
                        }
                        member = nodes[member + 1].next
                    }
                    return nil
                }
            }
        }
    }

    private func require(_ key: Key) throws -> Int {
        guard let node = try find(key) else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "No value associated with key \(key) (\"\(key.stringValue)\")."))
        }
        return node
    }

    var allKeys: [Key] {
        let nodes = document.nodes
        var keys: [Key] = []
        var member = decoder.node + 1
        for _ in 0..<nodes[decoder.node].count {
            if let text = try? document.text(of: member), let key = Key(stringValue: text) { keys.append(key) }
            member = nodes[member + 1].next
        }
        return keys
    }

    func contains(_ key: Key) -> Bool { (try? find(key)) != nil }

    func decodeNil(forKey key: Key) throws -> Bool { document.nodes[try require(key)].kind == .null }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try NodeDecoder.bool(at: try require(key), in: document, decoder, key) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try NodeDecoder.string(at: try require(key), in: document, decoder, key) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try NodeDecoder.floating(Double.self, at: try require(key), in: document, decoder, key) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try NodeDecoder.floating(Float.self, at: try require(key), in: document, decoder, key) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try NodeDecoder.integer(Int.self, at: try require(key), in: document, decoder, key) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try NodeDecoder.integer(Int8.self, at: try require(key), in: document, decoder, key) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try NodeDecoder.integer(Int16.self, at: try require(key), in: document, decoder, key) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try NodeDecoder.integer(Int32.self, at: try require(key), in: document, decoder, key) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try NodeDecoder.integer(Int64.self, at: try require(key), in: document, decoder, key) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try NodeDecoder.integer(UInt.self, at: try require(key), in: document, decoder, key) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try NodeDecoder.integer(UInt8.self, at: try require(key), in: document, decoder, key) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try NodeDecoder.integer(UInt16.self, at: try require(key), in: document, decoder, key) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try NodeDecoder.integer(UInt32.self, at: try require(key), in: document, decoder, key) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try NodeDecoder.integer(UInt64.self, at: try require(key), in: document, decoder, key) }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try NodeDecoder.value(T.self, at: try require(key), in: document, parent: decoder, key: key)
    }

    /// One look for the key instead of the three the default takes (contains, decodeNil, decode).
    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let node = try find(key), document.nodes[node].kind != .null else { return nil }
        return try NodeDecoder.value(T.self, at: node, in: document, parent: decoder, key: key)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try NodeDecoder(document: document, node: try require(key), parent: decoder, key: key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try NodeDecoder(document: document, node: try require(key), parent: decoder, key: key).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        let key = JSONIndexKey(stringValue: "super")
        guard let node = try find(key) else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "No value associated with key \"super\"."))
        }
        return NodeDecoder(document: document, node: node, parent: decoder, key: key)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        NodeDecoder(document: document, node: try require(key), parent: decoder, key: key)
    }
}

private struct UnkeyedContainer: UnkeyedDecodingContainer {
    let decoder: NodeDecoder
    var document: JSONDocument { decoder.document }
    var codingPath: [any CodingKey] { decoder.codingPath }
    var count: Int? { document.nodes[decoder.node].count }
    var isAtEnd: Bool { currentIndex >= document.nodes[decoder.node].count }
    private(set) var currentIndex = 0
    /// The node of the element at `currentIndex`.
    private var cursor: Int

    init(decoder: NodeDecoder) {
        self.decoder = decoder
        self.cursor = decoder.node + 1
    }

    private var here: JSONIndexKey { JSONIndexKey(intValue: currentIndex) }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(Any?.self, .init(codingPath: codingPath + [here], debugDescription: "Unkeyed container is at end."))
        }
        guard document.nodes[cursor].kind == .null else { return false }
        cursor = document.nodes[cursor].next
        currentIndex += 1
        return true
    }

    /// Decodes the current element, and moves past it only if that worked (as Foundation does).
    /// The body is handed the document, the decoder, the element's node and its coding key.
    private mutating func next<T>(_ type: T.Type, _ body: (JSONDocument, NodeDecoder, Int, JSONIndexKey) throws -> T) throws -> T {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(type, .init(codingPath: codingPath + [here], debugDescription: "Unkeyed container is at end."))
        }
        let value = try body(document, decoder, cursor, here)
        cursor = document.nodes[cursor].next
        currentIndex += 1
        return value
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { try next(type) { try NodeDecoder.bool(at: $2, in: $0, $1, $3) } }
    mutating func decode(_ type: String.Type) throws -> String { try next(type) { try NodeDecoder.string(at: $2, in: $0, $1, $3) } }
    mutating func decode(_ type: Double.Type) throws -> Double { try next(type) { try NodeDecoder.floating(Double.self, at: $2, in: $0, $1, $3) } }
    mutating func decode(_ type: Float.Type) throws -> Float { try next(type) { try NodeDecoder.floating(Float.self, at: $2, in: $0, $1, $3) } }
    mutating func decode(_ type: Int.Type) throws -> Int { try next(type) { try NodeDecoder.integer(Int.self, at: $2, in: $0, $1, $3) } }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try next(type) { try NodeDecoder.integer(Int8.self, at: $2, in: $0, $1, $3) } }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try next(type) { try NodeDecoder.integer(Int16.self, at: $2, in: $0, $1, $3) } }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try next(type) { try NodeDecoder.integer(Int32.self, at: $2, in: $0, $1, $3) } }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try next(type) { try NodeDecoder.integer(Int64.self, at: $2, in: $0, $1, $3) } }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try next(type) { try NodeDecoder.integer(UInt.self, at: $2, in: $0, $1, $3) } }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try next(type) { try NodeDecoder.integer(UInt8.self, at: $2, in: $0, $1, $3) } }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try next(type) { try NodeDecoder.integer(UInt16.self, at: $2, in: $0, $1, $3) } }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try next(type) { try NodeDecoder.integer(UInt32.self, at: $2, in: $0, $1, $3) } }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try next(type) { try NodeDecoder.integer(UInt64.self, at: $2, in: $0, $1, $3) } }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try next(type) { try NodeDecoder.value(T.self, at: $2, in: $0, parent: $1, key: $3) }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next(KeyedDecodingContainer<NestedKey>.self) { try NodeDecoder(document: $0, node: $2, parent: $1, key: $3).container(keyedBy: type) }
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try next((any UnkeyedDecodingContainer).self) { try NodeDecoder(document: $0, node: $2, parent: $1, key: $3).unkeyedContainer() }
    }

    mutating func superDecoder() throws -> any Decoder {
        try next((any Decoder).self) { NodeDecoder(document: $0, node: $2, parent: $1, key: $3) }
    }
}
