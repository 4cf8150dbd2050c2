import CRdKafka
import Dispatch
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

public struct KafkaConsumerConfiguration: Sendable {
    public var bootstrapServers: String
    public var groupID: String
    public var topics: [String]
    /// Where a group with no committed offset starts.
    public var startFromEarliest: Bool = true
    /// Stored (done) offsets are committed this often, on rebalance and on close.
    public var autoCommitIntervalMilliseconds: Int = 500
    /// A consumer that stops heartbeating is dropped from the group after this.
    public var sessionTimeoutMilliseconds: Int = 10_000
    public var heartbeatIntervalMilliseconds: Int = 1_000
    /// How long a fetch waits for data; ~10 ms against the local broker, which otherwise waits
    /// the whole time on an empty partition.
    public var fetchWaitMaxMilliseconds: Int = 100
    /// Messages handed to the iterator per poll.
    public var batchSize: Int = 1000
    public var clientID: String = "fission"
    /// Any other librdkafka setting; wins over the fields above.
    public var properties: [String: String] = [:]

    public init(bootstrapServers: String, groupID: String, topics: [String]) {
        self.bootstrapServers = bootstrapServers
        self.groupID = groupID
        self.topics = topics
    }

    var librdkafkaProperties: [String: String] {
        [
            "bootstrap.servers": bootstrapServers,
            "group.id": groupID,
            "client.id": clientID,
            // Offsets are stored only when the caller marks a message done (after its own work
            // committed); librdkafka commits stored offsets periodically and on revoke/close.
            "enable.auto.commit": "true",
            "enable.auto.offset.store": "false",
            "auto.commit.interval.ms": String(autoCommitIntervalMilliseconds),
            "auto.offset.reset": startFromEarliest ? "earliest" : "latest",
            "session.timeout.ms": String(sessionTimeoutMilliseconds),
            "heartbeat.interval.ms": String(heartbeatIntervalMilliseconds),
            "fetch.wait.max.ms": String(fetchWaitMaxMilliseconds),
            "enable.partition.eof": "false",
        ].merging(properties) { _, override in override }
    }
}

extension KafkaConsumerConfiguration {
    /// The settings librdkafka's mock broker needs for low latency (it waits the whole fetch
    /// wait on an empty partition) and quick failover (a killed member stays in its group until
    /// its session ends).
    public static func local(bootstrapServers: String, groupID: String, topics: [String]) -> KafkaConsumerConfiguration {
        var configuration = KafkaConsumerConfiguration(bootstrapServers: bootstrapServers, groupID: groupID, topics: topics)
        configuration.fetchWaitMaxMilliseconds = 10
        configuration.sessionTimeoutMilliseconds = 6_000
        configuration.heartbeatIntervalMilliseconds = 500
        configuration.autoCommitIntervalMilliseconds = 200
        return configuration
    }
}

/// A consumed record. Its bytes are copied out of librdkafka, so it can outlive the poll.
public struct KafkaMessage: Sendable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    public var value: [UInt8]
    public var headers: [KafkaHeader]
    /// Milliseconds since the epoch, when the broker or producer set one.
    public var timestampMilliseconds: Int64?

    public var topicPartition: KafkaTopicPartition { KafkaTopicPartition(topic: topic, partition: partition) }
    public var keyString: String? { key.map { String(decoding: $0, as: UTF8.self) } }
    public func header(_ key: String) -> String? { headers.last { $0.key == key }?.stringValue }
}

/// What a consumer yields: records, and the group's rebalances, so a caller can drop in-flight
/// work of a partition it lost.
public enum KafkaConsumerEvent: Sendable {
    case message(KafkaMessage)
    case partitionsAssigned([KafkaTopicPartition])
    case partitionsRevoked([KafkaTopicPartition])
}

/// Holder of the consumer queue handle; used only on the consumer's serial queue.
final class ConsumerQueue: @unchecked Sendable {
    var handle: OpaquePointer?
    init(handle: OpaquePointer?) { self.handle = handle }
    func destroy() {
        if let handle { rd_kafka_queue_destroy(handle) }
        handle = nil
    }
}

