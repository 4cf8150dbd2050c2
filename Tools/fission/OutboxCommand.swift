import ArgumentParser
import Foundation
import Logging
import Postgres
import ServiceKit

/// `fission outbox dead-letters|requeue`: the events a service's relay could not publish because
/// the producer or the broker refused them (too large, malformed), and sending them again once
/// the cause is mended.
struct OutboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outbox", abstract: "List and requeue a service's refused outbox events.",
        subcommands: [List.self, Requeue.self])

    struct Database: ParsableArguments {
        @Option(help: "postgres://user:pass@host:port/db of the service's database")
        var databaseURL: String

        func withPool<T>(_ body: (PostgresPool) async throws -> T) async throws -> T {
            var logger = Logger(label: "fission.outbox")
            logger.logLevel = .critical
            return try await PostgresPool.using(try PostgresConfiguration(url: databaseURL), options: .init(maxConnections: 1), logger: logger, body)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "dead-letters", abstract: "Print every refused event, oldest first, with the reason.")

        @OptionGroup var database: Database

        func run() async throws {
            let letters = try await failingReadably("fission outbox dead-letters") { try await database.withPool(OutboxDeadLetters.list) }
            if letters.isEmpty { print("no outbox dead letters") }
            let time = ISO8601DateFormatter()
            for letter in letters {
                print("\(letter.eventID.uuidString.lowercased())  \(time.string(from: letter.deadLetteredAt))  \(letter.eventType)  "
                    + "to \(letter.topic) key \(letter.key)  \(letter.payloadBytes) bytes  \(letter.error)")
            }
        }
    }

    struct Requeue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put refused events back in the outbox, behind what waits there (after the cause is mended).")

        @OptionGroup var database: Database

        @Option(name: .customLong("event-id"), help: "The event to requeue (repeatable).")
        var eventIDs: [String]

        func run() async throws {
            try await failingReadably("fission outbox requeue") {
                let ids = try eventIDs.map { text in
                    guard let id = UUID(uuidString: text) else { throw ValidationError("'\(text)' is not an event id") }
                    return id
                }
                guard !ids.isEmpty else { throw ValidationError("name at least one --event-id") }
                let requeued = try await database.withPool { try await OutboxDeadLetters.requeue(ids, on: $0) }
                print("requeued \(requeued) event\(requeued == 1 ? "" : "s")")
            }
        }
    }
}
