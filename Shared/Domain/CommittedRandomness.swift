import Crypto
import Foundation

/// Randomness that can be checked afterwards: a secret seed whose SHA-256 is published before
/// it is used, and numbers derived from it that anyone can recompute once the seed is revealed.
/// The bargain cut schedule and the levels draws both stand on it.
public enum CommittedRandomness {
    /// 32 random bytes as hex.
    public static func newSeed() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    /// The commitment: SHA-256 of the seed's text, hex.
    public static func commitment(to seed: String) -> String {
        SHA256.hash(data: Data(seed.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// A number in [0, 1): the first 8 bytes of HMAC-SHA256(key: seed, message: label) as a
    /// big-endian integer, shifted right by 11, divided by 2^53.
    public static func uniform(seed: String, label: String) -> Double {
        let mac = HMAC<SHA256>.authenticationCode(for: Data(label.utf8), using: SymmetricKey(data: Data(seed.utf8)))
        let value = mac.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return Double(value >> 11) / Double(UInt64(1) << 53)
    }
}
