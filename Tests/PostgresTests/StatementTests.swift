import FissionTesting
import Postgres
import Testing

/// Statements are prepared once per connection and a transaction's BEGIN travels with its first
/// statement: what callers see must be exactly what unprepared, one-by-one statements gave.
@Suite("Prepared statements and pipelined BEGIN")
struct StatementTests {
    /// Statements sent together run in order, each seeing what the ones before it did; the same
    /// text twice is prepared once; a failure is thrown, what follows it does not run, and the
    /// connection stays usable.
    @Test func statementsSentTogetherRunInOrderAndAFailureStopsTheRest() async throws {
        try await withTestPool(options: .init(maxConnections: 1)) { pool in
            try await pool.query("CREATE TABLE marks (n int NOT NULL)")
            let counted: PostgresQuery = "SELECT count(*)::int8 AS n FROM marks"
            let results = try await pool.withConnection { connection in
                try await connection.query([
                    "SELECT pg_advisory_xact_lock(42)", "INSERT INTO marks VALUES (\(1))", counted, "INSERT INTO marks VALUES (\(2))",
                    counted.plannedOnce(), counted.plannedForEachExecution(),
                ])
            }
            #expect(results.count == 6)
            #expect(try results[2].single().decode("n", as: Int.self) == 1)
            #expect(try results[4].single().decode("n", as: Int.self) == 2)
            #expect(try results[5].single().decode("n", as: Int.self) == 2)
            #expect(results[1].affectedRows == 1)

            // Outside a transaction the statements sent together are one implicit transaction:
            // the failure undoes the insert before it, and the one after never runs.
            await #expect(throws: PostgresError.self) {
                try await pool.withConnection { connection in
                    try await connection.query(["INSERT INTO marks VALUES (\(3))", "SELECT 1 / \(0)", "INSERT INTO marks VALUES (\(4))"])
                }
            }
            #expect(try await pool.query("SELECT array_agg(n ORDER BY n)::text AS ns FROM marks").single().decode("ns", as: String.self) == "{1,2}")
            // Inside a transaction the failure aborts it; the caller's rollback ends it as usual.
            await #expect(throws: PostgresError.self) {
                try await pool.withTransaction { connection in
                    try await connection.query(["INSERT INTO marks VALUES (\(5))", "SELECT 1 / \(0)"])
                }
            }
            #expect(try await pool.query(counted).single().decode("n", as: Int.self) == 2)
        }
    }

    /// The server processes of the pool's connections, seen from one of them.
    private func backends(_ pool: PostgresPool) async throws -> Set<Int> {
        Set(try await pool.query(
            "SELECT pid::int8 FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'"
        ).map { try $0.decode("pid", as: Int.self) })
    }

    /// A transaction's last statements carry its `COMMIT`: what they wrote is committed before
    /// the body returns (another connection sees it), `withTransaction` ends nothing twice, and a
    /// failing statement leaves nothing committed and the connection usable.
    @Test func lastStatementsSentWithTheCommitCommitTogether() async throws {
        try await withTestPool(options: .init(maxConnections: 2)) { pool in
            try await pool.query("CREATE TABLE marks (n int NOT NULL)")
            let counted: PostgresQuery = "SELECT count(*)::int8 AS n FROM marks"
            let (seenInside, seenFromElsewhere) = try await pool.withTransaction { connection in
                try await connection.query("INSERT INTO marks VALUES (\(1))")
                let results = try await connection.queryCommitting(["INSERT INTO marks VALUES (\(2))", counted])
                // The body still holds its connection: this is the pool's other one.
                return (try results[1].single().decode("n", as: Int.self), try await pool.query(counted).single().decode("n", as: Int.self))
            }
            #expect(seenInside == 2)
            #expect(seenFromElsewhere == 2)
            let pids = try await backends(pool)
            #expect(pids.count == 2)

            await #expect(throws: PostgresError.self) {
                try await pool.withTransaction { connection in
                    try await connection.query("INSERT INTO marks VALUES (\(3))")
                    _ = try await connection.queryCommitting(["INSERT INTO marks VALUES (\(4))", "SELECT 1 / \(0)", "INSERT INTO marks VALUES (\(5))"])
                }
            }
            // Both connections, again and again: none is left inside a transaction.
            for n in 6...9 {
                try await pool.withTransaction { connection in
                    _ = try await connection.queryCommitting(["INSERT INTO marks VALUES (\(n))"])
                }
            }
            #expect(try await pool.query("SELECT array_agg(n ORDER BY n)::text AS ns FROM marks").single().decode("ns", as: String.self) == "{1,2,6,7,8,9}")
            // The pool kept both connections: it closes one left inside a transaction.
            #expect(try await backends(pool) == pids)
        }
    }

    @Test func preparedStatementGivesTheSameAnswersCallAfterCall() async throws {
        try await withTestPool(options: .init(maxConnections: 1)) { pool in
            try await pool.query("CREATE TABLE stock (sku text PRIMARY KEY, left_count int8 NOT NULL)")
            for (sku, count) in [("tea", 10), ("cup", 3), ("pot", 0)] {
                try await pool.query("INSERT INTO stock VALUES (\(sku), \(count))")
            }
            // More calls than the server's custom-plan trials: the generic plan must answer alike.
            for _ in 0..<8 {
                for (sku, count) in [("tea", 10), ("cup", 3), ("pot", 0)] {
                    #expect(try await pool.query("SELECT left_count FROM stock WHERE sku = \(sku)").single().decode("left_count", as: Int.self) == count)
                }
                #expect(try await pool.query("SELECT left_count FROM stock WHERE sku = \("none")").isEmpty)
            }
        }
    }

    @Test func statementWhoseResultShapeChangedIsPreparedAgain() async throws {
        try await withTestPool(options: .init(maxConnections: 1)) { pool in
            try await pool.query("CREATE TABLE team (id int8 PRIMARY KEY)")
            try await pool.query("INSERT INTO team VALUES (1)")
            #expect(try await pool.query("SELECT * FROM team WHERE id = \(1)").columns.count == 1)
            try await pool.query("ALTER TABLE team ADD COLUMN size int8 NOT NULL DEFAULT 3")
            // The server refuses the old plan at most once; the next call sees the new shape.
            _ = try? await pool.query("SELECT * FROM team WHERE id = \(1)")
            let row = try await pool.query("SELECT * FROM team WHERE id = \(1)").single()
            #expect(try row.decode("size", as: Int.self) == 3)
        }
    }

    @Test func failingFirstStatementOfATransactionRollsBackAndLeavesTheConnectionUsable() async throws {
        try await withTestPool(options: .init(maxConnections: 1)) { pool in
            try await pool.query("CREATE TABLE helps (task int8, helper text, UNIQUE (task, helper))")
            try await pool.query("INSERT INTO helps VALUES (1, 'li')")
            // The BEGIN and the failing INSERT go in one round trip.
            await #expect(throws: PostgresError.self) {
                try await pool.withTransaction { connection in
                    _ = try await connection.query("INSERT INTO helps VALUES (\(1), \("li"))")
                }
            }
            // A syntax error while being prepared, also first in its transaction.
            await #expect(throws: PostgresError.self) {
                try await pool.withTransaction { connection in
                    _ = try await connection.query("SELEC nothing FROM helps WHERE task = \(1)")
                }
            }
            try await pool.withTransaction { connection in
                _ = try await connection.query("INSERT INTO helps VALUES (\(1), \("wang"))")
            }
            #expect(try await pool.query("SELECT count(*)::int8 AS n FROM helps").single().decode("n", as: Int.self) == 2)
        }
    }

    @Test func transactionThatRanNoStatementCommitsNothingAndCostsNothing() async throws {
        try await withTestPool(options: .init(maxConnections: 1)) { pool in
            let value = try await pool.withTransaction { _ in 42 }
            #expect(value == 42)
            // The never-sent BEGIN left no transaction open on the connection.
            let level = try await pool.withTransaction(level: .serializable) { connection in
                try await connection.query("SELECT current_setting('transaction_isolation') AS level").single().decode("level", as: String.self)
            }
            #expect(level == "serializable")
        }
    }

    @Test func nestedQueryParametersFollowTheOuterOnes() async throws {
        try await withTestPool { pool in
            try await pool.query("CREATE TABLE outbox (key text, payload text)")
            let inner: PostgresQuery = "INSERT INTO outbox SELECT \("team-7"), \("opened") FROM chosen RETURNING 1"
            let rows = try await pool.query(
                """
                WITH chosen AS (SELECT \(1) AS one WHERE \("yes") = 'yes'), written AS (\(inner))
                SELECT count(*)::int8 AS n, \("after") AS tail FROM written
                """).single()
            #expect(try rows.decode("n", as: Int.self) == 1)
            #expect(try rows.decode("tail", as: String.self) == "after")
            let written = try await pool.query("SELECT key, payload FROM outbox").single()
            #expect(try written.decode("key", as: String.self) == "team-7")
            #expect(try written.decode("payload", as: String.self) == "opened")
        }
    }

    /// A statement planned once runs on its generic plan from the first call, and the session's
    /// plan choice is back to the server's afterwards, whether the statement succeeded, failed
    /// alone or failed inside a transaction.
    @Test func statementPlannedOnceKeepsItsGenericPlanAndLeavesTheSessionAsItWas() async throws {
        try await withTestPool(options: .init(maxConnections: 1)) { pool in
            try await pool.query("CREATE TABLE stock (sku text PRIMARY KEY, left_count int8 NOT NULL)")
            try await pool.query("INSERT INTO stock VALUES ('tea', 10), ('cup', 3)")
            /// The session's plan choice and whether it may scan tables whole.
            let modeQuery: PostgresQuery = "SELECT current_setting('plan_cache_mode') || ',' || current_setting('enable_seqscan') AS mode"
            func mode() async throws -> String {
                try await pool.query(modeQuery).single().decode("mode")
            }
            let counted: PostgresQuery = "SELECT sum(left_count)::int8 AS n FROM stock WHERE sku = ANY(\(["tea", "cup"]))"
            for _ in 0..<3 {
                #expect(try await pool.query(counted.plannedOnce()).single().decode("n", as: Int.self) == 13)
            }
            let plans = try await pool.query(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = \(counted.sql)").single()
            #expect(try plans.decode("generic_plans", as: Int.self) == 3)
            #expect(try plans.decode("custom_plans", as: Int.self) == 0)
            #expect(try await mode() == "auto,on")

            let failing: PostgresQuery = "SELECT 1 / (left_count - \(3))::int8 AS n FROM stock WHERE sku = ANY(\(["cup"]))"
            await #expect(throws: PostgresError.self) { try await pool.query(failing.plannedOnce()) }
            #expect(try await mode() == "auto,on")
            await #expect(throws: PostgresError.self) {
                try await pool.withTransaction { connection in
                    try await connection.query("INSERT INTO stock VALUES ('pot', 1)")
                    try await connection.query(failing.plannedOnce())
                }
            }
            #expect(try await mode() == "auto,on")
            #expect(try await pool.query("SELECT count(*)::int8 AS n FROM stock").single().decode("n", as: Int.self) == 2)
            let (inTransaction, modeInTransaction) = try await pool.withTransaction { connection in
                (try await connection.query(counted.plannedOnce()).single().decode("n", as: Int.self),
                 try await connection.query(modeQuery).single().decode("mode", as: String.self))
            }
            #expect(inTransaction == 13)
            #expect(modeInTransaction == "auto,on")
        }
    }

    /// A plan made once on an empty (just vacuumed) table still looks rows up through the index
    /// after the table has grown: the server makes it again only after the next analyze, and a
    /// whole-table scan kept until then costs more with every row.
    @Test func statementPlannedOnceOnAnEmptyTableUsesTheIndexAsTheTableGrows() async throws {
        try await withTestPool(options: .init(maxConnections: 1)) { pool in
            try await pool.query("CREATE TABLE stock (sku text PRIMARY KEY, left_count int8 NOT NULL)")
            try await pool.query("VACUUM stock")
            let counted: PostgresQuery = "SELECT coalesce(sum(left_count), 0)::int8 AS n FROM stock WHERE sku = ANY(\(["sku-7", "sku-9"]))"
            #expect(try await pool.query(counted.plannedOnce()).single().decode("n", as: Int.self) == 0)
            // The counters read here are this backend's not yet reported to the collector: compare
            // them before and after the statement, in one transaction so nothing is reported between.
            let (before, after) = try await pool.withTransaction { connection in
                try await connection.query("INSERT INTO stock SELECT 'sku-' || g, g FROM generate_series(1, 5000) AS g")
                let scans: PostgresQuery = "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relname = 'stock'"
                let before = try await connection.query(scans).single()
                #expect(try await connection.query(counted.plannedOnce()).single().decode("n", as: Int.self) == 16)
                return (before, try await connection.query(scans).single())
            }
            #expect(try after.decode("seq_scan", as: Int.self) == before.decode("seq_scan", as: Int.self))
            #expect(try after.decode("idx_scan", as: Int.self) > before.decode("idx_scan", as: Int.self))
        }
    }
}
