import HTTPTypes
import Hummingbird

extension StringProtocol {
    /// Without the optional whitespace (spaces and tabs, RFC 9110) around a header value or one
    /// of its list items. Foundation's `trimmingCharacters` goes through `NSString`: on a bearer
    /// token it was 3% of the assists service's CPU per help.
    public var trimmingOptionalWhitespace: SubSequence {
        let isSpace = { (character: Character) in character == " " || character == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return self[endIndex...]
        }
        return self[first...last]
    }
}

extension Request {
    static let forwardedFor = HTTPField.Name("X-Forwarded-For")!

    /// The client's address as the ingress saw it: the first `X-Forwarded-For` hop (the ingress
    /// must set it and drop the client's own), nil without one.
    public var forwardedClientAddress: String? {
        headers[Self.forwardedFor]?.split(separator: ",", maxSplits: 1).first.map { String($0.trimmingOptionalWhitespace) }
    }
}
