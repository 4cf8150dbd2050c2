import Domain
import Postgres
import ServiceKit
import Synchronization

/// Records what the live streams delivered (a `NotificationDelivered` event per message) for
/// every open stream together: deliveries that arrive while one statement is writing wait and
/// go in the next. Each stream used to record each message in a transaction of its own, one
/// per help under the assists benchmark; now a statement carries what every stream delivered
/// meanwhile. A stream awaits its record, so a failure still ends that stream (the client
/// reconnects with `Last-Event-ID` and the message is delivered and recorded again).
final class StreamDeliveries: Sendable {
    private struct Waiting {
        var records: [Outbox.Record]
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var waiting: [Waiting] = []
        var writing = false
    }

    private let pool: PostgresPool
    private let state = Mutex(State())

    init(pool: PostgresPool) {
        self.pool = pool
    }

    func record(_ delivered: [CloudEvent<NotificationDelivered>]) async throws {
        guard !delivered.isEmpty else { return }
        let records = try delivered.map { try Outbox.Record($0) }
        try await withCheckedThrowingContinuation { continuation in
            let start = state.withLock { state -> Bool in
                state.waiting.append(Waiting(records: records, continuation: continuation))
                guard !state.writing else { return false }
                state.writing = true
                return true
            }
            if start { Task { await self.write() } }
        }
    }

    /// Writes what waits, one statement at a time, until nothing does.
    private func write() async {
        while true {
            let batch = state.withLock { state -> [Waiting] in
                defer { state.waiting.removeAll() }
                if state.waiting.isEmpty { state.writing = false }
                return state.waiting
            }
            guard !batch.isEmpty else { return }
            do {
                try await pool.withConnection { try await Outbox.append(batch.flatMap(\.records), on: $0) }
                batch.forEach { $0.continuation.resume() }
            } catch {
                batch.forEach { $0.continuation.resume(throwing: error) }
            }
        }
    }
}
