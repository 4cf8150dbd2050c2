import CRdKafka
import Dispatch
import Logging
import ServiceLifecycle
import Synchronization

public struct KafkaProducerConfiguration: Sendable {
    public var bootstrapServers: String
    /// How long librdkafka waits to fill a batch: latency traded for throughput.
    public var lingerMilliseconds: Int = 5
    public var batchMaxMessages: Int = 10_000
    /// A message not acknowledged within this time fails with a retriable `_MSG_TIMED_OUT`;
    /// 0: never (librdkafka retries until the broker takes it, in order).
    public var messageTimeoutMilliseconds: Int = 30_000
    /// Local queue bound; `send` waits (backpressure) while it is full.
    public var queueMaxMessages: Int = 100_000
    public var clientID: String = "fission"
    /// Any other librdkafka setting; wins over the fields above.
    public var properties: [String: String] = [:]

    public init(bootstrapServers: String) {
        self.bootstrapServers = bootstrapServers
    }

    var librdkafkaProperties: [String: String] {
        [
            "bootstrap.servers": bootstrapServers,
            "client.id": clientID,
            // No duplicates or reordering from the producer's own retries, every replica acks.
            "enable.idempotence": "true",
            "acks": "all",
            // Nothing delivered past a request refused for good (see `KafkaProducer`).
            "enable.gapless.guarantee": "true",
            "linger.ms": String(lingerMilliseconds),
            "batch.num.messages": String(batchMaxMessages),
            "message.timeout.ms": String(messageTimeoutMilliseconds),
            "queue.buffering.max.messages": String(queueMaxMessages),
            // Same key → same partition as Java clients, so real-Kafka tooling agrees with us.
            "partitioner": "murmur2_random",
        ].merging(properties) { _, override in override }
    }
}

/// A record to send. The key decides the partition (the aggregate id keeps an aggregate's
/// events in order).
public struct KafkaOutgoingMessage: Sendable {
    public var topic: String
    public var key: [UInt8]?
    public var value: [UInt8]
    public var headers: [KafkaHeader]
    /// `nil`: chosen by the key's hash.
    public var partition: Int32?

    public init(topic: String, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader] = [], partition: Int32? = nil) {
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers
        self.partition = partition
    }

    public init(topic: String, key: String, value: [UInt8], headers: [KafkaHeader] = []) {
        self.init(topic: topic, key: Array(key.utf8), value: value, headers: headers)
    }
}

/// Where the broker stored an acknowledged record.
public struct KafkaDeliveryReport: Sendable, Equatable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
}

/// Delivery bookkeeping reached from librdkafka's delivery-report callback.
///
/// Records handed over together are one batch, registered once. Each record carries its batch's
/// number and its index in the batch, packed into an integer, as its opaque pointer (not a
/// retained object), so a report whose waiter is gone cannot touch freed memory. A report costs a
/// lookup among the batches in flight. An entry per record (10,000 inserted per batch under the
/// lock the reports needed, the table as large as the records in flight) and a topic name
/// copied out of C per report kept the producer at 0.46–0.57× of kcat; with this and
/// `produce(_:from:firstTag:)` serving reports, the same benchmark measured 0.81×.
final class ProducerCallbackContext: RDKafkaCallbackContext, @unchecked Sendable {
    typealias Outcome = Result<KafkaDeliveryReport, KafkaError>
    /// Where the broker stored a record; the topic is the record's own, added when the batch ends.
    typealias Stored = Result<(partition: Int32, offset: Int64), KafkaError>

    /// Collects a batch's outcomes and resumes its sender once all have arrived.
    final class BatchWaiter: @unchecked Sendable {
        /// Kept for their topics: the reports name them, and the callback need not copy a topic
        /// name out of C for every record.
        let messages: [KafkaOutgoingMessage]
        private let state: Mutex<(
            remaining: Int, stored: [Stored?], continuation: CheckedContinuation<[Outcome], Never>?, abandoned: Bool,
            onReported: (@Sendable () -> Void)?
        )>

        init(_ messages: [KafkaOutgoingMessage]) {
            self.messages = messages
            state = Mutex((messages.count, Array(repeating: nil, count: messages.count), nil, false, nil))
        }

        var isReported: Bool { state.withLock { $0.remaining == 0 } }

