import Domain
import Foundation
import Postgres
import ServiceKit
import Testing

@Suite("Retention of de-duplication rows")
struct RetentionSweeperTests {
    static let day: TimeInterval = 24 * 3600

    func handled(_ consumer: String, id: UUID, at handledAt: Date, on pool: PostgresPool) async throws {
        try await pool.query(
            "INSERT INTO inbox (consumer, event_id, event_type, handled_at) VALUES (\(consumer), \(id), 'test.Sent.v1', \(handledAt))")
    }

    func keyed(_ key: String, at createdAt: Date, on pool: PostgresPool) async throws {
        try await pool.query(
            "INSERT INTO idempotency_keys (scope, key, request_hash, status, body, created_at) VALUES ('u', \(key), 'h', 201, '{}', \(createdAt))")
    }

    /// Inbox rows of events made and handled before the retention go, for every consumer, in
    /// statements of a batch each; everything younger stays, and so does a row whose event is
    /// old but was handled lately (`handled_at` decides) or whose id is not time-ordered.
    @Test func rowsPastTheirRetentionGoAndEverythingYoungerStays() async throws {
        try await withKitDatabase { pool in
            let now = Date()
            let old = now.addingTimeInterval(-50 * Self.day)
            let oldEvents = (0..<3).map { _ in UUID.timeOrdered(at: old) }
            for id in oldEvents { try await handled("notifications", id: id, at: old, on: pool) }
            let levelsOld = UUID.timeOrdered(at: old)
            try await handled("levels", id: levelsOld, at: old, on: pool)
            let recent = UUID.timeOrdered(at: now.addingTimeInterval(-Self.day))
            try await handled("notifications", id: recent, at: now.addingTimeInterval(-Self.day), on: pool)
            let oldButHandledLately = UUID.timeOrdered(at: old)
            try await handled("notifications", id: oldButHandledLately, at: now.addingTimeInterval(-3600), on: pool)
            let notTimeOrdered = UUID(uuidString: "FFFFFFFF-FFFF-4FFF-BFFF-FFFFFFFFFFFF")!
            try await handled("notifications", id: notTimeOrdered, at: old, on: pool)
            // Just inside the retention: made and handled 44 days and 23 hours ago.
            let justInside = now.addingTimeInterval(-45 * Self.day + 3600)
            let youngEnough = UUID.timeOrdered(at: justInside)
            try await handled("levels", id: youngEnough, at: justInside, on: pool)
            try await keyed("stale", at: now.addingTimeInterval(-2 * Self.day), on: pool)
            try await keyed("fresh", at: now.addingTimeInterval(-3600), on: pool)

            var options = RetentionSweeper.Options()
            options.batchSize = 2
            let sweeper = RetentionSweeper(pool: pool, options: options)
            #expect(try await sweeper.sweep(now: now) == RetentionSweeper.Swept(inboxRows: 4, idempotencyKeys: 1))

            let kept = try await pool.query("SELECT consumer, event_id FROM inbox ORDER BY consumer, event_id")
                .map { "\(try $0.decode("consumer", as: String.self)) \(try $0.decode("event_id", as: UUID.self))" }
            let expected = [("levels", youngEnough), ("notifications", recent), ("notifications", oldButHandledLately),
                            ("notifications", notTimeOrdered)]
            #expect(Set(kept) == Set(expected.map { "\($0.0) \($0.1)" }))
            let keys = try await pool.query("SELECT key FROM idempotency_keys").map { try $0.decode("key", as: String.self) }
            #expect(keys == ["fresh"])
            #expect(try await sweeper.sweep(now: now) == RetentionSweeper.Swept(), "a second pass finds nothing")
        }
    }

    /// The bound the inbox's range is cut at: below every id made at that time or later and above
    /// every id made earlier, in PostgreSQL's order of `uuid` values, not only in Swift's.
    @Test func theLowerBoundOfATimeSortsBetweenIdsMadeBeforeAndAfterItInPostgreSQL() async throws {
        try await withKitDatabase { pool in
            let instant = Date(timeIntervalSince1970: 1_796_000_000.123)
            let bound = UUID.timeOrderedLowerBound(at: instant)
            let before = (0..<50).map { _ in UUID.timeOrdered(at: instant.addingTimeInterval(-0.001)) }
            let atOrAfter = (0..<50).map { _ in UUID.timeOrdered(at: instant) } + (0..<50).map { _ in UUID.timeOrdered(at: instant.addingTimeInterval(0.002)) }
            let row = try await pool.query(
                """
                SELECT (SELECT bool_and(id < \(bound)) FROM unnest(\(before)::uuid[]) AS id) AS below,
                       (SELECT bool_and(id >= \(bound)) FROM unnest(\(atOrAfter)::uuid[]) AS id) AS above
                """).single()
            #expect(try row.decode("below", as: Bool.self))
            #expect(try row.decode("above", as: Bool.self))
        }
    }
}
