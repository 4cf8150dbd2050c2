import Domain
import Foundation
import Postgres
import ServiceKit

/// Group-buy teams, driven by paid orders and deadlines. Every change locks the team row first
/// (`FOR UPDATE`), so concurrent joins queue up: a team never holds more than its size and is
/// completed or expired exactly once.
enum TeamHandlers {
    static let deadlineJob = "team-deadline"

    struct Member {
        var userID: UserID
        var orderID: OrderID
        var leader: Bool
    }

    static func orderPaid(_ event: CloudEvent<OrderPaid>, _ connection: PostgresConnection) async throws {
        let order = event.data
        try await Statistics.add(1, to: "orders_paid", of: order.campaignId, on: connection)
        try await Statistics.add(order.amount.amount, to: "gmv", of: order.campaignId, on: connection)
        let firstPurchase = try await connection.query(
            "INSERT INTO buyers (user_id) VALUES (\(order.userId.rawValue)) ON CONFLICT DO NOTHING").affectedRows == 1
        if firstPurchase { try await Statistics.add(1, to: "new_buyers", of: order.campaignId, on: connection) }
        try await Fission.participate(order.userId, in: order.campaignId, at: event.time, on: connection)

        switch order.purpose {
        case .openTeam:
            _ = try await openTeam(for: order, event: event, on: connection)
        case .joinTeam:
            guard let teamID = order.teamId else { return }
            try await join(teamID, order: order, event: event, on: connection)
        default:
            return
        }
    }

    /// Opens a team led by the payer, with its own deadline.
    static func openTeam(for order: OrderPaid, event: CloudEvent<OrderPaid>, on connection: PostgresConnection) async throws -> TeamID? {
        guard let campaign = try await CampaignStore.find(order.campaignId, on: connection), let rules = campaign.terms.groupBuy else {
            return nil
        }
        let team = TeamID()
        let now = Date()
        let deadline = now.addingTimeInterval(TimeInterval(rules.teamTimeLimitSeconds))
        try await connection.query(
            """
            INSERT INTO teams (id, campaign_id, leader_id, size, status, deadline)
            VALUES (\(team.rawValue), \(order.campaignId.rawValue), \(order.userId.rawValue), \(rules.teamSize), 'open', \(deadline))
            """)
        try await connection.query(
            """
            INSERT INTO team_members (team_id, order_id, user_id, position, leader)
            VALUES (\(team.rawValue), \(order.orderId.rawValue), \(order.userId.rawValue), 1, true)
            """)
        try await Schedule.at(deadline, kind: deadlineJob, key: team.description, on: connection)
        try await Statistics.add(1, to: "teams_opened", of: order.campaignId, on: connection)
        try await Outbox.append(
            TeamOpened(
                teamId: team, campaignId: order.campaignId, leaderId: order.userId, leaderOrderId: order.orderId,
                teamSize: rules.teamSize, price: rules.leaderPrice ?? rules.groupPrice, deadline: deadline, openedAt: now),
            correlationID: event.correlationid, causationID: event.id.description, on: connection)
        return team
    }

    static func join(_ teamID: TeamID, order: OrderPaid, event: CloudEvent<OrderPaid>, on connection: PostgresConnection) async throws {
        let rows = try await connection.query(
            "SELECT campaign_id, size, status, deadline FROM teams WHERE id = \(teamID.rawValue) FOR UPDATE")
        guard let team = rows.first else { return }
        let size = try team.decode("size", as: Int.self)
        let status = try team.decode("status", as: String.self)
        let deadline = try team.decode("deadline", as: Date.self)
        let members = try await activeMembers(teamID, on: connection)
        let now = Date()
        let reason: JoinRejection? =
            status == "expired" || now >= deadline ? .teamExpired : (status != "open" || members.count >= size ? .teamFull : nil)
        if let reason {
            try await rejectJoin(teamID, reason: reason, order: order, event: event, on: connection)
            return
        }
        let position = try await connection.query(
            "SELECT coalesce(max(position), 0)::int8 + 1 AS next FROM team_members WHERE team_id = \(teamID.rawValue)"
        ).single().decode("next", as: Int.self)
        try await connection.query(
            """
            INSERT INTO team_members (team_id, order_id, user_id, position, leader)
            VALUES (\(teamID.rawValue), \(order.orderId.rawValue), \(order.userId.rawValue), \(position), false)
            """)
        try await Outbox.append(
            TeamMemberJoined(
                teamId: teamID, campaignId: order.campaignId, userId: order.userId, orderId: order.orderId,
                memberCount: members.count + 1, teamSize: size, joinedAt: now),
            correlationID: event.correlationid, causationID: event.id.description, on: connection)
        if members.count + 1 == size {
            try await complete(teamID, campaign: order.campaignId, virtualMembers: 0, correlation: event.correlationid, on: connection)
        }
    }

    /// A payment for a team that cannot take it: a new team for the payer, or a refund, as the
    /// campaign says. Orders refunds on `resolution: refund`.
    static func rejectJoin(
        _ teamID: TeamID, reason: JoinRejection, order: OrderPaid, event: CloudEvent<OrderPaid>, on connection: PostgresConnection
    ) async throws {
        let campaign = try await CampaignStore.find(order.campaignId, on: connection)
        let policy = campaign?.terms.groupBuy?.latePaymentPolicy ?? .refund
        var newTeam: TeamID?
        if policy == .openNewTeam {
            newTeam = try await openTeam(for: order, event: event, on: connection)
        }
        try await Outbox.append(
            TeamJoinRejected(
                teamId: teamID, campaignId: order.campaignId, userId: order.userId, orderId: order.orderId, reason: reason,
                resolution: newTeam == nil ? .refund : .newTeamOpened, newTeamId: newTeam, rejectedAt: Date()),
            correlationID: event.correlationid, causationID: event.id.description, on: connection)
    }

