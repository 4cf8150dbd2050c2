import Domain
import Foundation
import HTTPTypes
import Hummingbird

/// JSON in and out of Fission's HTTP APIs: the same text as events (`EventCoding`).
extension Response {
    /// JSON as Fission's APIs write it: the bytes of `EventCoding.encode` (what
    /// `JSONEncoder.fission` would write, faster). Every JSON answer but problems goes through here.
    public static func json(_ status: HTTPResponse.Status, _ value: some Encodable, headers: HTTPFields = [:]) throws -> Response {
        json(status, encoded: try EventCoding.encode(value), headers: headers)
    }

    /// JSON already encoded, such as a stored response replayed.
    public static func json(_ status: HTTPResponse.Status, encoded body: [UInt8], headers extra: HTTPFields = [:]) -> Response {
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8", .contentLength: String(body.count)]
        headers.append(contentsOf: extra)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

extension JSONEncoder {
    /// How Fission's HTTP APIs write JSON (the same timestamps as events). The services write it
    /// with `EventCoding.encode` (same bytes, faster); this is for clients and tests.
    public static var fission: JSONEncoder { EventCoding.encoder() }
}

/// Route results written as `EventCoding.encode` writes them (what `JSONEncoder.fission` would
/// write, faster).
public struct FissionResponseEncoder: ResponseEncoder {
    public init() {}

    public func encode(_ value: some Encodable, from request: Request, context: some RequestContext) throws -> Response {
        try .json(.ok, value)
    }
}

extension JSONDecoder {
    public static var fission: JSONDecoder { EventCoding.decoder() }
}

/// Decodes a JSON body as events are decoded (`EventJSONDecoder`: what `JSONDecoder.fission`
/// reads, faster, and nothing that is not JSON); malformed JSON or a missing/mistyped field is
/// a 400 naming the field.
public func decodeBody<T: Decodable>(_ type: T.Type, from bytes: ByteBuffer) throws -> T {
    do {
        return try EventJSONDecoder.decode(T.self, from: Array(bytes.readableBytesView))
    } catch let DecodingError.keyNotFound(key, context) {
        throw Problem.invalidField((context.codingPath + [key]).map(\.stringValue).joined(separator: "."), "is required")
    } catch let DecodingError.typeMismatch(_, context) {
        throw Problem.invalidField(context.codingPath.map(\.stringValue).joined(separator: "."), "has the wrong type")
    } catch let DecodingError.valueNotFound(_, context) {
        throw Problem.invalidField(context.codingPath.map(\.stringValue).joined(separator: "."), "must not be null")
    } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
        throw Problem.invalidField(context.codingPath.map(\.stringValue).joined(separator: "."), context.debugDescription)
    } catch {
        throw Problem.badRequest("the body is not valid JSON")
    }
}
