import Domain
import FissionTesting
import Foundation

/// The viral part of the demo: a merchant's group-buy, bargain and unlock campaigns spread
/// through a synthetic social graph. Seed shoppers share links into their chat groups; members
/// open them, join teams and pay (some abandon at the cashier), help cut prices and unlock
/// rewards, and some share onwards into their own groups. Campaigns run with one-minute time
/// limits so that deadlines pass during the demo: unfilled teams expire and are refunded.
/// Everything goes through the public HTTP APIs.
struct ViralSimulation: Sendable {
    let store: Storefront
    let graph: SocialGraph
    let seed: UInt64
    let progress: Progress

    static let merchant = "m-sim-tea-house"

    struct CampaignSet: Sendable {
        var groupBuy: String
        var bargain: String
        var unlock: String
        var all: [(name: String, id: String)] { [("拼团 group-buy", groupBuy), ("砍一刀 bargain", bargain), ("助力 unlock", unlock)] }
    }

    enum Kind: String, Sendable { case groupBuy, bargain, unlock }

    /// A link a shopper posted into one of their groups.
    struct Post: Sendable {
        var sharer: Int
        var kind: Kind
        var target: String
        var code: String
        var group: Int
    }

    /// Publishes the three campaigns with short time limits.
    func publishCampaigns() async throws -> CampaignSet {
        let now = Date()
        let start = EventCoding.formatTimestamp(now.addingTimeInterval(-60))
        let end = EventCoding.formatTimestamp(now.addingTimeInterval(86_400))
        let groupBuy = try await store.publish("""
            {"kind":"groupBuy","product":{"sku":"SIM-TEA","title":"安吉白茶 250g"},"listPrice":{"amount":12800,"currency":"CNY"},
             "stock":600,"perUserLimit":1,"startsAt":"\(start)","endsAt":"\(end)",
             "groupBuy":{"teamSize":3,"groupPrice":{"amount":8800,"currency":"CNY"},"leaderPrice":{"amount":7800,"currency":"CNY"},
                         "teamTimeLimitSeconds":60,"virtualFillPercent":60,"latePaymentPolicy":"refund"}}
            """, merchant: Self.merchant)
        let bargain = try await store.publish("""
            {"kind":"bargain","product":{"sku":"SIM-CUP","title":"汝窑茶杯"},"listPrice":{"amount":5000,"currency":"CNY"},
             "stock":300,"perUserLimit":1,"startsAt":"\(start)","endsAt":"\(end)",
             "bargain":{"floorPrice":{"amount":990,"currency":"CNY"},"maxHelpers":4,"firstCutMin":{"amount":500,"currency":"CNY"},
                        "firstCutMax":{"amount":1500,"currency":"CNY"},"newUserCutPercent":150,"taskTimeLimitSeconds":60,
                        "payWindowSeconds":120,"allowBuyAboveFloor":false,"helperDailyLimit":10,"deviceLimit":0,"networkLimit":0}}
            """, merchant: Self.merchant)
        let unlock = try await store.publish("""
            {"kind":"unlock","product":{"sku":"SIM-COUPON","title":"¥10 茶叶券"},"listPrice":{"amount":1000,"currency":"CNY"},
             "stock":1000,"perUserLimit":1,"startsAt":"\(start)","endsAt":"\(end)",
             "unlock":{"helpersRequired":3,"reward":"coupon","couponAmount":{"amount":1000,"currency":"CNY"},"taskTimeLimitSeconds":60}}
            """, merchant: Self.merchant)
        return CampaignSet(groupBuy: groupBuy, bargain: bargain, unlock: unlock)
    }