        /// Calls `body` once every record is reported, at once if they are already.
        func whenReported(_ body: @escaping @Sendable () -> Void) {
            let now = state.withLock { state -> Bool in
                guard state.remaining > 0 else { return true }
                state.onReported = body
                return false
            }
            if now { body() }
        }

        func arm(_ continuation: CheckedContinuation<[Outcome], Never>) {
            let finished = state.withLock { state -> [Stored?]? in
                if state.remaining == 0 || state.abandoned { return state.stored }
                state.continuation = continuation
                return nil
            }
            if let finished { continuation.resume(returning: outcomes(finished)) }
        }

        /// The sender stops waiting: resumed now with what was reported, the rest `notAwaited`.
        func abandon() {
            let waiting = state.withLock { state -> (CheckedContinuation<[Outcome], Never>, [Stored?])? in
                state.abandoned = true
                defer { state.continuation = nil }
                return state.continuation.map { ($0, state.stored) }
            }
            if let (continuation, stored) = waiting { continuation.resume(returning: outcomes(stored)) }
        }

        /// Records one record's outcome (the first one only); true when it was the batch's last.
        func complete(_ index: Int, _ outcome: Stored) -> Bool {
            let (last, waiting, onReported) = state.withLock {
                state -> (Bool, (CheckedContinuation<[Outcome], Never>, [Stored?])?, (@Sendable () -> Void)?) in
                guard state.stored.indices.contains(index), state.stored[index] == nil else { return (false, nil, nil) }
                state.stored[index] = outcome
                state.remaining -= 1
                guard state.remaining == 0 else { return (false, nil, nil) }
                defer { state.continuation = nil; state.onReported = nil }
                return (true, state.continuation.map { ($0, state.stored) }, state.onReported)
            }
            if let (continuation, stored) = waiting { continuation.resume(returning: outcomes(stored)) }
            onReported?()
            return last
        }

        private func outcomes(_ stored: [Stored?]) -> [Outcome] {
            zip(messages, stored).map { message, stored in
                (stored ?? .failure(.notAwaited)).map { KafkaDeliveryReport(topic: message.topic, partition: $0.partition, offset: $0.offset) }
            }
        }
    }

    /// A record's tag: its batch's number above `indexBits`, its index below.
    static let indexBits = 32
    private let batches = Mutex<(next: Int, waiting: [Int: BatchWaiter])>((1, [:]))

    /// Registers a batch before its records are produced (a report may arrive before produce
    /// returns); the tag of its first record, to which each record adds its index.
    func register(_ batch: BatchWaiter) -> Int {
        precondition(batch.messages.count < 1 << Self.indexBits, "a batch this large cannot be tagged")
        let number = batches.withLock { batches in
            let number = batches.next
            // Numbers wrap long before they could shift out of an Int; none is 0, so no tag is nil.
            batches.next = number == Int(Int32.max) ? 1 : number + 1
            batches.waiting[number] = batch
            return number
        }
        return number << Self.indexBits
    }

    func complete(_ tag: Int, _ outcome: Stored) {
        let number = tag >> Self.indexBits
        guard let batch = batches.withLock({ $0.waiting[number] }) else { return }
        if batch.complete(tag & (1 << Self.indexBits - 1), outcome) {
            batches.withLock { _ = $0.waiting.removeValue(forKey: number) }
        }
    }
}

/// An idempotent (`enable.idempotence`, `acks=all`) producer that never leaves a gap.
///
/// `send` returns once the broker acknowledged the record (or failed it), without blocking a
/// cooperative thread: librdkafka's delivery reports are served by a poll loop on a dedicated
/// Dispatch queue. As a `Service`, `run()` waits for graceful shutdown and then `shutdown()`s:
/// in-flight messages are flushed within the deadline, the rest reported as failed.
///
/// Per-partition order holds even when the broker refuses a request for good (a batch too large
/// for the topic, a record it finds invalid): librdkafka sends a partition's records as several
/// requests at once, and by default it fails the refused request's records and still delivers the
/// later requests' ones, after which the refused records, sent again, land behind them. With
/// `enable.gapless.guarantee` it raises a fatal error instead and fails everything after the gap;
/// the producer then starts a new librdkafka instance (a new producer id) on the next `enqueue`,
/// and the sender decides what to send again, in its own order. A sender with records still in
/// flight when that happens (the outbox relay) says what its next records follow
/// (`enqueue(_:following:)`), so that they are not sent ahead of the failed ones.
public final class KafkaProducer: Service, Sendable {
    /// The librdkafka producer in use, and the loop serving its reports.
    private struct Instance: Sendable {
        let client: RDKafkaClient
        let polling: PollLoop
        /// Which instance this is: 1 for the first, one more for each started after a fatal error.
        let generation: Int
    }

