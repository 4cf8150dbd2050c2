import Domain
import Foundation
import Kafka
import Logging
import Postgres
import ServiceLifecycle
import Synchronization

/// Publishes committed outbox rows to Kafka, in id order, with the idempotent producer.
///
/// - One active relay per service: the relay that holds the service's advisory lock publishes;
///   the others wait on standby. Every read and mark goes through the lock's own connection, so a
///   relay whose connection (and with it the lock) is gone cannot go on publishing.
/// - Wakes when an outbox write commits (`Outbox.wakeRelay`: at once in this process, by
///   `NOTIFY fission_outbox` from others; see `ChannelWakeups`) and on a timer.
/// - A row is marked published only after its delivery report. While the broker is down the
///   services' producer holds the records (it never times them out) and delivers them in order
///   once it is back; a send that fails all the same makes the relay back off and start again
///   from the lowest unpublished row.
/// - Published rows move to `outbox_published` and are purged after the retention period.
/// - A record refused for what it is (too large, malformed: `KafkaError.rejectsRecord`) would
///   be refused again on every pass and hold up every later row; its row moves to
///   `outbox_dead_letters` with the reason, is logged and counted, and the relay goes on. Only a
///   record judged alone is dead-lettered: one the client refused before sending it, or one the
///   broker refused when sent by itself. The broker refuses a whole batch for one record (or for
///   the batch's own size), so a refusal in a batch only makes the relay send that row alone first.
///   The producer fails every record after such a refusal (see `KafkaProducer`), and batches
///   read meanwhile follow those in flight: none of a later row reaches a partition ahead of the
///   refused one, which goes first when sent again.
///
/// The rows are read as "unpublished, by id" (never "id above the last one seen"), so a row
/// whose transaction committed after a higher id is not skipped; it is published on the next pass.
public final class OutboxRelay: Service, Sendable {
    public struct Options: Sendable {
        public var batchSize = 1000
        /// Batches sent and not yet reported at once: reading the next batch while the broker
        /// acknowledges the last keeps the producer busy.
        public var batchesInFlight = 4
        public var idleWait: Duration = .seconds(1)
        public var standbyWait: Duration = .seconds(1)
        public var maxBackoff: Duration = .seconds(5)
        public var retention: Duration = .seconds(7 * 24 * 3600)
        public var purgeInterval: Duration = .seconds(60)
        /// Rows moved out of the outbox between two vacuums by the relay itself. Until vacuumed,
        /// every read of unpublished rows steps over the index entries and heap pages of the
        /// rows already moved, about 0.2 µs each (20,000 of them: a read of 3.9 ms and 2,058
        /// buffers; after a vacuum 0.04 ms and 2). A vacuum costs about 5 ms plus 0.6 µs a row,
        /// so with a read every 10–20 rows moved, about a thousand rows is the cheapest interval
        /// (under the assists benchmark at 5,000 the notifications relay's reads averaged 0.6 ms).
        /// Autovacuum looks at a table at most once a minute, in which a busy service moves over
        /// 100,000 rows. Vacuumed after a read, and not while reads fill a batch (a backlog draining).
        public var vacuumAfter = 1_000
        public init() {}
    }

    private let service: String
    private let pool: PostgresPool
    private let producer: KafkaProducer
    private let metrics: ServiceMetrics?
    private let options: Options
    private let logger: Logger
    private let wake = WakeSignal()
    /// Wake-ups that said rows were committed, so far: the relay reads only when this moved (or
    /// its last read was a full batch, or `idleWait` passed), not on every wake-up.
    private let commitsAnnounced = Atomic<Int>(0)
    private let leader = Atomic<Bool>(false)

    public init(service: String, pool: PostgresPool, producer: KafkaProducer, metrics: ServiceMetrics? = nil,
                options: Options = Options(), logger: Logger = Logger(label: "fission.outbox")) {
        self.service = service
        self.pool = pool
        self.producer = producer
        self.metrics = metrics
        self.options = options
        self.logger = logger
    }

    /// Whether this relay currently holds the service's relay lock.
    public var isLeader: Bool { leader.load(ordering: .relaxed) }