    /// Plays the spread generation by generation until no new posts are made, or, given a
    /// deadline (a chaos run's load), until it passes: no new batch of posts is read after it.
    func spread(_ campaigns: CampaignSet, until deadline: Date? = nil) async throws -> SimulationTally {
        let tally = SimulationTally(shoppers: graph.shoppers.count, progress: progress)
        var rng = SplitMix64(seed: seed)
        // Two seed shoppers per campaign start things and post into their first group.
        var posts: [Post] = []
        for kind in [Kind.groupBuy, .bargain, .unlock] {
            for _ in 0..<2 {
                let shopper = Int.random(in: 0..<graph.shoppers.count, using: &rng)
                guard await tally.claim(shopper, kind) else { continue }
                if let post = try await survivable({ try await startAndShare(shopper, kind, campaigns, tally: tally, rng: &rng) }) ?? nil {
                    posts.append(post)
                }
            }
        }
        var generation = 0
        while !posts.isEmpty && generation < 12 {
            generation += 1
            await tally.generation(generation)
            var next: [Post] = []
            // Posts of a generation are read in parallel, a few at a time (the machine has two cores
            // and five services to run).
            for batch in stride(from: 0, to: posts.count, by: 8).map({ Array(posts[$0..<min($0 + 8, posts.count)]) }) {
                if let deadline, Date() >= deadline { break }
                let seeds = batch.map { _ in rng.next() }
                try await withThrowingTaskGroup(of: [Post].self) { group in
                    for (post, seed) in zip(batch, seeds) {
                        group.addTask { try await read(post, campaigns, tally: tally, seed: seed) }
                    }
                    for try await made in group { next += made }
                }
            }
            posts = next
            if let deadline, Date() >= deadline { break }
        }
        await tally.finishSpreading()
        return tally
    }

    /// Members of the group see the post; some open it and act, some of those post onwards.
    private func read(_ post: Post, _ campaigns: CampaignSet, tally: SimulationTally, seed: UInt64) async throws -> [Post] {
        var rng = SplitMix64(seed: seed)
        let members = graph.groups[post.group]
        // Attention is scarce in a big group.
        let openRate = min(0.3, 6.0 / Double(members.count))
        var made: [Post] = []
        for member in members where member != post.sharer && rng.chance(openRate) {
            // One shopper's journey; under chaos one that ran out of patience is given up, and
            // the others go on.
            let posted = try await survivable { () async throws -> [Post] in
                let user = graph.shoppers[member]
                let (opened, view) = try await store.call("GET", "\(store.campaigns)/s/\(post.code)", token: try await store.token(user))
                try Storefront.refuseServerError(opened, view, "open a share link")
                if opened == 200 { await store.resilience?.ledger.clicked(code: post.code, by: user) }
                await tally.clicked(member)
                switch post.kind {
                case .groupBuy:
                    // A team only completes if its members bring friends: most who join share it on.
                    guard rng.chance(0.6), await tally.claim(member, .groupBuy) else { return [] }
                    let team: String? = try await joinOrOpen(member, team: post.target, code: post.code, campaigns, tally: tally, rng: &rng)
                    if let team, rng.chance(0.8) {
                        return [try await share(member, .groupBuy, campaign: campaigns.groupBuy, targetKind: "team", target: team, rng: &rng)]
                    }
                case .bargain, .unlock:
                    guard rng.chance(0.7) else { return [] }
                    try await help(member, task: post.target, kind: post.kind, campaigns, tally: tally)
                    if rng.chance(0.3), await tally.claim(member, post.kind),
                       let own = try await startAndShare(member, post.kind, campaigns, tally: tally, rng: &rng) {
                        return [own]
                    }
                }
                return []
            }
            made += posted ?? []
        }
        return made
    }

    /// Joins the shared team when it has a seat (paying, or abandoning at the cashier), otherwise
    /// opens a team of one's own. Returns the team the shopper is now in, if any.
    private func joinOrOpen(_ member: Int, team: String, code: String, _ campaigns: CampaignSet, tally: SimulationTally,
                            rng: inout SplitMix64) async throws -> String? {
        let user = graph.shoppers[member]
        let (pageStatus, page) = try await store.call("GET", "\(store.campaigns)/teams/\(team)")
        try Storefront.refuseServerError(pageStatus, page, "read a team page")
        let seatsLeft = page["seatsLeft"] as? Int ?? 0
        let open = page["status"] as? String == "open" && seatsLeft > 0
        let abandons = rng.chance(0.12)
        let order = try await store.placeOrder(
            campaign: campaigns.groupBuy, purpose: open ? "joinTeam" : "openTeam", team: open ? team : nil, shareCode: code, shopper: user)
        guard let order else { return nil }
        await tally.ordered(.groupBuy)
        guard !abandons else {
            await tally.abandoned()
            return nil
        }
        guard let due = try await store.payable(order, shopper: user) else { return nil }
        try await store.pay(intent: due.intent, total: due.total)
        await tally.paid(.groupBuy)
        if open { return team }
        return try await teamOf(order, leader: user, campaigns)
    }

