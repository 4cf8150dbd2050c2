import Foundation
import FissionTesting
import Kafka
import Testing

@Suite("Kafka producer and consumer group")
struct ProducerConsumerTests {
    @Test func tenThousandKeyedMessagesArriveInPerKeyOrderWithHeaders() async throws {
        let topic = try await TestKafka.shared.createTopic(partitions: 4)
        let producer = try KafkaProducer(configuration: try await TestKafka.shared.producerConfiguration())
        let outgoing = messages(topic: topic, count: 10_000, keys: 50)
        var reports: [Result<KafkaDeliveryReport, KafkaError>] = []
        for chunk in stride(from: 0, to: outgoing.count, by: 1000) {
            reports += await producer.send(Array(outgoing[chunk..<min(chunk + 1000, outgoing.count)]))
        }
        #expect(reports.count == 10_000)
        #expect(reports.allSatisfy { $0.failureError == nil })
        await producer.shutdown()

        let consumer = try KafkaConsumer(
            configuration: try await TestKafka.shared.consumerConfiguration(group: "g-\(UUID())", topics: [topic]))
        var lastSequenceByKey: [String: Int] = [:]
        var received = 0
        var partitionsByKey: [String: Set<Int32>] = [:]
        for try await message in consumer.messages {
            let key = try #require(message.keyString)
            let header = try #require(message.header("seq"))
            let sequence = try #require(Int(header))
            #expect(message.header("ce_type") == "test.Sent.v1")
            #expect(String(decoding: message.value, as: UTF8.self) == "m-\(sequence)")
            #expect(sequence > lastSequenceByKey[key, default: -1], "key \(key) out of order")
            lastSequenceByKey[key] = sequence
            partitionsByKey[key, default: []].insert(message.partition)
            received += 1
            if received == 10_000 { break }
        }
        #expect(received == 10_000)
        #expect(partitionsByKey.values.allSatisfy { $0.count == 1 }, "a key must stay on one partition")
        #expect(Set(partitionsByKey.values.flatMap { $0 }).count > 1, "keys should spread over partitions")
    }

    /// Batches handed over at once from several tasks, each mixing two topics: every record's
    /// report is its own (its topic, and a place no other record got), in the batch's order.
    @Test func concurrentBatchesEachGetTheirOwnRecordsReports() async throws {
        let topics = [try await TestKafka.shared.createTopic(partitions: 3), try await TestKafka.shared.createTopic(partitions: 1)]
        let producer = try KafkaProducer(configuration: try await TestKafka.shared.producerConfiguration())
        let batches = (0..<8).map { batch in
            (0..<(batch + 1) * 150).map { index in
                KafkaOutgoingMessage(topic: topics[index % 2], key: "k-\(index % 7)", value: Array("\(batch)-\(index)".utf8))
            }
        }
        let reports = await withTaskGroup(of: (Int, [Result<KafkaDeliveryReport, KafkaError>]).self) { group in
            for (number, batch) in batches.enumerated() {
                group.addTask { (number, await producer.enqueue(batch).outcomes()) }
            }
            var reports: [Int: [Result<KafkaDeliveryReport, KafkaError>]] = [:]
            for await (number, outcomes) in group { reports[number] = outcomes }
            return reports
        }
        await producer.shutdown()
        var places = Set<String>()
        for (number, batch) in batches.enumerated() {
            let outcomes = try #require(reports[number])
            #expect(outcomes.count == batch.count)
            for (message, outcome) in zip(batch, outcomes) {
                let report = try outcome.get()
                #expect(report.topic == message.topic)
                places.insert("\(report.topic)/\(report.partition)/\(report.offset)")
            }
        }
        #expect(places.count == batches.map(\.count).reduce(0, +), "two records were reported at one place")
    }

