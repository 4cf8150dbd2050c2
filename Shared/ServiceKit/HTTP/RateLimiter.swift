import Domain
import Foundation
import Hummingbird
import Synchronization

/// How many requests of one kind a caller may make: `count` per `period`, refilled smoothly.
public struct RateBudget: Sendable, Hashable, CustomStringConvertible {
    public var count: Int
    public var period: Duration

    public init(_ count: Int, per period: Duration) {
        self.count = count
        self.period = period
    }

    /// `"30/60"`: 30 per 60 seconds. `"0"` or `"off"`: no limit (nil).
    public static func parse(_ text: String) -> RateBudget?? {
        if text == "0" || text == "off" { return .some(nil) }
        let parts = text.split(separator: "/")
        guard parts.count == 2, let count = Int(parts[0]), count > 0, let seconds = Int(parts[1]), seconds > 0 else { return nil }
        return .some(RateBudget(count, per: .seconds(seconds)))
    }

    public var description: String { "\(count)/\(period.components.seconds)" }
}

/// Per-user and per-client-address limits on the actions abuse goes for: helps, share links,
/// order placement. A token bucket per (action, caller) in this process, so with N replicas a
/// caller gets up to N× the budget: a brake on farms and scripts, not a quota. Refusals are 429
/// `rate-limited` with `Retry-After`.
public final class RateLimiter: Sendable {
    public let perUser: RateBudget?
    public let perAddress: RateBudget?
    private let buckets = Mutex<[String: Bucket]>([:])

    struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    public init(perUser: RateBudget?, perAddress: RateBudget?) {
        self.perUser = perUser
        self.perAddress = perAddress
    }

    public static let unlimited = RateLimiter(perUser: nil, perAddress: nil)

    /// Spends one request of `action` for the caller, or throws 429 saying when to retry. A
    /// refused request spends nothing: it takes from every budget or from none.
    public func admit(_ action: String, user: UserID?, address: String?, now: ContinuousClock.Instant = .now) throws {
        var budgets: [(String, RateBudget)] = []
        if let perUser, let user { budgets.append(("\(action)|u|\(user.rawValue)", perUser)) }
        if let perAddress, let address { budgets.append(("\(action)|a|\(address)", perAddress)) }
        guard !budgets.isEmpty else { return }
        let wait = buckets.withLock { buckets -> Duration in
            if buckets.count > 100_000 { Self.prune(&buckets, now: now) }
            var refilled: [(String, Bucket)] = []
            var longest = Duration.zero
            for (key, budget) in budgets {
                let capacity = Double(budget.count)
                let perSecond = capacity / budget.period.inSeconds
                var bucket = buckets[key] ?? Bucket(tokens: capacity, updated: now)
                bucket.tokens = min(capacity, bucket.tokens + max(0, (now - bucket.updated).inSeconds) * perSecond)
                bucket.updated = now
                if bucket.tokens < 1 { longest = max(longest, .seconds((1 - bucket.tokens) / perSecond)) }
                refilled.append((key, bucket))
            }
            for (key, var bucket) in refilled {
                if longest == .zero { bucket.tokens -= 1 }
                buckets[key] = bucket
            }
            return longest
        }
        guard wait > .zero else { return }
        let seconds = max(1, Int(wait.inSeconds.rounded(.up)))
        throw Problem.rateLimited(retryAfterSeconds: seconds)
    }

    /// Buckets untouched for an hour are full again: forgetting them changes nothing.
    private static func prune(_ buckets: inout [String: Bucket], now: ContinuousClock.Instant) {
        buckets = buckets.filter { now - $0.value.updated < .seconds(3600) }
    }
}

extension Problem {
    public static func rateLimited(retryAfterSeconds seconds: Int) -> Problem {
        var problem = Problem(
            .tooManyRequests, kind: "rate-limited", title: "Too many requests", detail: "try again in \(seconds) s",
            extensions: ["retryAfter": String(seconds)])
        problem.retryAfterSeconds = seconds
        return problem
    }
}
