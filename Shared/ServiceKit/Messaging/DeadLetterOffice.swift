import Domain
import Foundation
import Kafka
import Logging
import Synchronization

/// What an operator does with dead letters (`fission dlq`): read a consumer group's `dlq.<group>`
/// topic from the beginning, and send chosen dead letters back to the topic they came from once
/// the cause is fixed. Replaying is safe for every group on that topic: consumers record each
/// event id in their inbox, so a group that had handled the event skips it.
public enum DeadLetterOffice {
    /// A dead letter as the inbox consumer wrote it (`InboxConsumer`'s `dlq_*` headers).
    public struct Letter: Sendable {
        public var message: KafkaMessage
        public var offset: Int64 { message.offset }
        public var reason: String { message.header("dlq_reason") ?? "" }
        public var sourceTopic: String? { message.header("dlq_source_topic") }
        public var source: String {
            "\(sourceTopic ?? "?")[\(message.header("dlq_source_partition") ?? "?")]@\(message.header("dlq_source_offset") ?? "?")"
        }
        public var eventType: String { message.header("ce_type") ?? "(no type)" }
        public var failedAt: String { message.header("dlq_failed_at") ?? "" }
        /// The headers the event had before it was dead-lettered.
        public var originalHeaders: [KafkaHeader] { message.headers.filter { !$0.key.hasPrefix("dlq_") } }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Every dead letter of `group`, oldest first. Reads with a throwaway consumer group from
    /// the earliest offset until nothing new arrived for `settle` (joining a group takes a few
    /// seconds, so an empty topic is known only after `firstWait`).
    public static func read(
        group: String, consumer base: KafkaConsumerConfiguration, firstWait: Duration = .seconds(15), settle: Duration = .seconds(2),
        logger: Logger = Logger(label: "fission.dlq")
    ) async throws -> [Letter] {
        var configuration = base
        configuration.groupID = "fission-dlq-reader-\(UUID().uuidString.prefix(8))"
        configuration.topics = [Topics.deadLetter(of: group)]
        configuration.startFromEarliest = true
        let consumer = try KafkaConsumer(configuration: configuration, logger: logger)
        let received = Mutex<(letters: [Letter], last: ContinuousClock.Instant?)>(([], nil))
        let reading = Task {
            for try await message in consumer.messages {
                received.withLock {
                    $0.letters.append(Letter(message: message))
                    $0.last = .now
                }
            }
        }
        let started = ContinuousClock.now
        while true {
            try await Task.sleep(for: .milliseconds(100))
            let last = received.withLock { $0.last }
            if let last, ContinuousClock.now - last >= settle { break }
            if last == nil, ContinuousClock.now - started >= firstWait { break }
        }
        reading.cancel()
        await consumer.close()
        return received.withLock { $0.letters }.sorted { ($0.message.partition, $0.offset) < ($1.message.partition, $1.offset) }
    }

    /// Sends each letter's original event, with its original headers, back to its source topic.
    /// Returns how many were sent; throws on the first that could not be.
    @discardableResult
    public static func replay(_ letters: [Letter], producer: KafkaProducer) async throws -> Int {
        var messages: [KafkaOutgoingMessage] = []
        for letter in letters {
            guard let topic = letter.sourceTopic else {
                throw Failure(description: "dead letter at offset \(letter.offset) names no source topic")
            }
            messages.append(KafkaOutgoingMessage(topic: topic, key: letter.message.key, value: letter.message.value, headers: letter.originalHeaders))
        }
        for (letter, outcome) in zip(letters, await producer.send(messages)) {
            if case .failure(let error) = outcome {
                throw Failure(description: "replaying the dead letter at offset \(letter.offset) failed: \(error)")
            }
        }
        return messages.count
    }
}
