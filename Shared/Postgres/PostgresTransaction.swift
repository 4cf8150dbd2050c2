/// How strictly concurrent transactions are kept apart.
public enum PostgresIsolationLevel: String, Sendable {
    case readCommitted = "READ COMMITTED"
    case repeatableRead = "REPEATABLE READ"
    case serializable = "SERIALIZABLE"
}

extension PostgresError {
    /// A `COMMIT` answered `ROLLBACK`: a statement in the transaction failed and the caller
    /// carried on.
    static let rolledBackAtCommit = PostgresError(
        .server, "transaction was rolled back at commit: an earlier statement in it failed")
}

extension PostgresConnection {
    /// Runs `body` in a transaction on this connection: commits when it returns (then runs the
    /// `afterCommit` actions), rolls back when it throws (and rethrows). A transaction that the
    /// server aborted (a failed statement whose error the body swallowed) is reported as an error,
    /// never as a silent rollback.
    public func withTransaction<T>(
        isolation: isolated (any Actor)? = #isolation,
        level: PostgresIsolationLevel = .readCommitted,
        _ body: () async throws -> T
    ) async throws -> T {
        beginLazily("BEGIN ISOLATION LEVEL \(level.rawValue)")
        let value: T
        do {
            value = try await body()
        } catch {
            if !isBroken { _ = try? await endTransaction("ROLLBACK") }
            throw error
        }
        let committed = takeCommitActions()
        if try await endTransaction("COMMIT")?.commandTag == "ROLLBACK" { throw PostgresError.rolledBackAtCommit }
        for action in committed { action() }
        return value
    }
}

extension PostgresPool {
    /// Leases a connection and runs `body` in a transaction on it.
    ///
    /// With `retryingSerializationFailures` > 0 a transaction that fails with a serialization
    /// failure or deadlock (SQLSTATE 40001/40P01) is run again from the start, up to that many
    /// extra times, after a short random pause. `body` must then be safe to run again: it should
    /// only touch the database.
    public func withTransaction<T>(
        isolation: isolated (any Actor)? = #isolation,
        level: PostgresIsolationLevel = .readCommitted,
        retryingSerializationFailures retries: Int = 0,
        _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await withConnection { connection in
                    try await connection.withTransaction(level: level) { try await body(connection) }
                }
            } catch let error as PostgresError where error.isSerializationFailure && attempt < retries {
                attempt += 1
                logger.debug(
                    "retrying transaction after serialization failure",
                    metadata: ["attempt": "\(attempt)", "sqlstate": "\(error.sqlState?.rawValue ?? "")"])
                // Spread retries so the conflicting transactions do not collide again in lockstep.
                try await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 * attempt))))
            }
        }
    }
}
