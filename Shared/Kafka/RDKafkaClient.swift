import CRdKafka
import Dispatch
import Logging

/// State the C callbacks reach through librdkafka's opaque pointer. It outlives the handle: the
/// client releases it only after `rd_kafka_destroy` returned, since callbacks (logs, delivery
/// reports) may fire until then.
class RDKafkaCallbackContext: @unchecked Sendable {
    let logger: Logger
    init(logger: Logger) { self.logger = logger }

    /// Reached from C: `rd_kafka_opaque(rk)` is the retained context.
    static func from(_ opaque: UnsafeMutableRawPointer?) -> RDKafkaCallbackContext? {
        opaque.map { Unmanaged<RDKafkaCallbackContext>.fromOpaque($0).takeUnretainedValue() }
    }
}

/// Owns one `rd_kafka_t`. The only place a handle is created and destroyed.
final class RDKafkaClient: @unchecked Sendable {
    /// Settings librdkafka warns about at every start that we chose knowingly (see
    /// `KafkaProducer`): its warning is logged at info level, not as something to act on.
    static let chosenDespiteWarning = ["enable.gapless.guarantee is experimental"]

    let handle: OpaquePointer
    /// Released in `deinit` after the handle is destroyed (see `RDKafkaCallbackContext`).
    private let context: Unmanaged<RDKafkaCallbackContext>

    init(
        type: rd_kafka_type_t, properties: [String: String], context: RDKafkaCallbackContext,
        configure: (OpaquePointer) -> Void = { _ in }
    ) throws(KafkaError) {
        guard let conf = rd_kafka_conf_new() else { throw KafkaError.client("rd_kafka_conf_new failed") }
        var errorText = [CChar](repeating: 0, count: 512)
        for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
            if rd_kafka_conf_set(conf, key, value, &errorText, errorText.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                throw KafkaError.client("invalid Kafka setting \(key): \(cString(errorText))")
            }
        }
        let retained = Unmanaged.passRetained(context)
        rd_kafka_conf_set_opaque(conf, retained.toOpaque())
        rd_kafka_conf_set_log_cb(conf) { rk, level, facility, message in
            guard let rk, let context = RDKafkaCallbackContext.from(rd_kafka_opaque(rk)) else { return }
            let text = message.map { String(cString: $0) } ?? ""
            let facilityName = facility.map { String(cString: $0) } ?? ""
            let metadata: Logger.Metadata = ["facility": "\(facilityName)"]
            // syslog levels: 0-2 critical, 3 error, 4 warning, 5-6 info/notice, 7 debug.
            switch facilityName == "CONFWARN" && RDKafkaClient.chosenDespiteWarning.contains(where: text.contains) ? 6 : level {
            case ...2: context.logger.critical("\(text)", metadata: metadata)
            case 3: context.logger.error("\(text)", metadata: metadata)
            case 4: context.logger.warning("\(text)", metadata: metadata)
            case 5, 6: context.logger.info("\(text)", metadata: metadata)
            default: context.logger.debug("\(text)", metadata: metadata)
            }
        }
        configure(conf)
        // rd_kafka_new takes ownership of conf on success only.
        guard let handle = rd_kafka_new(type, conf, &errorText, errorText.count) else {
            rd_kafka_conf_destroy(conf)
            retained.release()
            throw KafkaError.client("cannot create Kafka client: \(cString(errorText))")
        }
        self.handle = handle
        self.context = retained
    }

    deinit {
        rd_kafka_destroy(handle)
        context.release()
    }

    /// The client's fatal error, if librdkafka raised one.
    func fatalError() -> KafkaError? {
        // An atomic read while there is none (asked before every batch a producer sends).
        guard rd_kafka_fatal_error(handle, nil, 0) != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        var text = [CChar](repeating: 0, count: 512)
        let code = rd_kafka_fatal_error(handle, &text, text.count)
        guard code != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        return KafkaError(code: code.rawValue, message: cString(text), isRetriable: false, isFatal: true)
    }
}

extension Duration {
    /// Whole milliseconds, as librdkafka's timeouts take them (clamped to `Int32`).
    var librdkafkaMilliseconds: Int32 {
        Int32(clamping: components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000)
    }
}

/// Runs blocking librdkafka calls (poll, flush, close) off Swift's cooperative threads.
///
/// The queue must be one of the caller's own (`DispatchQueue(label:)`), never
/// `DispatchQueue.global()`: on Linux Swift's concurrency runs its tasks on that global queue's
/// threads, so a call blocked there holds up every task of the process (until Dispatch adds a
/// thread, about a second later).
func onBlockingQueue<T: Sendable>(_ queue: DispatchQueue, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        queue.async { continuation.resume(with: Result { try body() }) }
    }
}

/// A topic and partition, as in rebalance events and delivery reports.
public struct KafkaTopicPartition: Sendable, Hashable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32
    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }
    public var description: String { "\(topic)[\(partition)]" }

    static func list(_ pointer: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) -> [KafkaTopicPartition] {
        guard let pointer else { return [] }
        let list = pointer.pointee
        return (0..<Int(list.cnt)).map { index in
            let element = list.elems[index]
            return KafkaTopicPartition(topic: String(cString: element.topic), partition: element.partition)
        }
    }
}

/// A Kafka record header.
public struct KafkaHeader: Sendable, Hashable {
    public var key: String
    public var value: [UInt8]?
    public init(key: String, value: [UInt8]?) {
        self.key = key
        self.value = value
    }
    public init(key: String, value: String) {
        self.init(key: key, value: Array(value.utf8))
    }
    public var stringValue: String? { value.map { String(decoding: $0, as: UTF8.self) } }
}

/// Text of a NUL-terminated buffer librdkafka filled in.
func cString(_ buffer: [CChar]) -> String {
    buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}
