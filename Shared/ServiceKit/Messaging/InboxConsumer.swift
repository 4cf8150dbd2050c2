import Domain
import Foundation
import Kafka
import Logging
import Postgres
import ServiceLifecycle
import Synchronization

/// What a service does with one event type, inside the transaction that also records the event
/// as handled.
public struct EventHandler: Sendable {
    public let eventType: String
    let handle: @Sendable (_ value: [UInt8], _ connection: PostgresConnection) async throws -> Void

    /// Runs the handler on a raw message value (contract tests feed examples through this).
    public func callAsFunction(_ value: [UInt8], on connection: PostgresConnection) async throws {
        try await handle(value, connection)
    }

    /// Handles `Payload` events: decoding failures go to the dead-letter topic at once.
    public static func on<Payload: DomainEvent>(
        _ type: Payload.Type,
        _ body: @escaping @Sendable (CloudEvent<Payload>, PostgresConnection) async throws -> Void
    ) -> EventHandler {
        EventHandler(eventType: Payload.eventType) { value, connection in
            let event: CloudEvent<Payload>
            do {
                event = try EventCoding.decode(Payload.self, from: value)
            } catch {
                throw UndecodableEvent(reason: "not a valid \(Payload.eventType): \(error)")
            }
            try await body(event, connection)
        }
    }
}

struct UndecodableEvent: Error, CustomStringConvertible {
    var reason: String
    var description: String { reason }
}

/// Consumes topics as one consumer group and hands each event to its handler exactly once in
/// effect:
///
/// - the handler runs in a database transaction that also inserts (consumer, event id) into
///   `inbox`; a redelivered event finds its row and is skipped;
/// - the offset is marked done only after that transaction committed;
/// - a handler that throws is retried with backoff; after `maxAttempts` (or at once when the
///   message cannot be decoded) the message goes to `dlq.<group>` with the reason and its
///   original headers, and the consumer moves on;
/// - database outages are not the message's fault: they are retried without counting attempts;
/// - event types without a handler are skipped unread (by the `ce_type` header).
public final class InboxConsumer: Service, Sendable {
    public struct Options: Sendable {
        public var maxAttempts = 5
        public var firstBackoff: Duration = .milliseconds(50)
        public var maxBackoff: Duration = .seconds(5)
        /// Partitions handled at once, each still one message at a time in offset order (so an
        /// aggregate's events, which share a partition, stay in order). Above 1 only for a group
        /// whose handlers never rely on another aggregate's events having been handled first:
        /// Kafka orders nothing across partitions, one sequential consumer only happens to.
        public var concurrentPartitions = 1
        /// Messages read ahead of their handling across all partitions, when concurrent.
        public var maxInFlight = 256
        public init() {}
    }

    public let group: String
    private let consumer: KafkaConsumer
    private let pool: PostgresPool
    private let producer: KafkaProducer
    private let handlers: [String: EventHandler]
    private let metrics: ServiceMetrics?
    private let options: Options
    private let logger: Logger

    public init(
        consumer configuration: KafkaConsumerConfiguration, pool: PostgresPool, deadLetterProducer: KafkaProducer,
        handlers: [EventHandler], metrics: ServiceMetrics? = nil, options: Options = Options(),
        logger: Logger = Logger(label: "fission.inbox")
    ) throws {
        self.group = configuration.groupID
        self.consumer = try KafkaConsumer(configuration: configuration, logger: logger)
        self.pool = pool
        self.producer = deadLetterProducer
        self.handlers = Dictionary(handlers.map { ($0.eventType, $0) }, uniquingKeysWith: { first, _ in first })
        self.metrics = metrics
        self.options = options
        self.logger = logger
    }

