import FissionTesting
import Postgres
import Synchronization
import Testing

@Suite("Transactions")
struct TransactionTests {
    struct Refused: Error {}

    @Test func transactionThatThrowsLeavesNoTrace() async throws {
        try await withTestPool { pool in
            try await pool.query("CREATE TABLE stock (sku text PRIMARY KEY, left_count int8 NOT NULL)")
            try await pool.query("INSERT INTO stock VALUES ('tea', 10)")
            await #expect(throws: Refused.self) {
                try await pool.withTransaction { connection in
                    try await connection.query("UPDATE stock SET left_count = left_count - 3 WHERE sku = 'tea'")
                    try await connection.query("INSERT INTO stock VALUES ('cup', 1)")
                    throw Refused()
                }
            }
            let rows = try await pool.query("SELECT sku, left_count FROM stock ORDER BY sku")
            #expect(rows.count == 1)
            #expect(try rows.single().decode("left_count", as: Int.self) == 10)
        }
    }

    /// What waits for a commit runs after it (and sees it), never after a rollback, a commit the
    /// server answered with `ROLLBACK`, or a `COMMIT` sent with the last statement that failed;
    /// outside a transaction at once.
    @Test func actionsAfterCommitRunOnlyOnceTheTransactionCommitted() async throws {
        try await withTestPool { pool in
            try await pool.query("CREATE TABLE t (id int8 PRIMARY KEY)")
            let ran = Mutex<[String]>([])
            @Sendable func record(_ name: String) -> @Sendable () -> Void { { ran.withLock { $0.append(name) } } }

            try await pool.withTransaction { connection in
                try await connection.query("INSERT INTO t VALUES (1)")
                connection.afterCommit(record("committed"))
                #expect(ran.withLock { $0 }.isEmpty, "not before the commit")
            }
            #expect(ran.withLock { $0 } == ["committed"])

            await #expect(throws: Refused.self) {
                try await pool.withTransaction { connection in
                    try await connection.query("INSERT INTO t VALUES (2)")
                    connection.afterCommit(record("thrown"))
                    throw Refused()
                }
            }
            await #expect(throws: PostgresError.self) {
                try await pool.withTransaction { connection in
                    connection.afterCommit(record("aborted"))
                    _ = try? await connection.query("INSERT INTO t VALUES (1)")
                }
            }
            await #expect(throws: PostgresError.self) {
                try await pool.withTransaction { connection in
                    connection.afterCommit(record("failed with its commit"))
                    try await connection.queryCommitting(["INSERT INTO t VALUES (1)"])
                }
            }
            try await pool.withTransaction { connection in
                connection.afterCommit(record("committed with its last statement"))
                try await connection.queryCommitting(["INSERT INTO t VALUES (3)"])
            }
            try await pool.withConnection { connection in
                try await connection.query("INSERT INTO t VALUES (4)")
                connection.afterCommit(record("outside a transaction"))
                #expect(ran.withLock { $0 }.last == "outside a transaction", "at once")
            }
            #expect(ran.withLock { $0 } == ["committed", "committed with its last statement", "outside a transaction"])
            #expect(try await pool.query("SELECT count(*) AS c FROM t").single().decode("c", as: Int.self) == 3)
        }
    }

    @Test func swallowedStatementFailureFailsTheCommit() async throws {
        try await withTestPool { pool in
            try await pool.query("CREATE TABLE t (id int8 PRIMARY KEY)")
            await #expect(throws: PostgresError.self) {
                try await pool.withTransaction { connection in
                    try await connection.query("INSERT INTO t VALUES (1)")
                    _ = try? await connection.query("INSERT INTO t VALUES (1)")
                }
            }
            #expect(try await pool.query("SELECT count(*) AS c FROM t").single().decode("c", as: Int.self) == 0)
        }
    }

    @Test func concurrentTransactionsDoNotSeeEachOthersUncommittedRows() async throws {
        try await withTestPool { pool in
            try await pool.query("CREATE TABLE teams (id int8 PRIMARY KEY)")
            let (inserted, insertedContinuation) = AsyncStream<Void>.makeStream()
            let (checked, checkedContinuation) = AsyncStream<Int>.makeStream()
            async let writer: Void = pool.withTransaction { connection in
                try await connection.query("INSERT INTO teams VALUES (1)")
                insertedContinuation.yield()
                // Hold the transaction open until the reader has looked.
                for await _ in checked { break }
            }
            for await _ in inserted { break }
            let seenDuring = try await pool.withTransaction { connection in
                try await connection.query("SELECT count(*) AS c FROM teams").single().decode("c", as: Int.self)
            }
            checkedContinuation.yield(seenDuring)
            try await writer
            #expect(seenDuring == 0)
            #expect(try await pool.query("SELECT count(*) AS c FROM teams").single().decode("c", as: Int.self) == 1)
        }
    }

    @Test func serializationFailuresAreRetriedWhenAsked() async throws {
        try await withTestPool(options: .init(maxConnections: 8)) { pool in
            try await pool.query("CREATE TABLE counter (id int PRIMARY KEY, n int8 NOT NULL)")
            try await pool.query("INSERT INTO counter VALUES (1, 0)")
            // Read-then-write under SERIALIZABLE from many tasks: conflicts are certain, and with
            // retries every increment must land exactly once.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<24 {
                    group.addTask {
                        try await pool.withTransaction(level: .serializable, retryingSerializationFailures: 100) { connection in
                            let n = try await connection.query("SELECT n FROM counter WHERE id = 1").single().decode("n", as: Int.self)
                            try await connection.query("UPDATE counter SET n = \(n + 1) WHERE id = 1")
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await pool.query("SELECT n FROM counter").single().decode("n", as: Int.self) == 24)
        }
    }

    @Test func serializationFailureSurfacesWithItsSQLStateWithoutRetries() async throws {
        try await withTestPool(options: .init(maxConnections: 4)) { pool in
            try await pool.query("CREATE TABLE counter (id int PRIMARY KEY, n int8 NOT NULL)")
            try await pool.query("INSERT INTO counter VALUES (1, 0)")
            // The other writer commits between this transaction's snapshot and its update, in
            // that order whatever the machine's load: each side waits for the other's signal.
            let (readDone, readContinuation) = AsyncStream<Void>.makeStream()
            let (otherCommitted, otherContinuation) = AsyncStream<Void>.makeStream()
            async let first: Void = pool.withTransaction(level: .repeatableRead) { connection in
                _ = try await connection.query("SELECT n FROM counter WHERE id = 1")
                readContinuation.yield()
                readContinuation.finish()
                for await _ in otherCommitted {}
                try await connection.query("UPDATE counter SET n = n + 1 WHERE id = 1")
            }
            for await _ in readDone {}
            try await pool.query("UPDATE counter SET n = n + 10 WHERE id = 1")
            otherContinuation.finish()
            do {
                try await first
                Issue.record("a repeatable-read update of a row changed since the snapshot must fail")
            } catch let error as PostgresError {
                #expect(error.sqlState == .serializationFailure)
                #expect(error.isSerializationFailure)
            }
        }
    }
}