    public func run() async throws {
        let listener = PostgresListener(configuration: pool.configuration, channels: [Outbox.channel], logger: logger)
        let wakeups = ChannelWakeups.forDatabase(pool.configuration)
        let following = wakeups.follow(Outbox.channel) { [self] _ in committed() }
        defer { wakeups.unfollow(Outbox.channel, following) }
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await listener.run() }
                group.addTask {
                    for await _ in listener.notifications { self.committed() }
                }
                group.addTask { await self.leadOrStandBy(wakeups) }
                // The relay loop ends only on cancellation; then stop the listener too.
                _ = await group.next()
                group.cancelAll()
            }
        }
        leader.store(false, ordering: .relaxed)
    }

    private func committed() {
        commitsAnnounced.add(1, ordering: .releasing)
        wake.signal()
    }

    private func leadOrStandBy(_ wakeups: ChannelWakeups) async {
        while !Task.isCancelled {
            do {
                let connection = try await PostgresConnection.connect(pool.configuration, logger: logger)
                defer { Task { await connection.close() } }
                while !Task.isCancelled {
                    let acquired = try await connection.query(
                        "SELECT pg_try_advisory_lock(hashtext(\("fission.outbox." + service))) AS acquired"
                    ).single().decode("acquired", as: Bool.self)
                    if acquired { break }
                    await wake.wait(timeout: options.standbyWait)
                }
                guard !Task.isCancelled else { return }
                leader.store(true, ordering: .relaxed)
                logger.info("outbox relay is active", metadata: ["service": "\(service)"])
                // Writes in this process wake this relay directly; only other processes notify.
                wakeups.serveLocally(Outbox.channel, true)
                defer {
                    wakeups.serveLocally(Outbox.channel, false)
                    // Writes here may have skipped their NOTIFY while this relay could no longer
                    // publish (its lock's connection gone): whoever leads now looks again.
                    wakeups.announce(Outbox.channel, payloads: [""])
                }
                try await publishWhileLeading(on: connection)
            } catch {
                leader.store(false, ordering: .relaxed)
                logger.warning("outbox relay lost its database connection; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Reads the next batch while earlier ones are in flight (up to `batchesInFlight`), and
    /// marks batches in the order they were sent. Each read is "the lowest unpublished rows not
    /// in flight", never "above the last id sent": a row whose transaction committed late has a
    /// lower id than rows already sent, and a later event of the same key can only have been
    /// written after it committed, so it is read no earlier than that row (per-key order holds).
    private func publishWhileLeading(on connection: PostgresConnection) async throws {
        var backoff: Duration = .milliseconds(100)
        var lastPurge = ContinuousClock.now
        var movedSinceVacuum = 0
        var inFlight: [(ids: [Int64], deliveries: KafkaDeliveries)] = []
        /// The lowest row whose record the broker refused within a batch, to be sent alone next.
        var sendAlone: Int64?
        /// When the last read was made and what it had seen; `nil`: read next.
        var lastRead: (commits: Int, at: ContinuousClock.Instant, full: Bool)?
        while !Task.isCancelled {
            if let alone = sendAlone, inFlight.isEmpty {
                if let failure = try await publishAlone(alone, on: connection) {
                    if Task.isCancelled { break }
                    logger.warning("outbox row not delivered alone; backing off", metadata: ["error": "\(failure)", "backoff": "\(backoff)"])
                    try await Task.sleep(for: backoff)
                    backoff = min(backoff * 2, options.maxBackoff)
                } else {
                    sendAlone = nil
                    backoff = .milliseconds(100)
                }
                lastRead = nil
                continue
            }
            // The oldest batch is marked once reported, and waited for only when as many are in
            // flight as allowed; until then rows committed meanwhile are read and sent at once.
            // (Waiting for the oldest batch's reports before reading again held every row
            // committed meanwhile for the rest of that wait and the mark.)
            guard let oldest = inFlight.first, oldest.deliveries.isReported || inFlight.count >= options.batchesInFlight else {
                let commits = commitsAnnounced.load(ordering: .acquiring)
                if let last = lastRead, last.commits == commits, !last.full, ContinuousClock.now - last.at < options.idleWait {
                    // Nothing committed since the last read: wait for a commit, the oldest batch's
                    // last report or the timer (a lost NOTIFY costs this wait, no more).
                    await wake.wait(timeout: options.idleWait)
                    continue
                }
                // Planned once, on the primary key whatever the statistics say: planned for each
                // execution, an outbox not analyzed since it filled (a backlog built up while the
                // broker was away, or a new service's first) was read by a sequential scan and a
                // sort of every row (`published_at IS NULL` is estimated at 0.5% of the rows without
                // statistics): 21 ms a read of 1,000 from 50,000 rows, against 3 ms on the key.
                let unpublished: PostgresQuery = """
                    SELECT id, topic, key, payload, headers FROM outbox
                    WHERE published_at IS NULL AND id NOT IN (SELECT unnest(\(inFlight.flatMap(\.ids))::int8[]))
                    ORDER BY id LIMIT \(options.batchSize)
                    """
                let rows = try await connection.query(unpublished.plannedOnce())
                let full = rows.count == options.batchSize
                lastRead = (commits, .now, full)
                if !rows.isEmpty {
                    var ids: [Int64] = []
                    var messages: [KafkaOutgoingMessage] = []
                    for row in rows {
                        ids.append(try row.decode("id"))
                        messages.append(try Self.message(from: row))
                    }
                    // Handed to the producer here, in read order, so a key's events reach their
                    // partition in id order whichever batch is acknowledged first. Behind the
                    // batches in flight: if the producer stopped on a gap among them and started
                    // again, these fail rather than overtake their rows, which go again first.
                    let deliveries = await producer.enqueue(messages, following: inFlight.last?.deliveries)
                    deliveries.whenReported { [wake] in wake.signal() }
                    inFlight.append((ids, deliveries))
                }
                // Not while a backlog drains (reads fill a batch): a vacuum scans every index
                // entry of the rows still waiting, so one per 1,000 rows moved made draining a
                // backlog quadratic (50,000 rows: 50 vacuums of 15–23 ms, most of the relay's
                // time). The reads do not need it meanwhile: the primary-key walk marks the moved
                // rows' entries dead, on pages no insert touches any more.
                if !full, movedSinceVacuum >= options.vacuumAfter {
                    movedSinceVacuum = 0
                    try await vacuum(on: connection)
                }
                if rows.isEmpty, inFlight.isEmpty {
                    metrics?.setOutboxBacklog(0)
                    if ContinuousClock.now - lastPurge > options.purgeInterval {
                        try await purge(on: connection)
                        lastPurge = .now
                    }
                }
                continue
            }
            let batch = inFlight.removeFirst()
            let marked = try await mark(batch, on: connection)
            if let failure = marked.failure {
                // Stopping while the broker is down: the rest is marked below, as far as reported.
                if Task.isCancelled { break }
                logger.warning(
                    "outbox rows not delivered; backing off",
                    metadata: ["error": "\(failure)", "backoff": "\(backoff)"])
                // Let what is in flight finish and be marked, then start again from the lowest
                // unpublished row after the pause (a row refused within a batch first, alone).
                sendAlone = marked.refusedInBatch
                for later in inFlight {
                    let refused = try await mark(later, on: connection).refusedInBatch
                    sendAlone = sendAlone ?? refused
                }
                inFlight.removeAll()
                lastRead = nil
                try await Task.sleep(for: backoff)
                backoff = min(backoff * 2, options.maxBackoff)
            } else {
                backoff = .milliseconds(100)
                movedSinceVacuum += batch.ids.count
            }
        }
        // Stopping: what was sent and reported is marked, so the next relay does not send it again
        // (what the broker has not acknowledged within the grace of `outcomes` is sent again).
        // The batches' reports are awaited together: a broker that is down costs one grace.
        let reports = await withTaskGroup(of: (Int, [Result<KafkaDeliveryReport, KafkaError>]).self) { group in
            for (index, batch) in inFlight.enumerated() { group.addTask { (index, await batch.deliveries.outcomes()) } }
            var reports = Array(repeating: [Result<KafkaDeliveryReport, KafkaError>](), count: inFlight.count)
            for await (index, outcomes) in group { reports[index] = outcomes }
            return reports
        }
        for (batch, outcomes) in zip(inFlight, reports) { _ = try await mark(batch.ids, outcomes, on: connection) }
    }

    /// The record a row of the outbox becomes.
    private static func message(from row: PostgresRow) throws -> KafkaOutgoingMessage {
        let headers = try row.decode("headers", as: PostgresStringMap.self).value
        return KafkaOutgoingMessage(
            topic: try row.decode("topic"), key: Array(try row.decode("key", as: String.self).utf8),
            value: Array(try row.decode("payload", as: String.self).utf8),
            headers: headers.sorted { $0.key < $1.key }.map { KafkaHeader(key: $0.key, value: $0.value) })
    }

    /// What marking a batch left undone: the first failure that may pass, and the lowest row whose
    /// record the broker refused within the batch.
    private struct Marked {
        var failure: KafkaError?
        var refusedInBatch: Int64?
    }

    /// Awaits a batch's delivery reports and marks the delivered rows.
    private func mark(_ batch: (ids: [Int64], deliveries: KafkaDeliveries), on connection: PostgresConnection) async throws -> Marked {
        try await mark(batch.ids, await batch.deliveries.outcomes(), on: connection)
    }

    /// Sends one row by itself (nothing else in flight) and marks it: published, dead-lettered if
    /// the broker refuses it alone, or the failure that may pass.
    private func publishAlone(_ id: Int64, on connection: PostgresConnection) async throws -> KafkaError? {
        let rows = try await connection.query("SELECT id, topic, key, payload, headers FROM outbox WHERE id = \(id) AND published_at IS NULL")
        guard let row = rows.first else { return nil }
        let outcomes = await producer.enqueue([try Self.message(from: row)]).outcomes()
        return try await mark([id], outcomes, on: connection, alone: true).failure
    }

    /// Marks the rows whose records were delivered and dead-letters those whose records were
    /// refused for what they are, judged alone (`alone`: the batch was this one record).
    private func mark(
        _ ids: [Int64], _ outcomes: [Result<KafkaDeliveryReport, KafkaError>], on connection: PostgresConnection, alone: Bool = false
    ) async throws -> Marked {
        var delivered: [Int64] = []
        var refused: [(id: Int64, error: KafkaError)] = []
        var marked = Marked()
        for (id, outcome) in zip(ids, outcomes) {
            switch outcome {
            case .success: delivered.append(id)
            case .failure(let error) where error.rejectsRecord && (alone || error.refusedBeforeSending): refused.append((id, error))
            case .failure(let error):
                marked.failure = marked.failure ?? error
                if error.rejectsRecord { marked.refusedInBatch = marked.refusedInBatch ?? id }
            }
        }
        if !refused.isEmpty { try await deadLetter(refused, on: connection) }
        if !delivered.isEmpty {
            // Moved to the archive: the outbox holds only what waits (see the migration
            // `0000_kit_outbox_published` for why not an update). Planned once: by key, at any
            // size of batch or table.
            let move: PostgresQuery = """
                WITH moved AS (DELETE FROM outbox WHERE id = ANY(\(delivered)) RETURNING *)
                INSERT INTO outbox_published (id, event_id, topic, key, event_type, payload, headers, created_at)
                SELECT id, event_id, topic, key, event_type, payload, headers, created_at FROM moved
                """
            try await connection.query(move.plannedOnce())
            metrics?.countOutboxPublished(delivered.count)
        }
        return marked
    }

    private func deadLetter(_ refused: [(id: Int64, error: KafkaError)], on connection: PostgresConnection) async throws {
        let ids = refused.map { $0.id }
        let rows = try await connection.query(
            """
            WITH moved AS (DELETE FROM outbox WHERE id = ANY(\(ids)) RETURNING *)
            INSERT INTO outbox_dead_letters (id, event_id, topic, key, event_type, payload, headers, created_at, error)
            SELECT moved.id, event_id, topic, key, event_type, payload, headers, created_at, refused.error
            FROM moved JOIN unnest(\(ids)::int8[], \(refused.map { $0.error.description })::text[]) AS refused (id, error)
                ON refused.id = moved.id
            RETURNING event_id, event_type, topic, error
            """)
        for row in rows {
            let (eventID, eventType, topic, error) = try (
                row.decode("event_id", as: UUID.self), row.decode("event_type", as: String.self),
                row.decode("topic", as: String.self), row.decode("error", as: String.self))
            logger.error(
                "outbox event refused by the broker; moved to outbox_dead_letters and never published",
                metadata: ["service": "\(service)", "event_id": "\(eventID.uuidString.lowercased())", "event_type": "\(eventType)", "topic": "\(topic)", "error": "\(error)"])
        }
        metrics?.countOutboxDeadLettered(rows.count)
    }

    /// `SKIP_LOCKED`: when autovacuum is at the table already, there is nothing to add.
    /// `TRUNCATE false`: giving empty pages at the end back to the file system takes a lock that
    /// stops every writer for a moment; the pages are reused, and autovacuum still truncates.
    private func vacuum(on connection: PostgresConnection) async throws {
        do {
            try await connection.query("VACUUM (SKIP_LOCKED, TRUNCATE false) outbox")
        } catch let error as PostgresError where error.sqlState != nil {
            // Refused by the server (a role that does not own the table, say): autovacuum remains.
            logger.warning("could not vacuum the outbox", metadata: ["error": "\(error)"])
        }
    }

    private func purge(on connection: PostgresConnection) async throws {
        let cutoff = Date().addingTimeInterval(-options.retention.inSeconds)
        // The outbox itself still holds rows a relay of the previous release marked published.
        let purged = try await connection.query("DELETE FROM outbox_published WHERE published_at < \(cutoff)").affectedRows
            + connection.query("DELETE FROM outbox WHERE published_at < \(cutoff)").affectedRows
        if purged > 0 {
            logger.info("purged published outbox rows", metadata: ["rows": "\(purged)"])
        }
    }
}
