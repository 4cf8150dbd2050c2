import Crypto
import Foundation

/// How Fission's webhooks are signed, in both directions: the payment provider calling orders,
/// and notifications calling merchants. `X-Fission-Signature: t=<unix seconds>,v1=<hex
/// HMAC-SHA256 of "<t>.<body>">` under a shared secret; the timestamp lets a receiver refuse
/// replays.
public enum WebhookSignature {
    public static let headerName = "X-Fission-Signature"

    public static func header(body: Data, timestamp: Int, secret: String) -> String {
        var message = Data("\(timestamp).".utf8)
        message.append(body)
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: Data(secret.utf8)))
        return "t=\(timestamp),v1=" + mac.map { String(format: "%02x", $0) }.joined()
    }
}
