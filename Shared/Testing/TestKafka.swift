import Foundation
import Kafka
import Logging

/// The Kafka of a test run: an in-process local broker shared by every test in the process, or
/// the cluster at `FISSION_TEST_KAFKA_BROKERS`. Tests make their own topics (unique names) and
/// consumer groups, so they can run in parallel.
public actor TestKafka {
    public static let shared = TestKafka()

    private var broker: KafkaLocalBroker?
    private var external: String?

    private var externalBrokers: String? {
        let value = ProcessInfo.processInfo.environment["FISSION_TEST_KAFKA_BROKERS"]
        return value?.isEmpty == false ? value : nil
    }

    /// True when tests run against a real cluster rather than the in-process broker.
    public var usesExternalCluster: Bool { externalBrokers != nil }

    public func bootstrapServers() throws -> String {
        if let externalBrokers { return externalBrokers }
        return try localBroker().bootstrapServers
    }

    private func localBroker() throws -> KafkaLocalBroker {
        if let broker { return broker }
        var logger = Logger(label: "fission.testing.broker")
        logger.logLevel = .warning
        let started = try KafkaLocalBroker(logger: logger)
        broker = started
        return started
    }

    /// A new topic with a unique name.
    public func createTopic(prefix: String = "test", partitions: Int32 = 4) async throws -> String {
        try await createTopic(named: "\(prefix).\(UUID().uuidString.lowercased().prefix(12))", partitions: partitions)
    }

    /// A topic with a given name (fine if it exists).
    @discardableResult
    public func createTopic(named name: String, partitions: Int32) async throws -> String {
        if let externalBrokers {
            try await KafkaAdmin.createTopics(
                [KafkaTopicSpecification(name: name, partitions: partitions)], bootstrapServers: externalBrokers)
        } else {
            try localBroker().createTopic(name, partitions: partitions)
        }
        return name
    }

    /// Producer settings for tests: short linger for latency.
    public func producerConfiguration() throws -> KafkaProducerConfiguration {
        var configuration = KafkaProducerConfiguration(bootstrapServers: try bootstrapServers())
        configuration.lingerMilliseconds = 2
        return configuration
    }

    /// Consumer settings tuned for the local broker (short fetch wait, short session so a
    /// vanished member is noticed quickly).
    public func consumerConfiguration(group: String, topics: [String]) throws -> KafkaConsumerConfiguration {
        KafkaConsumerConfiguration.local(bootstrapServers: try bootstrapServers(), groupID: group, topics: topics)
    }
}