    private let instance: Mutex<Instance>
    private let properties: [String: String]
    private let context: ProducerCallbackContext
    private let closing = Atomic<Bool>(false)
    private let logger: Logger
    /// The instance in use now, for flushing, shutting down and readiness checks.
    private var currentClient: RDKafkaClient { instance.withLock { $0.client } }

    public init(configuration: KafkaProducerConfiguration, logger: Logger = Logger(label: "fission.kafka.producer")) throws {
        let context = ProducerCallbackContext(logger: logger)
        let properties = configuration.librdkafkaProperties
        self.instance = Mutex(try Self.start(properties: properties, context: context, generation: 1))
        self.properties = properties
        self.context = context
        self.logger = logger
    }

    private static func start(properties: [String: String], context: ProducerCallbackContext, generation: Int) throws(KafkaError) -> Instance {
        let client = try RDKafkaClient(type: RD_KAFKA_PRODUCER, properties: properties, context: context) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
                guard let message, let opaque else { return }
                let context = Unmanaged<ProducerCallbackContext>.fromOpaque(opaque).takeUnretainedValue()
                let tag = Int(bitPattern: message.pointee._private)
                if message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR {
                    context.complete(tag, .success((message.pointee.partition, message.pointee.offset)))
                } else {
                    context.complete(tag, .failure(KafkaError(message.pointee.err)))
                }
            }
        }
        return Instance(client: client, polling: PollLoop(client: client, label: "fission.kafka.producer.poll"), generation: generation)
    }

    deinit {
        instance.withLock { $0.polling.stop() }
    }

    /// The client to produce records with that follow `earlier` ones, and its generation: a new
    /// client when the current one has raised a fatal error and nothing is to be followed (its
    /// records still queued or in flight fail and are reported; its loop ends once they are);
    /// `nil` when the client `earlier` went to has been replaced since (see `behindAGap`).
    private func client(following earlier: KafkaDeliveries?) -> (client: RDKafkaClient?, generation: Int) {
        instance.withLock { instance in
            if let earlier, earlier.generation != instance.generation { return (nil, earlier.generation) }
            // With earlier records on it, a stopped client fails these at once, behind them.
            guard earlier == nil, let fatal = instance.client.fatalError(), !closing.load(ordering: .acquiring) else {
                return (instance.client, instance.generation)
            }
            do {
                let replacement = try Self.start(properties: properties, context: context, generation: instance.generation + 1)
                logger.warning("Kafka producer stopped on a fatal error; started a new one", metadata: ["error": "\(fatal)"])
                instance.polling.retire()
                instance = replacement
            } catch {
                // Its records fail with the fatal error, and the next enqueue tries again.
                logger.error("Kafka producer stopped on a fatal error and could not be started again", metadata: ["error": "\(error)"])
            }
            return (instance.client, instance.generation)
        }
    }

    /// Sends one record and waits for the broker's acknowledgement.
    @discardableResult
    public func send(_ message: KafkaOutgoingMessage) async throws -> KafkaDeliveryReport {
        try await enqueue([message]).outcomes()[0].get()
    }

    /// Sends records and waits for all their acknowledgements: one outcome per record, in order.
    /// Faster than awaiting each `send` for bulk work (outbox relay, benchmarks).
    public func send(_ messages: [KafkaOutgoingMessage]) async -> [Result<KafkaDeliveryReport, KafkaError>] {
        await enqueue(messages).outcomes()
    }

    /// Hands records to librdkafka now (waiting only while its local queue is full, and not at all
    /// once the task is cancelled: those records fail with `KafkaError.notHandedOver`) and returns
    /// their acknowledgements to await later. Records handed over by successive calls from one
    /// task keep that order on each partition, which awaiting `send` from separate tasks would
    /// not promise: keep several batches in flight this way.
    ///
    /// `following`: records handed over earlier that these must not overtake. If the producer
    /// has started a new instance since (after a fatal error: see the type's documentation),
    /// these fail at once with `KafkaError.behindAGap` instead of being sent.
    public func enqueue(_ messages: [KafkaOutgoingMessage], following earlier: KafkaDeliveries? = nil) async -> KafkaDeliveries {
        let (client, generation) = client(following: earlier)
        guard !messages.isEmpty else { return KafkaDeliveries(batch: nil, generation: generation) }
        let batch = ProducerCallbackContext.BatchWaiter(messages)
        let firstTag = context.register(batch)
        guard let client else {
            for index in messages.indices { context.complete(firstTag + index, .failure(.behindAGap)) }
            return KafkaDeliveries(batch: batch, generation: generation)
        }
        var next = 0
        while next < messages.count {
            next = messages.withUnsafeBufferPointer { produce($0, from: next, firstTag: firstTag, on: client) }
            guard next < messages.count else { break }
            // librdkafka's local queue is full. A cancelled sender stops here (its sleep would
            // return at once, and with records that never time out the queue stays full for as
            // long as the broker is down): the records not handed over fail, never sent.
            if Task.isCancelled {
                for index in next..<messages.count { context.complete(firstTag + index, .failure(.notHandedOver)) }
                break
            }
            // Give the broker time to drain it.
            try? await Task.sleep(for: .milliseconds(2))
        }
        return KafkaDeliveries(batch: batch, generation: generation)
    }

    /// Hands records to librdkafka from `start` until its local queue is full; where it stopped.
    ///
    /// Every 256 records it serves the delivery reports already in (non-blocking), so that
    /// under load reports are served by the thread that produced their records, which also
    /// frees them: glibc recycles the memory in that thread's cache, where a free from the
    /// poll thread goes back to the producing thread's arena under its lock, and no other
    /// thread has to be woken (300,000 records without kcat: 588k/s against 500–525k/s).
    private func produce(_ records: UnsafeBufferPointer<KafkaOutgoingMessage>, from start: Int, firstTag: Int, on client: RDKafkaClient) -> Int {
        var index = start
        while index < records.count {
            let tag = firstTag + index
            if closing.load(ordering: .acquiring) {
                context.complete(tag, .failure(.closed))
            } else {
                let err = produce(records[index], tag: tag, on: client)
                if err == RD_KAFKA_RESP_ERR__QUEUE_FULL { break }
                if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    var refused = KafkaError(err)
                    refused.refusedBeforeSending = true
                    context.complete(tag, .failure(refused))
                }
            }
            index += 1
            if index % 256 == 0 { rd_kafka_poll(client.handle, 0) }
        }
        return index
    }

    /// Non-blocking: librdkafka copies the record into its queue.
    private func produce(_ message: KafkaOutgoingMessage, tag: Int, on client: RDKafkaClient) -> rd_kafka_resp_err_t {
        var headers: OpaquePointer? = nil
        if !message.headers.isEmpty {
            headers = rd_kafka_headers_new(message.headers.count)
            for header in message.headers {
                if let value = header.value {
                    value.withUnsafeBytes { _ = rd_kafka_header_add(headers, header.key, -1, $0.baseAddress, $0.count) }
                } else {
                    rd_kafka_header_add(headers, header.key, -1, nil, 0)
                }
            }
        }
        let opaque = UnsafeMutableRawPointer(bitPattern: tag)
        let err = message.value.withUnsafeBytes { value in
            withOptionalBytes(message.key) { key in
                fission_rd_kafka_produce(
                    client.handle, message.topic, message.partition ?? RD_KAFKA_PARTITION_UA,
                    key?.baseAddress, key?.count ?? 0, value.baseAddress, value.count, headers, opaque)
            }
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR, let headers { rd_kafka_headers_destroy(headers) }
        return err
    }

    /// Waits until everything queued is acknowledged or `timeout` passed; true when drained.
    public func flush(timeout: Duration) async -> Bool {
        let client = currentClient
        let milliseconds = timeout.librdkafkaMilliseconds
        let err = try? await onBlockingQueue(DispatchQueue(label: "fission.kafka.producer.flush")) { rd_kafka_flush(client.handle, milliseconds) }
        return err == RD_KAFKA_RESP_ERR_NO_ERROR
    }

    /// Stops accepting records, flushes what is queued within `deadline`, and fails every record
    /// still not acknowledged with a retriable purge error, so none is silently lost.
    public func shutdown(deadline: Duration = .seconds(10)) async {
        guard !closing.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if await flush(timeout: deadline) { return }
        let client = currentClient
        let outstanding = rd_kafka_outq_len(client.handle)
        logger.warning("producer shutting down with undelivered messages; failing them", metadata: ["count": "\(outstanding)"])
        rd_kafka_purge(client.handle, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
        // Purged messages' reports arrive through the poll loop.
        _ = await flush(timeout: .seconds(5))
    }

    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }
}

