import Foundation
import Logging
import Postgres
import ServiceLifecycle

/// A unit of due work: a deadline, a reminder. `kind` picks the handler, `key` names the thing
/// (a team id), so scheduling the same (kind, key) again moves the due time instead of adding
/// a second job.
public struct ScheduledJob: Sendable {
    public var id: Int64
    public var kind: String
    public var key: String
    public var dueAt: Date
    public var payload: String
    public var attempts: Int
}

public enum Schedule {
    /// Schedules (or reschedules) work inside the caller's transaction.
    public static func at(_ dueAt: Date, kind: String, key: String, payload: String = "{}", on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            INSERT INTO scheduled_jobs (kind, key, due_at, payload) VALUES (\(kind), \(key), \(dueAt), \(payload)::jsonb)
            ON CONFLICT (kind, key) DO UPDATE SET due_at = EXCLUDED.due_at, payload = EXCLUDED.payload, attempts = 0, last_error = NULL
            """)
    }

    public static func cancel(kind: String, key: String, on connection: PostgresConnection) async throws {
        try await connection.query(cancellation(kind: kind, keys: [key]))
    }

    /// The `DELETE` that cancels the (kind, key) jobs, also for a data-modifying common table
    /// expression in a statement that makes the change which ends them.
    public static func cancellation(kind: String, keys: [String]) -> PostgresQuery {
        "DELETE FROM scheduled_jobs WHERE kind = \(kind) AND key = ANY(\(keys)::text[])"
    }
}

/// Runs due jobs. Each job is claimed with `FOR UPDATE SKIP LOCKED` in its own transaction, run,
/// and deleted in that transaction: several replicas share the work and no job runs twice to
/// completion. A job whose handler throws is retried later with backoff, its error recorded.
public final class Scheduler: Service, Sendable {
    public typealias Handler = @Sendable (ScheduledJob, PostgresConnection) async throws -> Void

    private let pool: PostgresPool
    private let handlers: [String: Handler]
    private let pollInterval: Duration
    private let logger: Logger

    public init(pool: PostgresPool, handlers: [String: Handler], pollInterval: Duration = .milliseconds(250), logger: Logger = Logger(label: "fission.scheduler")) {
        self.pool = pool
        self.handlers = handlers
        self.pollInterval = pollInterval
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let ran = (try? await self.runDueJobs()) ?? 0
                if ran == 0 { try? await Task.sleep(for: self.pollInterval) }
            }
        }
    }

    /// Runs jobs due now until none is left or `limit` ran; returns how many ran.
    @discardableResult
    public func runDueJobs(limit: Int = 100, now: Date = Date()) async throws -> Int {
        var ran = 0
        while ran < limit, try await runOneDueJob(now: now) {
            ran += 1
        }
        return ran
    }

    private func runOneDueJob(now: Date) async throws -> Bool {
        let kinds = Array(handlers.keys)
        var failed: (ScheduledJob, any Error)?
        let claimed = try await pool.withTransaction { connection -> Bool in
            let rows = try await connection.query(
                """
                SELECT id, kind, key, due_at, payload::text AS payload, attempts FROM scheduled_jobs
                WHERE due_at <= \(now) AND kind = ANY(\(kinds))
                ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED
                """)
            guard let row = rows.first else { return false }
            let job = ScheduledJob(
                id: try row.decode("id"), kind: try row.decode("kind"), key: try row.decode("key"),
                dueAt: try row.decode("due_at"), payload: try row.decode("payload"), attempts: try row.decode("attempts", as: Int.self))
            do {
                try await connection.withSavepoint { try await self.handlers[job.kind]!(job, connection) }
                // A handler may schedule its own follow-up under the same (kind, key), which moves
                // this row's due time: then the row is the follow-up and stays.
                try await connection.query("DELETE FROM scheduled_jobs WHERE id = \(job.id) AND due_at = \(job.dueAt)")
            } catch {
                failed = (job, error)
                // Push the job back with backoff, in the same transaction.
                let delay = min(pow(2.0, Double(job.attempts)), 300)
                try await connection.query(
                    """
                    UPDATE scheduled_jobs SET attempts = attempts + 1, last_error = \(String(describing: error).prefix(1000).description),
                        due_at = now() + make_interval(secs => \(delay))
                    WHERE id = \(job.id)
                    """)
            }
            return true
        }
        if let (job, error) = failed {
            logger.warning("scheduled job failed; will retry", metadata: ["kind": "\(job.kind)", "key": "\(job.key)", "error": "\(error)"])
        }
        return claimed
    }
}

extension PostgresConnection {
    /// Runs `body` under a savepoint: if it throws, only its own changes are undone and the
    /// surrounding transaction can go on.
    public func withSavepoint<T>(isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> T) async throws -> T {
        try await query("SAVEPOINT fission_savepoint")
        do {
            let value = try await body()
            try await query("RELEASE SAVEPOINT fission_savepoint")
            return value
        } catch {
            if !isBroken { _ = try? await query("ROLLBACK TO SAVEPOINT fission_savepoint") }
            throw error
        }
    }
}