    static func activeMembers(_ teamID: TeamID, on connection: PostgresConnection) async throws -> [Member] {
        try await connection.query(
            "SELECT user_id, order_id, leader FROM team_members WHERE team_id = \(teamID.rawValue) AND left_at IS NULL ORDER BY position"
        ).map { row in
            Member(userID: UserID(rawValue: try row.decode("user_id")), orderID: OrderID(rawValue: try row.decode("order_id")), leader: try row.decode("leader"))
        }
    }

    static func complete(_ teamID: TeamID, campaign: CampaignID, virtualMembers: Int, correlation: String?, on connection: PostgresConnection) async throws {
        let members = try await activeMembers(teamID, on: connection)
        try await connection.query(
            "UPDATE teams SET status = 'completed', closed_at = now(), virtual_members = \(virtualMembers) WHERE id = \(teamID.rawValue)")
        try await Schedule.cancel(kind: deadlineJob, key: teamID.description, on: connection)
        try await Statistics.add(1, to: "teams_completed", of: campaign, on: connection)
        let listed = members.map { TeamMember(userId: $0.userID, orderId: $0.orderID, leader: $0.leader, virtual: false) }
            + Array(repeating: TeamMember(leader: false, virtual: true), count: virtualMembers)
        try await Outbox.append(
            TeamCompleted(teamId: teamID, campaignId: campaign, members: listed, virtualMembers: virtualMembers, completedAt: Date()),
            correlationID: correlation, on: connection)
    }

    /// The team's deadline: complete it with virtual members when the campaign allows and the
    /// team is full enough, otherwise expire it. Runs under the team's row lock, after which the
    /// team is no longer open, so a second run (another replica, a retry) does nothing.
    static func deadlinePassed(_ job: ScheduledJob, _ connection: PostgresConnection) async throws {
        guard let teamID = TeamID(job.key) else { return }
        let rows = try await connection.query("SELECT campaign_id, size, status FROM teams WHERE id = \(teamID.rawValue) FOR UPDATE")
        guard let team = rows.first, try team.decode("status", as: String.self) == "open" else { return }
        let campaignID = CampaignID(rawValue: try team.decode("campaign_id"))
        let size = try team.decode("size", as: Int.self)
        let members = try await activeMembers(teamID, on: connection)
        let percent = try await CampaignStore.find(campaignID, on: connection)?.terms.groupBuy?.virtualFillPercent ?? 0
        if percent > 0, !members.isEmpty, members.count * 100 >= size * percent {
            try await complete(teamID, campaign: campaignID, virtualMembers: size - members.count, correlation: nil, on: connection)
            return
        }
        try await connection.query("UPDATE teams SET status = 'expired', closed_at = now() WHERE id = \(teamID.rawValue)")
        try await Statistics.add(1, to: "teams_expired", of: campaignID, on: connection)
        try await Outbox.append(
            TeamExpired(
                teamId: teamID, campaignId: campaignID,
                members: members.map { TeamMember(userId: $0.userID, orderId: $0.orderID, leader: $0.leader, virtual: false) },
                expiredAt: Date()),
            correlationID: nil, on: connection)
    }

    /// A member of an open team was refunded: they leave; a departing leader hands over to the
    /// next member by joining order.
    static func memberRefunded(_ event: CloudEvent<OrderRefunded>, _ connection: PostgresConnection) async throws {
        let rows = try await connection.query(
            """
            SELECT t.id, t.campaign_id, m.leader FROM team_members m JOIN teams t ON t.id = m.team_id
            WHERE m.order_id = \(event.data.orderId.rawValue) AND m.left_at IS NULL AND t.status = 'open'
            FOR UPDATE OF t
            """)
        guard let row = rows.first else { return }
        let teamID = TeamID(rawValue: try row.decode("id"))
        let campaignID = CampaignID(rawValue: try row.decode("campaign_id"))
        let wasLeader = try row.decode("leader", as: Bool.self)
        try await connection.query(
            "UPDATE team_members SET left_at = now(), leader = false WHERE order_id = \(event.data.orderId.rawValue)")
        let remaining = try await activeMembers(teamID, on: connection)
        try await Outbox.append(
            TeamMemberLeft(
                teamId: teamID, campaignId: campaignID, userId: event.data.userId, orderId: event.data.orderId,
                memberCount: remaining.count, leftAt: Date()),
            correlationID: event.correlationid, causationID: event.id.description, on: connection)
        if wasLeader, let next = remaining.first {
            try await connection.query(
                "UPDATE team_members SET leader = true WHERE team_id = \(teamID.rawValue) AND order_id = \(next.orderID.rawValue)")
            try await connection.query("UPDATE teams SET leader_id = \(next.userID.rawValue) WHERE id = \(teamID.rawValue)")
            try await Outbox.append(
                TeamLeaderChanged(teamId: teamID, campaignId: campaignID, previousLeaderId: event.data.userId, leaderId: next.userID, changedAt: Date()),
                correlationID: event.correlationid, causationID: event.id.description, on: connection)
        }
    }
}
