import Foundation

public enum CampaignKind: String, Sendable, Codable, CaseIterable {
    case groupBuy, bargain, unlock
}

public struct Product: Sendable, Codable, Hashable {
    public var sku: String
    public var title: String
    public var imageURL: String?

    public init(sku: String, title: String, imageURL: String? = nil) {
        self.sku = sku
        self.title = title
        self.imageURL = imageURL
    }
}

/// 拼团: teams of `teamSize` buy at `groupPrice` (or a ladder tier) before the team deadline.
public struct GroupBuyRules: Sendable, Codable, Hashable {
    public enum LatePaymentPolicy: String, Sendable, Codable {
        /// A payment for a full or expired team opens a new team for the payer.
        case openNewTeam
        case refund
    }

    /// Price once a team has at least `minMembers` members.
    public struct PriceTier: Sendable, Codable, Hashable {
        public var minMembers: Int
        public var price: Money
        public init(minMembers: Int, price: Money) {
            self.minMembers = minMembers
            self.price = price
        }
    }

    public var teamSize: Int
    public var groupPrice: Money
    /// 团长价: what the leader pays, if different.
    public var leaderPrice: Money?
    public var ladder: [PriceTier]?
    public var teamTimeLimitSeconds: Int
    /// 0 = off; otherwise a team at least this full at its deadline completes with virtual members.
    public var virtualFillPercent: Int
    public var latePaymentPolicy: LatePaymentPolicy

    public init(
        teamSize: Int, groupPrice: Money, leaderPrice: Money? = nil, ladder: [PriceTier]? = nil,
        teamTimeLimitSeconds: Int, virtualFillPercent: Int = 0, latePaymentPolicy: LatePaymentPolicy = .openNewTeam
    ) {
        self.teamSize = teamSize
        self.groupPrice = groupPrice
        self.leaderPrice = leaderPrice
        self.ladder = ladder
        self.teamTimeLimitSeconds = teamTimeLimitSeconds
        self.virtualFillPercent = virtualFillPercent
        self.latePaymentPolicy = latePaymentPolicy
    }
}

/// 砍一刀: friends cut the price from the list price towards `floorPrice`.
public struct BargainRules: Sendable, Codable, Hashable {
    public var floorPrice: Money
    /// The floor is reached no later than this many helpers.
    public var maxHelpers: Int
    /// The initiator's own first cut, as a range.
    public var firstCutMin: Money
    public var firstCutMax: Money
    /// New users (never paid an order) cut this many percent of a normal cut (100 = same).
    public var newUserCutPercent: Int
    public var taskTimeLimitSeconds: Int
    /// After success, the initiator may order at the reached price within this window.
    public var payWindowSeconds: Int
    /// "Buy at the price reached so far" before the floor.
    public var allowBuyAboveFloor: Bool
    /// Helps one helper may give per day across tasks (0 = unlimited).
    public var helperDailyLimit: Int
    /// Helps per device per task campaign and day (0 = unlimited).
    public var deviceLimit: Int
    /// Helps per client network per day (0 = unlimited).
    public var networkLimit: Int

    public init(
        floorPrice: Money, maxHelpers: Int, firstCutMin: Money, firstCutMax: Money, newUserCutPercent: Int = 100,
        taskTimeLimitSeconds: Int, payWindowSeconds: Int, allowBuyAboveFloor: Bool = false,
        helperDailyLimit: Int = 0, deviceLimit: Int = 0, networkLimit: Int = 0
    ) {
        self.floorPrice = floorPrice
        self.maxHelpers = maxHelpers
        self.firstCutMin = firstCutMin
        self.firstCutMax = firstCutMax
        self.newUserCutPercent = newUserCutPercent
        self.taskTimeLimitSeconds = taskTimeLimitSeconds
        self.payWindowSeconds = payWindowSeconds
        self.allowBuyAboveFloor = allowBuyAboveFloor
        self.helperDailyLimit = helperDailyLimit
        self.deviceLimit = deviceLimit
        self.networkLimit = networkLimit
    }
}

