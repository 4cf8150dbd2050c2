import CRdKafka

/// The one error type of the Kafka layer: librdkafka's code with its name, and whether trying
/// again can help (`isRetriable`) or the client is done for (`isFatal`).
public struct KafkaError: Error, Sendable, CustomStringConvertible, Equatable {
    /// librdkafka's `rd_kafka_resp_err_t` (negative: client-side, positive: broker error codes).
    public var code: Int32
    public var name: String
    public var message: String
    public var isRetriable: Bool
    public var isFatal: Bool
    /// The client refused the record before sending it (`KafkaProducer` at produce time), so the
    /// refusal concerns that record alone; the broker refuses a whole batch for one of its records.
    public var refusedBeforeSending = false

    public init(code: Int32, message: String? = nil, isRetriable: Bool? = nil, isFatal: Bool = false) {
        let err = rd_kafka_resp_err_t(code)
        self.code = code
        self.name = String(cString: rd_kafka_err2name(err))
        self.message = message ?? String(cString: rd_kafka_err2str(err))
        self.isRetriable = isRetriable ?? Self.retriableCodes.contains(code)
        self.isFatal = isFatal || err == RD_KAFKA_RESP_ERR__FATAL
    }

    init(_ err: rd_kafka_resp_err_t, message: String? = nil) {
        self.init(code: err.rawValue, message: message)
    }

    /// Takes ownership of an `rd_kafka_error_t` and destroys it.
    init(consuming error: OpaquePointer) {
        defer { rd_kafka_error_destroy(error) }
        self.init(
            code: rd_kafka_error_code(error).rawValue,
            message: String(cString: rd_kafka_error_string(error)),
            isRetriable: rd_kafka_error_is_retriable(error) == 1 ? true : nil,
            isFatal: rd_kafka_error_is_fatal(error) == 1)
    }

    /// A failure of this layer's own making (bad configuration, closed client).
    static func client(_ message: String) -> KafkaError {
        KafkaError(code: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue, message: message, isRetriable: false)
    }

    public static let closed = KafkaError(code: RD_KAFKA_RESP_ERR__DESTROY.rawValue, message: "the client is closed", isRetriable: false)

    /// A record whose report its sender stopped waiting for (`KafkaDeliveries.outcomes`): not
    /// known to be delivered, so to be sent again.
    public static let notAwaited = KafkaError(
        code: RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue, message: "the sender stopped waiting for the delivery report", isRetriable: true)

    /// A record its sender was cancelled before handing over (`KafkaProducer.enqueue` facing a full
    /// local queue): never sent, so to be sent again.
    public static let notHandedOver = KafkaError(
        code: RD_KAFKA_RESP_ERR__QUEUE_FULL.rawValue, message: "the sender was cancelled while the local queue was full", isRetriable: true)

    /// A record that had to follow records handed to a producer instance that has since been
    /// replaced (`KafkaProducer.enqueue(_:following:)`): never sent, so that it does not overtake
    /// them when they are sent again.
    public static let behindAGap = KafkaError(
        code: RD_KAFKA_RESP_ERR__GAPLESS_GUARANTEE.rawValue,
        message: "not sent: the producer started again after a gap, behind records still to be sent again", isRetriable: true)

    /// The broker or the client refuses the record itself (too large, malformed): sending it again
    /// cannot succeed, while other records still can. Not an authorization or topic error, which
    /// concern every record and which an operator may mend. From the broker it may be a batch's
    /// fault rather than this record's (see `refusedBeforeSending`).
    public var rejectsRecord: Bool { Self.recordRejectionCodes.contains(code) }

    /// Not `INVALID_MSG` (a checksum that failed on the way: sending again may succeed).
    static let recordRejectionCodes: Set<Int32> = [
        RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE,
        RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE, RD_KAFKA_RESP_ERR_INVALID_RECORD, RD_KAFKA_RESP_ERR__BAD_MSG,
    ].reduce(into: Set<Int32>()) { $0.insert($1.rawValue) }

    /// Conditions that pass: a broker down or slow, leadership moving, a full local queue, a
    /// message purged or timed out before delivery (it can be sent again).
    static let retriableCodes: Set<Int32> = [
        RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT,
        RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR__PURGE_QUEUE,
        RD_KAFKA_RESP_ERR__PURGE_INFLIGHT, RD_KAFKA_RESP_ERR__RESOLVE, RD_KAFKA_RESP_ERR__WAIT_COORD,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION,
        RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
    ].reduce(into: Set<Int32>()) { $0.insert($1.rawValue) }

    public var description: String {
        "KafkaError \(name) (\(code)): \(message)\(isFatal ? " [fatal]" : "")\(isRetriable ? " [retriable]" : "")"
    }
}