    /// The team an opening order created (campaigns opens it when the payment is reported).
    private func teamOf(_ order: String, leader user: String, _ campaigns: CampaignSet) async throws -> String? {
        let token = try await store.token(user)
        // Under chaos the payment may take a broker outage to reach campaigns.
        let deadline = ContinuousClock.now.advanced(by: max(.seconds(10), store.resilience?.patience ?? .zero))
        while ContinuousClock.now < deadline {
            let (_, body) = try await store.call("GET", "\(store.orders)/orders/\(order)", token: token)
            if let team = body["teamId"] as? String { return team }
            try await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    private func help(_ member: Int, task: String, kind: Kind, _ campaigns: CampaignSet, tally: SimulationTally) async throws {
        let user = graph.shoppers[member]
        let (status, body) = try await store.call("POST", "\(store.assists)/tasks/\(task)/helps", token: try await store.token(user))
        try Storefront.refuseServerError(status, body, "help")
        // 202: held for fraud review; accepted all the same.
        if status == 200 || status == 202 { await store.resilience?.ledger.helped(task: task, helper: user) }
        guard status == 200 else { return }
        await tally.helped(kind)
        let state = body["task"] as? [String: Any]
        guard state?["status"] as? String == "completed", let initiator = state?["initiatorId"] as? String else { return }
        await tally.taskCompleted(kind)
        guard kind == .bargain else { return }
        // The initiator buys at the floor price within the pay window.
        guard let order = try await store.placeOrder(campaign: campaigns.bargain, purpose: "bargain", task: task, shopper: initiator) else { return }
        await tally.ordered(.bargain)
        guard let due = try await store.payable(order, shopper: initiator) else { return }
        try await store.pay(intent: due.intent, total: due.total)
        await tally.paid(.bargain)
    }

    /// Opens a team (paying as its leader) or starts a task, then posts it into one of the
    /// shopper's groups.
    private func startAndShare(_ member: Int, _ kind: Kind, _ campaigns: CampaignSet, tally: SimulationTally,
                               rng: inout SplitMix64) async throws -> Post? {
        let user = graph.shoppers[member]
        switch kind {
        case .groupBuy:
            guard let order = try await store.placeOrder(campaign: campaigns.groupBuy, purpose: "openTeam", shopper: user) else { return nil }
            await tally.ordered(.groupBuy)
            guard let due = try await store.payable(order, shopper: user) else { return nil }
            try await store.pay(intent: due.intent, total: due.total)
            await tally.paid(.groupBuy)
            guard let team = try await teamOf(order, leader: user, campaigns) else { return nil }
            return try await share(member, .groupBuy, campaign: campaigns.groupBuy, targetKind: "team", target: team, rng: &rng)
        case .bargain, .unlock:
            let campaign = kind == .bargain ? campaigns.bargain : campaigns.unlock
            let token = try await store.token(user)
            var started: [String: Any]?
            // One key for every attempt: a retry after a lost answer gets the same task back.
            let key = UUID().uuidString
            // Assists learns a new campaign from its events; retry briefly until it has (under
            // chaos, as long as the shopper's patience lasts: assists may be restarting).
            let deadline = ContinuousClock.now.advanced(by: max(.seconds(20), store.resilience?.patience ?? .zero))
            while ContinuousClock.now < deadline {
                let (status, body) = try await store.call(
                    "POST", "\(store.assists)/tasks", token: token, json: "{\"campaignId\":\"\(campaign)\"}", headers: ["Idempotency-Key": key])
                try Storefront.refuseServerError(status, body, "start a task")
                if status == 201 {
                    started = body
                    break
                }
                guard Storefront.notKnownYet(status, body) else { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            guard let task = started?["taskId"] as? String else { return nil }
            await store.resilience?.ledger.started(task: task, by: user)
            await tally.taskStarted(kind)
            return try await share(member, kind, campaign: campaign, targetKind: "task", target: task, rng: &rng)
        }
    }

    /// Runs one shopper's journey. In the demo a failure ends the run (it means a bug); under
    /// chaos a journey whose patience ran out is counted as given up and the spread goes on.
    private func survivable<T>(_ journey: () async throws -> T) async throws -> T? {
        guard let ledger = store.resilience?.ledger else { return try await journey() }
        do {
            return try await journey()
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            await ledger.gaveUp(error)
            return nil
        }
    }

    private func share(_ member: Int, _ kind: Kind, campaign: String, targetKind: String, target: String,
                       rng: inout SplitMix64) async throws -> Post {
        let groups = graph.groupsOf[member]
        let group = groups[Int.random(in: 0..<groups.count, using: &rng)]
        let channel = graph.groups[group].count > 200 ? "qq" : "wechat"
        let (status, body) = try await store.call(
            "POST", "\(store.campaigns)/shares", token: try await store.token(graph.shoppers[member]),
            json: "{\"campaignId\":\"\(campaign)\",\"target\":{\"kind\":\"\(targetKind)\",\"id\":\"\(target)\"},\"channel\":\"\(channel)\"}",
            headers: ["Idempotency-Key": UUID().uuidString])
        guard status == 201, let code = body["code"] as? String else { throw Storefront.Failure(description: "could not share: \(status) \(body)") }
        await store.resilience?.ledger.shared(code: code)
        return Post(sharer: member, kind: kind, target: target, code: code, group: group)
    }
}

/// What the simulation did, counted as it happened (the report reads the services' own figures;
/// these drive the progress bar and are cross-checked against them).
actor SimulationTally {
    let shoppers: Int
    let progress: Progress
    private var claimed: Set<String> = []
    private var reached: Set<Int> = []
    private(set) var clicks = 0
    private(set) var orders: [ViralSimulation.Kind: Int] = [:]
    private(set) var payments: [ViralSimulation.Kind: Int] = [:]
    private(set) var abandons = 0
    private(set) var helps: [ViralSimulation.Kind: Int] = [:]
    private(set) var tasksStarted: [ViralSimulation.Kind: Int] = [:]
    private(set) var tasksCompleted: [ViralSimulation.Kind: Int] = [:]
    private var currentGeneration = 0

    init(shoppers: Int, progress: Progress) {
        self.shoppers = shoppers
        self.progress = progress
    }

    /// A shopper takes part in a campaign once.
    func claim(_ shopper: Int, _ kind: ViralSimulation.Kind) -> Bool { claimed.insert("\(kind.rawValue):\(shopper)").inserted }
    func generation(_ number: Int) { currentGeneration = number; draw() }
    func clicked(_ shopper: Int) { clicks += 1; reached.insert(shopper); draw() }
    func ordered(_ kind: ViralSimulation.Kind) { orders[kind, default: 0] += 1; draw() }
    func paid(_ kind: ViralSimulation.Kind) { payments[kind, default: 0] += 1 }
    func abandoned() { abandons += 1 }
    func helped(_ kind: ViralSimulation.Kind) { helps[kind, default: 0] += 1; draw() }
    func taskStarted(_ kind: ViralSimulation.Kind) { tasksStarted[kind, default: 0] += 1 }
    func taskCompleted(_ kind: ViralSimulation.Kind) { tasksCompleted[kind, default: 0] += 1 }
    func finishSpreading() { draw(force: true); progress.end() }

    private func draw(force: Bool = false) {
        let fraction = Double(reached.count) / Double(max(1, shoppers))
        let helpCount = helps.values.reduce(0, +), orderCount = orders.values.reduce(0, +)
        progress.show(fraction, "gen \(currentGeneration) · reached \(reached.count)/\(shoppers) · \(clicks) clicks · \(orderCount) orders · \(helpCount) helps", force: force)
    }
}

/// A one-line progress bar on standard output, redrawn at most ten times a second.
final class Progress: @unchecked Sendable {
    private let lock = NSLock()
    private var last = Date.distantPast
    private let interactive = isatty(STDOUT_FILENO) == 1

    func show(_ fraction: Double, _ label: String, force: Bool = false) {
        lock.lock()
        defer { lock.unlock() }
        let now = Date()
        // Logs and CI get a line every few seconds instead of a redrawn bar.
        guard force || now.timeIntervalSince(last) > (interactive ? 0.1 : 5) else { return }
        last = now
        let width = 30
        let filled = max(0, min(width, Int(fraction * Double(width))))
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let line = "[\(bar)] \(String(format: "%3d", Int(fraction * 100)))% \(label)"
        FileHandle.standardOutput.write(Data((interactive ? "\r\u{1B}[K" + line : line + "\n").utf8))
    }

    func end() {
        if interactive { FileHandle.standardOutput.write(Data("\n".utf8)) }
    }
}
