import Domain
import FissionTesting
import Foundation
import Kafka
import Postgres
import ServiceKit
import Testing

@Suite("Outbox relay")
struct OutboxTests {
    struct RolledBack: Error {}

    @Test func fiveThousandEventsFromConcurrentTransactionsArriveExactlyOnceInPerKeyOrderAndRolledBackOnesNever() async throws {
        // A broker of its own: this test counts every record on the topic.
        let broker = try KafkaLocalBroker()
        try broker.createTopic(Topics.campaign.name, partitions: 8)
        try await withKitDatabase { pool in
            let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            var options = OutboxRelay.Options()
            options.vacuumAfter = 500
            let relay = OutboxRelay(service: "test", pool: pool, producer: producer, options: options)
            let relaying = Task { try await relay.run() }
            let recorder = TopicRecorder()
            try await recorder.start(bootstrap: broker.bootstrapServers, topic: Topics.campaign.name)

            let campaigns = (0..<50).map { _ in CampaignID() }
            let committed = try await withThrowingTaskGroup(of: [EventID].self) { group in
                for campaign in campaigns {
                    group.addTask {
                        var ids: [EventID] = []
                        var sequence = 0
                        for attempt in 0..<110 {
                            let event = stockReserved(campaign: campaign, sequence: sequence)
                            do {
                                try await pool.withTransaction { connection in
                                    try await Outbox.append(event, on: connection)
                                    if attempt % 11 == 10 { throw RolledBack() }
                                }
                                ids.append(event.id)
                                sequence += 1
                            } catch is RolledBack {}
                        }
                        return ids
                    }
                }
                return try await group.reduce(into: [EventID]()) { $0 += $1 }
            }
            #expect(committed.count == 5_000)

            let arrived = await eventually(timeout: .seconds(120)) { await recorder.messages.count >= 5_000 }
            #expect(arrived)
            try await Task.sleep(for: .milliseconds(500))
            let events = await recorder.events(StockReserved.self)
            #expect(events.count == 5_000, "every committed event exactly once, nothing else")
            #expect(Set(events.map(\.id)) == Set(committed))
            var lastByCampaign: [CampaignID: Int] = [:]
            for event in events {
                #expect(event.data.stockLeft == lastByCampaign[event.data.campaignId, default: -1] + 1, "per-key order")
                lastByCampaign[event.data.campaignId] = event.data.stockLeft
            }
            #expect(try await pool.query("SELECT count(*) AS c FROM outbox").single().decode("c", as: Int.self) == 0,
                    "published rows leave the outbox")
            let archived = try await pool.query("SELECT event_id FROM outbox_published").map { EventID(rawValue: try $0.decode("event_id")) }
            #expect(archived.count == 5_000 && Set(archived) == Set(committed), "each published event archived once")
            #expect(try await eventually {
                try await pool.query("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'outbox'").single()
                    .decode("vacuum_count", as: Int.self) > 0
            }, "the relay vacuums the outbox as it empties it")
            await recorder.stop()
            relaying.cancel()
            _ = await relaying.result
            await producer.shutdown()
        }
    }

    /// One event relayed, 200 appended while the broker is down for 4 s (checked to be waiting,
    /// unpublished), then the broker back: the `stockLeft` of every event the topic received, in
    /// order, once each of the 201 has arrived.
    func relayedThroughAnOutage(messageTimeoutMilliseconds: Int) async throws -> [Int] {
        let broker = try KafkaLocalBroker()
        try broker.createTopic(Topics.campaign.name, partitions: 4)
        return try await withKitDatabase { pool in
            var configuration = KafkaProducerConfiguration(bootstrapServers: broker.bootstrapServers)
            configuration.messageTimeoutMilliseconds = messageTimeoutMilliseconds
            let producer = try KafkaProducer(configuration: configuration)
            let relay = OutboxRelay(service: "test", pool: pool, producer: producer)
            let relaying = Task { try await relay.run() }
            let campaign = CampaignID()
            try await pool.withTransaction { try await Outbox.append(stockReserved(campaign: campaign, sequence: 0), on: $0) }
            #expect(try await eventually {
                try await pool.query("SELECT count(*) AS c FROM outbox WHERE published_at IS NULL").single().decode("c", as: Int.self) == 0
            })

            broker.setDown(true)
            for sequence in 1...200 {
                try await pool.withTransaction { try await Outbox.append(stockReserved(campaign: campaign, sequence: sequence), on: $0) }
            }
            try await Task.sleep(for: .seconds(4))
            let waiting = try await pool.query("SELECT count(*) AS c FROM outbox WHERE published_at IS NULL").single()
            #expect(try waiting.decode("c", as: Int.self) == 200)
            broker.setDown(false)

            let recorder = TopicRecorder()
            try await recorder.start(bootstrap: broker.bootstrapServers, topic: Topics.campaign.name)
            #expect(await eventually(timeout: .seconds(90)) { Set(await recorder.events(StockReserved.self).map(\.data.stockLeft)).count == 201 })
            // Time for anything sent twice to arrive too.
            try await Task.sleep(for: .milliseconds(500))
            let sequences = await recorder.events(StockReserved.self).map(\.data.stockLeft)
            await recorder.stop()
            relaying.cancel()
            _ = await relaying.result
            await producer.shutdown()
            return sequences
        }
    }

    /// With a message timeout shorter than the outage, sends fail and the relay backs off and
    /// sends again: nothing is lost, though a record may come twice (the consuming inbox makes
    /// that harmless).
    @Test func appendsKeepSucceedingWhileTheBrokerIsDownAndEverythingArrivesAfter() async throws {
        #expect(Set(try await relayedThroughAnOutage(messageTimeoutMilliseconds: 3_000)) == Set(0...200))
    }

    /// As the services run it (records never time out): during the outage the rows wait, in
    /// flight and unmarked; once the broker is back every event arrives once, in order.
    @Test func anOutageDelaysButNeverReordersOrRepeats() async throws {
        #expect(try await relayedThroughAnOutage(messageTimeoutMilliseconds: 0) == Array(0...200))
    }

    /// A relay stopped during an outage does not wait for the broker: the rows it had sent stay
    /// unpublished, for the next relay to send.
    @Test func aRelayStopsDuringAnOutageAndLeavesItsRowsToTheNext() async throws {
        let broker = try KafkaLocalBroker()
        try broker.createTopic(Topics.campaign.name, partitions: 4)
        try await withKitDatabase { pool in
            var configuration = KafkaProducerConfiguration(bootstrapServers: broker.bootstrapServers)
            configuration.messageTimeoutMilliseconds = 0
            let producer = try KafkaProducer(configuration: configuration)
            let relay = OutboxRelay(service: "test", pool: pool, producer: producer)
            let relaying = Task { try await relay.run() }
            #expect(await eventually { relay.isLeader })
            broker.setDown(true)
            defer { broker.setDown(false) }
            let campaign = CampaignID()
            for sequence in 1...10 {
                try await pool.withTransaction { try await Outbox.append(stockReserved(campaign: campaign, sequence: sequence), on: $0) }
            }
            try await Task.sleep(for: .seconds(1))
            // Without the grace on a cancelled wait, this would wait for the broker forever.
            relaying.cancel()
            _ = await relaying.result
            let waiting = try await pool.query("SELECT count(*) AS c FROM outbox WHERE published_at IS NULL").single()
            #expect(try waiting.decode("c", as: Int.self) == 10)
            await producer.shutdown(deadline: .milliseconds(100))
        }
    }

    /// A relay idle for 30 s at a time is woken by a committed write, never by a rolled-back one.
    /// A write in the relay's own process wakes it directly, with no `NOTIFY` (one in the writing
    /// transaction serializes the server's commits); a write in another process (a pool whose
    /// configuration differs, as another process's wake-ups would) wakes it by `NOTIFY`.
    @Test func committedWritesWakeTheIdleRelayDirectlyHereAndByNotifyFromElsewhere() async throws {
        let broker = try KafkaLocalBroker()
        try broker.createTopic(Topics.campaign.name, partitions: 2)
        try await withKitDatabase { pool in
            var options = OutboxRelay.Options()
            options.idleWait = .seconds(30)
            let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            let relay = OutboxRelay(service: "test", pool: pool, producer: producer, options: options)
            let relaying = Task { try await relay.run() }
            let overheard = PostgresListener(configuration: pool.configuration, channels: [Outbox.channel])
            let listening = Task { try await overheard.run() }
            let heard = Task { await overheard.notifications.first { _ in true } }
            #expect(await eventually { relay.isLeader })
            try await Task.sleep(for: .seconds(1))
            func waiting() async throws -> Int {
                try await pool.query("SELECT count(*) AS c FROM outbox").single().decode("c", as: Int.self)
            }
            let campaign = CampaignID()

            await #expect(throws: RolledBack.self) {
                try await pool.withTransaction { connection in
                    try await Outbox.append(stockReserved(campaign: campaign, sequence: 0), on: connection)
                    throw RolledBack()
                }
            }
            try await pool.withTransaction { try await Outbox.append(stockReserved(campaign: campaign, sequence: 1), on: $0) }
            #expect(try await eventually(timeout: .seconds(10)) { try await waiting() == 0 }, "published well before the idle wait ends")
            // A probe, so that hearing it first shows the listener was listening all along.
            try await pool.query("SELECT pg_notify(\(Outbox.channel), 'probe')")
            #expect(await heard.value?.payload == "probe", "no NOTIFY from the relay's own process")
            listening.cancel()
            _ = await listening.result

            var elsewhere = pool.configuration
            elsewhere.parameters["application_name"] = "another-process"
            let otherPool = PostgresPool(configuration: elsewhere, options: .init(maxConnections: 2))
            try await Task.sleep(for: .seconds(1))
            try await otherPool.withTransaction { try await Outbox.append(stockReserved(campaign: campaign, sequence: 2), on: $0) }
            #expect(try await eventually(timeout: .seconds(10)) { try await waiting() == 0 }, "woken by NOTIFY")
            let published = try await pool.query("SELECT count(*) AS c FROM outbox_published").single().decode("c", as: Int.self)
            #expect(published == 2)
            await otherPool.close()
            relaying.cancel()
            _ = await relaying.result
            await producer.shutdown()
        }
    }

    /// Rows committed while a batch waits for the broker's acknowledgement are sent at once, not
    /// after that batch is acknowledged and marked. With 3 s added to every broker response, the
    /// second row is marked well under 3 s after the first, beyond the time between their writes
    /// (it was in flight alongside it); sent only after the first was marked, it would have been
    /// about 3 s.
    @Test func rowsCommittedWhileABatchAwaitsItsAcknowledgementAreSentAlongsideIt() async throws {
        let broker = try KafkaLocalBroker()
        try broker.createTopic(Topics.campaign.name, partitions: 2)
        try await withKitDatabase { pool in
            let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            let relay = OutboxRelay(service: "test", pool: pool, producer: producer)
            let relaying = Task { try await relay.run() }
            #expect(await eventually { relay.isLeader })
            // Warm: metadata and the producer id are fetched before the round trips slow down.
            let campaign = CampaignID()
            try await pool.withTransaction { try await Outbox.append(stockReserved(campaign: campaign, sequence: 0), on: $0) }
            #expect(try await eventually(timeout: .seconds(30)) {
                try await pool.query("SELECT count(*) AS c FROM outbox").single().decode("c", as: Int.self) == 0
            })

            broker.setRoundTripTime(milliseconds: 3000)
            let first = stockReserved(campaign: campaign, sequence: 1), second = stockReserved(campaign: campaign, sequence: 2)
            try await pool.withTransaction { try await Outbox.append(first, on: $0) }
            try await Task.sleep(for: .milliseconds(300))
            try await pool.withTransaction { try await Outbox.append(second, on: $0) }
            #expect(try await eventually(timeout: .seconds(30)) {
                try await pool.query("SELECT count(*) AS c FROM outbox").single().decode("c", as: Int.self) == 0
            })
            // Beyond the time between the two writes (0.3 s, more on a busy machine: a CI run once
            // saw the marks 2.54 s apart, with everything slowed down).
            let apart = try await pool.query(
                """
                SELECT extract(epoch FROM (second.published_at - first.published_at) - (second.created_at - first.created_at))::float8 AS apart
                FROM outbox_published AS first, outbox_published AS second
                WHERE first.event_id = \(first.id.rawValue) AND second.event_id = \(second.id.rawValue)
                """).single().decode("apart", as: Double.self)
            #expect(apart < 2.5, "the second row was marked \(apart) s after the first, beyond the time between their writes")
            broker.setRoundTripTime(milliseconds: 0)
            relaying.cancel()
            _ = await relaying.result
            await producer.shutdown()
        }
    }

    /// A backlog committed before the relay starts, in an outbox never analyzed (a new service, or
    /// rows piled up while the broker was away): the relay walks the primary key rather than
    /// scanning and sorting every waiting row for each batch, and vacuums once it has caught up,
    /// not after every 1,000 rows while the backlog drains (each vacuum scans every waiting row's
    /// index entries).
    @Test func aBacklogIsReadOnThePrimaryKeyAndVacuumedOnceCaughtUp() async throws {
        let broker = try KafkaLocalBroker()
        try broker.createTopic(Topics.campaign.name, partitions: 4)
        try await withKitDatabase { pool in
            // Autovacuum kept off this table: its threshold (2,000 rows) is passed while the backlog
            // drains, and the relay's VACUUM (SKIP_LOCKED) then rightly steps aside, leaving the
            // relay's own vacuum uncounted (CI saw that once). It would also analyze the table,
            // which this test means to be never analyzed.
            try await pool.query("ALTER TABLE outbox SET (autovacuum_enabled = false)")
            let campaign = CampaignID()
            for chunk in stride(from: 0, to: 6_000, by: 500) {
                let records = try (chunk..<chunk + 500).map { try Outbox.Record(stockReserved(campaign: campaign, sequence: $0)) }
                try await pool.withConnection { try await Outbox.append(records, on: $0) }
            }
            func outboxStatistics() async throws -> (sequentialScans: Int, indexScans: Int, vacuums: Int) {
                let row = try await pool.query(
                    "SELECT seq_scan, idx_scan, vacuum_count FROM pg_stat_user_tables WHERE relname = 'outbox'").single()
                return (try row.decode("seq_scan"), try row.decode("idx_scan"), try row.decode("vacuum_count"))
            }
            let before = try await outboxStatistics()
            var options = OutboxRelay.Options()
            // Idle reads keep coming, so the relay's backend reports its statistics (at most once a
            // second, at a transaction's end).
            options.idleWait = .milliseconds(200)
            let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            let relay = OutboxRelay(service: "test", pool: pool, producer: producer, options: options)
            let relaying = Task { try await relay.run() }
            // Counted in the archive: a count of the outbox would scan it.
            #expect(try await eventually(timeout: .seconds(60)) {
                try await pool.query("SELECT count(*) AS c FROM outbox_published").single().decode("c", as: Int.self) == 6_000
            })
            // Six batches read and moved by key (twelve index scans at least, and a read that found
            // the outbox drained) have reached the statistics, and the vacuum once caught up.
            #expect(try await eventually(timeout: .seconds(30)) {
                let now = try await outboxStatistics()
                return now.vacuums > before.vacuums && now.indexScans - before.indexScans >= 13
            }, "vacuumed once caught up")
            let after = try await outboxStatistics()
            #expect(after.sequentialScans == before.sequentialScans, "no read scanned the outbox")
            #expect(after.vacuums - before.vacuums < 6, "\(after.vacuums - before.vacuums) vacuums: not one per 1,000 rows drained")
            relaying.cancel()
            _ = await relaying.result
            await producer.shutdown()
        }
    }

    /// A record the producer refuses for its size would be refused on every pass: its row moves to
    /// the dead letters with the reason, and the events after it, of its aggregate and others, go on.
    @Test func aRecordRefusedForWhatItIsIsDeadLetteredAndTheRestGoOn() async throws {
        let broker = try KafkaLocalBroker()
        try broker.createTopic(Topics.campaign.name, partitions: 4)
        try await withKitDatabase { pool in
            let campaign = CampaignID()
            var events = (0..<5).map { stockReserved(campaign: campaign, sequence: $0) }
            events[2].data.userId = UserID(rawValue: String(repeating: "u", count: 5_000))
            for event in events {
                try await pool.withTransaction { try await Outbox.append(event, on: $0) }
            }
            var configuration = KafkaProducerConfiguration(bootstrapServers: broker.bootstrapServers)
            configuration.messageTimeoutMilliseconds = 0
            configuration.properties = ["message.max.bytes": "3000"]
            let producer = try KafkaProducer(configuration: configuration)
            let metrics = ServiceMetrics()
            let relay = OutboxRelay(service: "test", pool: pool, producer: producer, metrics: metrics)
            let relaying = Task { try await relay.run() }
            let recorder = TopicRecorder()
            try await recorder.start(bootstrap: broker.bootstrapServers, topic: Topics.campaign.name)

            #expect(await eventually { await recorder.events(StockReserved.self).count >= 4 })
            #expect(try await eventually {
                try await pool.query("SELECT count(*) AS c FROM outbox").single().decode("c", as: Int.self) == 0
            }, "nothing left waiting")
            try await Task.sleep(for: .milliseconds(500))
            #expect(await recorder.events(StockReserved.self).map(\.data.stockLeft) == [0, 1, 3, 4], "the rest in order, once")
            let dead = try await pool.query("SELECT event_id, payload, error FROM outbox_dead_letters")
            #expect(dead.count == 1)
            #expect(try dead.first?.decode("event_id", as: UUID.self) == events[2].id.rawValue)
            #expect(try dead.first?.decode("payload", as: String.self).contains(String(repeating: "u", count: 5_000)) == true, "kept whole")
            #expect(try dead.first?.decode("error", as: String.self).contains("MSG_SIZE_TOO_LARGE") == true)
            #expect(metrics.render().contains("outbox_dead_lettered_total 1"))
            let published = try await pool.query("SELECT count(*) AS c FROM outbox_published").single().decode("c", as: Int.self)
            #expect(published == 4)
            relaying.cancel()
            _ = await relaying.result
            await producer.shutdown()

            // The operator's view, then the cause mended (the default size limit) and the event requeued.
            let command = try builtProduct("fission").path
            let url = pool.configuration.url
            let listed = try await ChildProcess.execute(command, ["outbox", "dead-letters", "--database-url", url], timeLimit: .seconds(60))
            #expect(listed.status == 0 && listed.output.contains(events[2].id.description) && listed.output.contains("MSG_SIZE_TOO_LARGE"),
                    "\(listed.output)\(listed.errors)")
            let unknown = try await ChildProcess.execute(
                command, ["outbox", "requeue", "--database-url", url, "--event-id", events[2].id.description, "--event-id", UUID().uuidString],
                timeLimit: .seconds(60))
            #expect(unknown.status != 0 && unknown.errors.split(separator: "\n").count == 1 && unknown.errors.hasPrefix("fission outbox requeue:"),
                    "\(unknown.errors)")
            #expect(try await OutboxDeadLetters.list(on: pool).count == 1, "an unknown id requeues nothing")
            let requeued = try await ChildProcess.execute(
                command, ["outbox", "requeue", "--database-url", url, "--event-id", events[2].id.description], timeLimit: .seconds(60))
            #expect(requeued.status == 0 && requeued.output.hasPrefix("requeued 1 event"), "\(requeued.output)\(requeued.errors)")

            let mended = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            let mendedRelay = OutboxRelay(service: "test", pool: pool, producer: mended)
            let relayingAgain = Task { try await mendedRelay.run() }
            #expect(await eventually { await recorder.events(StockReserved.self).count >= 5 })
            try await Task.sleep(for: .milliseconds(500))
            #expect(await recorder.events(StockReserved.self).map(\.data.stockLeft) == [0, 1, 3, 4, 2], "requeued behind what was published")
            #expect(try await OutboxDeadLetters.list(on: pool).isEmpty)
            await recorder.stop()
            relayingAgain.cancel()
            _ = await relayingAgain.result
            await mended.shutdown()
        }
    }

    /// A relay over `count` waiting rows whose producer's next requests the broker answers with
    /// `errorCodes` (Kafka error codes), with what it published so far and its rows' events.
    ///
    /// Each of the relay's batches goes as one request (a linger of a second). Split into two
    /// under load, the local broker stored the second although the first was refused: it does not
    /// check the idempotent producer's sequence numbers, where Kafka refuses a request that
    /// follows a gap (OUT_OF_ORDER_SEQUENCE_NUMBER) and the producer, stopped by the gap, fails it.
    func relayFacingRefusals(
        _ errorCodes: [Int32], rows count: Int,
        _ body: (PostgresPool, [CloudEvent<StockReserved>], TopicRecorder) async throws -> Void
    ) async throws {
        let broker = try KafkaLocalBroker()
        try broker.createTopic(Topics.campaign.name, partitions: 1)
        try await withKitDatabase { pool in
            let campaign = CampaignID()
            var configuration = KafkaProducerConfiguration(bootstrapServers: broker.bootstrapServers)
            configuration.messageTimeoutMilliseconds = 0
            configuration.lingerMilliseconds = 1_000
            let producer = try KafkaProducer(configuration: configuration)
            // Connected first, so that the refusals meet the relay's requests, not a warm-up.
            try await producer.send(KafkaOutgoingMessage(topic: Topics.campaign.name, key: "warm-up", value: Array("{}".utf8)))
            let events = (0..<count).map { stockReserved(campaign: campaign, sequence: $0) }
            for event in events {
                try await pool.withTransaction { try await Outbox.append(event, on: $0) }
            }
            broker.injectRequestErrors(apiKey: 0, errorCodes: errorCodes)  // 0: Produce
            let relay = OutboxRelay(service: "test", pool: pool, producer: producer)
            let relaying = Task { try await relay.run() }
            let recorder = TopicRecorder()
            try await recorder.start(bootstrap: broker.bootstrapServers, topic: Topics.campaign.name)
            try await body(pool, events, recorder)
            await recorder.stop()
            relaying.cancel()
            _ = await relaying.result
            await producer.shutdown()
        }
    }

    /// The broker refuses a whole batch for one record (or for the batch's size): a refusal in a
    /// batch dead-letters nothing; the producer, stopped by the gap, starts again; the lowest
    /// refused row is sent alone and, taken alone, goes through, and so does the rest, in order.
    @Test func aBatchTheBrokerRefusesIsSentAgainRowByRowNotDeadLettered() async throws {
        // MESSAGE_TOO_LARGE (10) once: the batch's request.
        try await relayFacingRefusals([10], rows: 5) { pool, _, recorder in
            #expect(await eventually { await recorder.events(StockReserved.self).count >= 5 })
            try await Task.sleep(for: .milliseconds(500))
            let published = await recorder.events(StockReserved.self).map(\.data.stockLeft)
            #expect(published == [0, 1, 2, 3, 4])
            #expect(try await OutboxDeadLetters.list(on: pool).isEmpty, "nothing dead-lettered for a batch's refusal")
        }
    }

    /// A row the broker refuses even alone is dead-lettered; each refusal stopped the producer,
    /// which starts again each time, and the rows after it go through in order.
    @Test func aRowTheBrokerRefusesAloneIsDeadLetteredAndTheRestFollowInOrder() async throws {
        // MESSAGE_TOO_LARGE (10) twice: the batch's request, then the lowest row's alone.
        try await relayFacingRefusals([10, 10], rows: 4) { pool, events, recorder in
            #expect(await eventually { await recorder.events(StockReserved.self).count >= 3 })
            try await Task.sleep(for: .milliseconds(500))
            let published = await recorder.events(StockReserved.self).map(\.data.stockLeft)
            #expect(published == [1, 2, 3])
            let dead = try await OutboxDeadLetters.list(on: pool)
            #expect(dead.map(\.eventID) == [events[0].id.rawValue])
            #expect(dead.first?.error.contains("MSG_SIZE_TOO_LARGE") == true, "\(dead)")
        }
    }

    /// A relay of the previous release marked rows published in place; during a rolling deploy
    /// the new relay must not send those again, and the purge clears them and the archive alike.
    @Test func rowsMarkedPublishedInPlaceAreNotSentAgainAndOldRowsArePurgedFromBothTables() async throws {
        let broker = try KafkaLocalBroker()
        try broker.createTopic(Topics.campaign.name, partitions: 4)
        try await withKitDatabase { pool in
            let campaign = CampaignID()
            for sequence in 0..<3 {
                try await pool.withTransaction { try await Outbox.append(stockReserved(campaign: campaign, sequence: sequence), on: $0) }
            }
            // Event 0 was published by the previous release two hours ago; an archived event is as old.
            try await pool.query("UPDATE outbox SET published_at = now() - interval '2 hours' WHERE id = (SELECT min(id) FROM outbox)")
            try await pool.query(
                """
                INSERT INTO outbox_published (id, event_id, topic, key, event_type, payload, headers, created_at, published_at)
                VALUES (0, \(UUID()), 'old', 'old', 'old', '{}', '{}', now() - interval '3 hours', now() - interval '2 hours')
                """)
            var options = OutboxRelay.Options()
            options.retention = .seconds(3600)
            options.purgeInterval = .milliseconds(100)
            options.idleWait = .milliseconds(100)
            let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            let relay = OutboxRelay(service: "test", pool: pool, producer: producer, options: options)
            let relaying = Task { try await relay.run() }
            let recorder = TopicRecorder()
            try await recorder.start(bootstrap: broker.bootstrapServers, topic: Topics.campaign.name)

            #expect(try await eventually {
                try await pool.query(
                    "SELECT (SELECT count(*) FROM outbox) + (SELECT count(*) FROM outbox_published WHERE topic = 'old') AS c"
                ).single().decode("c", as: Int.self) == 0
            }, "old rows purged from the outbox and the archive")
            #expect(await eventually { await recorder.events(StockReserved.self).count >= 2 })
            try await Task.sleep(for: .milliseconds(500))
            #expect(await recorder.events(StockReserved.self).map(\.data.stockLeft) == [1, 2], "the row published in place is not sent again")
            let history = try await pool.query("SELECT count(*) AS c FROM outbox_history").single().decode("c", as: Int.self)
            #expect(history == 2, "the two events this relay published, kept for the retention period")
            await recorder.stop()
            relaying.cancel()
            _ = await relaying.result
            await producer.shutdown()
        }
    }

    /// Upgrading a database whose outbox still holds rows an older relay marked published in
    /// place: the migration that drops the index of unpublished rows moves them to the archive
    /// (the relay's read by primary key would step over them), and leaves waiting rows alone.
    @Test func rowsPublishedInPlaceMoveToTheArchiveWhenTheUnpublishedIndexGoes() async throws {
        try await withTestPool { pool in
            let last = "0000_kit_outbox_unpublished_only"
            _ = try await Migrator(migrations: KitMigrations.all.filter { $0.version != last }).migrate(pool)
            let campaign = CampaignID()
            let events = (0..<3).map { stockReserved(campaign: campaign, sequence: $0) }
            for event in events {
                try await pool.withTransaction { try await Outbox.append(event, on: $0) }
            }
            try await pool.query("UPDATE outbox SET published_at = now() WHERE event_id = ANY(\([events[0].id.rawValue, events[1].id.rawValue]))")

            let report = try await Migrator(migrations: KitMigrations.all).migrate(pool)
            #expect(report.applied == [last])
            let waiting = try await pool.query("SELECT event_id FROM outbox").map { try $0.decode("event_id", as: UUID.self) }
            #expect(waiting == [events[2].id.rawValue])
            let archived = try await pool.query("SELECT event_id FROM outbox_published WHERE published_at IS NOT NULL ORDER BY id")
                .map { try $0.decode("event_id", as: UUID.self) }
            #expect(archived == [events[0].id.rawValue, events[1].id.rawValue])
            let indexes = try await pool.query("SELECT indexname FROM pg_indexes WHERE tablename = 'outbox' ORDER BY 1")
                .map { try $0.decode("indexname", as: String.self) }
            #expect(indexes == ["outbox_event_id_key", "outbox_pkey", "outbox_published_at"])
        }
    }

    @Test func twoRelaysNeverBothPublish() async throws {
        let broker = try KafkaLocalBroker()
        try broker.createTopic(Topics.campaign.name, partitions: 4)
        try await withKitDatabase { pool in
            // Two relays as two deployments would run them: each its own pool and producer.
            let otherPool = PostgresPool(configuration: pool.configuration, options: .init(maxConnections: 4))
            let producers = try (0..<2).map { _ in
                try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            }
            let relays = [
                OutboxRelay(service: "test", pool: pool, producer: producers[0]),
                OutboxRelay(service: "test", pool: otherPool, producer: producers[1]),
            ]
            let running = relays.map { relay in Task { try await relay.run() } }
            let recorder = TopicRecorder()
            try await recorder.start(bootstrap: broker.bootstrapServers, topic: Topics.campaign.name)

            var leaders: Set<Int> = []
            let campaign = CampaignID()
            for sequence in 0..<1_000 {
                try await pool.withTransaction { try await Outbox.append(stockReserved(campaign: campaign, sequence: sequence), on: $0) }
                let active = relays.indices.filter { relays[$0].isLeader }
                #expect(active.count <= 1, "both relays active at once")
                leaders.formUnion(active)
                if sequence == 500, let leader = active.first {
                    // The active relay stops; the standby takes over.
                    running[leader].cancel()
                    _ = await running[leader].result
                }
            }
            #expect(await eventually(timeout: .seconds(60)) { await recorder.events(StockReserved.self).count >= 1_000 })
            try await Task.sleep(for: .milliseconds(500))
            let sequences = await recorder.events(StockReserved.self).map(\.data.stockLeft)
            #expect(sequences == Array(0..<1_000), "each event once, in order, across the hand-over")
            #expect(leaders.count == 2, "the standby should have taken over")
            await recorder.stop()
            running.forEach { $0.cancel() }
            for task in running { _ = await task.result }
            for producer in producers { await producer.shutdown() }
            await otherPool.close()
        }
    }
}
