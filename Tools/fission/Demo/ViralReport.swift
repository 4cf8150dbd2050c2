import Foundation
import Postgres

/// Who brought whom in one campaign, as the campaigns service draws it.
struct FissionTree: Sendable {
    var userId: String
    var children: [FissionTree]

    init(userId: String, children: [FissionTree]) {
        self.userId = userId
        self.children = children
    }

    init?(json: Any) {
        guard let object = json as? [String: Any], let user = object["userId"] as? String else { return nil }
        userId = user
        children = (object["children"] as? [Any] ?? []).compactMap(FissionTree.init(json:))
    }

    var size: Int { 1 + children.reduce(0) { $0 + $1.size } }
    var leaves: Int { children.isEmpty ? 1 : children.reduce(0) { $0 + $1.leaves } }
    var depth: Int { 1 + (children.map(\.depth).max() ?? 0) }
}

/// The end-of-demo report: the services' own figures per campaign, the teams, refunds and
/// bargains, the top sharers with their levels, notifications per kind, and the invariants.
struct ViralReport: Sendable {
    struct CampaignFigures: Sendable {
        var name: String
        var counters: [String: Int64]
        var clicks: Int
        var uniqueVisitors: Int
        var participants: Int
        var broughtByFriends: Int
        var kFactor: Double
        var fissionDepth: Int
        var tree: [FissionTree]
    }

    struct Sharer: Sendable {
        var userId: String
        var brought: Int
        var xp: Int
        var level: Int
    }

    var shoppers: Int
    var groups: Int
    var campaigns: [CampaignFigures]
    var teams: [String: Int]
    var virtuallyCompleted: Int
    var orders: [String: Int]
    var tasks: [String: Int]
    var sharers: [Sharer]
    var notifications: [(category: String, messages: Int, events: Int)]
    var invariants: [InvariantChecker.Outcome]
    var settledAfter: TimeInterval?

    static func gather(
        store: Storefront, campaigns: ViralSimulation.CampaignSet, graph: SocialGraph, databases: [String: PostgresConfiguration],
        settledAfter: TimeInterval?
    ) async throws -> ViralReport {
        let merchant = try await store.token(ViralSimulation.merchant, .merchant)
        var figures: [CampaignFigures] = []
        for (name, id) in campaigns.all {
            let (_, statistics) = try await HTTP.call("GET", "\(store.campaigns)/campaigns/\(id)/statistics", token: merchant)
            let tree = try await HTTP.list("\(store.campaigns)/campaigns/\(id)/fission-tree", token: merchant).compactMap(FissionTree.init(json:))
            figures.append(CampaignFigures(
                name: name, counters: (statistics["counters"] as? [String: Any] ?? [:]).compactMapValues { ($0 as? NSNumber)?.int64Value },
                clicks: statistics["clicks"] as? Int ?? 0, uniqueVisitors: statistics["uniqueVisitors"] as? Int ?? 0,
                participants: statistics["participants"] as? Int ?? 0, broughtByFriends: statistics["broughtByFriends"] as? Int ?? 0,
                kFactor: statistics["kFactor"] as? Double ?? 0, fissionDepth: statistics["fissionDepth"] as? Int ?? 0, tree: tree))
        }
        func pool(_ service: String) -> PostgresPool { PostgresPool(configuration: databases[service]!, options: .init(maxConnections: 1)) }
        let campaignsDB = pool("campaigns"), ordersDB = pool("orders"), assistsDB = pool("assists"), levelsDB = pool("levels"),
            notificationsDB = pool("notifications")
        func closeAll() async { for pool in [campaignsDB, ordersDB, assistsDB, levelsDB, notificationsDB] { await pool.close() } }
        do {
            var teams: [String: Int] = [:]
            for row in try await campaignsDB.query("SELECT status, count(*)::int AS n FROM teams GROUP BY status") {
                teams[try row.decode("status")] = try row.decode("n")
            }
            let virtual = try await campaignsDB.query("SELECT count(*)::int AS n FROM teams WHERE status = 'completed' AND virtual_members > 0")
                .single().decode("n", as: Int.self)
            var orders: [String: Int] = [:]
            for row in try await ordersDB.query("SELECT state, count(*)::int AS n FROM orders GROUP BY state") {
                orders[try row.decode("state")] = try row.decode("n")
            }
            var tasks: [String: Int] = [:]
            for row in try await assistsDB.query("SELECT kind || ' ' || status AS k, count(*)::int AS n FROM tasks GROUP BY 1") {
                tasks[try row.decode("k")] = try row.decode("n")
            }
            var sharers: [Sharer] = []
            for row in try await campaignsDB.query(
                "SELECT referrer_id, count(*)::int AS n FROM fission_edges GROUP BY referrer_id ORDER BY n DESC, referrer_id LIMIT 10") {
                let user: String = try row.decode("referrer_id")
                let member = try await levelsDB.query(
                    "SELECT xp, coalesce(granted_level, earned_level) AS level FROM members WHERE user_id = \(user)").first
                sharers.append(Sharer(userId: user, brought: try row.decode("n"), xp: try member?.decode("xp") ?? 0, level: try member?.decode("level") ?? 1))
            }
            let notifications = try await notificationsDB.query(
                "SELECT category, count(*)::int AS n, sum(digest_count)::int AS events FROM notifications GROUP BY category ORDER BY 2 DESC"
            ).map { (try $0.decode("category", as: String.self), try $0.decode("n", as: Int.self), try $0.decode("events", as: Int.self)) }
            await closeAll()
            let invariants = try await InvariantChecker(databases: databases).checkAll()
            return ViralReport(
                shoppers: graph.shoppers.count, groups: graph.groups.count, campaigns: figures, teams: teams, virtuallyCompleted: virtual,
                orders: orders, tasks: tasks, sharers: sharers, notifications: notifications, invariants: invariants, settledAfter: settledAfter)
        } catch {
            await closeAll()
            throw error
        }
    }

