import ArgumentParser
import Domain
import FissionTesting
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Kafka
import Logging
import Postgres
import ServiceKit

/// The service executables next to this benchmark (the same build), started and stopped as
/// separate processes so their CPU and memory are theirs alone.
enum BenchProcesses {
    static var binaries: URL {
        get throws {
            URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).deletingLastPathComponent()
        }
    }

    /// Starts a service and returns the seconds until `/health/ready` answered 200, and its pid.
    static func startUntilReady(_ service: String, environment: [String: String], log: String, port: Int) async throws -> (Double, pid_t) {
        let executable = try binaries.appendingPathComponent(service).path
        let start = ContinuousClock.now
        let pid = try ChildProcess.start(executable, [], environment: environment, logPath: log)
        while ContinuousClock.now - start < .seconds(60) {
            var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/health/ready")!)
            request.timeoutInterval = 1
            if let (_, response) = try? await URLSession.shared.data(for: request), (response as? HTTPURLResponse)?.statusCode == 200 {
                return ((ContinuousClock.now - start).inSeconds, pid)
            }
            guard ChildProcess.isRunning(pid) else { throw ValidationError("\(service) exited during start-up (see \(log))") }
            try await Task.sleep(for: .milliseconds(10))
        }
        await stop(pid)
        throw ValidationError("\(service) was not ready within 60 s (see \(log))")
    }

    /// SIGTERM and reap, on a queue of its own (it waits; the global queue's threads are the
    /// ones Swift's tasks run on).
    static func stop(_ pid: pid_t) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue(label: "fission.bench.stop").async {
                ChildProcess.stop(pid)
                continuation.resume()
            }
        }
    }

    static func residentMegabytes(_ pid: pid_t) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kilobytes = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return -1 }
        return kilobytes / 1024
    }

    /// The environment every service gets from the benchmarks.
    static func environment(service: String, database: String, brokers: String, secret: String, port: Int) -> [String: String] {
        [
            "FISSION_DATABASE_URL": database, "FISSION_KAFKA_BROKERS": brokers, "FISSION_KAFKA_LOCAL": "true",
            "FISSION_JWT_SECRET": secret, "FISSION_HTTP_HOST": "127.0.0.1", "FISSION_HTTP_PORT": String(port),
            "FISSION_PAYMENT_WEBHOOK_SECRET": "bench-webhook-secret-0123456789abcdef", "FISSION_LOG_LEVEL": "error",
        ]
    }

    /// CPU seconds (user + system) a process has used so far.
    static func cpuSeconds(_ pid: pid_t) -> Double {
        // /proc/<pid>/stat: fields after the parenthesised name; utime and stime are 14th and 15th.
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The machine's CPU time so far, in clock ticks: all of it and what the hypervisor stole
    /// (`/proc/stat`'s first line; steal is its eighth figure).
    static func machineTicks() -> (total: Double, stolen: Double) {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = stat.split(separator: "\n").first, line.hasPrefix("cpu ") else { return (0, 0) }
        let figures = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard figures.count >= 8 else { return (0, 0) }
        // user nice system idle iowait irq softirq steal; guest time is already in user.
        return (figures.prefix(8).reduce(0, +), figures[7])
    }

    /// The share of the machine's CPU time the hypervisor stole since `since` (a
    /// `machineTicks()`). On a shared virtual machine it moves every rate and latency: runs of
    /// the same code at 50 helps/s gave a help p99 of 199 ms with 18% stolen, 27 ms with 4%.
    static func stolenShare(since: (total: Double, stolen: Double)) -> Double {
        let now = machineTicks()
        let total = now.total - since.total
        return total > 0 ? (now.stolen - since.stolen) / total : 0
    }

    /// CPU seconds of a PostgreSQL cluster: the postmaster and every backend it forked (live
    /// ones; take it over a run whose connections stay open).
    static func clusterCPUSeconds(_ cluster: EphemeralPostgres) -> Double {
        guard let pidFile = try? String(contentsOfFile: cluster.directory.appendingPathComponent("data/postmaster.pid").path, encoding: .utf8),
              let postmaster = pid_t(pidFile.split(separator: "\n").first ?? "") else { return 0 }
        var total = cpuSeconds(postmaster)
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry),
                  let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 2, pid_t(fields[1]) == postmaster { total += cpuSeconds(pid) }
        }
        return total
    }
}

/// What the service benchmarks run on: a throwaway PostgreSQL cluster with a database per
/// service, the local broker with every topic, and the release service executables, each its own
/// process, with the abuse limits off (every request comes from 127.0.0.1 and each shopper acts
/// once: those limits are not what is measured).
struct BenchStack {
    static let secret = "bench-secret-0123456789abcdef0123456789"
    let cluster: EphemeralPostgres
    let broker: KafkaLocalBroker
    /// Service → its base URL, and its process.
    let bases: [String: String]
    let pids: [String: pid_t]
    let environments: [String: [String: String]]
    /// Where the services log; kept when a run fails.
    let logs: URL

    static func start(_ services: [String], pool: Int, label: String, logger: Logger) async throws -> BenchStack {
        let cluster = try await EphemeralPostgres.start(logger: logger)
        do {
            let admin = PostgresPool(configuration: cluster.adminConfiguration, options: .init(maxConnections: 1))
            for service in services { try await admin.query("CREATE DATABASE \(identifier: service)") }
            await admin.close()
            let broker = try KafkaLocalBroker(logger: logger)
            for topic in Topics.allWithDeadLetters { try broker.createTopic(topic.name, partitions: topic.partitions) }
            let logs = FileManager.default.temporaryDirectory.appendingPathComponent("fission-bench-\(label)-\(UUID())")
            try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
            var bases: [String: String] = [:]
            var pids: [String: pid_t] = [:]
            var environments: [String: [String: String]] = [:]
            for service in services {
                let port = try freeTCPPort()
                var environment = BenchProcesses.environment(
                    service: service, database: cluster.adminConfiguration.with(database: service).url, brokers: broker.bootstrapServers,
                    secret: secret, port: port)
                environment["FISSION_DATABASE_POOL_SIZE"] = String(pool)
                environment["FISSION_RATE_LIMIT_PER_ADDRESS"] = "off"
                do {
                    let (_, pid) = try await BenchProcesses.startUntilReady(
                        service, environment: environment, log: logs.appendingPathComponent("\(service).log").path, port: port)
                    pids[service] = pid
                } catch {
                    for pid in pids.values { ChildProcess.stop(pid) }
                    throw error
                }
                bases[service] = "http://127.0.0.1:\(port)"
                environments[service] = environment
            }
            return BenchStack(cluster: cluster, broker: broker, bases: bases, pids: pids, environments: environments, logs: logs)
        } catch {
            try? cluster.stop()
            throw error
        }
    }

    /// Stops the services and the cluster; the logs go only after a run that succeeded.
    func stop(keepingLogs: Bool) {
        for pid in pids.values { ChildProcess.stop(pid) }
        try? cluster.stop()
        if !keepingLogs { try? FileManager.default.removeItem(at: logs) }
    }
}
