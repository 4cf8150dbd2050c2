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
    /// Consecutive events of this type of one batch at once, with the effect of `handle` on
    /// each in turn; `nil` when the handler takes them one at a time.
    let handleRun: (@Sendable (_ values: [[UInt8]], _ connection: PostgresConnection) async throws -> Void)?

    /// Runs the handler on a raw message value (contract tests feed examples through this).
    public func callAsFunction(_ value: [UInt8], on connection: PostgresConnection) async throws {
        try await handle(value, connection)
    }

    /// Handles `Payload` events: decoding failures go to the dead-letter topic at once.
    public static func on<Payload: DomainEvent>(
        _ type: Payload.Type,
        _ body: @escaping @Sendable (CloudEvent<Payload>, PostgresConnection) async throws -> Void
    ) -> EventHandler {
        EventHandler(eventType: Payload.eventType, handle: { value, connection in
            try await body(try decode(Payload.self, value), connection)
        }, handleRun: nil)
    }

    /// Handles `Payload` events in runs: the consecutive events of this type in a batch (in
    /// offset order, each new to the inbox) in one call, which must have the effect of taking
    /// them one at a time; a lone event is a run of one. For a handler whose statements can
    /// serve many events at once.
    public static func on<Payload: DomainEvent>(
        _ type: Payload.Type,
        batched body: @escaping @Sendable ([CloudEvent<Payload>], PostgresConnection) async throws -> Void
    ) -> EventHandler {
        EventHandler(eventType: Payload.eventType, handle: { value, connection in
            try await body([try decode(Payload.self, value)], connection)
        }, handleRun: { values, connection in
            try await body(try values.map { try decode(Payload.self, $0) }, connection)
        })
    }

    private static func decode<Payload: DomainEvent>(_ type: Payload.Type, _ value: [UInt8]) throws -> CloudEvent<Payload> {
        do {
            return try EventCoding.decode(Payload.self, from: value)
        } catch {
            throw UndecodableEvent(reason: "not a valid \(Payload.eventType): \(error)")
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
        /// Messages read ahead of their handling across all partitions.
        public var maxInFlight = 256
        /// Messages of one lane handled in one transaction at most (what has arrived, no waiting).
        public var maxBatch = 32
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
            try await self.consume()
        }
        await consumer.close()
    }

    /// Lanes, each owning the partitions assigned to it and handling their messages in offset
    /// order: a partition's offsets are marked done in order, so a crash never skips one. A lane
    /// takes what has arrived for it (up to `maxBatch`) and handles it in one transaction. The
    /// reader stops reading ahead once `maxInFlight` messages wait.
    private func consume() async throws {
        let lanes = (0..<max(1, options.concurrentPartitions)).map { _ in Lane() }
        let slots = InFlightSlots(options.maxInFlight)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in lanes {
                group.addTask {
                    while let batch = await lane.next(upTo: self.options.maxBatch) {
                        let finished = await self.finish(batch)
                        slots.release(batch.count)
                        guard finished else { return }
                    }
                }
            }
            defer { lanes.forEach { $0.close() } }
            for try await message in consumer.messages {
                try await slots.acquire()
                lanes[Self.lane(topic: message.topic, partition: message.partition, among: lanes.count)].append(message)
            }
        }
    }

    /// Consecutive partitions of a topic go to consecutive lanes, so a topic with as many
    /// partitions as there are lanes uses every lane. (A hash of topic and partition left about a
    /// third of the lanes idle and others with two or three partitions to handle in turn.) The
    /// topic shifts where its partitions start, so topics with few partitions spread too.
    static func lane(topic: String, partition: Int32, among count: Int) -> Int {
        let shift = topic.utf8.reduce(0) { ($0 &* 31 &+ Int($1)) & 0xffff }
        return (Int(partition) + shift) % count
    }

    /// Handles the messages (together when it can) and marks each done once it is finished
    /// with. Only a message that was handled, skipped or dead-lettered is marked done; one
    /// interrupted by shutdown is read again by whoever owns the partition next.
    private func finish(_ batch: [KafkaMessage]) async -> Bool {
        var finished = batch.count > 1 ? await handleTogether(batch) : false
        if !finished {
            for message in batch {
                guard await process(message) else { return false }
                markDone(message)
            }
            finished = true
        } else {
            batch.forEach(markDone)
        }
        return finished
    }

    private func markDone(_ message: KafkaMessage) {
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
    }

    /// One transaction for several messages, each recorded in the inbox and handled in offset
    /// order as if alone: it saves a `BEGIN`, a `COMMIT` and the inbox insert's round trip per
    /// message. False, with nothing changed, when any message needs more than that
    /// (undecodable, a handler that failed, the database away): then each is taken on its own,
    /// with retries and dead letters.
    private func handleTogether(_ batch: [KafkaMessage]) async -> Bool {
        var work: [(message: KafkaMessage, type: String, id: EventID, handler: EventHandler)?] = []
        for message in batch {
            guard let type = message.header("ce_type") ?? Self.envelopeType(message.value) else { return false }
            guard let handler = handlers[type] else {
                work.append(nil)
                continue
            }
            // The id from the `ce_id` header the outbox writes, else from the envelope: parsing
            // the envelope here as well as in the handler was 4.6% of the notifications
            // service's CPU. A payload that is no envelope still fails in its handler, and then
            // the one-by-one path validates and dead-letters it.
            guard let id = message.header("ce_id").flatMap(EventID.init) ?? (try? EventCoding.decodeHeader(from: message.value))?.id else {
                return false
            }
            work.append((message, type, id, handler))
        }
        let handled = work.compactMap { $0 }
        do {
            try await pool.withTransaction { connection in
                // Every inbox row in one statement; then the handlers of the events it had not
                // seen, in offset order (an event delivered twice in the batch runs once), a
                // batched handler once per run of consecutive events of its type.
                var fresh = try await self.recordInInbox(handled.map { ($0.id, $0.type) }, on: connection)
                let new = handled.filter { fresh.remove($0.id.rawValue) != nil }
                var start = 0
                while start < new.count {
                    let handler = new[start].handler
                    guard let handleRun = handler.handleRun else {
                        try await handler.handle(new[start].message.value, connection)
                        start += 1
                        continue
                    }
                    var end = start + 1
                    while end < new.count, new[end].type == new[start].type { end += 1 }
                    try await handleRun(new[start..<end].map(\.message.value), connection)
                    start = end
                }
            }
        } catch {
            logger.debug("handling a batch together failed; taking its messages one by one", metadata: ["error": "\(error)"])
            return false
        }
        for item in work {
            metrics?.countConsumed(group: group, outcome: item == nil ? "skipped" : "handled")
        }
        return true
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
            header = try EventCoding.decodeHeader(from: message.value)
        } catch {
            return await deadLetter(message, reason: "undecodable: not a CloudEvents envelope: \(error)")
        }
        var attempt = 0
        var backoff = options.firstBackoff
        while !Task.isCancelled {
            do {
                try await pool.withTransaction { connection in
                    try await self.handleOnce(message, id: header.id, type: type, handler: handler, on: connection)
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

    /// Records the event in the inbox and, unless it was there already, handles it, in the
    /// caller's transaction.
    private func handleOnce(_ message: KafkaMessage, id: EventID, type: String, handler: EventHandler, on connection: PostgresConnection) async throws {
        if try await !recordInInbox([(id, type)], on: connection).isEmpty { try await handler.handle(message.value, connection) }
    }

    /// Inserts the events' inbox rows in one statement; the ids of those not there before.
    private func recordInInbox(_ events: [(id: EventID, type: String)], on connection: PostgresConnection) async throws -> Set<UUID> {
        guard !events.isEmpty else { return [] }
        return Set(try await connection.query(
            """
            INSERT INTO inbox (consumer, event_id, event_type)
            SELECT \(group), e.event_id, e.event_type
            FROM unnest(\(events.map(\.id.rawValue))::uuid[], \(events.map(\.type))::text[]) AS e(event_id, event_type)
            ON CONFLICT DO NOTHING
            RETURNING event_id
            """).map { try $0.decode("event_id", as: UUID.self) })
    }

    static func isOutage(_ error: PostgresError) -> Bool {
        switch error.code {
        case .unreachable, .connectionClosed, .connectionFailed, .poolTimeout: true
        default: error.sqlState == .adminShutdown
        }
    }

    private static func envelopeType(_ value: [UInt8]) -> String? {
        struct TypeOnly: Decodable { var type: String }
        return try? EventJSONDecoder.decode(TypeOnly.self, from: value).type
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

    func release(_ count: Int) {
        let woken = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            state.free += count
            let woken = Array(state.waiters.prefix(state.free))
            state.waiters.removeFirst(woken.count)
            state.free -= woken.count
            return woken
        }
        woken.forEach { $0.resume() }
    }
}

/// The messages waiting for one lane, in arrival order.
private final class Lane: Sendable {
    private struct State {
        var waiting: [KafkaMessage] = []
        var taker: CheckedContinuation<Void, Never>?
        var closed = false
    }
    private let state = Mutex(State())

    func append(_ message: KafkaMessage) {
        let taker = state.withLock { state in
            state.waiting.append(message)
            defer { state.taker = nil }
            return state.taker
        }
        taker?.resume()
    }

    func close() {
        let taker = state.withLock { state in
            state.closed = true
            defer { state.taker = nil }
            return state.taker
        }
        taker?.resume()
    }

    /// What has arrived, up to `limit` messages, waiting for the first; `nil` once closed.
    func next(upTo limit: Int) async -> [KafkaMessage]? {
        while true {
            let taken = state.withLock { state -> [KafkaMessage]? in
                guard !state.waiting.isEmpty else { return nil }
                let batch = Array(state.waiting.prefix(limit))
                state.waiting.removeFirst(batch.count)
                return batch
            }
            if let taken { return taken }
            if state.withLock({ $0.closed }) || Task.isCancelled { return nil }
            // Shutdown closes the lane: what waits in it is not marked done, so it is read again.
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = state.withLock { state -> Bool in
                        if !state.waiting.isEmpty || state.closed { return true }
                        state.taker = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            } onCancel: {
                close()
            }
        }
    }
}
