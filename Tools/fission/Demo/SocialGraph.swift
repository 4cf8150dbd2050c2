import FissionTesting
import Foundation

/// Shoppers in chat groups of 20–500 people, as share links travel through WeChat and QQ: most
/// groups are small (family, dorm, colleagues), a few are big (neighbourhood, deal hunters).
/// Every shopper is in at least one group; about half are in two.
struct SocialGraph: Sendable {
    let shoppers: [String]
    let groups: [[Int]]
    let groupsOf: [[Int]]

    init(shoppers count: Int, rng: inout SplitMix64) {
        shoppers = (0..<count).map { String(format: "u-sim-%05d", $0) }
        func groupSize() -> Int {
            let u = Double.random(in: 0..<1, using: &rng)
            return min(count, 20 + Int(480 * u * u * u))
        }
        var groups: [[Int]] = []
        // Everyone once: a shuffled roster cut into groups.
        var roster = Array(0..<count).shuffled(using: &rng)
        while !roster.isEmpty {
            let size = min(roster.count, groupSize())
            groups.append(Array(roster.suffix(size)))
            roster.removeLast(size)
        }
        // Then overlapping groups of random members, until memberships reach 1.5 per shopper.
        var memberships = count
        while memberships < count * 3 / 2 {
            let size = groupSize()
            var members = Set<Int>()
            while members.count < size { members.insert(Int.random(in: 0..<count, using: &rng)) }
            groups.append(Array(members))
            memberships += size
        }
        var groupsOf = Array(repeating: [Int](), count: count)
        for (index, members) in groups.enumerated() {
            for member in members { groupsOf[member].append(index) }
        }
        self.groups = groups
        self.groupsOf = groupsOf
    }
}
