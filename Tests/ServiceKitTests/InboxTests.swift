import Domain
import FissionTesting
import Foundation
import Kafka
import Postgres
@testable import ServiceKit
import Synchronization
import Testing

@Suite("Inbox consumer")
struct InboxTests {
    struct Flaky: Error, CustomStringConvertible {
        var description: String { "flaky handler failure" }
    }

    /// A consumer on its own topic, group and dead-letter topic, recording effects in `effects`.
    struct Fixture {
        let pool: PostgresPool
        let topic: String
        let group: String
        let bootstrap: String
        let producer: KafkaProducer
        let metrics: ServiceMetrics

        func send(_ value: [UInt8], key: String, type: String?, id: String? = nil) async throws {
            var headers: [KafkaHeader] = []
            if let type { headers.append(KafkaHeader(key: "ce_type", value: type)) }
            if let id { headers.append(KafkaHeader(key: "ce_id", value: id)) }
            try await producer.send(KafkaOutgoingMessage(topic: topic, key: Array(key.utf8), value: value, headers: headers))
        }

        func send(_ event: CloudEvent<StockReserved>) async throws {
            try await send(try EventCoding.encode(event), key: event.subject, type: event.type, id: event.id.description)
        }

        func effects() async throws -> [Int] {
            try await pool.query("SELECT stock_left FROM effects ORDER BY id").map { try $0.decode("stock_left", as: Int.self) }
        }
    }

    func withInbox(
        partitions: Int32 = 1, concurrentPartitions: Int = 1,
        handler: @escaping @Sendable (CloudEvent<StockReserved>, PostgresConnection) async throws -> Void,
        _ body: (Fixture) async throws -> Void
    ) async throws {
        try await withKitDatabase { pool in
            try await pool.query("CREATE TABLE effects (id bigserial PRIMARY KEY, event_id uuid NOT NULL, stock_left int NOT NULL)")
            let topic = try await TestKafka.shared.createTopic(prefix: "inbox", partitions: partitions)
            let group = "inbox-\(UUID().uuidString.prefix(8))"
            try await TestKafka.shared.createTopic(named: Topics.deadLetter(of: group), partitions: 1)
            let bootstrap = try await TestKafka.shared.bootstrapServers()
            let producer = try KafkaProducer(configuration: try await TestKafka.shared.producerConfiguration())
            let metrics = ServiceMetrics()
            var options = InboxConsumer.Options()
            options.maxAttempts = 3
            options.firstBackoff = .milliseconds(10)
            options.concurrentPartitions = concurrentPartitions
            let inbox = try InboxConsumer(
                consumer: try await TestKafka.shared.consumerConfiguration(group: group, topics: [topic]), pool: pool,
                deadLetterProducer: producer,
                handlers: [.on(StockReserved.self) { event, connection in
                    try await handler(event, connection)
                    try await connection.query(
                        "INSERT INTO effects (event_id, stock_left) VALUES (\(event.id.rawValue), \(event.data.stockLeft))")
                }],
                metrics: metrics, options: options)
            let running = Task { try await inbox.run() }
            try await body(Fixture(pool: pool, topic: topic, group: group, bootstrap: bootstrap, producer: producer, metrics: metrics))
            running.cancel()
            _ = await running.result
            await producer.shutdown()
        }
    }

    @Test func everyLaneGetsOneOfATopicsPartitionsWhenThereAreAsManyAndTopicsStartApart() {
        for topic in Topics.all {
            let lanes = (0..<topic.partitions).map { InboxConsumer.lane(topic: topic.name, partition: $0, among: Int(topic.partitions)) }
            #expect(Set(lanes).count == Int(topic.partitions), "\(topic.name) → \(lanes)")
        }
        let singlePartitionLanes = Set(ServiceName.allCases.map { InboxConsumer.lane(topic: Topics.deadLetter(of: $0.rawValue), partition: 0, among: 8) })
        #expect(singlePartitionLanes.count > 1, "one-partition topics should not all share one lane")
    }

