import FissionTesting
import Foundation
import Postgres

/// What PostgreSQL's active client backends are doing during a run, sampled every 50 ms from
/// `pg_stat_activity`: running (no wait event) or waiting, and on what. The seventh round found
/// the backends waiting on `Lock:object` (the server's `NOTIFY` commit lock) in most samples this
/// way; the figure keeps such a wait from coming back unseen.
final class BackendWaits: Sendable {
    /// Samples of active backends by what they did ("running", "Lock:object", "Client:ClientRead").
    struct Tally: Sendable {
        var counts: [String: Int] = [:]
        var total: Int { counts.values.reduce(0, +) }
        func share(_ prefix: String) -> Double {
            total == 0 ? 0 : Double(counts.filter { $0.key.hasPrefix(prefix) }.values.reduce(0, +)) / Double(total)
        }
        /// "running 64%, Client:ClientRead 20%, ..." (the most frequent first).
        var summary: String {
            counts.sorted { $0.value > $1.value }.prefix(5)
                .map { String(format: "%@ %.0f%%", $0.key, Double($0.value) / Double(max(total, 1)) * 100) }.joined(separator: ", ")
        }
    }

    private let sampling: Task<Tally, Never>

    /// Starts sampling the server of `cluster` until `stop`.
    init(_ cluster: EphemeralPostgres) async throws {
        let connection = try await PostgresConnection.connect(cluster.adminConfiguration)
        sampling = Task {
            var tally = Tally()
            while !Task.isCancelled {
                let activity: PostgresQuery = """
                    SELECT coalesce(wait_event_type || ':' || wait_event, 'running') AS doing FROM pg_stat_activity
                    WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid()
                    """
                var doing: [String] = []
                if let rows = try? await connection.query(activity) {
                    doing = rows.compactMap { try? $0.decode("doing", as: String.self) }
                }
                for what in doing { tally.counts[what, default: 0] += 1 }
                try? await Task.sleep(for: .milliseconds(50))
            }
            await connection.close()
            return tally
        }
    }

    func stop() async -> Tally {
        sampling.cancel()
        return await sampling.value
    }
}
