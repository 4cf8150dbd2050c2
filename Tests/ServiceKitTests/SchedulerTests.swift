import Foundation
import Postgres
import ServiceKit
import Synchronization
import Testing

@Suite("Scheduler")
struct SchedulerTests {
    struct Boom: Error {}

    @Test func dueJobsRunExactlyOnceAcrossReplicasAndFailuresAreRetriedLater() async throws {
        try await withKitDatabase { pool in
            try await pool.query("CREATE TABLE expired (key text PRIMARY KEY)")
            let past = Date().addingTimeInterval(-1)
            try await pool.withTransaction { connection in
                for index in 0..<200 {
                    try await Schedule.at(past, kind: "team-deadline", key: "team-\(index)", on: connection)
                }
                try await Schedule.at(past, kind: "team-deadline", key: "flaky", on: connection)
                try await Schedule.at(Date().addingTimeInterval(3600), kind: "team-deadline", key: "later", on: connection)
            }
            let handler: Scheduler.Handler = { job, connection in
                if job.key == "flaky" { throw Boom() }
                // The primary key would reject a second run of the same job.
                try await connection.query("INSERT INTO expired (key) VALUES (\(job.key))")
            }
            // Four replicas racing for the same jobs.
            let replicas = (0..<4).map { _ in Scheduler(pool: pool, handlers: ["team-deadline": handler]) }
            let ran = try await withThrowingTaskGroup(of: Int.self) { group in
                for replica in replicas { group.addTask { try await replica.runDueJobs(limit: 1_000) } }
                return try await group.reduce(0, +)
            }
            #expect(ran == 201)
            #expect(try await pool.query("SELECT count(*) AS c FROM expired").single().decode("c", as: Int.self) == 200)
            let left = try await pool.query("SELECT key, attempts, last_error FROM scheduled_jobs ORDER BY key")
            #expect(try left.map { try $0.decode("key", as: String.self) } == ["flaky", "later"])
            #expect(try left[0].decode("attempts", as: Int.self) == 1)
            #expect(try left[0].decode("last_error", as: String?.self) != nil)
        }
    }
}
