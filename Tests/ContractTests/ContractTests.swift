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
        let event = try EventCoding.decode(Payload.self, from: Array(original))
        // The services' decoder reads exactly what Foundation's, configured alike, reads.
        #expect(event == (try EventCoding.decoder().decode(CloudEvent<Payload>.self, from: original)), "\(Payload.eventType) is read differently from JSONDecoder")
        #expect(try EventCoding.decodeHeader(from: Array(original)) == (try EventCoding.decoder().decode(CloudEventHeader.self, from: original)))
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

    /// Damaged copies of an example (a byte replaced, dropped or doubled): whatever the services'
    /// decoder reads, Foundation's reads the same; where it refuses what Foundation reads, the
    /// text is not JSON (Foundation lets through trailing commas, control characters, and bad
    /// numbers, escapes or UTF-8 in values it is not asked for).
    func damagedCopiesAreReadAsFoundationReadsThem<Payload: DomainEvent>(_ type: Payload.Type, random: inout SplitMix64) throws -> (same: Int, notJSON: Int) {
        let pretty = Array(try Self.example(Payload.eventType))
        let compact = try EventCoding.encode(try EventCoding.decode(Payload.self, from: pretty))
        let palette = Array(#"{}[],:"\ 0123456789-+.eEtrufalsnxZ"#.utf8) + [0x00, 0x1F, 0x7F, 0xC3, 0xA9, 0xFF]
        var (same, notJSON) = (0, 0)
        for source in [pretty, compact] {
            for _ in 0..<100 {
                var damaged = source
                let at = Int.random(in: 0..<damaged.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: damaged[at] = palette.randomElement(using: &random)!
                case 1: damaged.remove(at: at)
                default: damaged.insert(damaged[at], at: at)
                }
                let ours = Result { try EventCoding.decode(Payload.self, from: damaged) }
                let foundation = Result { try EventCoding.decoder().decode(CloudEvent<Payload>.self, from: Data(damaged)) }
                switch (ours, foundation) {
                case (.success(let event), .success(let theirs)):
                    #expect(event == theirs, "\(Payload.eventType): \(String(decoding: damaged, as: UTF8.self)) read differently")
                    same += 1
                case (.success, .failure(let error)):
                    Issue.record("\(Payload.eventType): \(String(decoding: damaged, as: UTF8.self)) read, but Foundation refuses it: \(error)")
                case (.failure(let error), .success):
                    guard case DecodingError.dataCorrupted(let context) = error, context.codingPath.isEmpty,
                          context.debugDescription.hasPrefix("The given data was not valid JSON") else {
                        Issue.record("\(Payload.eventType): \(String(decoding: damaged, as: UTF8.self)) refused, but Foundation reads it: \(error)")
                        continue
                    }
                    notJSON += 1
                case (.failure, .failure):
                    same += 1
                }
            }
        }
        return (same, notJSON)
    }

    @Test func damagedEventsAreReadAsFoundationReadsThemOrRefusedAsNotJSON() throws {
        var random = SplitMix64(seed: 2026_12_01)
        var (same, notJSON) = (0, 0)
        for type in EventCatalog.all {
            let counts = try damagedCopiesAreReadAsFoundationReadsThem(type, random: &random)
            same += counts.same
            notJSON += counts.notJSON
        }
        // Most damage is caught alike; the rest is Foundation's leniency, not a different reading.
        #expect(same > notJSON * 4, "\(same) alike, \(notJSON) refused as not JSON")
    }

    func decodesWithUnknownFields<Payload: DomainEvent>(_ type: Payload.Type) throws {
        var envelope = try JSONSerialization.jsonObject(with: Self.example(Payload.eventType)) as! [String: Any]
        var data = envelope["data"] as! [String: Any]
        data["addedInAFutureMinorVersion"] = ["nested": true]
        envelope["data"] = data
        envelope["newextension"] = "x"
        let newer = try JSONSerialization.data(withJSONObject: envelope)
        let event = try EventCoding.decode(Payload.self, from: Array(newer))
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
