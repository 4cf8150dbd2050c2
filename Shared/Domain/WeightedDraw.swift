import Foundation

/// The verifiable weighted draw (免费抽奖) of the levels service.
///
/// Procedure (docs/draws.md): sort entries by user id; for pick `k` = 0, 1, … while prizes and
/// entrants remain, take `u(k)` = first 8 bytes of HMAC-SHA256(key: seed, message: "draw:k")
/// as a big-endian integer >> 11, divided by 2^53; walk the remaining entries in order adding
/// their weights until the running sum exceeds `u(k) × total remaining weight`; that entry wins
/// and leaves the pool.
public enum WeightedDraw {
    public struct Entry: Sendable, Hashable, Codable {
        public var userID: String
        public var weight: Int
        public init(userID: String, weight: Int) {
            self.userID = userID
            self.weight = weight
        }
    }

    public static func winners(seed: String, entries: [Entry], prizes: Int) -> [String] {
        var pool = entries.filter { $0.weight > 0 }.sorted { $0.userID < $1.userID }
        var chosen: [String] = []
        var pick = 0
        while chosen.count < prizes, !pool.isEmpty {
            let total = pool.reduce(0) { $0 + $1.weight }
            let target = uniform(seed: seed, pick: pick) * Double(total)
            var running = 0
            var index = pool.count - 1
            for (position, entry) in pool.enumerated() {
                running += entry.weight
                if Double(running) > target {
                    index = position
                    break
                }
            }
            chosen.append(pool.remove(at: index).userID)
            pick += 1
        }
        return chosen
    }

    static func uniform(seed: String, pick: Int) -> Double { CommittedRandomness.uniform(seed: seed, label: "draw:\(pick)") }
}
