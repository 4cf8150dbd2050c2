/// The services of Fission, as named in topics, consumer groups and deployment files.
public enum ServiceName: String, Sendable, CaseIterable {
    case campaigns, assists, orders, levels, notifications
}

/// One event stream: `<service>.<aggregate>.v<major>`, keyed by the aggregate id so that an
/// aggregate's events stay in order.
public struct Topic: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var partitions: Int32
    public var producer: ServiceName
    public var consumers: [ServiceName]
    /// What the Kafka key holds.
    public var key: String

    public var description: String { name }
}

/// Every topic of the platform: the broker and deployment files create exactly these.
public enum Topics {
    public static let campaign = Topic(
        name: "campaigns.campaign.v1", partitions: 8, producer: .campaigns,
        consumers: [.assists, .orders, .notifications], key: "campaign id")
    public static let team = Topic(
        name: "campaigns.team.v1", partitions: 8, producer: .campaigns,
        consumers: [.orders, .notifications], key: "team id")
    public static let share = Topic(
        name: "campaigns.share.v1", partitions: 8, producer: .campaigns,
        consumers: [.assists, .orders, .levels], key: "share id")
    public static let task = Topic(
        name: "assists.task.v1", partitions: 8, producer: .assists,
        consumers: [.campaigns, .orders, .levels, .notifications], key: "task id")
    public static let order = Topic(
        name: "orders.order.v1", partitions: 8, producer: .orders,
        consumers: [.campaigns, .assists, .levels, .notifications], key: "order id")
    public static let member = Topic(
        name: "levels.member.v1", partitions: 8, producer: .levels,
        consumers: [.notifications], key: "user id")
    public static let delivery = Topic(
        name: "notifications.delivery.v1", partitions: 8, producer: .notifications,
        consumers: [], key: "notification id")

    public static let all: [Topic] = [campaign, team, share, task, order, member, delivery]

    /// Where a consumer group puts a message it cannot handle, with the reason. Each service
    /// consumes as the group named after it.
    public static func deadLetter(of group: String) -> String { "dlq.\(group)" }

    /// Topic names with partition counts, dead-letter topics included.
    public static var allWithDeadLetters: [(name: String, partitions: Int32)] {
        all.map { ($0.name, $0.partitions) } + ServiceName.allCases.map { (deadLetter(of: $0.rawValue), 1) }
    }
}
