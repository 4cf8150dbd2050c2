import Foundation

/// A fact one service publishes: past tense, named in the domain (`AssistRecorded`).
/// The types themselves are generated from `Shared/Contracts/events.py` (see Events.swift).
public protocol DomainEvent: Codable, Sendable, Hashable {
    /// `AssistRecorded`
    static var name: String { get }
    static var topic: Topic { get }
    /// The aggregate the event is about: the Kafka key and the envelope's subject.
    var aggregateID: String { get }
}

extension DomainEvent {
    /// The CloudEvents type, `<service>.<Name>.v<major>`: `assists.AssistRecorded.v1`.
    public static var eventType: String { "\(topic.producer.rawValue).\(name).\(topic.majorVersion)" }
}

/// Every event type, by CloudEvents type (`EventCatalog.all` is generated).
public enum EventCatalog {
    public static func type(named eventType: String) -> (any DomainEvent.Type)? {
        byType[eventType]
    }

    public static func types(on topic: Topic) -> [any DomainEvent.Type] {
        all.filter { $0.topic == topic }
    }

    private static let byType: [String: any DomainEvent.Type] = Dictionary(
        uniqueKeysWithValues: all.map { ($0.eventType, $0) })
}

extension Topic {
    /// `v1` of `assists.task.v1`.
    public var majorVersion: String { String(name.split(separator: ".").last ?? "v1") }
}
