import ArgumentParser
import Dispatch
import Domain
import Foundation
import Kafka
import Logging

/// The local Kafka-protocol broker as a process: librdkafka's mock cluster on loopback, with
/// every Fission topic created. Prints `bootstrap <address>` (and writes the address to
/// `--address-file`), then takes control commands, one per line, on stdin:
///
///     down | up                     take the brokers down / bring them back (data is kept)
///     rtt <ms>                      add round-trip time
///     errors <apiKey> <code>...     fail the next requests of an API with these error codes
///     clear <apiKey>                forget injected errors
///     topic <name> <partitions>     create another topic
///     quit                          stop
///
/// Each command is answered with `ok ...` or `error: ...`. SIGINT/SIGTERM stop it, and so does
/// the end of stdin with `--exit-when-input-closes`.
@main
struct FissionBroker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fission-broker",
        abstract: "Run the local Kafka-protocol broker (librdkafka mock cluster) with Fission's topics.")

    @Option(help: "Number of mock brokers.")
    var brokers: Int32 = 1

    @Option(help: "Write the bootstrap address to this file once listening.")
    var addressFile: String?

    @Option(name: .customLong("topic"), help: "Another topic to create, as name:partitions (repeatable).")
    var extraTopics: [String] = []

    @Flag(help: "Do not create Fission's own topics.")
    var noDefaultTopics = false

    @Flag(help: "Stop when standard input closes: the parent that controls it is gone.")
    var exitWhenInputCloses = false

    func run() throws {
        var logger = Logger(label: "fission.broker")
        logger.logLevel = .warning
        let broker: KafkaLocalBroker
        do {
            broker = try KafkaLocalBroker(brokerCount: brokers, logger: logger)
            var topics = noDefaultTopics ? [] : Topics.allWithDeadLetters
            for spec in extraTopics {
                let parts = spec.split(separator: ":")
                guard parts.count == 2, let partitions = Int32(parts[1]), partitions > 0 else {
                    throw ValidationError("--topic takes name:partitions, got '\(spec)'")
                }
                topics.append((String(parts[0]), partitions))
            }
            for topic in topics { try broker.createTopic(topic.name, partitions: topic.partitions) }
            if let addressFile {
                try broker.bootstrapServers.write(toFile: addressFile, atomically: true, encoding: .utf8)
            }
        } catch {
            FileHandle.standardError.write(Data("fission-broker: \(error)\n".utf8))
            throw ExitCode.failure
        }
        Self.say("bootstrap \(broker.bootstrapServers)")

        let signals = [SIGINT, SIGTERM].map { number -> DispatchSourceSignal in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .main)
            source.setEventHandler { Foundation.exit(0) }
            source.resume()
            return source
        }
        DispatchQueue.global().async {
            while let line = readLine() {
                let reply = Self.control(broker, line)
                DispatchQueue.main.async {
                    Self.say(reply)
                    if reply == "ok quit" { Foundation.exit(0) }
                }
            }
            // stdin closed: a controlling parent that died takes its broker with it; otherwise
            // keep serving until a signal (started with </dev/null as a daemon).
            if exitWhenInputCloses { DispatchQueue.main.async { Foundation.exit(0) } }
        }
        withExtendedLifetime((broker, signals)) { dispatchMain() }
    }

    /// Unbuffered, so a parent reading the pipe sees each line at once.
    static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    static func control(_ broker: KafkaLocalBroker, _ line: String) -> String {
        let words = line.split(separator: " ").map(String.init)
        switch words.first {
        case "down":
            broker.setDown(true)
            return "ok down"
        case "up":
            broker.setDown(false)
            return "ok up"
        case "rtt":
            guard words.count == 2, let ms = Int32(words[1]), ms >= 0 else { return "error: rtt <milliseconds>" }
            broker.setRoundTripTime(milliseconds: ms)
            return "ok rtt \(ms)"
        case "errors":
            guard words.count >= 3, let apiKey = Int16(words[1]) else { return "error: errors <apiKey> <code>..." }
            let codes = words.dropFirst(2).compactMap { Int32($0) }
            guard codes.count == words.count - 2 else { return "error: error codes are integers" }
            broker.injectRequestErrors(apiKey: apiKey, errorCodes: codes)
            return "ok errors \(apiKey) \(codes.count)"
        case "clear":
            guard words.count == 2, let apiKey = Int16(words[1]) else { return "error: clear <apiKey>" }
            broker.clearRequestErrors(apiKey: apiKey)
            return "ok clear \(apiKey)"
        case "topic":
            guard words.count == 3, let partitions = Int32(words[2]), partitions > 0 else {
                return "error: topic <name> <partitions>"
            }
            do {
                try broker.createTopic(words[1], partitions: partitions)
                return "ok topic \(words[1])"
            } catch {
                return "error: \(error)"
            }
        case "quit":
            return "ok quit"
        case nil:
            return "error: empty command"
        default:
            return "error: unknown command '\(words[0])' (down, up, rtt, errors, clear, topic, quit)"
        }
    }
}
