import ArgumentParser
import FissionTesting
import Foundation
import Kafka
import Logging
import ServiceKit

/// `make bench`: measured figures, each next to its reference measured in the same run.
@main
struct FissionBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fission-bench",
        abstract: "Benchmarks of Fission against reference tools, run on this machine.",
        subcommands: [KafkaBench.self, AssistsBench.self, RelayBench.self, ServicesBench.self, OrdersBench.self, EventsBench.self, BenchReport.self]
    )
}

struct KafkaBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kafka",
        abstract: "Producer and consumer throughput against kcat on the same local broker.")

    /// The local broker keeps at most 5 MiB per partition and silently drops older records, so a
    /// run must fit: 50,000 × 300 B over 8 partitions is under 2.5 MiB each.
    @Option(help: "Messages per run.")
    var messages = 50_000

    @Option(help: "Value size in bytes.")
    var size = 300

    @Option(help: "Delivery reports are awaited per batch of this many messages.")
    var batch = 10_000

    @Option(help: "JSON results file (merged with what is there).")
    var output = "bench/results.json"

    @Option(help: "Rounds; each figure is the median over them (a 2-core machine is noisy).")
    var rounds = 5

    func run() async throws {
        var samples: [[Double]] = []
        for _ in 0..<rounds { samples.append(try await measureOnce()) }
        func median(_ index: Int) -> Double { OpenLoop.Percentiles(samples.map { $0[index] }).p50 }
        let rows: [(String, Double, Double)] = [
            ("kafka.produce_msgs_per_s", median(0), median(1)),
            ("kafka.consume_msgs_per_s", median(2), median(3)),
        ]
        print("Kafka on the local broker: \(messages) messages of \(size) bytes, 1000 keys, 8 partitions, median of \(rounds) rounds")
        print(String(format: "%-28@ %14@ %14@ %8@", "figure" as NSString, "fission" as NSString, "kcat" as NSString, "ratio" as NSString))
        for (name, ours, reference) in rows {
            print(String(format: "%-28@ %14.0f %14.0f %7.2fx", name as NSString, ours, reference, ours / reference))
        }
        try BenchResults.record(rows.map { ($0.0, ["value": $0.1, "reference": $0.2, "ratio": $0.1 / $0.2, "target_ratio": 0.8]) }, to: output)
    }

    /// One round on a fresh broker: [our produce rate, kcat's, our consume rate, kcat's].
    func measureOnce() async throws -> [Double] {
        var logger = Logger(label: "fission.bench")
        logger.logLevel = .error
        let broker = try KafkaLocalBroker(logger: logger)
        let bootstrap = broker.bootstrapServers
        let value = String(repeating: "x", count: size)
        let keys = 1_000
        for topic in ["bench.kcat", "bench.fission"] { try broker.createTopic(topic, partitions: 8) }

        // kcat producer: same records (key:value lines), same idempotent/acks=all settings.
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("fission-bench-\(UUID()).txt")
        defer { try? FileManager.default.removeItem(at: input) }
        var lines = ""
        lines.reserveCapacity(messages * (size + 12))
        for index in 0..<messages { lines += "key-\(index % keys):\(value)\n" }
        try lines.write(to: input, atomically: true, encoding: .utf8)
        // kcat's time is its whole process, start-up and connection included.
        func kcatProduce(_ file: URL) throws -> Duration {
            try timed {
                try ChildProcess.run(
                    "/usr/bin/kcat",
                    ["-P", "-b", bootstrap, "-t", "bench.kcat", "-K", ":", "-l", file.path, "-q",
                     "-X", "enable.idempotence=true", "-X", "acks=all", "-X", "linger.ms=5"])
            }
        }
        let kcatProduceTime = try kcatProduce(input)

        // Our producer: awaited delivery reports per batch.
        var producerConfiguration = KafkaProducerConfiguration(bootstrapServers: bootstrap)
        producerConfiguration.lingerMilliseconds = 5
        let producer = try KafkaProducer(configuration: producerConfiguration, logger: logger)
        // Warm-up: connection, idempotent producer id and the topic's metadata, which a
        // long-running service pays once (about a second on the local broker).
        try await producer.send(KafkaOutgoingMessage(topic: "bench.fission", key: "warm-up", value: Array(value.utf8)))
        let payload = Array(value.utf8)
        let keyBytes = (0..<keys).map { Array("key-\($0)".utf8) }
        // Batches are awaited, with a few in flight at once so the pipeline never drains.
        let ourProduce = try await timedAsync {
            let failures = await withTaskGroup(of: Int.self) { group in
                var failures = 0
                var inFlight = 0
                for start in stride(from: 0, to: messages, by: batch) {
                    if inFlight == 4 {
                        failures += await group.next() ?? 0
                        inFlight -= 1
                    }
                    let records = (start..<min(start + batch, messages)).map {
                        KafkaOutgoingMessage(topic: "bench.fission", key: keyBytes[$0 % keys], value: payload)
                    }
                    group.addTask {
                        await producer.send(records).filter { if case .failure = $0 { true } else { false } }.count
                    }
                    inFlight += 1
                }
                for await count in group { failures += count }
                return failures
            }
            guard failures == 0 else { throw ValidationError("\(failures) deliveries failed") }
        }
        await producer.shutdown()
        // kcat consumer: read from the beginning, then exit (whole process timed).
        func kcatConsume(_ count: Int) throws -> Duration {
            try timed {
                try ChildProcess.run(
                    "/usr/bin/kcat",
                    ["-C", "-b", bootstrap, "-t", "bench.kcat", "-o", "beginning", "-c", String(count), "-e", "-q",
                     "-X", "fetch.wait.max.ms=10"])
            }
        }
        let kcatConsumeTime = try kcatConsume(messages)

        // Our consumer group: timed from the first record (the mock's first group join takes 3 s,
        // which is no part of throughput).
        let consumer = try KafkaConsumer(
            configuration: .local(bootstrapServers: bootstrap, groupID: "bench", topics: ["bench.fission"]), logger: logger)
        var received = 0
        var firstAt: ContinuousClock.Instant?
        var lastDone: KafkaMessage?
        let watchdog = Task {
            // A record the broker dropped would leave the loop waiting forever.
            try await Task.sleep(for: .seconds(120))
            FileHandle.standardError.write(Data("fission-bench: consumer did not receive all \(messages) records\n".utf8))
            Foundation.exit(1)
        }
        defer { watchdog.cancel() }
        for try await message in consumer.messages {
            if firstAt == nil { firstAt = .now }
            received += 1
            lastDone = message
            if received == messages + 1 { break }  // + the warm-up record
        }
        let ourConsume = ContinuousClock.now - firstAt!
        if let lastDone { try? consumer.markDone(lastDone) }
        await consumer.close()

        return [
            rate(messages, ourProduce), rate(messages, kcatProduceTime),
            rate(messages, ourConsume), rate(messages, kcatConsumeTime),
        ]
    }

    func rate(_ count: Int, _ duration: Duration) -> Double {
        Double(count) / duration.inSeconds
    }

    func timed(_ body: () throws -> Void) throws -> Duration {
        let start = ContinuousClock.now
        try body()
        return .now - start
    }

    func timedAsync(_ body: () async throws -> Void) async throws -> Duration {
        let start = ContinuousClock.now
        try await body()
        return .now - start
    }

}