    public var deadLetterTopic: String { Topics.deadLetter(of: group) }

    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            if self.options.concurrentPartitions > 1 {
                try await self.consumeConcurrently()
            } else {
                // Partitions are handled one message at a time, in order; a shutdown waits for
                // the message in hand.
                for try await message in self.consumer.messages {
                    guard await self.finish(message) else { break }
                }
            }
        }
        await consumer.close()
    }

    /// Handles the message and, once it is finished with, marks it done. Only a message that was
    /// handled (or dead-lettered) is marked done; one interrupted by shutdown is read again by
    /// whoever owns the partition next.
    private func finish(_ message: KafkaMessage) async -> Bool {
        guard await process(message) else { return false }
        if let lag = consumer.lag(after: message) {
            metrics?.setConsumerLag(group: group, topic: message.topic, partition: message.partition, lag: lag)
        }
        do {
            try consumer.markDone(message)
        } catch {
            // The partition moved to another member during the handling; it will see the
            // event, and the inbox row makes that harmless.
            logger.info("could not store offset", metadata: ["error": "\(error)"])
        }
        return true
    }

    /// Lanes, each owning the partitions that hash to it and handling their messages in offset
    /// order: a partition's offsets are marked done in order, so a crash never skips one. The
    /// reader stops reading ahead once `maxInFlight` messages wait.
    private func consumeConcurrently() async throws {
        let lanes = options.concurrentPartitions
        let streams = (0..<lanes).map { _ in AsyncStream<KafkaMessage>.makeStream() }
        let slots = InFlightSlots(options.maxInFlight)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in streams {
                group.addTask {
                    for await message in lane.stream {
                        let finished = await self.finish(message)
                        slots.release()
                        guard finished else { return }
                    }
                }
            }
            defer { streams.forEach { $0.continuation.finish() } }
            for try await message in consumer.messages {
                try await slots.acquire()
                var hasher = Hasher()
                hasher.combine(message.topic)
                hasher.combine(message.partition)
                streams[Int(UInt(bitPattern: hasher.finalize()) % UInt(lanes))].continuation.yield(message)
            }
        }
    }

    /// True when the message is finished with: handled, skipped, or dead-lettered.
    func process(_ message: KafkaMessage) async -> Bool {
        guard let type = message.header("ce_type") ?? Self.envelopeType(message.value) else {
            return await deadLetter(message, reason: "undecodable: no ce_type header and no CloudEvents envelope")
        }
        guard let handler = handlers[type] else {
            metrics?.countConsumed(group: group, outcome: "skipped")
            return true
        }
        let header: CloudEventHeader
        do {
            header = try EventCoding.decoder().decode(CloudEventHeader.self, from: Data(message.value))
        } catch {
            return await deadLetter(message, reason: "undecodable: not a CloudEvents envelope: \(error)")
        }
        var attempt = 0
        var backoff = options.firstBackoff
        while !Task.isCancelled {
            do {
                try await pool.withTransaction { connection in
                    let fresh = try await connection.query(
                        """
                        INSERT INTO inbox (consumer, event_id, event_type) VALUES (\(self.group), \(header.id.rawValue), \(type))
                        ON CONFLICT DO NOTHING
                        """).affectedRows == 1
                    guard fresh else { return }
                    try await handler.handle(message.value, connection)
                }
                metrics?.countConsumed(group: group, outcome: "handled")
                return true
            } catch let error as UndecodableEvent {
                return await deadLetter(message, reason: "undecodable: \(error.reason)")
            } catch let error as PostgresError where Self.isOutage(error) {
                logger.warning("database unavailable; retrying event", metadata: ["event": "\(header.id)", "error": "\(error)"])
            } catch {
                attempt += 1
                if attempt >= options.maxAttempts {
                    return await deadLetter(message, reason: "handler failed \(attempt) times: \(error)")
                }
                logger.info("handler failed; retrying", metadata: ["event": "\(header.id)", "attempt": "\(attempt)", "error": "\(error)"])
            }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, options.maxBackoff)
        }
        return false
    }

    static func isOutage(_ error: PostgresError) -> Bool {
        switch error.code {
        case .unreachable, .connectionClosed, .connectionFailed, .poolTimeout: true
        default: error.sqlState == .adminShutdown
        }
    }

    private static func envelopeType(_ value: [UInt8]) -> String? {
        struct TypeOnly: Decodable { var type: String }
        return try? JSONDecoder().decode(TypeOnly.self, from: Data(value)).type
    }

    /// Publishes the message to `dlq.<group>` with why, where it came from and its original
    /// headers; keeps trying until the broker takes it, so nothing is dropped.
    private func deadLetter(_ message: KafkaMessage, reason: String) async -> Bool {
        metrics?.countConsumed(group: group, outcome: "dead-lettered")
        logger.error("dead-lettering message", metadata: [
            "topic": "\(message.topic)", "partition": "\(message.partition)", "offset": "\(message.offset)", "reason": "\(reason)",
        ])
        let headers = message.headers + [
            KafkaHeader(key: "dlq_reason", value: String(reason.prefix(2000))),
            KafkaHeader(key: "dlq_consumer", value: group),
            KafkaHeader(key: "dlq_source_topic", value: message.topic),
            KafkaHeader(key: "dlq_source_partition", value: String(message.partition)),
            KafkaHeader(key: "dlq_source_offset", value: String(message.offset)),
            KafkaHeader(key: "dlq_failed_at", value: EventCoding.formatTimestamp(Date())),
        ]
        var backoff: Duration = .milliseconds(200)
        while !Task.isCancelled {
            do {
                try await producer.send(KafkaOutgoingMessage(topic: deadLetterTopic, key: message.key, value: message.value, headers: headers))
                return true
            } catch {
                logger.error("dead-letter topic unavailable; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
        return false
    }
}

/// A counting semaphore for read-ahead: `acquire` waits while every slot is taken.
private final class InFlightSlots: Sendable {
    private struct State {
        var free: Int
        var waiters: [CheckedContinuation<Void, any Error>] = []
    }
    private let state: Mutex<State>

    init(_ count: Int) { state = Mutex(State(free: max(1, count))) }

    /// Waits for a slot; cancellation (shutdown) ends the wait with `CancellationError`.
    func acquire() async throws {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome = state.withLock { state -> Result<Void, any Error>? in
                    if Task.isCancelled { return .failure(CancellationError()) }
                    if state.free > 0 {
                        state.free -= 1
                        return .success(())
                    }
                    state.waiters.append(continuation)
                    return nil
                }
                if let outcome { continuation.resume(with: outcome) }
            }
        } onCancel: {
            let waiters = state.withLock { state in
                defer { state.waiters.removeAll() }
                return state.waiters
            }
            for waiter in waiters { waiter.resume(throwing: CancellationError()) }
        }
    }

    func release() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            if state.waiters.isEmpty {
                state.free += 1
                return nil
            }
            return state.waiters.removeFirst()
        }
        waiter?.resume()
    }
}