/// Serves a client's callbacks (`rd_kafka_poll`) on a dedicated queue until stopped, or, once
/// retired, until every record it still holds has been reported.
final class PollLoop: Sendable {
    private let stopped = Atomic<Bool>(false)
    private let retired = Atomic<Bool>(false)
    /// A retired client's records left unreported after this long are let go with it.
    static let retirementLimit: Duration = .seconds(30)

    init(client: RDKafkaClient, label: String) {
        let queue = DispatchQueue(label: label)
        queue.async { [self] in
            var retiredAt: ContinuousClock.Instant?
            while !self.stopped.load(ordering: .relaxed) {
                rd_kafka_poll(client.handle, 50)
                if retiredAt == nil, self.retired.load(ordering: .relaxed) {
                    retiredAt = .now
                    // Failed at once (reported as purged, which may be sent again) rather than
                    // left to whatever a fatal error leaves queued.
                    rd_kafka_purge(client.handle, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
                }
                if let retiredAt, rd_kafka_outq_len(client.handle) == 0 || ContinuousClock.now - retiredAt > Self.retirementLimit {
                    break
                }
            }
            // The loop's reference may be the last one: the client is destroyed here, off any
            // cooperative thread.
            _ = client
        }
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
    }

    /// Its client is replaced: serve the reports still to come, then stop.
    func retire() {
        retired.store(true, ordering: .relaxed)
    }
}

private func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
    guard let bytes else { return body(nil) }
    return bytes.withUnsafeBytes { body($0) }
}

