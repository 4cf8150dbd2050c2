import ArgumentParser
import Domain
import Foundation
import Kafka
import Logging
import ServiceKit

/// `fission dlq list|replay`: what a consumer group could not handle, and sending it back once
/// the cause is fixed.
struct DeadLetters: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq", abstract: "List and replay a consumer group's dead-lettered events.", subcommands: [List.self, Replay.self])

    struct Source: ParsableArguments {
        @Option(help: "Kafka bootstrap servers (default: FISSION_KAFKA_BROKERS).")
        var brokers = ProcessInfo.processInfo.environment["FISSION_KAFKA_BROKERS"] ?? ""

        @Option(help: "The consumer group: campaigns, assists, orders, levels or notifications.")
        var group: String

        @Flag(help: "The broker is the local stack's (short fetch waits and sessions).")
        var local = ProcessInfo.processInfo.environment["FISSION_KAFKA_LOCAL"] == "true"

        @Option(help: "Seconds to wait for the first dead letter before concluding there are none.")
        var wait: Double = 15

        func read() async throws -> [DeadLetterOffice.Letter] {
            guard !brokers.isEmpty else { throw ValidationError("no brokers: pass --brokers or set FISSION_KAFKA_BROKERS") }
            guard ServiceName(rawValue: group) != nil else {
                throw ValidationError("unknown group '\(group)': one of \(ServiceName.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let consumer = local
                ? KafkaConsumerConfiguration.local(bootstrapServers: brokers, groupID: group, topics: [])
                : KafkaConsumerConfiguration(bootstrapServers: brokers, groupID: group, topics: [])
            return try await DeadLetterOffice.read(group: group, consumer: consumer, firstWait: .seconds(wait), logger: Self.quietLogger)
        }

        static var quietLogger: Logger {
            var logger = Logger(label: "fission.dlq")
            logger.logLevel = .critical
            return logger
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print every dead letter of a group, oldest first.")

        @OptionGroup var source: Source

        func run() async throws {
            let letters = try await failingReadably("fission dlq list") { try await source.read() }
            if letters.isEmpty { print("no dead letters for \(source.group)") }
            for letter in letters {
                print("offset \(letter.offset)  \(letter.failedAt)  \(letter.eventType)  from \(letter.source)  \(letter.reason)")
            }
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send dead letters back to the topics they came from (after the cause is fixed).")

        @OptionGroup var source: Source

        @Option(name: .customLong("offset"), help: "Replay only the dead letter at this offset (repeatable).")
        var offsets: [Int64] = []

        @Option(help: "Replay only dead letters at or after this offset.")
        var fromOffset: Int64 = 0

        func run() async throws {
            try await failingReadably("fission dlq replay") {
                let letters = try await source.read().filter { letter in
                    letter.offset >= fromOffset && (offsets.isEmpty || offsets.contains(letter.offset))
                }
                let missing = Set(offsets).subtracting(letters.map(\.offset))
                guard missing.isEmpty else {
                    throw ValidationError("no dead letter at offset \(missing.sorted().map(String.init).joined(separator: ", "))")
                }
                let producer = try KafkaProducer(
                    configuration: KafkaProducerConfiguration(bootstrapServers: source.brokers), logger: Source.quietLogger)
                let sent: Int
                do {
                    sent = try await DeadLetterOffice.replay(letters, producer: producer)
                } catch {
                    await producer.shutdown()
                    throw error
                }
                await producer.shutdown()
                print("replayed \(sent) dead letter\(sent == 1 ? "" : "s") of \(source.group) to their source topics")
            }
        }
    }
}

/// Runs an operator command's work; any error ends it with one line on standard error and exit 1.
@discardableResult
func failingReadably<T>(_ command: String, _ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch {
        FileHandle.standardError.write(Data("\(command): \(error)\n".utf8))
        throw ExitCode.failure
    }
}
