@testable import NotificationsService
import Domain
import FissionTesting
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Postgres
import ServiceKit
import Testing

/// Reads a server-sent-event stream over a plain socket until `done` says so (or a timeout).
func readStream(port: Int, token: String, lastEventID: Int64?, timeout: TimeInterval = 20, done: @escaping @Sendable (String) -> Bool) async throws -> String {
    try await withCheckedThrowingContinuation { continuation in
        // A queue of its own: the global queue's threads are the ones Swift's tasks run on.
        DispatchQueue(label: "fission.tests.stream-reader").async {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(port).bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { return continuation.resume(throwing: HarnessError("cannot connect")) }
            var wait = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
            var request = "GET /inbox/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(token)\r\n"
            if let lastEventID { request += "Last-Event-ID: \(lastEventID)\r\n" }
            request += "\r\n"
            _ = request.withCString { send(fd, $0, strlen($0), 0) }
            var received = ""
            let deadline = Date().addingTimeInterval(timeout)
            var buffer = [UInt8](repeating: 0, count: 4096)
            while Date() < deadline, !done(received) {
                let count = recv(fd, &buffer, buffer.count, 0)
                if count > 0 { received += String(decoding: buffer[0..<count], as: UTF8.self) }
            }
            continuation.resume(returning: received)
        }
    }
}

@Suite("Live stream")
struct StreamTests {
    @Test func theStreamDeliversNotificationsLiveAndResumesFromLastEventID() async throws {
        try await withTestDatabase { database in
            let secret = "notifications-stream-secret-0123456789"
            // A user of its own: the service also consumes what other tests publish for theirs.
            let reader = UserID(rawValue: "u-stream-\(UUID().uuidString.prefix(8))")
            var logger = Logger(label: "notifications-test")
            logger.logLevel = .warning
            let settings = ServiceSettings(
                serviceName: "notifications", port: 0, database: database, databasePoolSize: 8,
                kafkaBrokers: try await TestKafka.shared.bootstrapServers(), tokenKeys: .sharedSecret(secret), localBroker: true)
            let app = try await NotificationsService.makeApplication(settings: settings, logger: logger)
            let pool = PostgresPool(configuration: database, options: .init(maxConnections: 4))
            for level in 2...4 {
                try await handle(CloudEvent(LevelChanged(userId: reader, fromLevel: level - 1, toLevel: level, totalXP: level * 10, changedAt: Date())),
                                 on: pool, NotificationHandlers.levelChanged)
            }
            let seqs = try await pool.query("SELECT seq FROM notifications WHERE user_id = \(reader.rawValue) ORDER BY seq").map { try $0.decode("seq", as: Int64.self) }
            let token = try await DevelopmentTokenIssuer(secret: secret).token(for: reader, roles: [.shopper])
            try await app.test(.live) { client in
                let port = try #require(client.port)
                let all = try await readStream(port: port, token: token, lastEventID: nil) { $0.contains("id: \(seqs[2])\n") }
                #expect(all.contains("text/event-stream"))
                for seq in seqs { #expect(all.contains("id: \(seq)\n"), "\(all)") }
                #expect(all.contains("你现在是 4 级"))

                // Resume after the second: only what came later, plus what arrives live.
                async let resumed = readStream(port: port, token: token, lastEventID: seqs[1]) { $0.contains("你现在是 5 级") }
                try await Task.sleep(for: .milliseconds(500))
                try await handle(CloudEvent(LevelChanged(userId: reader, fromLevel: 4, toLevel: 5, totalXP: 120, changedAt: Date())),
                                 on: pool, NotificationHandlers.levelChanged)
                let text = try await resumed
                #expect(!text.contains("id: \(seqs[0])\n") && !text.contains("id: \(seqs[1])\n"), "\(text)")
                #expect(text.contains("id: \(seqs[2])\n"))
                #expect(text.contains("你现在是 5 级"), "a notification created while connected arrives live")
                let streamed = try await pool.query("SELECT payload FROM outbox_history WHERE event_type = \(NotificationDelivered.eventType)").map {
                    try EventCoding.decode(NotificationDelivered.self, from: Array(try $0.decode("payload", as: String.self).utf8)).data.channel
                }
                #expect(streamed.filter { $0 == .stream }.count >= 3, "each live delivery is recorded")
            }
            await pool.close()
        }
    }

    /// A user's streams are woken once a change to their inbox commits, never by one rolled back:
    /// in the process that made it directly, in another process (wake-ups whose configuration
    /// differs, as another process's would) by `NOTIFY`.
    @Test func inboxChangesWakeStreamsHereAndInOtherProcessesOnlyOnceCommitted() async throws {
        try await withTestDatabase { database in
            var elsewhere = database
            elsewhere.parameters["application_name"] = "another-notifications-process"
            let logger = Logger(label: "notifications-test")
            let here = InboxWakeups(configuration: database, logger: logger)
            let there = InboxWakeups(configuration: elsewhere, logger: logger)
            let running = [here, there].map { wakeups in Task { try await wakeups.run() } }
            let user = "u-wake-\(UUID().uuidString.prefix(8))"
            let streams = [here.follow(user), there.follow(user)]
            let pool = PostgresPool(configuration: database, options: .init(maxConnections: 2))
            try await Task.sleep(for: .seconds(1))

            struct RolledBack: Error {}
            _ = try? await pool.withTransaction { connection in
                InboxWakeups.changed([user], afterCommitOn: connection)
                throw RolledBack()
            }
            for stream in streams {
                let clock = ContinuousClock()
                let waited = await clock.measure { await stream.wait(timeout: .seconds(1)) }
                #expect(waited >= .seconds(1), "woken by a rolled-back change")
            }
            try await pool.withTransaction { connection in
                try await connection.query("SELECT 1")
                InboxWakeups.changed([user], afterCommitOn: connection)
            }
            for stream in streams {
                let clock = ContinuousClock()
                let waited = await clock.measure { await stream.wait(timeout: .seconds(20)) }
                #expect(waited < .seconds(10), "not woken by a committed change")
            }
            await pool.close()
            running.forEach { $0.cancel() }
            for task in running { _ = await task.result }
        }
    }
}
