import Domain
import Foundation
import Hummingbird
import Postgres
import ServiceKit

/// Shopper reads: a team page, and the open teams of a campaign to join (凑团, fullest first).
struct TeamRoutes {
    let runtime: ServiceRuntime

    struct TeamView: ResponseEncodable {
        var teamId: TeamID
        var campaignId: CampaignID
        var status: String
        var leaderId: UserID
        var teamSize: Int
        var memberCount: Int
        var seatsLeft: Int
        var deadline: Date
        /// What the next member pays (ladder tier for the size reached, else the group price).
        var price: Money
        var members: [UserID]
        var virtualMembers: Int
    }

    func register(on api: RouterGroup<FissionRequestContext>) {
        api.get("/teams/{id}", use: team)
        api.get("/campaigns/{id}/teams", use: openTeams)
    }

    @Sendable func team(_ request: Request, context: FissionRequestContext) async throws -> TeamView {
        let id: TeamID = try context.pathID("id")
        return try await runtime.pool.withConnection { connection in
            guard let row = try await connection.query(
                "SELECT id, campaign_id, status, leader_id, size, deadline, virtual_members FROM teams WHERE id = \(id.rawValue)"
            ).first else { throw Problem.notFound("no team \(id)") }
            return try await view(row, on: connection)
        }
    }

    @Sendable func openTeams(_ request: Request, context: FissionRequestContext) async throws -> [TeamView] {
        let campaign: CampaignID = try context.pathID("id")
        return try await runtime.pool.withConnection { connection in
            let rows = try await connection.query(
                """
                SELECT t.id, t.campaign_id, t.status, t.leader_id, t.size, t.deadline, t.virtual_members
                FROM teams t
                WHERE t.campaign_id = \(campaign.rawValue) AND t.status = 'open' AND t.deadline > now()
                ORDER BY (SELECT count(*) FROM team_members m WHERE m.team_id = t.id AND m.left_at IS NULL)::float / t.size DESC, t.deadline
                LIMIT 20
                """)
            var views: [TeamView] = []
            for row in rows { views.append(try await view(row, on: connection)) }
            return views
        }
    }

    private func view(_ row: PostgresRow, on connection: PostgresConnection) async throws -> TeamView {
        let id = TeamID(rawValue: try row.decode("id"))
        let campaignID = CampaignID(rawValue: try row.decode("campaign_id"))
        let members = try await TeamHandlers.activeMembers(id, on: connection)
        let size = try row.decode("size", as: Int.self)
        guard let rules = try await CampaignStore.find(campaignID, on: connection)?.terms.groupBuy else {
            throw Problem.notFound("team \(id) has no group-buy campaign")
        }
        let tier = rules.ladder?.last { $0.minMembers <= members.count + 1 }
        return TeamView(
            teamId: id, campaignId: campaignID, status: try row.decode("status"), leaderId: UserID(rawValue: try row.decode("leader_id")),
            teamSize: size, memberCount: members.count, seatsLeft: max(0, size - members.count), deadline: try row.decode("deadline"),
            price: tier?.price ?? rules.groupPrice, members: members.map(\.userID), virtualMembers: try row.decode("virtual_members"))
    }
}