/// 助力免费拿: K helpers unlock a reward.
public struct UnlockRules: Sendable, Codable, Hashable {
    public enum RewardKind: String, Sendable, Codable { case freeItem, coupon }
    public var helpersRequired: Int
    public var reward: RewardKind
    /// For coupons: the coupon's value.
    public var couponAmount: Money?
    public var taskTimeLimitSeconds: Int

    public init(helpersRequired: Int, reward: RewardKind, couponAmount: Money? = nil, taskTimeLimitSeconds: Int) {
        self.helpersRequired = helpersRequired
        self.reward = reward
        self.couponAmount = couponAmount
        self.taskTimeLimitSeconds = taskTimeLimitSeconds
    }
}

/// Everything a campaign promises, as published (and as other services keep it).
public struct CampaignTerms: Sendable, Codable, Hashable {
    public var kind: CampaignKind
    public var product: Product
    public var listPrice: Money
    public var stock: Int
    public var perUserLimit: Int
    public var startsAt: Date
    public var endsAt: Date
    public var groupBuy: GroupBuyRules?
    public var bargain: BargainRules?
    public var unlock: UnlockRules?

    public init(
        kind: CampaignKind, product: Product, listPrice: Money, stock: Int, perUserLimit: Int, startsAt: Date,
        endsAt: Date, groupBuy: GroupBuyRules? = nil, bargain: BargainRules? = nil, unlock: UnlockRules? = nil
    ) {
        self.kind = kind
        self.product = product
        self.listPrice = listPrice
        self.stock = stock
        self.perUserLimit = perUserLimit
        self.startsAt = startsAt
        self.endsAt = endsAt
        self.groupBuy = groupBuy
        self.bargain = bargain
        self.unlock = unlock
    }

    /// A rule a campaign breaks, naming the field (a JSON path such as `bargain.floorPrice`).
    public struct Violation: Sendable, Hashable, CustomStringConvertible {
        public var field: String
        public var reason: String
        public init(field: String, reason: String) {
            self.field = field
            self.reason = reason
        }
        public var description: String { "\(field): \(reason)" }
    }

