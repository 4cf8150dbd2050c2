import Domain
import Foundation
import Logging
import Postgres
import ServiceLifecycle

/// Deletes the rows a service keeps only to recognise a repeat, once no repeat can come: inbox
/// rows (an event delivered again) and idempotency keys (a client retrying a request). Without
/// it both tables grow by a row per event handled and per keyed request for as long as the
/// service runs. (Published outbox rows are the relay's to purge; messages, orders and the like
/// are the service's data, kept.)
///
/// Each pass deletes in statements of at most `batchSize` rows, so no transaction holds many
/// locks or runs long on a busy table. Replicas may sweep at once: a row two of them pick is
/// deleted by one, the other skips it.
public final class RetentionSweeper: Service, Sendable {
    public struct Options: Sendable {
        /// Longer than an event can take to come again: a consumer group moved back to the
        /// earliest offset reads as far as the topics keep (Kafka's default, 7 days), and a dead
        /// letter replayed to its source topic (those topics keep 30 days) reaches every group of
        /// that topic, not only the one that dead-lettered it.
        public var inboxRetention: Duration = .seconds(45 * 24 * 3600)
        /// A client retries within minutes; a day covers a person trying again the next morning.
        public var idempotencyRetention: Duration = .seconds(24 * 3600)
        public var interval: Duration = .seconds(600)
        public var batchSize = 5_000
        public init() {}
    }

    /// What one pass deleted.
    public struct Swept: Sendable, Equatable {
        public var inboxRows = 0
        public var idempotencyKeys = 0
        public init(inboxRows: Int = 0, idempotencyKeys: Int = 0) {
            self.inboxRows = inboxRows
            self.idempotencyKeys = idempotencyKeys
        }
    }

    private let pool: PostgresPool
    private let options: Options
    private let logger: Logger

    public init(pool: PostgresPool, options: Options = Options(), logger: Logger = Logger(label: "fission.retention")) {
        self.pool = pool
        self.options = options
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let swept = try await self.sweep()
                    if swept != Swept() {
                        self.logger.info(
                            "deleted de-duplication rows past their retention",
                            metadata: ["inbox": "\(swept.inboxRows)", "idempotency_keys": "\(swept.idempotencyKeys)"])
                    }
                } catch {
                    // The next pass tries again; nothing is lost by waiting.
                    self.logger.warning("retention sweep failed", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: self.options.interval)
            }
        }
    }

    /// One pass over both tables, as of `now`.
    @discardableResult
    public func sweep(now: Date = Date()) async throws -> Swept {
        var swept = Swept()
        let inboxCutoff = now.addingTimeInterval(-options.inboxRetention.inSeconds)
        // The inbox's key is (consumer, event id) and event ids are time-ordered: the rows of
        // events made before the cutoff are a range of the key for each consumer, found without
        // an index on `handled_at` (which every handled event would pay for). `handled_at` still
        // decides, so an event whose id is not time-ordered is only ever kept too long.
        for consumer in try await consumers() {
            swept.inboxRows += try await deleteInBatches("""
                DELETE FROM inbox WHERE ctid = ANY(ARRAY(
                    SELECT ctid FROM inbox
                    WHERE consumer = \(consumer) AND event_id < \(UUID.timeOrderedLowerBound(at: inboxCutoff))
                      AND handled_at < \(inboxCutoff)
                    LIMIT \(options.batchSize)))
                """)
        }
        let keysCutoff = now.addingTimeInterval(-options.idempotencyRetention.inSeconds)
        swept.idempotencyKeys = try await deleteInBatches("""
            DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM idempotency_keys WHERE created_at < \(keysCutoff) LIMIT \(options.batchSize)))
            """)
        return swept
    }

    /// The inbox's consumers, by skipping along its key (one probe each, not a scan of the table).
    private func consumers() async throws -> [String] {
        try await pool.query(
            """
            WITH RECURSIVE consumers (name) AS (
                (SELECT consumer FROM inbox ORDER BY consumer LIMIT 1)
                UNION ALL
                SELECT (SELECT consumer FROM inbox WHERE consumer > c.name ORDER BY consumer LIMIT 1)
                FROM consumers c WHERE c.name IS NOT NULL)
            SELECT name FROM consumers WHERE name IS NOT NULL
            """
        ).map { try $0.decode("name", as: String.self) }
    }

    private func deleteInBatches(_ statement: PostgresQuery) async throws -> Int {
        var deleted = 0
        while !Task.isCancelled {
            let batch = try await pool.query(statement).affectedRows
            deleted += batch
            if batch < options.batchSize { break }
        }
        return deleted
    }
}
