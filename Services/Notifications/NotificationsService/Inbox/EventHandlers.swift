import Domain
import Foundation
import Postgres
import ServiceKit

/// What people hear about, from the events of every service.
enum NotificationHandlers {
    static let reminderJob = "task-expiring"

    static func assistRecorded(_ event: CloudEvent<AssistRecorded>, _ connection: PostgresConnection) async throws {
        try await assistsRecorded([event], connection)
    }

    /// Helps come in bursts: a consumer batch's helps are notified together (see `Notifier`).
    static func assistsRecorded(_ events: [CloudEvent<AssistRecorded>], _ connection: PostgresConnection) async throws {
        try await Notifier.notify(events.map { event in
            let help = event.data
            return Notifier.Message(
                user: help.initiatorId, category: "assistRecorded",
                values: ["helper": help.helperId.rawValue, "cut": help.cut.formatted, "left": help.amountLeft.formatted,
                         "helpers": String(help.helpersLeftAtMost)],
                cause: event.id, digestKey: "task:\(help.taskId)", campaign: help.campaignId, correlation: event.correlationid)
        }, on: connection)
    }

    /// Schedules the "ends within the hour" reminder.
    static func taskStarted(_ event: CloudEvent<AssistTaskStarted>, _ connection: PostgresConnection) async throws {
        let remindAt = event.data.deadline.addingTimeInterval(-3600)
        guard remindAt > Date() else { return }
        try await Schedule.at(remindAt, kind: reminderJob, key: event.data.taskId.description,
                              payload: "{\"user\":\"\(event.data.initiatorId.rawValue)\",\"event\":\"\(event.id)\"}", on: connection)
    }

    static func taskExpiring(_ job: ScheduledJob, _ connection: PostgresConnection) async throws {
        struct Payload: Decodable { var user: String; var event: String }
        let payload = try JSONDecoder().decode(Payload.self, from: Data(job.payload.utf8))
        // The reminder's cause is derived from the task's start event, so it is sent once.
        let cause = EventID(rawValue: UUID(uuidString: payload.event) ?? UUID())
        let reminder = EventID(rawValue: UUID(uuid: Self.flipLastByte(cause.rawValue.uuid)))
        try await Notifier.notify(UserID(rawValue: payload.user), "taskExpiring", [:], cause: reminder, correlation: nil, on: connection)
    }

    static func taskCompleted(_ event: CloudEvent<AssistTaskCompleted>, _ connection: PostgresConnection) async throws {
        try await Schedule.cancel(kind: reminderJob, key: event.data.taskId.description, on: connection)
        try await Notifier.notify(
            event.data.initiatorId, "taskCompleted",
            ["price": event.data.finalPrice.formatted, "payBy": EventCoding.formatTimestamp(event.data.payBy)],
            cause: event.id, campaign: event.data.campaignId, correlation: event.correlationid, on: connection)
        try await Webhooks.enqueue(category: "taskCompleted", campaign: event.data.campaignId, event: event, on: connection)
    }

    static func taskExpired(_ event: CloudEvent<AssistTaskExpired>, _ connection: PostgresConnection) async throws {
        try await Schedule.cancel(kind: reminderJob, key: event.data.taskId.description, on: connection)
        try await Notifier.notify(event.data.initiatorId, "taskExpired", ["price": event.data.priceReached.formatted],
                                  cause: event.id, correlation: event.correlationid, on: connection)
    }

    static func teamOpened(_ event: CloudEvent<TeamOpened>, _ connection: PostgresConnection) async throws {
        try await connection.query(
            "INSERT INTO team_leaders (team_id, leader_id) VALUES (\(event.data.teamId.rawValue), \(event.data.leaderId.rawValue)) ON CONFLICT DO NOTHING")
    }

