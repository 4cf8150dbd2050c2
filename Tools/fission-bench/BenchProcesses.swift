import ArgumentParser
import FissionTesting
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

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

    /// SIGTERM and reap, on a Dispatch thread (it waits).
    static func stop(_ pid: pid_t) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
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
