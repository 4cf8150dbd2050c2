import Logging
import ServiceLifecycle

/// Follows `NOTIFY`s on a few channels over its own connection (a pooled one would miss
/// notifications between leases).
///
/// Run it as a `Service`; read `notifications`. If the connection breaks it reconnects, and then
/// yields one notification with an empty payload and `senderPID` 0 per channel: notifications
/// sent while it was away are lost, so a reader should re-check its source (the outbox relay
/// rescans its table).
public final class PostgresListener: Service, Sendable {
    public let configuration: PostgresConfiguration
    public let channels: [String]
    public let notifications: AsyncStream<PostgresNotification>
    private let continuation: AsyncStream<PostgresNotification>.Continuation
    private let logger: Logger

    public init(configuration: PostgresConfiguration, channels: [String], logger: Logger = Logger(label: "fission.postgres.listener")) {
        self.configuration = configuration
        self.channels = channels
        self.logger = logger
        (notifications, continuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1024))
    }

    public func run() async throws {
        defer { continuation.finish() }
        await cancelWhenGracefulShutdown {
            var reconnecting = false
            while !Task.isCancelled {
                do {
                    let connection = try await PostgresConnection.connect(self.configuration, logger: self.logger)
                    for channel in self.channels {
                        try await connection.query("LISTEN \(identifier: channel)")
                    }
                    if reconnecting {
                        for channel in self.channels {
                            self.continuation.yield(PostgresNotification(channel: channel, payload: "", senderPID: 0))
                        }
                    }
                    reconnecting = true
                    while !Task.isCancelled {
                        for notification in try await connection.awaitNotifications(timeoutMilliseconds: 250) {
                            self.continuation.yield(notification)
                        }
                    }
                    await connection.close()
                } catch {
                    self.logger.warning("listener connection failed; reconnecting", metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: .seconds(1))
                }
            }
        }
    }
}

extension PostgresConnection {
    /// Sends a notification (delivered when the surrounding transaction commits).
    public func notify(channel: String, payload: String = "") async throws {
        try await query("SELECT pg_notify(\(channel), \(payload))")
    }
}
