import Domain
import FissionTesting
import Foundation
import OrdersService
import ServiceKit

/// The demo a newcomer runs first: a group-buy team of three forms and completes, and a bargain
/// is cut to its floor by friends, through the real services and events.
struct Demo {
    let stack: LocalStack

    struct DemoFailure: Error, CustomStringConvertible {
        var description: String
    }

    func play() async throws {
        let issuer = await DevelopmentTokenIssuer(secret: LocalStack.jwtSecret)
        func token(_ user: String, _ role: Role = .shopper) async throws -> String {
            try await issuer.token(for: UserID(rawValue: user), roles: [role])
        }
        let merchant = try await token("m-tea-house", .merchant)
        let campaigns = stack.url("campaigns"), assists = stack.url("assists"), orders = stack.url("orders"), levels = stack.url("levels")
        let notifications = stack.url("notifications")
        let now = Date()
        let start = EventCoding.formatTimestamp(now.addingTimeInterval(-60))
        let end = EventCoding.formatTimestamp(now.addingTimeInterval(7 * 86_400))

        say("== 拼团: a team of three ==")
        let groupBuy = """
            {"kind":"groupBuy","product":{"sku":"TEA-500G","title":"西湖龙井 500g"},"listPrice":{"amount":3990,"currency":"CNY"},
             "stock":100,"perUserLimit":2,"startsAt":"\(start)","endsAt":"\(end)",
             "groupBuy":{"teamSize":3,"groupPrice":{"amount":2990,"currency":"CNY"},"leaderPrice":{"amount":2490,"currency":"CNY"},
                         "teamTimeLimitSeconds":86400,"virtualFillPercent":0,"latePaymentPolicy":"openNewTeam"}}
            """
        let campaign = try await created(HTTP.call("POST", "\(campaigns)/campaigns", token: merchant, json: groupBuy), "create the group-buy campaign")
        let campaignID = campaign["id"] as! String
        _ = try await HTTP.call("POST", "\(campaigns)/campaigns/\(campaignID)/publish", token: merchant)
        say("merchant published 西湖龙井 500g: list ¥39.90, group price ¥29.90, leader price ¥24.90")

        let leader = try await token("u-li-wei")
        let leaderOrder = try await placeAndPay(campaignID, purpose: "openTeam", team: nil, shopper: "u-li-wei", name: "Li Wei")
        let team = try await waitFor("the team to open") { () -> [String: Any]? in
            let teams = try await HTTP.list("\(campaigns)/campaigns/\(campaignID)/teams")
            return teams.first
        }
        let teamID = team["teamId"] as! String
        say("team \(teamID.prefix(8)) opened, \(team["seatsLeft"] ?? "?") seats left, deadline \(team["deadline"] ?? "")")
        for (user, name) in [("u-zhang-min", "Zhang Min"), ("u-wang-fang", "Wang Fang")] {
            _ = try await placeAndPay(campaignID, purpose: "joinTeam", team: teamID, shopper: user, name: name)
        }
        let confirmed = try await waitFor("the leader's order to be confirmed") { () -> [String: Any]? in
            let (_, order) = try await HTTP.call("GET", "\(orders)/orders/\(leaderOrder)", token: leader)
            return order["state"] as? String == "confirmed" ? order : nil
        }
        let teamPage = try await HTTP.call("GET", "\(campaigns)/teams/\(teamID)").1
        say("team complete: \(teamPage["memberCount"] ?? "?")/\(teamPage["teamSize"] ?? "?") members, status \(teamPage["status"] ?? "?"); Li Wei's order is \(confirmed["state"] ?? "?")")

        say("")
        say("== 砍一刀: friends cut the price ==")
        let bargain = """
            {"kind":"bargain","product":{"sku":"POT-1","title":"紫砂壶"},"listPrice":{"amount":9900,"currency":"CNY"},
             "stock":20,"perUserLimit":1,"startsAt":"\(start)","endsAt":"\(end)",
             "bargain":{"floorPrice":{"amount":0,"currency":"CNY"},"maxHelpers":5,"firstCutMin":{"amount":1000,"currency":"CNY"},
                        "firstCutMax":{"amount":3000,"currency":"CNY"},"newUserCutPercent":150,"taskTimeLimitSeconds":86400,
                        "payWindowSeconds":1800,"allowBuyAboveFloor":false,"helperDailyLimit":10,"deviceLimit":0,"networkLimit":0}}
            """
        let pot = try await created(HTTP.call("POST", "\(campaigns)/campaigns", token: merchant, json: bargain), "create the bargain campaign")
        let potID = pot["id"] as! String
        _ = try await HTTP.call("POST", "\(campaigns)/campaigns/\(potID)/publish", token: merchant)
        let task = try await waitFor("assists to learn the campaign and start the task") { () -> [String: Any]? in
            let (status, body) = try await HTTP.call("POST", "\(assists)/tasks", token: leader, json: "{\"campaignId\":\"\(potID)\"}")
            return status == 201 ? body : nil
        }
        let taskID = task["taskId"] as! String
        say("Li Wei started a bargain on 紫砂壶 (¥99.00): first cut to \(money(task["priceNow"])), seed hash \(String(describing: task["seedHash"] ?? "").prefix(16))…")
        for (index, name) in ["Zhang Min", "Wang Fang", "Chen Jie", "Liu Yang", "Zhao Lei"].enumerated() {
            let (status, body) = try await HTTP.call("POST", "\(assists)/tasks/\(taskID)/helps", token: try await token("u-friend-\(index)"))
            guard status == 200, let state = body["task"] as? [String: Any] else { throw DemoFailure(description: "help failed: \(status) \(body)") }
            say("\(name) helped you cut \(money(body["cut"])) — \(money(state["amountLeft"])) and at most \(state["helpersLeftAtMost"] ?? "?") friends to go")
        }
        let verification = try await HTTP.call("GET", "\(assists)/tasks/\(taskID)/verification", token: leader).1
        let cuts = (verification["cuts"] as? [Int]) ?? []
        say("task complete; seed revealed; cuts \(cuts.map { money(["amount": $0, "currency": "CNY"]) }.joined(separator: " + ")) = ¥\(String(format: "%.2f", Double(cuts.reduce(0, +)) / 100))")

        say("")
        let level = try await waitFor("levels to award XP for the confirmed purchase") { () -> [String: Any]? in
            let (_, body) = try await HTTP.call("GET", "\(levels)/me/level", token: leader)
            return (body["xp"] as? Int ?? 0) > 0 ? body : nil
        }
        say("Li Wei: \(level["xp"] ?? 0) XP, level \(level["level"] ?? 1)")
        let inbox = try await waitFor("Li Wei's inbox to fill") { () -> [String: Any]? in
            let (_, body) = try await HTTP.call("GET", "\(notifications)/inbox?limit=5", token: leader)
            return ((body["items"] as? [Any])?.count ?? 0) >= 3 ? body : nil
        }
        say("Li Wei's inbox (\(inbox["unread"] ?? 0) unread):")
        for item in (inbox["items"] as? [[String: Any]] ?? []).prefix(5) {
            say("  • \(item["title"] ?? ""): \(item["body"] ?? "")")
        }
        say("the demo is complete.")
    }

    private func placeAndPay(_ campaign: String, purpose: String, team: String?, shopper: String, name: String) async throws -> String {
        let store = Storefront(stack: stack)
        guard let orderID = try await store.placeOrder(campaign: campaign, purpose: purpose, team: team, shopper: shopper) else {
            throw DemoFailure(description: "orders refused \(name)'s order")
        }
        guard let due = try await store.payable(orderID, shopper: shopper) else { throw DemoFailure(description: "\(name)'s order was cancelled") }
        try await store.pay(intent: due.intent, total: due.total)
        say("\(name) ordered (\(purpose)) and paid \(money(due.total))")
        return orderID
    }

    private func created(_ result: (Int, [String: Any]), _ what: String) throws -> [String: Any] {
        guard result.0 == 201 else { throw DemoFailure(description: "could not \(what): \(result.0) \(result.1)") }
        return result.1
    }


    private func money(_ value: Any?) -> String {
        guard let object = value as? [String: Any], let amount = object["amount"] as? Int else { return "?" }
        return Money(Int64(amount), Currency(rawValue: object["currency"] as? String ?? "CNY")).formatted
    }

    private func say(_ line: String) { stack.say(line) }
}
