import Logging
import Postgres
import Synchronization

/// Tells what follows a channel (the outbox relay, live inbox streams) that a transaction changed
/// what it follows, once that transaction has committed, without a `NOTIFY` inside it.
///
/// PostgreSQL (up to 17 at least) serializes the commits of every transaction that sent a
/// `NOTIFY`, across all databases of the server: the committing transaction takes one global lock
/// (`pg_database`, object 0) before its commit record and keeps it until the commit is over,
/// WAL flush included. With a `pg_notify` in every help, batch, handler and notifier transaction,
/// sampling `pg_stat_activity` under the assists benchmark found the active backends waiting on
/// that lock in 107 of 145 samples (`Lock:object`), against 33 running.
///
/// So a change is announced after its commit (`PostgresConnection.afterCommit`):
/// - followers in this process (`follow`) are called at once;
/// - other processes learn it by a `NOTIFY` sent outside any data transaction: having written no
///   WAL before its commit record, its commit does not wait for a flush (PostgreSQL flushes at
///   commit only for transactions that wrote), so it holds the lock only for a moment. One such
///   statement is in flight at a time per database; what is announced meanwhile goes in the next
///   (a `pg_notify` per distinct payload, one statement). A channel served whole in this process
///   (`serveLocally`: the relay here holds the outbox lease) sends none.
///
/// Like `NOTIFY` itself this is a hint, not a record: a follower also looks on a timer, and a
/// notification lost with a broken connection costs only that wait.
public final class ChannelWakeups: Sendable {
    public typealias Follower = @Sendable (_ payload: String) -> Void

    private struct State {
        var followers: [String: [Int: Follower]] = [:]
        var nextFollower = 0
        var servedLocally: [String: Int] = [:]
        /// Announcements for other processes not yet sent: channel → payloads.
        var pending: [String: Set<String>] = [:]
        var sending = false
        var connection: PostgresConnection?
    }

    private let configuration: PostgresConfiguration
    private let logger: Logger
    private let state = Mutex(State())
    /// The server process of the connection that sends this process's `NOTIFY`s.
    private let senderPID = Atomic<Int32>(0)

    public init(configuration: PostgresConfiguration, logger: Logger = Logger(label: "fission.wakeups")) {
        self.configuration = configuration
        self.logger = logger
    }

    private static let shared = Mutex<[PostgresConfiguration: ChannelWakeups]>([:])

    /// This process's wake-ups for the database `configuration` names.
    public static func forDatabase(_ configuration: PostgresConfiguration) -> ChannelWakeups {
        shared.withLock { shared in
            if let wakeups = shared[configuration] { return wakeups }
            let wakeups = ChannelWakeups(configuration: configuration)
            shared[configuration] = wakeups
            return wakeups
        }
    }

    /// Announces a change on `channel` once the transaction on `connection` has committed (at once
    /// outside a transaction).
    public static func announce(_ channel: String, payload: String = "", afterCommitOn connection: PostgresConnection) {
        announce(channel, payloads: [payload], afterCommitOn: connection)
    }

    /// Several payloads on one channel, once the transaction on `connection` has committed.
    public static func announce(_ channel: String, payloads: Set<String>, afterCommitOn connection: PostgresConnection) {
        guard !payloads.isEmpty else { return }
        let wakeups = forDatabase(connection.configuration)
        connection.afterCommit { wakeups.announce(channel, payloads: payloads) }
    }

    /// Announces committed changes now: to this process's followers, and to other processes.
    public func announce(_ channel: String, payloads: Set<String>) {
        let (followers, startSending) = state.withLock { state -> ([Follower], Bool) in
            let followers = Array(state.followers[channel, default: [:]].values)
            guard state.servedLocally[channel, default: 0] == 0 else { return (followers, false) }
            state.pending[channel, default: []].formUnion(payloads)
            defer { state.sending = true }
            return (followers, !state.sending)
        }
        for follower in followers {
            for payload in payloads { follower(payload) }
        }
        if startSending { Task { await self.sendPending() } }
    }

    /// Calls `follower` with each payload announced on `channel` in this process, until the
    /// returned token is passed to `unfollow`.
    public func follow(_ channel: String, _ follower: @escaping Follower) -> Int {
        state.withLock { state in
            state.nextFollower += 1
            state.followers[channel, default: [:]][state.nextFollower] = follower
            return state.nextFollower
        }
    }

    public func unfollow(_ channel: String, _ token: Int) {
        _ = state.withLock { $0.followers[channel]?.removeValue(forKey: token) }
    }

    /// Whether this process sent `notification` (its followers here were called already).
    public func sentByThisProcess(_ notification: PostgresNotification) -> Bool {
        notification.senderPID != 0 && notification.senderPID == senderPID.load(ordering: .relaxed)
    }

    /// While `serving` is true this process follows everything on `channel` (the relay holding the
    /// outbox lease), so no other process needs to hear of it. Counted, for several such followers.
    public func serveLocally(_ channel: String, _ serving: Bool) {
        state.withLock { $0.servedLocally[channel, default: 0] += serving ? 1 : -1 }
    }

    private func sendPending() async {
        var retriedAtOnce = false
        var failures = 0
        while true {
            let (pending, existing) = state.withLock { state -> ([String: Set<String>], PostgresConnection?) in
                defer { state.pending = [:] }
                if state.pending.isEmpty { state.sending = false }
                return (state.pending, state.connection)
            }
            guard !pending.isEmpty else { return }
            let channels = pending.flatMap { channel, payloads in Array(repeating: channel, count: payloads.count) }
            let payloads = pending.flatMap { $0.value }
            do {
                let connection: PostgresConnection
                if let existing {
                    connection = existing
                } else {
                    connection = try await PostgresConnection.connect(configuration, logger: logger)
                    senderPID.store(connection.backendPID, ordering: .relaxed)
                    state.withLock { $0.connection = connection }
                }
                try await connection.query(
                    "SELECT count(pg_notify(channel, payload)) FROM unnest(\(channels)::text[], \(payloads)::text[]) AS n(channel, payload)")
                retriedAtOnce = false
                failures = 0
            } catch {
                failures += 1
                // Kept for the next try, with whatever is announced meanwhile, for a few seconds:
                // after that followers elsewhere have looked on their timers anyway.
                let keep = failures < 5
                let broken = state.withLock { state -> PostgresConnection? in
                    if keep { for (channel, payloads) in pending { state.pending[channel, default: []].formUnion(payloads) } }
                    defer { state.connection = nil }
                    return state.connection
                }
                senderPID.store(0, ordering: .relaxed)
                if let broken { await broken.close() }
                // A connection that sat idle may have been closed under it (a restart, a
                // failover): a fresh one is tried at once. Otherwise the server refuses new ones,
                // and it is asked again after a pause, not at once; followers elsewhere look on
                // their timers meanwhile.
                if existing != nil, !retriedAtOnce {
                    retriedAtOnce = true
                    continue
                }
                logger.warning("could not send wake-ups to other processes", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }
}
