import CRdKafka
import Logging
import Synchronization

/// librdkafka's mock cluster served over loopback TCP: a Kafka-protocol broker for machines
/// without Kafka (tests, the local stack). Not a production broker; see DESIGN.md §6 for its
/// limits (no CreateTopics, no fixed port, 5 MiB kept per partition, 3 s first group join, no
/// de-duplication of producer retries).
///
/// Fault controls (down/up, round-trip time, injected request errors) keep the broker's data.
public final class KafkaLocalBroker: @unchecked Sendable {
    /// `host:port,...` to hand to clients; the port is chosen by the mock, not by us.
    public let bootstrapServers: String
    public let brokerCount: Int32
    // Teardown order matters: the cluster runs on the host client, so `deinit` destroys the
    // cluster before `host` is released.
    private let host: RDKafkaClient
    private let cluster: OpaquePointer
    private let lock = Mutex(())

    public init(brokerCount: Int32 = 1, logger: Logger = Logger(label: "fission.kafka.broker")) throws {
        host = try RDKafkaClient(
            type: RD_KAFKA_PRODUCER, properties: ["client.id": "fission-local-broker"],
            context: RDKafkaCallbackContext(logger: logger))
        guard let cluster = rd_kafka_mock_cluster_new(host.handle, brokerCount) else {
            throw KafkaError.client("librdkafka could not start its mock cluster")
        }
        self.cluster = cluster
        self.brokerCount = brokerCount
        self.bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
    }

    /// Creates a topic (an existing one is left as it is).
    public func createTopic(_ name: String, partitions: Int32, replicationFactor: Int32 = 1) throws {
        let err = lock.withLock { _ in rd_kafka_mock_topic_create(cluster, name, partitions, replicationFactor) }
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS else {
            throw KafkaError(err, message: "cannot create topic \(name)")
        }
    }

    /// Takes every broker down (connections closed, new ones refused) or brings them back.
    /// Topic data survives.
    public func setDown(_ down: Bool) {
        lock.withLock { _ in
            for broker in 1...brokerCount {
                if down {
                    Self.listenerReplacement.withLock { _ in _ = rd_kafka_mock_broker_set_down(cluster, broker) }
                } else {
                    rd_kafka_mock_broker_set_up(cluster, broker)
                }
            }
        }
    }

    /// Held while a broker goes down, and while a child process is spawned (`spawningChild`).
    private static let listenerReplacement = Mutex(())

    /// Runs `spawn` (`posix_spawn`, `Process.run`: calls that return once the child has begun
    /// its `exec`) while no local broker in this process goes down. Every spawn in a process
    /// holding local brokers goes through here.
    ///
    /// librdkafka takes a mock broker down by closing its listening socket and binding the same
    /// port again at once, and aborts the whole process if that bind fails. A child between
    /// spawn and `exec` holds a copy of every descriptor, close-on-exec ones included, so a
    /// listener closed meanwhile stays open and listening in the child and the bind fails with
    /// "Address already in use". Unguarded, a broker flapped while four threads spawned
    /// `/bin/true` aborted at its first or second down in five runs of five; guarded, it survived
    /// 150 downs in three of three. The test run used to abort so about one time in thirty.
    public static func spawningChild<T: Sendable, E: Error>(_ spawn: () throws(E) -> T) throws(E) -> T {
        try listenerReplacement.withLock { _ throws(E) in try spawn() }
    }

    /// Adds this much round-trip time to every broker's responses.
    public func setRoundTripTime(milliseconds: Int32) {
        lock.withLock { _ in
            for broker in 1...brokerCount { rd_kafka_mock_broker_set_rtt(cluster, broker, milliseconds) }
        }
    }

    /// The next requests of `apiKey` (0 Produce, 1 Fetch, 8 OffsetCommit, ...) fail with these
    /// Kafka error codes, one each.
    public func injectRequestErrors(apiKey: Int16, errorCodes: [Int32]) {
        var errors = errorCodes.map { rd_kafka_resp_err_t($0) }
        lock.withLock { _ in
            errors.withUnsafeMutableBufferPointer {
                rd_kafka_mock_push_request_errors_array(cluster, apiKey, $0.count, $0.baseAddress)
            }
        }
    }

    /// Forgets injected errors of `apiKey`.
    public func clearRequestErrors(apiKey: Int16) {
        lock.withLock { _ in rd_kafka_mock_clear_request_errors(cluster, apiKey) }
    }
}
