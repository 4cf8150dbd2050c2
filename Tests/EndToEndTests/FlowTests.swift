import Domain
import ServiceKit
@testable import FissionCommand
import FissionTesting
import Foundation
import Testing

/// Each flow of the design, walked across the real service executables on the local stack
/// (its own PostgreSQL cluster, the broker process, five service processes) through the public
/// APIs only. The flows share one stack and run side by side.
@Suite("Flows across services", .timeLimit(.minutes(10)))
struct FlowTests {
    @Test func teamsBargainsAndRefundsFlowThroughEveryService() async throws {
        let logs = FileManager.default.temporaryDirectory.appendingPathComponent("fission-flows-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: logs) }
        let stack = LocalStack(basePort: 0, logDirectory: logs)
        do {
            try await stack.start()
        } catch {
            stack.stop()
            throw error
        }
        let store = Storefront(stack: stack)
        do {
            let merchant = "m-flows-\(UUID().uuidString.prefix(6))"
            async let completed: Void = teamCompletesAndARefundRevokesTheSharersXP(store, merchant: merchant)
            async let expired: Void = teamExpiresAndEveryMemberIsRefundedAndNotified(store, merchant: merchant)
            async let bargain: Void = bargainCompletesAtTheFloorAndTheSharerEarnsXP(store, merchant: merchant)
            async let access: Void = everyOperationAdmitsOnlyItsRolesAndSurvivesHostileInput(stack, store)
            _ = try await (completed, expired, bargain, access)
        } catch {
            stack.stop()
            throw error
        }
        stack.stop()
    }

    static let window = (start: EventCoding.formatTimestamp(Date().addingTimeInterval(-60)),
                         end: EventCoding.formatTimestamp(Date().addingTimeInterval(86_400)))

    static func groupBuy(limitSeconds: Int) -> String {
        """
        {"kind":"groupBuy","product":{"sku":"FLOW-TEA","title":"flow tea"},"listPrice":{"amount":5000,"currency":"CNY"},
         "stock":50,"perUserLimit":1,"startsAt":"\(window.start)","endsAt":"\(window.end)",
         "groupBuy":{"teamSize":3,"groupPrice":{"amount":3000,"currency":"CNY"},"leaderPrice":{"amount":2500,"currency":"CNY"},
                     "teamTimeLimitSeconds":\(limitSeconds),"virtualFillPercent":0,"latePaymentPolicy":"refund"}}
        """
    }

    /// 拼团 succeeds: the leader opens a team and shares it, two friends join through the link and
    /// pay, the team completes and all three orders are confirmed; the leader earns XP for each
    /// friend's purchase. Then the merchant refunds one friend's order (after-sales) and exactly
    /// that award is revoked.
    func teamCompletesAndARefundRevokesTheSharersXP(_ store: Storefront, merchant: String) async throws {
        let campaign = try await store.publish(Self.groupBuy(limitSeconds: 3_600), merchant: merchant)
        let suffix = UUID().uuidString.prefix(6)
        let leader = "u-leader-\(suffix)", friends = ["u-friend-a-\(suffix)", "u-friend-b-\(suffix)"]
        let opening = try #require(try await store.placeOrder(campaign: campaign, purpose: "openTeam", shopper: leader))
        try await pay(opening, leader, store)
        let team = try await waitFor("the team to open") { () -> String? in
            let (_, order) = try await HTTP.call("GET", "\(store.orders)/orders/\(opening)", token: try await store.token(leader))
            return order["teamId"] as? String
        }
        let code = try await share(campaign, kind: "team", target: team, by: leader, store)
        var orders = [(opening, leader)]
        for friend in friends {
            _ = try await HTTP.call("GET", "\(store.campaigns)/s/\(code)", token: try await store.token(friend))
            let order = try #require(try await store.placeOrder(campaign: campaign, purpose: "joinTeam", team: team, shareCode: code, shopper: friend))
            try await pay(order, friend, store)
            orders.append((order, friend))
        }
        for (order, shopper) in orders {
            try await waitFor("\(shopper)'s order to be confirmed") { () -> Bool? in
                let (_, body) = try await HTTP.call("GET", "\(store.orders)/orders/\(order)", token: try await store.token(shopper))
                return body["state"] as? String == "confirmed" ? true : nil
            }
        }
        let (_, page) = try await HTTP.call("GET", "\(store.campaigns)/teams/\(team)")
        #expect(page["status"] as? String == "completed")
        #expect(page["memberCount"] as? Int == 3)
        let referralAwards = try await waitFor("the leader's referral XP") { () -> [[String: Any]]? in
            let awards = try await ledger(leader, store).filter { $0["rule"] as? String == "friendPurchase" }
            return awards.count == 2 ? awards : nil
        }
        #expect(referralAwards.allSatisfy { $0["points"] as? Int == 20 })
        let before = try await xp(leader, store)

        // After-sales: the merchant refunds the first friend; only that friend's award goes.
        let (status, refunded) = try await HTTP.call(
            "POST", "\(store.orders)/orders/\(orders[1].0)/refund", token: try await store.token(merchant, .merchant))
        #expect(status == 200, "\(refunded)")
        #expect(refunded["state"] as? String == "refunded")
        let revocations = try await waitFor("the referral award to be revoked") { () -> [[String: Any]]? in
            let lines = try await ledger(leader, store).filter { $0["rule"] as? String == "friendPurchase" && ($0["points"] as? Int ?? 0) < 0 }
            return lines.isEmpty ? nil : lines
        }
        #expect(revocations.count == 1)
        #expect(revocations.first?["points"] as? Int == -20)
        #expect(try await xp(leader, store) == before - 20)
        // A second refund of the same order changes nothing.
        let (again, _) = try await HTTP.call(
            "POST", "\(store.orders)/orders/\(orders[1].0)/refund", token: try await store.token(merchant, .merchant))
        #expect(again == 200)
        try await Task.sleep(for: .seconds(1))
        #expect(try await xp(leader, store) == before - 20)
    }

    /// 拼团 fails: a team of three gets two paid members and its one-minute deadline passes; it
    /// expires, both members are refunded and both are told why.
    func teamExpiresAndEveryMemberIsRefundedAndNotified(_ store: Storefront, merchant: String) async throws {
        let campaign = try await store.publish(Self.groupBuy(limitSeconds: 60), merchant: merchant)
        let suffix = UUID().uuidString.prefix(6)
        let leader = "u-hopeful-\(suffix)", friend = "u-late-friend-\(suffix)"
        let opening = try #require(try await store.placeOrder(campaign: campaign, purpose: "openTeam", shopper: leader))
        try await pay(opening, leader, store)
        let team = try await waitFor("the team to open") { () -> String? in
            let (_, order) = try await HTTP.call("GET", "\(store.orders)/orders/\(opening)", token: try await store.token(leader))
            return order["teamId"] as? String
        }
        let joining = try #require(try await store.placeOrder(campaign: campaign, purpose: "joinTeam", team: team, shopper: friend))
        try await pay(joining, friend, store)
        try await waitFor("the team to expire", timeout: .seconds(180)) { () -> Bool? in
            let (_, page) = try await HTTP.call("GET", "\(store.campaigns)/teams/\(team)")
            return page["status"] as? String == "expired" ? true : nil
        }
        for (order, shopper) in [(opening, leader), (joining, friend)] {
            try await waitFor("\(shopper)'s refund") { () -> Bool? in
                let (_, body) = try await HTTP.call("GET", "\(store.orders)/orders/\(order)", token: try await store.token(shopper))
                return body["state"] as? String == "refunded" ? true : nil
            }
            try await waitFor("\(shopper) to be told the team expired") { () -> Bool? in
                let (_, inbox) = try await HTTP.call("GET", "\(store.notifications)/inbox?limit=20", token: try await store.token(shopper))
                let items = inbox["items"] as? [[String: Any]] ?? []
                return items.contains { $0["category"] as? String == "teamExpired" } ? true : nil
            }
        }
    }

    /// 砍一刀: the initiator shares the task, three friends open the link and help, the price
    /// reaches the floor, the initiator buys at exactly the floor; the sharer earns XP for the
    /// opened links and the helps and is notified.
    func bargainCompletesAtTheFloorAndTheSharerEarnsXP(_ store: Storefront, merchant: String) async throws {
        let campaign = try await store.publish("""
            {"kind":"bargain","product":{"sku":"FLOW-POT","title":"flow pot"},"listPrice":{"amount":6000,"currency":"CNY"},
             "stock":20,"perUserLimit":1,"startsAt":"\(Self.window.start)","endsAt":"\(Self.window.end)",
             "bargain":{"floorPrice":{"amount":1990,"currency":"CNY"},"maxHelpers":3,"firstCutMin":{"amount":500,"currency":"CNY"},
                        "firstCutMax":{"amount":1000,"currency":"CNY"},"newUserCutPercent":100,"taskTimeLimitSeconds":3600,
                        "payWindowSeconds":600,"allowBuyAboveFloor":false,"helperDailyLimit":10,"deviceLimit":0,"networkLimit":0}}
            """, merchant: merchant)
        let suffix = UUID().uuidString.prefix(6)
        let initiator = "u-bargainer-\(suffix)"
        let task = try await waitFor("assists to start the task") { () -> String? in
            let (status, body) = try await HTTP.call(
                "POST", "\(store.assists)/tasks", token: try await store.token(initiator), json: "{\"campaignId\":\"\(campaign)\"}")
            return status == 201 ? body["taskId"] as? String : nil
        }
        let code = try await share(campaign, kind: "task", target: task, by: initiator, store)
        var last: [String: Any] = [:]
        for index in 0..<3 {
            let helper = "u-helper-\(index)-\(suffix)"
            _ = try await HTTP.call("GET", "\(store.campaigns)/s/\(code)", token: try await store.token(helper))
            // Assists learns of the click from campaigns' share events; the help credits the sharer either way.
            let (status, body) = try await HTTP.call("POST", "\(store.assists)/tasks/\(task)/helps", token: try await store.token(helper))
            #expect(status == 200, "\(body)")
            last = body["task"] as? [String: Any] ?? [:]
        }
        #expect(last["status"] as? String == "completed")
        #expect((last["priceNow"] as? [String: Any])?["amount"] as? Int == 1990)
        let order = try #require(try await store.placeOrder(campaign: campaign, purpose: "bargain", task: task, shopper: initiator))
        let due = try #require(try await store.payable(order, shopper: initiator))
        #expect(due.total["amount"] as? Int == 1990, "the initiator pays exactly the floor")
        try await store.pay(intent: due.intent, total: due.total)
        try await waitFor("the bargain order to be confirmed") { () -> Bool? in
            let (_, body) = try await HTTP.call("GET", "\(store.orders)/orders/\(order)", token: try await store.token(initiator))
            return body["state"] as? String == "confirmed" ? true : nil
        }
        let rules = try await waitFor("the sharer's XP for opened links and helps") { () -> Set<String>? in
            let rules = Set(try await ledger(initiator, store).compactMap { $0["rule"] as? String })
            return rules.isSuperset(of: ["shareOpened", "friendHelped", "ownPurchase"]) ? rules : nil
        }
        #expect(rules.contains("shareOpened"))
        try await waitFor("the initiator to be notified of the helps and the completion") { () -> Bool? in
            let (_, inbox) = try await HTTP.call("GET", "\(store.notifications)/inbox?limit=20", token: try await store.token(initiator))
            let categories = Set((inbox["items"] as? [[String: Any]] ?? []).compactMap { $0["category"] as? String })
            return categories.isSuperset(of: ["assistRecorded", "taskCompleted"]) ? true : nil
        }
    }

    /// Every operation of every service, tried without a token and with each role's token, then
    /// with hostile input: the declared roles are enforced and nothing answers 5xx.
    func everyOperationAdmitsOnlyItsRolesAndSurvivesHostileInput(_ stack: LocalStack, _ store: Storefront) async throws {
        let services = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Services")
        var tokens: [String: String] = [:]
        for role in AccessControl.roles {
            tokens[role] = try await store.token("u-access-\(role)", Role(rawValue: role)!)
        }
        for (folder, service) in [("Campaigns", "campaigns"), ("Assists", "assists"), ("Orders", "orders"), ("Levels", "levels"),
                                  ("Notifications", "notifications")] {
            let problems = try await AccessControl.check(
                document: services.appendingPathComponent("\(folder)/openapi.yaml"), baseURL: stack.url(service), tokens: tokens)
            #expect(problems.isEmpty, "\(service):\n\(problems.joined(separator: "\n"))")
        }
    }

    // MARK: - Steps

    func pay(_ order: String, _ shopper: String, _ store: Storefront) async throws {
        let due = try #require(try await store.payable(order, shopper: shopper))
        try await store.pay(intent: due.intent, total: due.total)
    }

    func share(_ campaign: String, kind: String, target: String, by user: String, _ store: Storefront) async throws -> String {
        let (status, body) = try await HTTP.call(
            "POST", "\(store.campaigns)/shares", token: try await store.token(user),
            json: "{\"campaignId\":\"\(campaign)\",\"target\":{\"kind\":\"\(kind)\",\"id\":\"\(target)\"},\"channel\":\"wechat\"}",
            headers: ["Idempotency-Key": UUID().uuidString])
        #expect(status == 201, "\(body)")
        return try #require(body["code"] as? String)
    }

    func ledger(_ user: String, _ store: Storefront) async throws -> [[String: Any]] {
        try await HTTP.list("\(store.levels)/me/ledger", token: try await store.token(user))
    }

    func xp(_ user: String, _ store: Storefront) async throws -> Int {
        let (_, level) = try await HTTP.call("GET", "\(store.levels)/me/level", token: try await store.token(user))
        return level["xp"] as? Int ?? -1
    }

}