    @Test func twoConsumersSplitPartitionsAndTheSurvivorTakesOverWithoutRereadingCommittedWork() async throws {
        let topic = try await TestKafka.shared.createTopic(partitions: 4)
        let group = "g-\(UUID())"
        let configuration = try await TestKafka.shared.consumerConfiguration(group: group, topics: [topic])
        let first = try KafkaConsumer(configuration: configuration)
        let second = try KafkaConsumer(configuration: configuration)
        let firstLog = ConsumerLog()
        let secondLog = ConsumerLog()
        let firstTask = startConsuming(first, into: firstLog)
        let secondTask = startConsuming(second, into: secondLog)
        defer { secondTask.cancel() }

        let split = await eventually {
            let a = await firstLog.assigned
            let b = await secondLog.assigned
            return a.count == 2 && b.count == 2 && a.isDisjoint(with: b)
        }
        #expect(split, "two members of one group must split four partitions")

        let producer = try KafkaProducer(configuration: try await TestKafka.shared.producerConfiguration())
        defer { Task { await producer.shutdown() } }
        _ = await producer.send(messages(topic: topic, count: 400, keys: 40))
        let allRead = await eventually {
            await firstLog.messages.count + secondLog.messages.count >= 400
        }
        #expect(allRead)

        // The first member leaves: its task ends, which closes the consumer (commit + LeaveGroup).
        firstTask.cancel()
        _ = await firstTask.result
        await first.close()
        let takenOver = await eventually(timeout: .seconds(30)) { await secondLog.assigned.count == 4 }
        #expect(takenOver, "the survivor must own all partitions after the other left")

        _ = await producer.send(messages(topic: topic, count: 400, keys: 40, from: 400))
        let secondCaughtUp = await eventually {
            Set(await firstLog.values + secondLog.values).count >= 800
        }
        #expect(secondCaughtUp)
        try await Task.sleep(for: .milliseconds(500))
        let firstValues = Set(await firstLog.values)
        let secondValues = await secondLog.values
        #expect(firstValues.isDisjoint(with: secondValues), "work the first member committed was read again")
        // The survivor may see again what it had read but not yet committed when the group
        // rebalanced (at-least-once); never what the leaver committed.
        #expect(firstValues.union(secondValues).count == 800)
    }

    @Test func messageNotMarkedDoneIsDeliveredAgainAfterRestart() async throws {
        let topic = try await TestKafka.shared.createTopic(partitions: 1)
        let producer = try KafkaProducer(configuration: try await TestKafka.shared.producerConfiguration())
        _ = await producer.send(messages(topic: topic, count: 10, keys: 1))
        await producer.shutdown()
        let configuration = try await TestKafka.shared.consumerConfiguration(group: "g-\(UUID())", topics: [topic])

        let crashed = try KafkaConsumer(configuration: configuration)
        var seen = 0
        for try await message in crashed.messages {
            seen += 1
            // Work for the first five committed; the sixth was read but its work never finished.
            if message.offset < 5 { try crashed.markDone(message) }
            if seen == 6 { break }
        }
        await crashed.close()

        let restarted = try KafkaConsumer(configuration: configuration)
        var offsets: [Int64] = []
        for try await message in restarted.messages {
            offsets.append(message.offset)
            try restarted.markDone(message)
            if offsets.count == 5 { break }
        }
        await restarted.close()
        #expect(offsets == [5, 6, 7, 8, 9])
    }

    @Test func consumerIsClosedWhenTheLoopIsLeft() async throws {
        let topic = try await TestKafka.shared.createTopic(partitions: 2)
        let producer = try KafkaProducer(configuration: try await TestKafka.shared.producerConfiguration())
        _ = await producer.send(messages(topic: topic, count: 5, keys: 5))
        await producer.shutdown()
        let configuration = try await TestKafka.shared.consumerConfiguration(group: "g-\(UUID())", topics: [topic])
        let consumer = try KafkaConsumer(configuration: configuration)
        for try await message in consumer.messages {
            try consumer.markDone(message)
            break
        }
        // After leaving the loop, the group is left at once: a new member gets every partition
        // well before the old member's 6 s session would have run out.
        let successor = try KafkaConsumer(configuration: configuration)
        let log = ConsumerLog()
        let task = startConsuming(successor, into: log)
        defer { task.cancel() }
        let clock = ContinuousClock()
        let started = clock.now
        #expect(await eventually(timeout: .seconds(30)) { await log.assigned.count == 2 })
        #expect(clock.now - started < .seconds(30))
        // The four not marked done all arrive; the one marked done normally does not (if the
        // closing commit were lost it would come again: at-least-once, never fewer).
        let expected: Set<String> = Set((0..<5).map { "m-\($0)" })
        #expect(await eventually { Set(await log.values).count >= 4 }, "the unfinished messages are delivered to the successor")
        #expect(Set(await log.values).isSubset(of: expected))
    }
}
