import Domain
import Foundation
import Hummingbird
import Postgres
import ServiceKit

/// Per-campaign counters, bumped in the same transaction as the fact they count.
enum Statistics {
    static func add(_ amount: Int64, to metric: String, of campaign: CampaignID, on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            INSERT INTO campaign_statistics (campaign_id, metric, value) VALUES (\(campaign.rawValue), \(metric), \(amount))
            ON CONFLICT (campaign_id, metric) DO UPDATE SET value = campaign_statistics.value + EXCLUDED.value
            """)
    }

    static func add(_ amount: Int, to metric: String, of campaign: CampaignID, on connection: PostgresConnection) async throws {
        try await add(Int64(amount), to: metric, of: campaign, on: connection)
    }

    static func taskStarted(_ event: CloudEvent<AssistTaskStarted>, _ connection: PostgresConnection) async throws {
        try await add(1, to: "tasks_started", of: event.data.campaignId, on: connection)
        try await Fission.participate(event.data.initiatorId, in: event.data.campaignId, at: event.time, on: connection)
    }

    static func taskCompleted(_ event: CloudEvent<AssistTaskCompleted>, _ connection: PostgresConnection) async throws {
        try await add(1, to: "tasks_completed", of: event.data.campaignId, on: connection)
    }

    static func assistRecorded(_ event: CloudEvent<AssistRecorded>, _ connection: PostgresConnection) async throws {
        try await add(1, to: "helps", of: event.data.campaignId, on: connection)
        try await Fission.participate(event.data.helperId, in: event.data.campaignId, at: event.time, on: connection)
    }
}

/// Who brought whom: a participant's referrer is the sharer of the last link they opened inside
/// the campaign's attribution window before they first took part (self-clicks never count).
enum Fission {
    static func participate(_ user: UserID, in campaign: CampaignID, at time: Date, on connection: PostgresConnection) async throws {
        let fresh = try await connection.query(
            "INSERT INTO participants (campaign_id, user_id) VALUES (\(campaign.rawValue), \(user.rawValue)) ON CONFLICT DO NOTHING"
        ).affectedRows == 1
        guard fresh, let referrer = try await Attribution.referrer(of: user, in: campaign, at: time, on: connection) else { return }
        let depth = try await connection.query(
            "SELECT depth FROM fission_edges WHERE campaign_id = \(campaign.rawValue) AND participant_id = \(referrer.rawValue)"
        ).first?.decode("depth", as: Int.self) ?? 0
        try await connection.query(
            """
            INSERT INTO fission_edges (campaign_id, participant_id, referrer_id, depth)
            VALUES (\(campaign.rawValue), \(user.rawValue), \(referrer.rawValue), \(depth + 1)) ON CONFLICT DO NOTHING
            """)
    }
}

enum Attribution {
    /// The sharer credited for `user`'s action: last click by this user within the window, not
    /// on their own link.
    static func referrer(of user: UserID, in campaign: CampaignID, at time: Date, on connection: PostgresConnection) async throws -> UserID? {
        let row = try await connection.query(
            """
            SELECT k.sharer_id FROM share_clicks k JOIN campaigns c ON c.id = k.campaign_id
            WHERE k.campaign_id = \(campaign.rawValue) AND k.clicker_id = \(user.rawValue) AND k.sharer_id <> \(user.rawValue)
              AND k.clicked_at <= \(time) AND k.clicked_at > \(time) - make_interval(secs => c.attribution_window_seconds)
            ORDER BY k.clicked_at DESC LIMIT 1
            """).first
        return try row.map { UserID(rawValue: try $0.decode("sharer_id")) }
    }
}

struct StatisticsRoutes {
    let runtime: ServiceRuntime

    struct Report: ResponseEncodable {
        var campaignId: CampaignID
        var counters: [String: Int64]
        var clicks: Int
        var uniqueVisitors: Int
        var sharesByChannel: [String: Int]
        var participants: Int
        var broughtByFriends: Int
        /// New participants brought per participant.
        var kFactor: Double
        var fissionDepth: Int
    }

    struct TreeNode: ResponseEncodable {
        var userId: String
        var children: [TreeNode]
    }

    func register(on api: RouterGroup<FissionRequestContext>) {
        api.get("/campaigns/{id}/statistics", use: report)
        api.get("/campaigns/{id}/fission-tree", use: tree)
    }

    private func ownedCampaign(_ context: FissionRequestContext, _ connection: PostgresConnection) async throws -> CampaignID {
        let merchant = try context.require(.merchant)
        let id: CampaignID = try context.pathID("id")
        guard let campaign = try await CampaignStore.find(id, on: connection), campaign.merchantId == merchant.userID else {
            throw Problem.notFound("no campaign \(id) of yours")
        }
        return id
    }

    @Sendable func report(_ request: Request, context: FissionRequestContext) async throws -> Report {
        try await runtime.pool.withConnection { connection in
            let id = try await ownedCampaign(context, connection)
            var counters: [String: Int64] = [:]
            for row in try await connection.query("SELECT metric, value FROM campaign_statistics WHERE campaign_id = \(id.rawValue)") {
                counters[try row.decode("metric")] = try row.decode("value", as: Int64.self)
            }
            let clicks = try await connection.query(
                """
                SELECT count(*)::int8 AS clicks, count(DISTINCT coalesce(clicker_id, 'v:' || visitor_id))::int8 AS visitors
                FROM share_clicks WHERE campaign_id = \(id.rawValue)
                """).single()
            var byChannel: [String: Int] = [:]
            for row in try await connection.query("SELECT channel, count(*)::int8 AS n FROM shares WHERE campaign_id = \(id.rawValue) GROUP BY channel") {
                byChannel[try row.decode("channel")] = try row.decode("n", as: Int.self)
            }
            let fission = try await connection.query(
                """
                SELECT (SELECT count(*) FROM participants WHERE campaign_id = \(id.rawValue))::int8 AS participants,
                       (SELECT count(*) FROM fission_edges WHERE campaign_id = \(id.rawValue))::int8 AS brought,
                       (SELECT coalesce(max(depth), 0) FROM fission_edges WHERE campaign_id = \(id.rawValue))::int8 AS depth
                """).single()
            let participants = try fission.decode("participants", as: Int.self)
            let brought = try fission.decode("brought", as: Int.self)
            return Report(
                campaignId: id, counters: counters, clicks: try clicks.decode("clicks"), uniqueVisitors: try clicks.decode("visitors"),
                sharesByChannel: byChannel, participants: participants, broughtByFriends: brought,
                kFactor: participants == 0 ? 0 : Double(brought) / Double(participants), fissionDepth: try fission.decode("depth"))
        }
    }

    /// The fission tree as nested JSON: roots are participants nobody brought.
    @Sendable func tree(_ request: Request, context: FissionRequestContext) async throws -> [TreeNode] {
        try await runtime.pool.withConnection { connection in
            let id = try await ownedCampaign(context, connection)
            var children: [String: [String]] = [:]
            var brought: Set<String> = []
            for row in try await connection.query(
                "SELECT participant_id, referrer_id FROM fission_edges WHERE campaign_id = \(id.rawValue) ORDER BY joined_at"
            ) {
                let participant = try row.decode("participant_id", as: String.self)
                children[try row.decode("referrer_id"), default: []].append(participant)
                brought.insert(participant)
            }
            let everyone = try await connection.query(
                "SELECT user_id FROM participants WHERE campaign_id = \(id.rawValue) ORDER BY first_seen_at"
            ).map { try $0.decode("user_id", as: String.self) }
            func node(_ user: String, _ seen: Set<String>) -> TreeNode {
                TreeNode(userId: user, children: (children[user] ?? []).filter { !seen.contains($0) }.map { node($0, seen.union([user])) })
            }
            let roots = (everyone + children.keys.sorted()).reduce(into: [String]()) { list, user in
                if !brought.contains(user), !list.contains(user) { list.append(user) }
            }
            return roots.map { node($0, []) }
        }
    }
}
