import Domain
import FissionTesting
import Foundation
import Testing

/// The contracts in Shared/Contracts against the Swift types and the topic registry.
@Suite("Event contracts")
struct ContractTests {
    static let contracts = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Shared/Contracts")

    static func example(_ eventType: String) throws -> Data {
        try Data(contentsOf: contracts.appendingPathComponent("examples/\(eventType).example.json"))
    }

    static func json(_ data: Data) throws -> NSObject {
        try JSONSerialization.jsonObject(with: data) as! NSObject
    }

    @Test func everyExampleValidatesAgainstItsSchemaAndArtifactsMatchTheSpec() async throws {
        let problem = try await ChildProcess.runCapturingFailure(
            "/usr/bin/env", ["python3", Self.contracts.appendingPathComponent("validate.py").path], timeLimit: .seconds(300))
        #expect(problem == nil, "\(problem ?? "")")
    }

    func roundTrip<Payload: DomainEvent>(_ type: Payload.Type) throws {
        let original = try Self.example(Payload.eventType)
        let event = try EventCoding.decode(Payload.self, from: original)
        #expect(event.type == Payload.eventType)
        #expect(event.subject == event.data.aggregateID)
        #expect(event.source == "/fission/\(Payload.topic.producer.rawValue)")
        // Encoding back loses nothing and invents nothing.
        let encoded = Data(try EventCoding.encode(event))
        #expect(try Self.json(encoded) == Self.json(original), "\(Payload.eventType) does not round-trip")
        // The services' encoder writes exactly what Foundation's, configured alike, writes.
        #expect(encoded == (try EventCoding.encoder().encode(event)), "\(Payload.eventType) is written differently from JSONEncoder")
    }

    @Test func everyEventTypeDecodesItsExampleAndEncodesItBackWithoutLoss() throws {
        for type in EventCatalog.all {
            try roundTrip(type)
        }
    }

    func decodesWithUnknownFields<Payload: DomainEvent>(_ type: Payload.Type) throws {
        var envelope = try JSONSerialization.jsonObject(with: Self.example(Payload.eventType)) as! [String: Any]
        var data = envelope["data"] as! [String: Any]
        data["addedInAFutureMinorVersion"] = ["nested": true]
        envelope["data"] = data
        envelope["newextension"] = "x"
        let newer = try JSONSerialization.data(withJSONObject: envelope)
        let event = try EventCoding.decode(Payload.self, from: newer)
        #expect(event.type == Payload.eventType)
    }

    @Test func aNewerProducersExtraFieldsDoNotBreakDecoding() throws {
        for type in EventCatalog.all {
            try decodesWithUnknownFields(type)
        }
    }

    @Test func everyEventTypeHasASchemaAndAnExampleAndEverySchemaAType() throws {
        let schemas = try FileManager.default.contentsOfDirectory(atPath: Self.contracts.appendingPathComponent("schemas").path)
            .map { String($0.dropLast(".schema.json".count)) }
        #expect(Set(schemas) == Set(EventCatalog.all.map { $0.eventType }))
        for type in EventCatalog.all {
            #expect(throws: Never.self) { try Self.example(type.eventType) }
        }
        #expect(Set(EventCatalog.all.map { $0.topic }) == Set(Topics.all), "every topic carries events")
    }

    @Test func asyncAPINamesEveryTopicWithItsProducerAndConsumers() throws {
        let text = try String(contentsOf: Self.contracts.appendingPathComponent("asyncapi.yaml"), encoding: .utf8)
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(lines.contains("asyncapi: 3.0.0"))
        for topic in Topics.all {
            guard let at = lines.firstIndex(of: "address: \(topic.name)") else {
                Issue.record("asyncapi.yaml has no channel for \(topic.name)")
                continue
            }
            let block = lines[at..<min(at + 8, lines.count)]
            #expect(block.contains("x-producer: \(topic.producer.rawValue)"), "\(topic.name) producer")
            #expect(block.contains("x-consumers: [\(topic.consumers.map(\.rawValue).joined(separator: ", "))]"), "\(topic.name) consumers")
            #expect(block.contains("x-partitions: \(topic.partitions)"), "\(topic.name) partitions")
            for type in EventCatalog.types(on: topic) {
                #expect(text.contains("name: \(type.eventType)"), "\(type.eventType) missing from asyncapi.yaml")
            }
        }
    }
}