final class ConsumerCallbackContext: RDKafkaCallbackContext, @unchecked Sendable {
    /// Rebalances seen by the callback, handed to the iterator before further messages.
    let rebalances = Mutex<[KafkaConsumerEvent]>([])
}

/// A consumer-group member.
///
/// Iterate `events` (or `messages`); after the work for a message committed, call
/// `markDone(_:)`, and only then is its offset committed. A message never marked done is read
/// again by whoever owns its partition next. Ending the iteration (break, throw, or the task
/// being cancelled) closes the consumer: it commits what was marked done and leaves the group at
/// once instead of holding its partitions until the session times out. As a `Service`, `run()`
/// closes it on graceful shutdown.
public final class KafkaConsumer: Service, Sendable {
    private let client: RDKafkaClient
    private let context: ConsumerCallbackContext
    /// Every blocking librdkafka call of this consumer (batch poll, commit, close) runs here,
    /// one at a time.
    private let queue = DispatchQueue(label: "fission.kafka.consumer")
    /// librdkafka's consumer queue; touched only on `queue`, destroyed there before the close.
    private let consumerQueue: ConsumerQueue
    private let state = Mutex<Lifecycle>(.open)
    let configuration: KafkaConsumerConfiguration
    private let logger: Logger

    enum Lifecycle { case open, closing, closed }