    /// A batched handler gets each run of consecutive events of its type as one call, in offset
    /// order, each event once however often it was delivered; other types between them split
    /// the runs and keep their place.
    @Test func aBatchedHandlerGetsConsecutiveEventsAsRunsInOrderAndEachOnce() async throws {
        try await withKitDatabase { pool in
            try await pool.query("CREATE TABLE effects (id bigserial PRIMARY KEY, what text NOT NULL, run int NOT NULL)")
            let topic = try await TestKafka.shared.createTopic(prefix: "runs", partitions: 1)
            let group = "runs-\(UUID().uuidString.prefix(8))"
            try await TestKafka.shared.createTopic(named: Topics.deadLetter(of: group), partitions: 1)
            let producer = try KafkaProducer(configuration: try await TestKafka.shared.producerConfiguration())
            let campaign = CampaignID()
            // Everything is on the topic before the consumer starts, so its batches are full.
            var expected: [String] = []
            for sequence in 0..<60 {
                if sequence % 20 == 19 {
                    let released = CloudEvent(StockReleased(campaignId: campaign, orderId: OrderID(), quantity: 1, stockLeft: sequence))
                    try await producer.send(KafkaOutgoingMessage(
                        topic: topic, key: Array(released.subject.utf8), value: try EventCoding.encode(released),
                        headers: [KafkaHeader(key: "ce_type", value: released.type)]))
                    expected.append("released \(sequence)")
                    continue
                }
                let reserved = stockReserved(campaign: campaign, sequence: sequence)
                for _ in 0..<(sequence % 7 == 3 ? 2 : 1) {
                    try await producer.send(KafkaOutgoingMessage(
                        topic: topic, key: Array(reserved.subject.utf8), value: try EventCoding.encode(reserved),
                        headers: [KafkaHeader(key: "ce_type", value: reserved.type)]))
                }
                expected.append("reserved \(sequence)")
            }
            let runs = Mutex(0)
            let inbox = try InboxConsumer(
                consumer: try await TestKafka.shared.consumerConfiguration(group: group, topics: [topic]), pool: pool,
                deadLetterProducer: producer,
                handlers: [
                    .on(StockReserved.self, batched: { events, connection in
                        let run = runs.withLock { $0 += 1; return $0 }
                        for event in events {
                            try await connection.query("INSERT INTO effects (what, run) VALUES (\("reserved \(event.data.stockLeft)"), \(run))")
                        }
                    }),
                    .on(StockReleased.self) { event, connection in
                        try await connection.query("INSERT INTO effects (what, run) VALUES (\("released \(event.data.stockLeft)"), 0)")
                    },
                ])
            let running = Task { try await inbox.run() }
            #expect(try await eventually(timeout: .seconds(60)) {
                try await pool.query("SELECT count(*)::int8 AS n FROM effects").single().decode("n", as: Int.self) >= expected.count
            })
            try await Task.sleep(for: .milliseconds(300))
            let effects = try await pool.query("SELECT what, run FROM effects ORDER BY id").map {
                (try $0.decode("what", as: String.self), try $0.decode("run", as: Int.self))
            }
            #expect(effects.map(\.0) == expected, "each event once, in offset order")
            let biggestRun = Dictionary(grouping: effects.filter { $0.1 > 0 }, by: \.1).values.map(\.count).max() ?? 0
            #expect(biggestRun > 1, "consecutive events of a batch should arrive as one run")
            running.cancel()
            _ = await running.result
            await producer.shutdown()
        }
    }

    @Test func concurrentPartitionsKeepEachAggregatesEventsInOrderAndHandleEachOnce() async throws {
        // 8 aggregates over 4 partitions, handled by 4 lanes with uneven handler times.
        try await withInbox(partitions: 4, concurrentPartitions: 4, handler: { _, _ in
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...4)))
        }) { fixture in
            let campaigns = (0..<8).map { _ in CampaignID() }
            var sent: [CloudEvent<StockReserved>] = []
            for sequence in 1...6 {
                for (index, campaign) in campaigns.enumerated() {
                    sent.append(stockReserved(campaign: campaign, sequence: index * 100 + sequence))
                    try await fixture.send(sent.last!)
                }
            }
            // A redelivery after the rest is still one effect.
            try await fixture.send(sent[20])
            #expect(await eventually { (try? await fixture.effects().count) == 48 })
            let effects = try await fixture.effects()
            for index in 0..<8 {
                #expect(effects.filter { $0 / 100 == index } == (1...6).map { index * 100 + $0 })
            }
        }
    }

    @Test func aFailingEventInABatchDeadLettersItselfAndTheRestAreHandledOnceInOrder() async throws {
        // Sent back to back, the events arrive together and are first tried in one transaction.
        try await withInbox(handler: { event, _ in
            if event.data.stockLeft == 7 { throw Flaky() }
        }) { fixture in
            let recorder = TopicRecorder()
            try await recorder.start(bootstrap: fixture.bootstrap, topic: Topics.deadLetter(of: fixture.group))
            let campaign = CampaignID()
            let events = (1...20).map { stockReserved(campaign: campaign, sequence: $0) }
            for event in events { try await fixture.send(event) }
            try await fixture.send(events[3])  // a redelivery inside a later batch
            #expect(await eventually { (try? await fixture.effects()) == (1...20).filter { $0 != 7 } })
            #expect(await eventually { await recorder.messages.count == 1 })
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await fixture.effects() == (1...20).filter { $0 != 7 })
            #expect(await recorder.messages.count == 1)
            await recorder.stop()
        }
    }

    @Test func redeliveredEventHasNoSecondEffect() async throws {
        try await withInbox(handler: { _, _ in }) { fixture in
            let campaign = CampaignID()
            let event = stockReserved(campaign: campaign, sequence: 7)
            try await fixture.send(event)
            try await fixture.send(event)  // the same event id again, as after a producer retry
            try await fixture.send(stockReserved(campaign: campaign, sequence: 8))
            #expect(await eventually { (try? await fixture.effects()) == [7, 8] })
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await fixture.effects() == [7, 8])
            let handled = try await fixture.pool.query("SELECT count(*) AS c FROM inbox").single().decode("c", as: Int.self)
            #expect(handled == 2)
            let exposed = fixture.metrics.render()
            #expect(exposed.contains("consumer_lag"), "\(exposed)")
            #expect(exposed.contains("consumer_messages_total"))
        }
    }

    @Test func handlerThatThrowsTwiceThenSucceedsHasOneEffect() async throws {
        let calls = Mutex(0)
        try await withInbox(handler: { _, _ in
            let call = calls.withLock { count in
                count += 1
                return count
            }
            if call <= 2 { throw Flaky() }
        }) { fixture in
            try await fixture.send(stockReserved(campaign: CampaignID(), sequence: 1))
            #expect(await eventually { (try? await fixture.effects()) == [1] })
            #expect(calls.withLock { $0 } == 3)
        }
    }

    @Test func undecodableAndAlwaysFailingMessagesGoToTheDeadLetterTopicAndTheConsumerMovesOn() async throws {
        try await withInbox(handler: { event, _ in
            if event.data.stockLeft == 13 { throw Flaky() }
        }) { fixture in
            let recorder = TopicRecorder()
            try await recorder.start(bootstrap: fixture.bootstrap, topic: Topics.deadLetter(of: fixture.group))
            try await fixture.send(Array("{not json".utf8), key: "k", type: StockReserved.eventType)
            try await fixture.send(Array("\u{0}\u{1}binary".utf8), key: "k", type: nil)
            try await fixture.send(stockReserved(campaign: CampaignID(), sequence: 13))
            try await fixture.send(stockReserved(campaign: CampaignID(), sequence: 14))
            // An event type nobody here handles is skipped, not dead-lettered.
            try await fixture.send(Array("{}".utf8), key: "k", type: "orders.SomethingElse.v1")

            #expect(await eventually { (try? await fixture.effects()) == [14] }, "the consumer must move on")
            #expect(await eventually { await recorder.messages.count == 3 })
            let reasons = await recorder.messages.compactMap { $0.header("dlq_reason") }
            #expect(reasons.count == 3)
            #expect(reasons[0].hasPrefix("undecodable"))
            #expect(reasons[1].hasPrefix("undecodable"))
            #expect(reasons[2].contains("failed 3 times"))
            let sources = await recorder.messages.compactMap { $0.header("dlq_source_topic") }
            #expect(sources == Array(repeating: fixture.topic, count: 3))
            // Original headers travel along.
            #expect(await recorder.messages[2].header("ce_type") == StockReserved.eventType)
            await recorder.stop()
        }
    }

    /// A handler bug sends an event to the dead-letter topic; the operator lists it, the bug is
    /// fixed, and replaying it gives exactly one effect (a second replay changes nothing).
    @Test func deadLettersAreListedAndReplayedOnceTheCauseIsFixed() async throws {
        let fixed = Atomic<Bool>(false)
        try await withInbox(handler: { event, _ in
            if event.data.stockLeft == 13, !fixed.load(ordering: .relaxed) { throw Flaky() }
        }) { fixture in
            let poisoned = stockReserved(campaign: CampaignID(), sequence: 13)
            try await fixture.send(poisoned)
            try await fixture.send(stockReserved(campaign: CampaignID(), sequence: 14))
            #expect(await eventually { (try? await fixture.effects()) == [14] })

            let consumer = try await TestKafka.shared.consumerConfiguration(group: fixture.group, topics: [fixture.topic])
            var letters: [DeadLetterOffice.Letter] = []
            #expect(await eventually(timeout: .seconds(60)) {
                letters = (try? await DeadLetterOffice.read(group: fixture.group, consumer: consumer)) ?? []
                return letters.count == 1
            })
            let letter = try #require(letters.first)
            #expect(letter.reason.contains("failed 3 times"))
            #expect(letter.sourceTopic == fixture.topic)
            #expect(letter.eventType == StockReserved.eventType)
            #expect(!letter.originalHeaders.contains { $0.key.hasPrefix("dlq_") })

            fixed.store(true, ordering: .relaxed)
            #expect(try await DeadLetterOffice.replay(letters, producer: fixture.producer) == 1)
            #expect(await eventually { (try? await fixture.effects()) == [14, 13] })
            try await DeadLetterOffice.replay(letters, producer: fixture.producer)
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await fixture.effects() == [14, 13], "the inbox remembers the event id")
        }
    }
}