    /// Every violated rule; empty means the terms are consistent.
    public func violations() -> [Violation] {
        var found: [Violation] = []
        func check(_ condition: Bool, _ field: String, _ reason: String) {
            if !condition { found.append(Violation(field: field, reason: reason)) }
        }
        func sameCurrency(_ money: Money, _ field: String) -> Bool {
            let same = money.currency == listPrice.currency
            check(same, field, "must be in \(listPrice.currency) like listPrice")
            return same
        }
        check(listPrice.currency.isValid, "listPrice.currency", "must be an ISO 4217 code")
        check(listPrice.amount > 0, "listPrice", "must be above zero")
        check(!product.sku.isEmpty, "product.sku", "must not be empty")
        check(!product.title.isEmpty, "product.title", "must not be empty")
        check(stock >= 0, "stock", "must not be below zero")
        check(perUserLimit >= 1, "perUserLimit", "must be at least 1")
        check(endsAt > startsAt, "endsAt", "must be after startsAt")
        check((groupBuy != nil) == (kind == .groupBuy), "groupBuy", kind == .groupBuy ? "is required for a groupBuy campaign" : "only applies to groupBuy campaigns")
        check((bargain != nil) == (kind == .bargain), "bargain", kind == .bargain ? "is required for a bargain campaign" : "only applies to bargain campaigns")
        check((unlock != nil) == (kind == .unlock), "unlock", kind == .unlock ? "is required for an unlock campaign" : "only applies to unlock campaigns")

        if let rules = groupBuy {
            check((2...100).contains(rules.teamSize), "groupBuy.teamSize", "must be between 2 and 100")
            if sameCurrency(rules.groupPrice, "groupBuy.groupPrice") {
                check(rules.groupPrice < listPrice, "groupBuy.groupPrice", "must be below listPrice")
                check(rules.groupPrice.amount > 0, "groupBuy.groupPrice", "must be above zero")
            }
            if let leader = rules.leaderPrice, sameCurrency(leader, "groupBuy.leaderPrice") {
                check(leader.amount >= 0 && leader < listPrice, "groupBuy.leaderPrice", "must be at least zero and below listPrice")
            }
            if let ladder = rules.ladder {
                for (index, tier) in ladder.enumerated() where sameCurrency(tier.price, "groupBuy.ladder[\(index)].price") {
                    check(tier.price < listPrice && tier.price.amount > 0, "groupBuy.ladder[\(index)].price", "must be above zero and below listPrice")
                    check((2...rules.teamSize).contains(tier.minMembers), "groupBuy.ladder[\(index)].minMembers", "must be between 2 and teamSize")
                    if index > 0 {
                        check(tier.minMembers > ladder[index - 1].minMembers, "groupBuy.ladder[\(index)].minMembers", "must grow along the ladder")
                        if tier.price.currency == ladder[index - 1].price.currency {
                            check(tier.price < ladder[index - 1].price, "groupBuy.ladder[\(index)].price", "must fall along the ladder")
                        }
                    }
                }
            }
            check(rules.teamTimeLimitSeconds >= 60, "groupBuy.teamTimeLimitSeconds", "must be at least 60")
            check((0...100).contains(rules.virtualFillPercent), "groupBuy.virtualFillPercent", "must be between 0 and 100")
        }

        if let rules = bargain {
            if sameCurrency(rules.floorPrice, "bargain.floorPrice") {
                check(rules.floorPrice.amount >= 0, "bargain.floorPrice", "must not be below zero")
                check(rules.floorPrice < listPrice, "bargain.floorPrice", "must be below listPrice")
                let cents = listPrice.amount - rules.floorPrice.amount
                check(rules.maxHelpers >= 1, "bargain.maxHelpers", "must be at least 1")
                // Every cut is at least one smallest unit, and the first cut is the initiator's.
                check(Int64(rules.maxHelpers) + 1 <= cents, "bargain.maxHelpers", "promises more cuts than there are smallest units to cut")
                if sameCurrency(rules.firstCutMin, "bargain.firstCutMin"), sameCurrency(rules.firstCutMax, "bargain.firstCutMax") {
                    check(rules.firstCutMin.amount >= 1, "bargain.firstCutMin", "must be at least one smallest unit")
                    check(rules.firstCutMax >= rules.firstCutMin, "bargain.firstCutMax", "must not be below firstCutMin")
                    check(rules.firstCutMax.amount < cents, "bargain.firstCutMax", "must leave something for friends to cut")
                }
            }
            check((100...1000).contains(rules.newUserCutPercent), "bargain.newUserCutPercent", "must be between 100 and 1000")
            check(rules.taskTimeLimitSeconds >= 60, "bargain.taskTimeLimitSeconds", "must be at least 60")
            check(rules.payWindowSeconds >= 60, "bargain.payWindowSeconds", "must be at least 60")
            check(rules.helperDailyLimit >= 0, "bargain.helperDailyLimit", "must not be below zero")
            check(rules.deviceLimit >= 0, "bargain.deviceLimit", "must not be below zero")
            check(rules.networkLimit >= 0, "bargain.networkLimit", "must not be below zero")
        }

        if let rules = unlock {
            check((1...1000).contains(rules.helpersRequired), "unlock.helpersRequired", "must be between 1 and 1000")
            check((rules.reward == .coupon) == (rules.couponAmount != nil), "unlock.couponAmount", "is required for coupon rewards and only for them")
            if let coupon = rules.couponAmount, sameCurrency(coupon, "unlock.couponAmount") {
                check(coupon.amount > 0, "unlock.couponAmount", "must be above zero")
            }
            check(rules.taskTimeLimitSeconds >= 60, "unlock.taskTimeLimitSeconds", "must be at least 60")
        }
        return found
    }
}