    static func teamLeaderChanged(_ event: CloudEvent<TeamLeaderChanged>, _ connection: PostgresConnection) async throws {
        try await connection.query(
            """
            INSERT INTO team_leaders (team_id, leader_id) VALUES (\(event.data.teamId.rawValue), \(event.data.leaderId.rawValue))
            ON CONFLICT (team_id) DO UPDATE SET leader_id = EXCLUDED.leader_id
            """)
    }

    static func teamMemberJoined(_ event: CloudEvent<TeamMemberJoined>, _ connection: PostgresConnection) async throws {
        guard let leader = try await connection.query(
            "SELECT leader_id FROM team_leaders WHERE team_id = \(event.data.teamId.rawValue)").first else { return }
        try await Notifier.notify(
            UserID(rawValue: try leader.decode("leader_id")), "teamMemberJoined",
            ["member": event.data.userId.rawValue, "left": String(max(0, event.data.teamSize - event.data.memberCount))],
            cause: event.id, correlation: event.correlationid, on: connection)
    }

    static func teamCompleted(_ event: CloudEvent<TeamCompleted>, _ connection: PostgresConnection) async throws {
        for member in event.data.members where !member.virtual {
            guard let user = member.userId else { continue }
            try await Notifier.notify(user, "teamCompleted", [:], cause: event.id, campaign: event.data.campaignId,
                                      correlation: event.correlationid, on: connection)
        }
        try await Webhooks.enqueue(category: "teamCompleted", campaign: event.data.campaignId, event: event, on: connection)
    }

    static func orderPaid(_ event: CloudEvent<OrderPaid>, _ connection: PostgresConnection) async throws {
        try await Notifier.notify(event.data.userId, "orderPaid", ["amount": event.data.amount.formatted],
                                  cause: event.id, correlation: event.correlationid, on: connection)
        try await Webhooks.enqueue(category: "orderPaid", campaign: event.data.campaignId, event: event, on: connection)
    }

    /// A refund because the team expired is the "your team expired, ¥29.90 is on its way back" message.
    static func orderRefunded(_ event: CloudEvent<OrderRefunded>, _ connection: PostgresConnection) async throws {
        let category = event.data.reason == .teamExpired ? "teamExpired" : "orderRefunded"
        try await Notifier.notify(event.data.userId, category, ["amount": event.data.amount.formatted],
                                  cause: event.id, correlation: event.correlationid, on: connection)
    }

    static func levelChanged(_ event: CloudEvent<LevelChanged>, _ connection: PostgresConnection) async throws {
        try await Notifier.notify(event.data.userId, "levelChanged", ["level": String(event.data.toLevel)],
                                  cause: event.id, correlation: event.correlationid, on: connection)
    }

    /// Every 100 XP earned is a milestone worth a message.
    static func xpAwarded(_ event: CloudEvent<XPAwarded>, _ connection: PostgresConnection) async throws {
        let before = event.data.totalXP - event.data.points
        guard before / 100 < event.data.totalXP / 100 else { return }
        try await Notifier.notify(event.data.userId, "xpMilestone", ["xp": String(event.data.totalXP / 100 * 100)],
                                  cause: event.id, correlation: event.correlationid, on: connection)
    }

    static func drawWon(_ event: CloudEvent<DrawWon>, _ connection: PostgresConnection) async throws {
        try await Notifier.notify(event.data.userId, "drawWon", ["prize": event.data.prize],
                                  cause: event.id, correlation: event.correlationid, on: connection)
    }

    static func campaignPublished(_ event: CloudEvent<CampaignPublished>, _ connection: PostgresConnection) async throws {
        try await connection.query(
            """
            INSERT INTO campaign_merchants (campaign_id, merchant_id, title)
            VALUES (\(event.data.campaignId.rawValue), \(event.data.merchantId.rawValue), \(event.data.terms.product.title))
            ON CONFLICT (campaign_id) DO UPDATE SET merchant_id = EXCLUDED.merchant_id, title = EXCLUDED.title
            """)
    }

    private static func flipLastByte(_ uuid: uuid_t) -> uuid_t {
        var copy = uuid
        copy.15 ^= 0xff
        return copy
    }
}
