import Domain
import Foundation
import Postgres

/// The event contracts (Shared/Contracts) for service tests: examples to feed consumers, and a
/// check that what a service appended to its outbox validates against the JSON Schemas.
public enum Contracts {
    public static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Contracts")

    /// The example envelope of an event type.
    public static func example(_ eventType: String) throws -> Data {
        try Data(contentsOf: directory.appendingPathComponent("examples/\(eventType).example.json"))
    }

    /// Writes every outbox payload to a folder and validates each against its type's schema
    /// (`validate.py --instances`). Returns the event types seen and the validator's complaints.
    public static func validateEmitted(on pool: PostgresPool) async throws -> (types: Set<String>, problems: String?) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("emitted-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        var types: Set<String> = []
        for (index, row) in try await pool.query("SELECT event_type, payload FROM outbox_history ORDER BY id").enumerated() {
            types.insert(try row.decode("event_type"))
            try row.decode("payload", as: String.self).write(to: folder.appendingPathComponent("\(index).json"), atomically: true, encoding: .utf8)
        }
        let output = try await ChildProcess.runCapturingFailure(
            "/usr/bin/env", ["python3", directory.appendingPathComponent("validate.py").path, "--instances", folder.path],
            timeLimit: .seconds(300))
        return (types, output)
    }
}

/// The events of one type a service appended to its outbox, oldest first.
public func emitted<Payload: DomainEvent>(_ type: Payload.Type, on pool: PostgresPool) async throws -> [Payload] {
    try await pool.query("SELECT payload FROM outbox_history WHERE event_type = \(Payload.eventType) ORDER BY id").map {
        try EventCoding.decode(Payload.self, from: Array(try $0.decode("payload", as: String.self).utf8)).data
    }
}