    public init(configuration: KafkaConsumerConfiguration, logger: Logger = Logger(label: "fission.kafka.consumer")) throws {
        guard !configuration.topics.isEmpty else { throw KafkaError.client("a consumer needs at least one topic") }
        let context = ConsumerCallbackContext(logger: logger)
        let client = try RDKafkaClient(type: RD_KAFKA_CONSUMER, properties: configuration.librdkafkaProperties, context: context) { conf in
            rd_kafka_conf_set_rebalance_cb(conf) { rk, err, partitions, opaque in
                guard let rk, let opaque else { return }
                let context = Unmanaged<ConsumerCallbackContext>.fromOpaque(opaque).takeUnretainedValue()
                let list = KafkaTopicPartition.list(partitions)
                let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
                if err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
                    context.rebalances.withLock { $0.append(.partitionsAssigned(list)) }
                    if cooperative {
                        if let error = rd_kafka_incremental_assign(rk, partitions) {
                            context.logger.error("assign failed", metadata: ["error": "\(KafkaError(consuming: error))"])
                        }
                    } else {
                        rd_kafka_assign(rk, partitions)
                    }
                    context.logger.info("partitions assigned", metadata: ["partitions": "\(list)"])
                } else {
                    context.rebalances.withLock { $0.append(.partitionsRevoked(list)) }
                    // Commit what was marked done before the partitions go, so their next owner
                    // starts after it (a periodic auto-commit may not have happened yet). Sent
                    // asynchronously: it still reaches the coordinator ahead of the rejoin on the
                    // same connection, and a synchronous commit here was seen waiting forever
                    // (with no timeout) when the coordinator had gone, wedging poll and close.
                    let commit = rd_kafka_commit(rk, nil, 1)
                    if commit != RD_KAFKA_RESP_ERR_NO_ERROR, commit != RD_KAFKA_RESP_ERR__NO_OFFSET {
                        context.logger.warning("commit on revoke failed", metadata: ["error": "\(KafkaError(commit))"])
                    }
                    if cooperative {
                        if let error = rd_kafka_incremental_unassign(rk, partitions) {
                            context.logger.error("unassign failed", metadata: ["error": "\(KafkaError(consuming: error))"])
                        }
                    } else {
                        rd_kafka_assign(rk, nil)
                    }
                    context.logger.info("partitions revoked", metadata: ["partitions": "\(list)"])
                }
            }
        }
        // Route every callback (rebalances included) to the consumer queue we poll.
        rd_kafka_poll_set_consumer(client.handle)
        let topics = rd_kafka_topic_partition_list_new(Int32(configuration.topics.count))
        defer { rd_kafka_topic_partition_list_destroy(topics) }
        for topic in configuration.topics {
            rd_kafka_topic_partition_list_add(topics, topic, RD_KAFKA_PARTITION_UA)
        }
        let err = rd_kafka_subscribe(client.handle, topics)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err) }
        self.client = client
        self.context = context
        self.consumerQueue = ConsumerQueue(handle: rd_kafka_queue_get_consumer(client.handle))
        self.configuration = configuration
        self.logger = logger
    }

    deinit {
        // A consumer dropped without close still leaves its group (blocking, so not inline).
        if state.withLock({ $0 }) == .open {
            let client = self.client
            let consumerQueue = self.consumerQueue
            queue.async {
                consumerQueue.destroy()
                rd_kafka_consumer_close(client.handle)
            }
        }
    }

    /// Records and rebalances; ends when the consumer is closed. Leaving the loop closes it.
    public var events: Events { Events(consumer: self) }

    /// Records only (rebalances are still handled, just not yielded).
    public var messages: AsyncCompactMapSequence<Events, KafkaMessage> {
        events.compactMap { event in
            if case .message(let message) = event { return message }
            return nil
        }
    }

    /// The caller's work for `message` committed: its offset may be committed. Offsets of one
    /// partition must be marked in order (a later mark covers earlier ones).
    public func markDone(_ message: KafkaMessage) throws {
        let list = rd_kafka_topic_partition_list_new(1)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let element = rd_kafka_topic_partition_list_add(list, message.topic, message.partition)
        element?.pointee.offset = message.offset + 1
        let err = rd_kafka_offsets_store(client.handle, list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err) }
        if let element, element.pointee.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            // Typically _STATE: the partition was revoked meanwhile; its next owner re-reads it.
            throw KafkaError(element.pointee.err)
        }
    }

    /// How many records of the message's partition come after it, from the high watermark
    /// librdkafka last fetched (a local read, no broker round trip). For the consumer-lag metric.
    public func lag(after message: KafkaMessage) -> Int64? {
        var low: Int64 = 0
        var high: Int64 = 0
        let err = rd_kafka_get_watermark_offsets(client.handle, message.topic, message.partition, &low, &high)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, high >= 0 else { return nil }
        return max(0, high - message.offset - 1)
    }

    /// Commits the stored offsets now (otherwise they go every `autoCommitIntervalMilliseconds`).
    public func commit() async throws {
        let client = self.client
        try await onBlockingQueue(queue) {
            let err = rd_kafka_commit(client.handle, nil, 0)
            // Nothing stored since the last commit is not a failure.
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET else { throw KafkaError(err) }
        }
    }

    /// Commits what was marked done and leaves the group. Idempotent.
    public func close() async {
        let proceed = state.withLock { state -> Bool in
            guard state == .open else { return false }
            state = .closing
            return true
        }
        guard proceed else {
            // Someone else is closing; wait until they are done.
            while state.withLock({ $0 }) != .closed { try? await Task.sleep(for: .milliseconds(10)) }
            return
        }
        let client = self.client
        let consumerQueue = self.consumerQueue
        _ = try? await onBlockingQueue(queue) {
            consumerQueue.destroy()
            rd_kafka_consumer_close(client.handle)
            return true
        }
        state.withLock { $0 = .closed }
        logger.debug("consumer closed", metadata: ["group": "\(configuration.groupID)"])
    }

    public func run() async throws {
        try? await gracefulShutdown()
        await close()
    }

    /// One poll: pending rebalances first, then up to `batchSize` records (waiting up to
    /// `timeoutMilliseconds` for the first). `nil` once closed.
    func poll(timeoutMilliseconds: Int32) async throws -> [KafkaConsumerEvent]? {
        let client = self.client
        let context = self.context
        let batchSize = configuration.batchSize
        let logger = self.logger
        let consumerQueue = self.consumerQueue
        return try await onBlockingQueue(queue) { [self] () throws -> [KafkaConsumerEvent]? in
            guard self.state.withLock({ $0 }) == .open, let queueHandle = consumerQueue.handle else { return nil }
            var buffer = [UnsafeMutablePointer<rd_kafka_message_t>?](repeating: nil, count: batchSize)
            // librdkafka's batch call waits for a full batch or the timeout, which would add up to
            // the timeout to every record's latency at low volume. So: take what is there without
            // waiting; if nothing, wait for one record, then take what arrived with it.
            var count = rd_kafka_consume_batch_queue(queueHandle, 0, &buffer, batchSize)
            if count == 0 {
                count = rd_kafka_consume_batch_queue(queueHandle, timeoutMilliseconds, &buffer, 1)
                if count == 1, batchSize > 1 {
                    let more = buffer.withUnsafeMutableBufferPointer {
                        rd_kafka_consume_batch_queue(queueHandle, 0, $0.baseAddress! + 1, batchSize - 1)
                    }
                    if more > 0 { count += more }
                }
            }
            var events = context.rebalances.withLock { pending in
                defer { pending.removeAll() }
                return pending
            }
            guard count >= 0 else {
                if let fatal = client.fatalError() { throw fatal }
                return events
            }
            for index in 0..<count {
                guard let pointer = buffer[index] else { continue }
                defer { rd_kafka_message_destroy(pointer) }
                let raw = pointer.pointee
                guard raw.err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                    // Consumer errors are reports (broker down, ...) that librdkafka recovers
                    // from by itself; only a fatal error ends the consumer.
                    let error = KafkaError(raw.err, message: raw.payload.map {
                        String(decoding: UnsafeRawBufferPointer(start: $0, count: raw.len), as: UTF8.self)
                    })
                    if let fatal = client.fatalError() { throw fatal }
                    logger.warning("consumer error", metadata: ["error": "\(error)"])
                    continue
                }
                events.append(.message(Self.copy(pointer)))
            }
            return events
        }
    }

    private static func copy(_ pointer: UnsafeMutablePointer<rd_kafka_message_t>) -> KafkaMessage {
        let raw = pointer.pointee
        let value = raw.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: raw.len)) } ?? []
        let key = raw.key.map { Array(UnsafeRawBufferPointer(start: $0, count: raw.key_len)) }
        var headers: [KafkaHeader] = []
        var headerList: OpaquePointer? = nil
        if rd_kafka_message_headers(pointer, &headerList) == RD_KAFKA_RESP_ERR_NO_ERROR, let headerList {
            var index = 0
            var name: UnsafePointer<CChar>? = nil
            var valuePointer: UnsafeRawPointer? = nil
            var size = 0
            while rd_kafka_header_get_all(headerList, index, &name, &valuePointer, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                headers.append(KafkaHeader(
                    key: name.map { String(cString: $0) } ?? "",
                    value: valuePointer.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }))
                index += 1
            }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(pointer, &timestampType)
        return KafkaMessage(
            topic: String(cString: rd_kafka_topic_name(raw.rkt)), partition: raw.partition, offset: raw.offset,
            key: key, value: value, headers: headers,
            timestampMilliseconds: timestampType == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : timestamp)
    }

    public struct Events: AsyncSequence, Sendable {
        public typealias Element = KafkaConsumerEvent
        let consumer: KafkaConsumer

        public func makeAsyncIterator() -> Iterator {
            Iterator(consumer: consumer)
        }

        public struct Iterator: AsyncIteratorProtocol {
            private let closer: Closer
            private var buffered: [KafkaConsumerEvent] = []
            private var position = 0

            init(consumer: KafkaConsumer) {
                closer = Closer(consumer: consumer)
            }

            public mutating func next() async throws -> KafkaConsumerEvent? {
                while position == buffered.count {
                    if Task.isCancelled {
                        await closer.consumer.close()
                        return nil
                    }
                    guard let events = try await closer.consumer.poll(timeoutMilliseconds: 100) else { return nil }
                    buffered = events
                    position = 0
                }
                defer { position += 1 }
                return buffered[position]
            }
        }

        /// Closes the consumer when the iteration is abandoned (its iterator released).
        final class Closer: Sendable {
            let consumer: KafkaConsumer
            init(consumer: KafkaConsumer) { self.consumer = consumer }
            deinit {
                let consumer = self.consumer
                Task { await consumer.close() }
            }
        }
    }
}
