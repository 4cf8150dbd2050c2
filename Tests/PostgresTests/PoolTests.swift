import Foundation
import FissionTesting
import Postgres
import Testing

@Suite("Connection pool")
struct PoolTests {
    @Test func twoHundredConcurrentQueriesThroughAPoolOfEightAllSucceed() async throws {
        try await withTestPool(options: .init(maxConnections: 8, waitTimeout: .seconds(60))) { pool in
            let results = try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<200 {
                    group.addTask {
                        try await pool.query("SELECT \(i) AS i, pg_sleep(0.005)").single().decode("i", as: Int.self)
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(results.sorted() == Array(0..<200))
            #expect(pool.openConnections <= 8)
            let backends = try await pool.query(
                "SELECT count(*) AS c FROM pg_stat_activity WHERE datname = current_database()"
            ).single().decode("c", as: Int.self)
            #expect(backends <= 8)
        }
    }

    @Test func killedBackendIsReplacedAndTheNextQuerySucceeds() async throws {
        try await withTestPool(options: .init(maxConnections: 1)) { pool in
            let victim = try await pool.query("SELECT pg_backend_pid() AS pid").single().decode("pid", as: Int32.self)
            let admin = try await PostgresConnection.connect(pool.configuration)
            try await admin.query("SELECT pg_terminate_backend(\(victim))")
            // pg_terminate_backend only signals; wait until the backend is really gone. It leaves
            // pg_stat_activity before its process (and socket) is gone, so on this machine also
            // wait for the process itself.
            for _ in 0..<400 {
                let alive = try await admin.query("SELECT count(*) AS c FROM pg_stat_activity WHERE pid = \(victim)")
                    .single().decode("c", as: Int.self)
                let processGone = pool.configuration.host != "127.0.0.1" || (kill(victim, 0) == -1 && errno == ESRCH)
                if alive == 0 && processGone { break }
                try await Task.sleep(for: .milliseconds(25))
            }
            await admin.close()
            let replacement = try await pool.query("SELECT pg_backend_pid() AS pid").single().decode("pid", as: Int32.self)
            #expect(replacement != victim)
            #expect(pool.openConnections == 1)
        }
    }

    @Test func connectionThatBreaksMidUseIsNeverHandedOutAgain() async throws {
        try await withTestPool(options: .init(maxConnections: 1)) { pool in
            await #expect(throws: PostgresError.self) {
                // The backend kills itself while serving the statement.
                try await pool.query("SELECT pg_terminate_backend(pg_backend_pid())")
            }
            let pid = try await pool.query("SELECT pg_backend_pid() AS pid").single().decode("pid", as: Int32.self)
            #expect(pid > 0)
        }
    }

    @Test func leaseWaitsAtMostTheWaitTimeout() async throws {
        try await withTestPool(options: .init(maxConnections: 1, waitTimeout: .milliseconds(200))) { pool in
            let (held, heldContinuation) = AsyncStream<Void>.makeStream()
            let (release, releaseContinuation) = AsyncStream<Void>.makeStream()
            async let holder: Void = pool.withConnection { _ in
                heldContinuation.yield()
                for await _ in release { break }
            }
            for await _ in held { break }
            do {
                try await pool.query("SELECT 1")
                Issue.record("a lease on a full pool must time out")
            } catch let error as PostgresError {
                #expect(error.code == .poolTimeout)
            }
            releaseContinuation.yield()
            try await holder
            try await pool.query("SELECT 1")
        }
    }

    @Test func cancelledWaiterLeavesThePoolUsable() async throws {
        try await withTestPool(options: .init(maxConnections: 1, waitTimeout: .seconds(30))) { pool in
            let (held, heldContinuation) = AsyncStream<Void>.makeStream()
            let (release, releaseContinuation) = AsyncStream<Void>.makeStream()
            async let holder: Void = pool.withConnection { _ in
                heldContinuation.yield()
                for await _ in release { break }
            }
            for await _ in held { break }
            let waiter = Task { try await pool.query("SELECT 1") }
            try await Task.sleep(for: .milliseconds(50))
            waiter.cancel()
            await #expect(throws: CancellationError.self) { try await waiter.value }
            releaseContinuation.yield()
            try await holder
            try await pool.query("SELECT 1")
        }
    }
}

@Suite("Connection failures")
struct ConnectionFailureTests {
    func expectFailure(_ configuration: PostgresConfiguration, code: PostgresError.Code) async throws {
        let clock = ContinuousClock()
        let started = clock.now
        do {
            _ = try await PostgresConnection.connect(configuration)
            Issue.record("connecting must fail with \(code)")
        } catch let error as PostgresError {
            #expect(error.code == code, "\(error)")
        }
        // Fast: refused at once, not after the test configuration's 30 s connect timeout (a
        // busy machine has taken 7 s to refuse).
        #expect(clock.now - started < .seconds(20))
    }

    @Test func wrongPasswordFailsFastSayingSo() async throws {
        var configuration = try await TestDatabases.shared.serverConfiguration()
        configuration.password = "definitely-wrong"
        try await expectFailure(configuration, code: .authenticationFailed)
    }

    @Test func missingDatabaseFailsFastSayingSo() async throws {
        let configuration = try await TestDatabases.shared.serverConfiguration().with(database: "no_such_database_here")
        try await expectFailure(configuration, code: .databaseMissing)
    }

    @Test func unreachablePortFailsFastSayingSo() async throws {
        var configuration = try await TestDatabases.shared.serverConfiguration()
        configuration.port = try freeTCPPort()
        try await expectFailure(configuration, code: .unreachable)
    }

    @Test func poolReportsTheConnectFailure() async throws {
        var configuration = try await TestDatabases.shared.serverConfiguration()
        configuration.password = "definitely-wrong"
        let pool = PostgresPool(configuration: configuration, options: .init(maxConnections: 2))
        for _ in 0..<3 {
            await #expect(throws: PostgresError.self) { try await pool.query("SELECT 1") }
        }
        #expect(pool.openConnections == 0)
        await pool.close()
    }
}

@Suite("LISTEN/NOTIFY")
struct ListenNotifyTests {
    @Test func listenerReceivesNotificationsAfterCommit() async throws {
        try await withTestPool { pool in
            let listener = PostgresListener(configuration: pool.configuration, channels: ["outbox"])
            let running = Task { try await listener.run() }
            defer { running.cancel() }
            var iterator = listener.notifications.makeAsyncIterator()
            // LISTEN takes effect once the listener has connected: keep notifying until one arrives.
            let sender = Task {
                for attempt in 0..<400 {
                    try await pool.withTransaction { connection in
                        try await connection.notify(channel: "outbox", payload: "wake-\(attempt)")
                    }
                    try await Task.sleep(for: .milliseconds(25))
                }
            }
            let first = await iterator.next()
            sender.cancel()
            #expect(first?.channel == "outbox")
            #expect(first?.payload.hasPrefix("wake-") == true)
        }
    }
}
