import Foundation

/// The bargain cut schedule (砍一刀): how much the initiator's first cut and each friend's help
/// take off the price.
///
/// Rules it guarantees, for any seed and any order of helpers:
/// - every cut is at least one smallest unit, and none takes the price below the floor;
/// - the floor is reached exactly at the `promisedHelpers`-th helper (new users cut more, but
///   never make the promise later), so the sum of all cuts is exactly list price − floor;
/// - cuts shrink as the task progresses (a linear share of what is left, with randomness);
/// - reproducible: each amount is a function of the task's secret seed, the step and the state
///   before it. The seed's SHA-256 is published when the task starts and the seed when it ends,
///   so anyone can recompute every cut with `replay` (see docs/cut-schedule.md).
public struct CutSchedule: Sendable, Hashable, Codable {
    public var listPrice: Money
    public var floorPrice: Money
    public var promisedHelpers: Int
    public var firstCutMin: Money
    public var firstCutMax: Money
    /// New users cut this many percent of a normal cut (100 = same).
    public var newUserCutPercent: Int
    /// 32 random bytes, hex; secret until the task ends.
    public var seed: String

    public init(rules: BargainRules, listPrice: Money, seed: String) {
        self.listPrice = listPrice
        self.floorPrice = rules.floorPrice
        self.promisedHelpers = rules.maxHelpers
        self.firstCutMin = rules.firstCutMin
        self.firstCutMax = rules.firstCutMax
        self.newUserCutPercent = rules.newUserCutPercent
        self.seed = seed
    }

    /// A fresh secret seed.
    public static func newSeed() -> String { CommittedRandomness.newSeed() }

    /// The commitment published when the task starts: SHA-256 of the seed's text, hex.
    public static func commitment(to seed: String) -> String { CommittedRandomness.commitment(to: seed) }

    public var seedHash: String { Self.commitment(to: seed) }

    /// The total to cut, in smallest units.
    public var span: Int64 { listPrice.amount - floorPrice.amount }

    /// A uniform number in [0, 1) for `step`: the first 8 bytes of HMAC-SHA256(seed, "cut:<step>").
    func uniform(_ step: Int) -> Double { CommittedRandomness.uniform(seed: seed, label: "cut:\(step)") }

    /// The initiator's own first cut (step 0): within the campaign's range, and leaving at least
    /// one unit for each promised helper.
    public var firstCut: Int64 {
        let low = firstCutMin.amount
        let high = max(low, firstCutMax.amount)
        let drawn = low + Int64((Double(high - low + 1) * uniform(0)).rounded(.down))
        return min(max(1, drawn), span - Int64(promisedHelpers))
    }

    /// The cut of helper number `helper` (1-based) when `left` units remain to the floor.
    public func cut(helper: Int, left: Int64, newUser: Bool) -> Int64 {
        let helpersLeft = Int64(promisedHelpers - helper + 1)
        guard helpersLeft > 1 else { return left }  // the promised last helper lands on the floor
        // A linear share: with h helpers to go, the next takes about 2/(h+1) of what is left,
        // scaled by a random factor in [0.5, 1.5).
        let share = 2.0 * Double(left) / Double(helpersLeft + 1) * (0.5 + uniform(helper))
        var amount = Int64(share.rounded(.down))
        if newUser { amount = amount * Int64(newUserCutPercent) / 100 }
        // At least one unit, and at least one unit left for every later promised helper.
        return min(max(1, amount), left - (helpersLeft - 1))
    }

    /// Every cut in order for helpers with the given new-user flags: the verification procedure.
    public func replay(newUserFlags: [Bool]) -> [Int64] {
        var cuts = [firstCut]
        var left = span - cuts[0]
        for (index, newUser) in newUserFlags.prefix(promisedHelpers).enumerated() {
            let amount = cut(helper: index + 1, left: left, newUser: newUser)
            cuts.append(amount)
            left -= amount
        }
        return cuts
    }
}
