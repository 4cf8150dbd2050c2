import Logging
import Postgres
import ServiceKit
import ServiceLifecycle
import Synchronization

/// Wakes a user's live streams when their inbox changes. The notifier sends
/// `NOTIFY fission_inbox, '<user>'` in the transaction that changed it (delivered at commit);
/// one listener per process fans it out to the streams following that user, so a stream
/// neither polls the database nor waits for its next poll.
final class InboxWakeups: Service, Sendable {
    static let channel = "fission_inbox"

    private let listener: PostgresListener
    private let followers = Mutex<[String: [ObjectIdentifier: WakeSignal]]>([:])

    init(configuration: PostgresConfiguration, logger: Logger) {
        listener = PostgresListener(configuration: configuration, channels: [Self.channel], logger: logger)
    }

    /// Tells a user's streams to look (inside the transaction that changed their inbox).
    static func changed(_ user: String, on connection: PostgresConnection) async throws {
        try await connection.notify(channel: channel, payload: user)
    }

    func follow(_ user: String) -> WakeSignal {
        let signal = WakeSignal()
        followers.withLock { $0[user, default: [:]][ObjectIdentifier(signal)] = signal }
        return signal
    }

    func unfollow(_ user: String, _ signal: WakeSignal) {
        followers.withLock { followers in
            followers[user]?[ObjectIdentifier(signal)] = nil
            if followers[user]?.isEmpty == true { followers[user] = nil }
        }
    }

    func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.listener.run() }
            for await notification in listener.notifications {
                // An empty payload follows a reconnect: what changed meanwhile is unknown.
                let woken = followers.withLock { followers in
                    notification.payload.isEmpty
                        ? followers.values.flatMap(\.values)
                        : Array(followers[notification.payload]?.values ?? [:].values)
                }
                for signal in woken { signal.signal() }
            }
            try await group.waitForAll()
        }
    }
}
