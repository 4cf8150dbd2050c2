import Logging
import Postgres
import ServiceKit
import ServiceLifecycle
import Synchronization

/// Wakes a user's live streams when their inbox changes. The notifier announces the users whose
/// inbox it changed once its transaction has committed (`changed`, through `ChannelWakeups`):
/// streams in this process are woken at once, those of other processes by
/// `NOTIFY fission_inbox, '<user>'`, which one listener per process fans out to the streams
/// following that user. A stream neither polls the database nor waits for its next poll.
final class InboxWakeups: Service, Sendable {
    static let channel = "fission_inbox"

    private let listener: PostgresListener
    private let wakeups: ChannelWakeups
    private let following = Mutex<Int?>(nil)
    private let followers = Mutex<[String: [ObjectIdentifier: WakeSignal]]>([:])

    init(configuration: PostgresConfiguration, logger: Logger) {
        listener = PostgresListener(configuration: configuration, channels: [Self.channel], logger: logger)
        wakeups = ChannelWakeups.forDatabase(configuration)
        // From the start, so that no change made in this process before `run` goes unseen.
        let token = wakeups.follow(Self.channel) { [weak self] user in self?.wake(user) }
        following.withLock { $0 = token }
    }

    deinit {
        if let token = following.withLock({ $0 }) { wakeups.unfollow(Self.channel, token) }
    }

    /// Tells these users' streams to look once the transaction on `connection`, which changed
    /// their inbox, has committed.
    static func changed(_ users: Set<String>, afterCommitOn connection: PostgresConnection) {
        ChannelWakeups.announce(channel, payloads: users, afterCommitOn: connection)
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

    /// Wakes the streams following `user`; an empty `user`: every stream.
    private func wake(_ user: String) {
        let woken = followers.withLock { followers in
            user.isEmpty ? followers.values.flatMap(\.values) : Array(followers[user]?.values ?? [:].values)
        }
        for signal in woken { signal.signal() }
    }

    func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.listener.run() }
            for await notification in listener.notifications {
                // Sent from here: the streams here were woken when it was announced. An empty
                // payload follows a reconnect: what changed meanwhile is unknown.
                if wakeups.sentByThisProcess(notification) { continue }
                wake(notification.payload)
            }
            try await group.waitForAll()
        }
    }
}