    var invariantsHold: Bool { invariants.allSatisfy(\.violations.isEmpty) }

    func text() -> [String] {
        var lines = ["== report: \(shoppers) shoppers in \(groups) chat groups =="]
        for campaign in campaigns {
            let c = campaign.counters
            lines.append(
                "\(campaign.name): \(campaign.clicks) clicks by \(campaign.uniqueVisitors) visitors → \(campaign.participants) took part "
                    + "(\(campaign.broughtByFriends) brought by friends) → \(c["orders_placed"] ?? 0) orders, \(c["orders_paid"] ?? 0) paid, "
                    + "\(c["orders_refunded"] ?? 0) refunded; K-factor \(String(format: "%.2f", campaign.kFactor)), depth \(campaign.fissionDepth)")
        }
        lines.append("teams: \(teams["completed", default: 0]) completed (\(virtuallyCompleted) of them virtually), \(teams["expired", default: 0]) expired, \(teams["open", default: 0]) still open")
        lines.append("orders: " + orders.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
        lines.append("bargains: \(tasks["bargain completed", default: 0]) cut to the floor, \(tasks["bargain expired", default: 0]) expired; "
            + "unlocks: \(tasks["unlock completed", default: 0]) unlocked, \(tasks["unlock expired", default: 0]) expired")
        lines.append("top sharers:")
        for sharer in sharers.prefix(5) { lines.append("  \(sharer.userId) brought \(sharer.brought), \(sharer.xp) XP, level \(sharer.level)") }
        lines.append("notifications: " + notifications.map { "\($0.messages) \($0.category) (\($0.events) events)" }.joined(separator: ", "))
        lines.append(settledAfter.map { "settled \(Int($0)) s after the last share" } ?? "did NOT settle: figures may still move")
        for outcome in invariants {
            lines.append("invariant \(outcome.violations.isEmpty ? "holds" : "BROKEN"): \(outcome.promise) (\(outcome.checked) checked)"
                + outcome.violations.prefix(5).map { "\n    \($0)" }.joined())
        }
        lines.append(invariantsHold ? "all invariants hold." : "SOME INVARIANTS ARE BROKEN.")
        return lines
    }

    /// A self-contained HTML page: the figures as tables and each campaign's fission tree drawn
    /// radially (the merchant in the middle, each ring a generation of sharing).
    func html() -> String {
        func escape(_ text: String) -> String {
            text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        var page = """
            <!doctype html><html lang="en"><meta charset="utf-8"><title>Fission demo report</title>
            <style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
            td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}td:first-child{text-align:left}
            .ok{color:#16794c}.bad{color:#b00020;font-weight:bold}figure{display:inline-block;margin:0 1em}svg{background:#fafafa;border:1px solid #ddd}</style>
            <h1>Fission demo report</h1><p>\(shoppers) shoppers in \(groups) chat groups.</p>
            <h2>Funnel per campaign</h2><table><tr><th>campaign</th><th>clicks</th><th>visitors</th><th>took part</th><th>brought by friends</th>
            <th>orders</th><th>paid</th><th>refunded</th><th>tasks</th><th>helps</th><th>K-factor</th><th>depth</th></tr>
            """
        for campaign in campaigns {
            let c = campaign.counters
            page += "<tr><td>\(escape(campaign.name))</td><td>\(campaign.clicks)</td><td>\(campaign.uniqueVisitors)</td><td>\(campaign.participants)</td>"
                + "<td>\(campaign.broughtByFriends)</td><td>\(c["orders_placed"] ?? 0)</td><td>\(c["orders_paid"] ?? 0)</td><td>\(c["orders_refunded"] ?? 0)</td>"
                + "<td>\(c["tasks_started"] ?? 0) / \(c["tasks_completed"] ?? 0) done</td><td>\(c["helps"] ?? 0)</td>"
                + "<td>\(String(format: "%.2f", campaign.kFactor))</td><td>\(campaign.fissionDepth)</td></tr>"
        }
        page += "</table><h2>Outcomes</h2><table><tr><th>what</th><th>count</th></tr>"
        let outcomes: [(String, Int)] = [
            ("teams completed", teams["completed", default: 0]), ("… of them virtually", virtuallyCompleted), ("teams expired", teams["expired", default: 0]),
            ("orders refunded", orders["refunded", default: 0]), ("orders cancelled (abandoned or refused)", orders["cancelled", default: 0]),
            ("bargains cut to the floor", tasks["bargain completed", default: 0]), ("unlocks completed", tasks["unlock completed", default: 0]),
        ]
        for (what, count) in outcomes { page += "<tr><td>\(what)</td><td>\(count)</td></tr>" }
        page += "</table><h2>Top sharers</h2><table><tr><th>sharer</th><th>brought</th><th>XP</th><th>level</th></tr>"
        for sharer in sharers { page += "<tr><td>\(escape(sharer.userId))</td><td>\(sharer.brought)</td><td>\(sharer.xp)</td><td>\(sharer.level)</td></tr>" }
        page += "</table><h2>Notifications</h2><table><tr><th>kind</th><th>messages</th><th>events folded in</th></tr>"
        for row in notifications { page += "<tr><td>\(escape(row.category))</td><td>\(row.messages)</td><td>\(row.events)</td></tr>" }
        page += "</table><h2>Invariants</h2><ul>"
        for outcome in invariants {
            let state = outcome.violations.isEmpty ? "<span class=ok>holds</span>" : "<span class=bad>broken</span>"
            page += "<li>\(state) — \(escape(outcome.promise)) (\(outcome.checked) checked)"
                + outcome.violations.prefix(20).map { "<br><code>\(escape($0))</code>" }.joined() + "</li>"
        }
        page += "</ul><h2>Fission trees</h2><p>The merchant in the middle; each ring is one more hop of sharing; a dot is a shopper, a line who brought whom.</p>"
        for campaign in campaigns { page += "<figure>\(svg(campaign.tree))<figcaption>\(escape(campaign.name)): \(campaign.tree.reduce(0) { $0 + $1.size }) shoppers</figcaption></figure>" }
        return page + "</html>\n"
    }

    private func svg(_ roots: [FissionTree]) -> String {
        let size = 520.0, center = size / 2
        let forest = FissionTree(userId: "merchant", children: roots)
        let ring = (center - 20) / Double(max(1, forest.depth - 1))
        let colors = ["#444", "#e4572e", "#f3a712", "#29335c", "#669bbc", "#a8c686", "#8e7dbe", "#c05299"]
        var lines = "", dots = ""
        func place(_ node: FissionTree, depth: Int, from start: Double, to end: Double, parent: (Double, Double)?) {
            let angle = (start + end) / 2, radius = Double(depth) * ring
            let point = (center + radius * cos(angle), center + radius * sin(angle))
            if let parent {
                lines += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", parent.0, parent.1, point.0, point.1)
            }
            dots += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" ", point.0, point.1, depth == 0 ? 6.0 : 2.5)
                + "fill=\"\(colors[min(depth, colors.count - 1)])\"><title>\(node.userId)</title></circle>"
            var cursor = start
            let leaves = Double(node.leaves)
            for child in node.children {
                let share = (end - start) * Double(child.leaves) / leaves
                place(child, depth: depth + 1, from: cursor, to: cursor + share, parent: point)
                cursor += share
            }
        }
        place(forest, depth: 0, from: 0, to: 2 * Double.pi, parent: nil)
        return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(size))\" height=\"\(Int(size))\"><g stroke=\"#bbb\" stroke-width=\"0.6\">\(lines)</g><g>\(dots)</g></svg>"
    }
}