extension KafkaProducer {
    /// Whether a broker answers a metadata request within `timeout` (for readiness checks).
    public func isBrokerReachable(timeout: Duration = .seconds(2)) async -> Bool {
        let client = self.currentClient
        let milliseconds = timeout.librdkafkaMilliseconds
        return (try? await onBlockingQueue(DispatchQueue(label: "fission.kafka.producer.metadata")) { () -> Bool in
            var metadata: UnsafePointer<rd_kafka_metadata>? = nil
            let err = rd_kafka_metadata(client.handle, 0, nil, &metadata, milliseconds)
            if let metadata { rd_kafka_metadata_destroy(metadata) }
            return err == RD_KAFKA_RESP_ERR_NO_ERROR
        }) ?? false
    }
}

/// The acknowledgements of records already handed to librdkafka (`KafkaProducer.enqueue`).
public struct KafkaDeliveries: Sendable {
    let batch: ProducerCallbackContext.BatchWaiter?
    /// The producer instance the records went to (or, refused `behindAGap`, would have followed).
    let generation: Int

    /// Whether every record has been reported: `outcomes()` would return at once.
    public var isReported: Bool { batch?.isReported ?? true }

    /// Calls `body` once every record is reported (at once if they are already), for a sender
    /// that waits for other things too. It runs on the thread that served the last report: it
    /// must only signal.
    public func whenReported(_ body: @escaping @Sendable () -> Void) {
        guard let batch else { return body() }
        batch.whenReported(body)
    }

    /// One outcome per record, in the order they were handed over. Await it once.
    ///
    /// A producer that never times records out (`messageTimeoutMilliseconds = 0`) reports nothing
    /// while the broker is down, so a cancelled task stops waiting: it gets the reports that
    /// arrive within `cancellationGrace` (a service stopping normally loses none), the records
    /// still unreported then failing with `KafkaError.notAwaited` (they may yet be delivered).
    public func outcomes(cancellationGrace: Duration = .seconds(3)) async -> [Result<KafkaDeliveryReport, KafkaError>] {
        guard let batch else { return [] }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { batch.arm($0) }
        } onCancel: {
            Task {
                try? await Task.sleep(for: cancellationGrace)
                batch.abandon()
            }
        }
    }
}
