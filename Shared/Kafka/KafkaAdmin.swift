import CRdKafka
import Dispatch
import Logging

/// A topic to create: partitions, replication and topic configs (`retention.ms`, ...).
public struct KafkaTopicSpecification: Sendable, Equatable {
    public var name: String
    public var partitions: Int32
    /// -1: the broker's default.
    public var replicationFactor: Int32
    public var configs: [String: String]

    public init(name: String, partitions: Int32, replicationFactor: Int32 = -1, configs: [String: String] = [:]) {
        self.name = name
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.configs = configs
    }
}

/// Topic administration for real clusters. (The local broker has no CreateTopics API; it creates
/// topics in its own process, see `KafkaLocalBroker`.)
public enum KafkaAdmin {
    /// Creates the topics; one that already exists is fine (idempotent).
    public static func createTopics(
        _ topics: [KafkaTopicSpecification], bootstrapServers: String, timeout: Duration = .seconds(30),
        logger: Logger = Logger(label: "fission.kafka.admin")
    ) async throws {
        guard !topics.isEmpty else { return }
        let milliseconds = timeout.librdkafkaMilliseconds
        let queue = DispatchQueue(label: "fission.kafka.admin")
        try await onBlockingQueue(queue) {
            let client = try RDKafkaClient(
                type: RD_KAFKA_PRODUCER, properties: ["bootstrap.servers": bootstrapServers, "client.id": "fission-admin"],
                context: RDKafkaCallbackContext(logger: logger))
            // Destroyed on this queue once the answer is in: `rd_kafka_destroy` waits for the
            // client's threads (and for a request the broker never answered), which neither a
            // cooperative thread nor the caller should.
            defer { queue.async { withExtendedLifetime(client) {} } }
            var errorText = [CChar](repeating: 0, count: 512)
            var newTopics: [OpaquePointer?] = []
            defer {
                newTopics.withUnsafeMutableBufferPointer { rd_kafka_NewTopic_destroy_array($0.baseAddress, $0.count) }
            }
            for topic in topics {
                guard let newTopic = rd_kafka_NewTopic_new(topic.name, topic.partitions, topic.replicationFactor, &errorText, errorText.count) else {
                    throw KafkaError.client("topic \(topic.name): \(cString(errorText))")
                }
                newTopics.append(newTopic)
                for (key, value) in topic.configs {
                    let err = rd_kafka_NewTopic_set_config(newTopic, key, value)
                    guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err) }
                }
            }
            let options = rd_kafka_AdminOptions_new(client.handle, RD_KAFKA_ADMIN_OP_CREATETOPICS)
            defer { rd_kafka_AdminOptions_destroy(options) }
            _ = rd_kafka_AdminOptions_set_operation_timeout(options, milliseconds, &errorText, errorText.count)
            _ = rd_kafka_AdminOptions_set_request_timeout(options, milliseconds, &errorText, errorText.count)
            let queue = rd_kafka_queue_new(client.handle)
            defer { rd_kafka_queue_destroy(queue) }
            newTopics.withUnsafeMutableBufferPointer {
                rd_kafka_CreateTopics(client.handle, $0.baseAddress, $0.count, options, queue)
            }
            guard let event = rd_kafka_queue_poll(queue, Int32(clamping: Int64(milliseconds) + 1000)) else {
                throw KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, message: "CreateTopics got no answer within \(timeout)")
            }
            defer { rd_kafka_event_destroy(event) }
            let eventError = rd_kafka_event_error(event)
            guard eventError == RD_KAFKA_RESP_ERR_NO_ERROR else {
                throw KafkaError(eventError, message: rd_kafka_event_error_string(event).map { String(cString: $0) })
            }
            guard let result = rd_kafka_event_CreateTopics_result(event) else {
                throw KafkaError.client("CreateTopics answered with an unexpected event")
            }
            var count = 0
            guard let results = rd_kafka_CreateTopics_result_topics(result, &count) else { return }
            for index in 0..<count {
                let topicResult = results[index]
                let err = rd_kafka_topic_result_error(topicResult)
                let name = String(cString: rd_kafka_topic_result_name(topicResult))
                if err == RD_KAFKA_RESP_ERR_NO_ERROR {
                    logger.info("created topic", metadata: ["topic": "\(name)"])
                } else if err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS {
                    throw KafkaError(err, message: "topic \(name): \(rd_kafka_topic_result_error_string(topicResult).map { String(cString: $0) } ?? "")")
                }
            }
        }
    }
}
