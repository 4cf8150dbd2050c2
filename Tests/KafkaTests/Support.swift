import Foundation
import FissionTesting
import Kafka

/// What one consumer saw, filled by its consuming task.
actor ConsumerLog {
    var messages: [KafkaMessage] = []
    var assigned: Set<KafkaTopicPartition> = []
    var assignments: [[KafkaTopicPartition]] = []

    func record(_ event: KafkaConsumerEvent) {
        switch event {
        case .message(let message): messages.append(message)
        case .partitionsAssigned(let partitions):
            assigned.formUnion(partitions)
            assignments.append(partitions)
        case .partitionsRevoked(let partitions): assigned.subtract(partitions)
        }
    }

    var values: [String] { messages.map { String(decoding: $0.value, as: UTF8.self) } }
}

/// Consumes in a task, marking every message done after recording it, until cancelled.
func startConsuming(_ consumer: KafkaConsumer, into log: ConsumerLog) -> Task<Void, any Error> {
    Task {
        for try await event in consumer.events {
            await log.record(event)
            if case .message(let message) = event { try consumer.markDone(message) }
        }
    }
}

/// The values of a topic's first `count` records, in the order a new consumer group reads them.
func firstValues(_ count: Int, of topic: String, on bootstrapServers: String) async throws -> [String] {
    let consumer = try KafkaConsumer(configuration: .local(bootstrapServers: bootstrapServers, groupID: "g-\(UUID())", topics: [topic]))
    var values: [String] = []
    for try await message in consumer.messages {
        values.append(String(decoding: message.value, as: UTF8.self))
        if values.count == count { break }
    }
    return values
}

extension Result where Failure == KafkaError {
    /// The error of a failed delivery, nil for a delivered record.
    var failureError: KafkaError? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

func messages(topic: String, count: Int, keys: Int, from start: Int = 0) -> [KafkaOutgoingMessage] {
    (start..<(start + count)).map { index in
        KafkaOutgoingMessage(
            topic: topic, key: "key-\(index % keys)", value: Array("m-\(index)".utf8),
            headers: [KafkaHeader(key: "ce_type", value: "test.Sent.v1"), KafkaHeader(key: "seq", value: String(index))])
    }
}

/// Reads a child's output line by line; the blocking reads run on a Dispatch thread.
final class LineReader: Sendable {
    private let handle: FileHandle
    private let queue = DispatchQueue(label: "fission.tests.line-reader")
    init(_ handle: FileHandle) { self.handle = handle }

    func next() async -> String? {
        await withCheckedContinuation { continuation in
            queue.async {
                var bytes: [UInt8] = []
                while true {
                    let data = self.handle.readData(ofLength: 1)
                    guard let byte = data.first else {
                        continuation.resume(returning: bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self))
                        return
                    }
                    if byte == UInt8(ascii: "\n") {
                        continuation.resume(returning: String(decoding: bytes, as: UTF8.self))
                        return
                    }
                    bytes.append(byte)
                }
            }
        }
    }
}
