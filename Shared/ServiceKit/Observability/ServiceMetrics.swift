import Foundation
import Prometheus

/// The Prometheus metrics of one service process, served at `/metrics`. Kept in the service's
/// own registry (not the global MetricsSystem) so several services can live in one test process.
public final class ServiceMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()

    public init() {}

    func recordRequest(method: String, route: String, status: Int, duration: Duration) {
        registry.makeCounter(descriptor: Self.metric("http_requests_total"), labels: [("method", method), ("route", route), ("status", String(status))]
        ).increment()
        registry.makeDurationHistogram(descriptor: Self.metric("http_request_duration_seconds"), labels: [("method", method), ("route", route)],
            buckets: [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                      .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5)]
        ).recordNanoseconds(Int64(duration.components.seconds) * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    /// Rows waiting in the outbox.
    public func setOutboxBacklog(_ rows: Int) {
        registry.makeGauge(descriptor: Self.metric("outbox_backlog"), labels: []).set(Double(rows))
    }

    public func countOutboxPublished(_ count: Int) {
        registry.makeCounter(descriptor: Self.metric("outbox_published_total"), labels: []).increment(by: Int64(count))
    }

    /// Outbox events the producer or the broker refused for what they are (`outbox_dead_letters`):
    /// each is an event its consumers never see, so alert on any.
    public func countOutboxDeadLettered(_ count: Int) {
        registry.makeCounter(descriptor: Self.metric("outbox_dead_lettered_total"), labels: []).increment(by: Int64(count))
    }

    /// How far the consumer is behind the newest record of a partition it owns.
    public func setConsumerLag(group: String, topic: String, partition: Int32, lag: Int64) {
        registry.makeGauge(descriptor: Self.metric("consumer_lag"), labels: [("group", group), ("topic", topic), ("partition", String(partition))]
        ).set(Double(lag))
    }

    public func countConsumed(group: String, outcome: String) {
        registry.makeCounter(descriptor: Self.metric("consumer_messages_total"), labels: [("group", group), ("outcome", outcome)]).increment()
    }

    /// Names are complete already (`http_requests_total`); no namespace or unit is appended.
    static func metric(_ name: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: "")
    }

    public func render() -> String {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}
