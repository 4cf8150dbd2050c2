import ArgumentParser
import Domain
import FissionTesting
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import OrdersService
import Postgres
import ServiceKit

/// `fission dev up`: the whole platform on this machine, no Docker needed. A throwaway
/// PostgreSQL cluster (one database per service), the local Kafka-protocol broker as its own
/// process, and every service executable as a separate process; waits until each is ready,
/// prints URLs and development tokens, and stops everything on Ctrl-C. `--demo` then plays a
/// group-buy and a bargain through the real APIs and exits.
struct Dev: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the local stack.", subcommands: [Up.self])

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start PostgreSQL, the broker and the services; Ctrl-C stops them.")

        @Flag(help: "Play the demo scenario against the stack, then stop.")
        var demo = false

        @Option(help: "First HTTP port; services take consecutive ones (0: any free ports).")
        var basePort = 8081

        @Option(help: "Where logs of the broker and services go.")
        var logDirectory = "/tmp/fission-dev"

        @Option(help: "Shoppers in the demo's synthetic social graph (0: skip the viral simulation).")
        var shoppers = 2_000

        @Option(help: "Seed of the demo's social graph and choices, to replay a run.")
        var seed: UInt64 = 2_026

        @Option(help: "Where the demo writes its HTML report (default: report.html in the log directory).")
        var report: String?

        func run() async throws {
            // The demo lets abandoned payments time out within its run.
            let stack = LocalStack(
                basePort: basePort, logDirectory: logDirectory,
                serviceEnvironment: demo ? ["FISSION_PAYMENT_TIMEOUT_SECONDS": "45"] : [:])
            do {
                try await stack.start()
            } catch {
                stack.stop()
                FileHandle.standardError.write(Data("fission dev up: \(error)\n".utf8))
                throw ExitCode.failure
            }
            if demo {
                do {
                    try await Demo(stack: stack).play()
                    let held = shoppers == 0 ? true : try await ViralDemo(
                        stack: stack, shoppers: shoppers, seed: seed, reportPath: report ?? "\(logDirectory)/report.html").play()
                    stack.stop()
                    if !held { throw ExitCode.failure }
                } catch let exit as ExitCode {
                    throw exit
                } catch {
                    FileHandle.standardError.write(Data("fission dev up --demo: \(error) (logs in \(logDirectory))\n".utf8))
                    stack.stop()
                    throw ExitCode.failure
                }
                return
            }
            await stack.waitForInterrupt()
            stack.stop()
        }
    }
}

final class LocalStack: @unchecked Sendable {
    static let services = ["campaigns", "assists", "orders", "levels", "notifications"]
    static let jwtSecret = "fission-local-development-secret-0123456789"
    static let webhookSecret = "fission-local-payment-webhook-secret-0123"

    let basePort: Int
    let logDirectory: String
    let serviceEnvironment: [String: String]
    private(set) var cluster: EphemeralPostgres?
    /// Each service's database (the demo's invariant checker reads them).
    private(set) var databases: [String: PostgresConfiguration] = [:]
    private(set) var bootstrap = ""
    var ports: [String: Int] = [:]
    /// The running processes; a chaos run kills and restarts them while others read the list.
    private let processes = NSLock()
    private var running: [(name: String, pid: pid_t)] = []
    var children: [(name: String, pid: pid_t)] { processes.withLock { running } }
    /// What each service was started with, to start it again the same way.
    private var launches: [String: (executable: String, environment: [String: String])] = [:]
    /// The local broker's standard input, for `down`/`up` (nil with an external Kafka).
    private var brokerControl: Int32?

    /// Where the service and broker executables are taken from; nil: next to `fission`.
    let executables: URL?

    init(basePort: Int, logDirectory: String, serviceEnvironment: [String: String] = [:], executables: URL? = nil) {
        self.executables = executables
        self.basePort = basePort
        self.logDirectory = logDirectory
        self.serviceEnvironment = serviceEnvironment
    }

    func url(_ service: String) -> String { "http://127.0.0.1:\(ports[service]!)" }

    func start() async throws {
        try FileManager.default.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
        let binaries = try executables ?? Self.builtExecutables()
        for name in Self.services + ["fission-broker"] where !FileManager.default.isExecutableFile(atPath: binaries.appendingPathComponent(name).path) {
            throw HarnessError("\(name) is not built next to fission (run swift build first)")
        }

        // PostgreSQL: the given server, or a throwaway cluster.
        let admin: PostgresConfiguration
        if let url = ProcessInfo.processInfo.environment["FISSION_DEV_DATABASE_URL"], !url.isEmpty {
            admin = try PostgresConfiguration(url: url)
        } else {
            say("starting a throwaway PostgreSQL cluster")
            let cluster = try await EphemeralPostgres.start()
            self.cluster = cluster
            admin = cluster.adminConfiguration
        }
        let pool = PostgresPool(configuration: admin, options: .init(maxConnections: 1))
        for service in Self.services {
            let exists = try await !pool.query("SELECT 1 FROM pg_database WHERE datname = \(service)").isEmpty
            if !exists { try await pool.query("CREATE DATABASE \(identifier: service)") }
            databases[service] = admin.with(database: service)
        }
        await pool.close()

        // Kafka: the given brokers, or the local broker as its own process.
        if let brokers = ProcessInfo.processInfo.environment["FISSION_KAFKA_BROKERS"], !brokers.isEmpty {
            bootstrap = brokers
        } else {
            let addressFile = "\(logDirectory)/broker.addr"
            try? FileManager.default.removeItem(atPath: addressFile)
            let (pid, control) = try ChildProcess.startWithControl(
                binaries.appendingPathComponent("fission-broker").path, ["--address-file", addressFile, "--exit-when-input-closes"], environment: [:],
                logPath: "\(logDirectory)/broker.log")
            brokerControl = control
            processes.withLock { running.append(("fission-broker", pid)) }
            for _ in 0..<200 where bootstrap.isEmpty {
                bootstrap = (try? String(contentsOfFile: addressFile, encoding: .utf8)) ?? ""
                if bootstrap.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
            }
            guard !bootstrap.isEmpty else { throw HarnessError("the local broker did not start (see \(logDirectory)/broker.log)") }
            say("local Kafka-protocol broker at \(bootstrap)")
        }

        for (index, service) in Self.services.enumerated() {
            ports[service] = basePort == 0 ? try freeTCPPort() : basePort + index
            let environment = [
                "FISSION_DATABASE_URL": admin.with(database: service).url,
                "FISSION_KAFKA_BROKERS": bootstrap,
                "FISSION_KAFKA_LOCAL": ProcessInfo.processInfo.environment["FISSION_KAFKA_BROKERS"] == nil ? "true" : "false",
                "FISSION_JWT_SECRET": Self.jwtSecret,
                "FISSION_HTTP_HOST": "127.0.0.1",
                "FISSION_HTTP_PORT": String(ports[service]!),
                "FISSION_DATABASE_POOL_SIZE": "8",
                "FISSION_PAYMENT_WEBHOOK_SECRET": Self.webhookSecret,
                "FISSION_LOG_LEVEL": "info",
                // Every local client is 127.0.0.1: a per-address budget would throttle the demo's
                // thousands of shoppers as one.
                "FISSION_RATE_LIMIT_PER_ADDRESS": "off",
            ].merging(serviceEnvironment) { _, demo in demo }
            launches[service] = (binaries.appendingPathComponent(service).path, environment)
            try launch(service)
        }
        for service in Self.services {
            try await waitUntilReady(service)
        }
        let issuer = await DevelopmentTokenIssuer(secret: Self.jwtSecret)
        say("")
        for service in Self.services { say("  \(service.padding(toLength: 10, withPad: " ", startingAt: 0)) \(url(service))   logs: \(logDirectory)/\(service).log") }
        say("")
        for (user, roles) in [("u-shopper", [Role.shopper]), ("m-merchant", [.merchant]), ("op-operator", [.operator])] {
            say("  \(roles[0].rawValue) token (\(user)): \(try await issuer.token(for: UserID(rawValue: user), roles: roles))")
        }
        say("")
    }

    /// The directory `fission` itself runs from, where SwiftPM puts every executable.
    static func builtExecutables() throws -> URL {
        URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).deletingLastPathComponent()
    }

    /// Starts a service process as `start` first did: same port, same environment, its output
    /// appended to the same log.
    func launch(_ service: String) throws {
        guard let launch = launches[service] else { throw HarnessError("\(service) is not a service of this stack") }
        let pid = try ChildProcess.start(launch.executable, [], environment: launch.environment, logPath: "\(logDirectory)/\(service).log")
        processes.withLock {
            running.removeAll { $0.name == service }
            running.append((service, pid))
        }
    }

    /// SIGKILLs a service process, as a crash or the kernel's OOM killer would; `launch` brings
    /// it back.
    func kill(_ service: String) async {
        guard let pid = children.first(where: { $0.name == service })?.pid else { return }
        await ChildProcess.killAndReap(pid)
        processes.withLock { running.removeAll { $0.pid == pid } }
    }

    /// Whether the service's process is alive (false once it exited or was killed).
    func isRunning(_ service: String) -> Bool {
        guard let pid = children.first(where: { $0.name == service })?.pid else { return false }
        return ChildProcess.isRunning(pid)
    }

    /// Sends a control command (`down`, `up`, …) to the local broker process.
    func controlBroker(_ command: String) throws {
        guard let brokerControl else { throw HarnessError("the broker is not the local one; it cannot be controlled") }
        guard ChildProcess.sendLine(command, to: brokerControl) else { throw HarnessError("the local broker is gone") }
    }

    /// Restarts the throwaway PostgreSQL cluster: every service loses its connections.
    func restartDatabase() async throws {
        guard let cluster else { throw HarnessError("PostgreSQL is not the throwaway cluster; it is not restarted") }
        try await cluster.restart(timeLimit: .seconds(90))
    }

    func waitUntilReady(_ service: String) async throws {
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            if let pid = children.first(where: { $0.name == service })?.pid, !ChildProcess.isRunning(pid) {
                throw HarnessError("\(service) exited during start-up (see \(logDirectory)/\(service).log)")
            }
            if let (status, _) = try? await HTTP.call("GET", "\(url(service))/health/ready"), status == 200 {
                say("\(service) is ready")
                return
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw HarnessError("\(service) was not ready within 120 s (see \(logDirectory)/\(service).log)")
    }

    func waitForInterrupt() async {
        say("running; Ctrl-C stops everything")
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let signals = [SIGINT, SIGTERM].map { number -> DispatchSourceSignal in
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .main)
                source.setEventHandler { continuation.resume() }
                source.resume()
                return source
            }
            Self.keep(signals)
        }
    }

    nonisolated(unsafe) private static var signalSources: [DispatchSourceSignal] = []
    private static func keep(_ sources: [DispatchSourceSignal]) { signalSources = sources }

    func stop() {
        for child in children.reversed() { ChildProcess.stop(child.pid) }
        processes.withLock { running.removeAll() }
        if let brokerControl { close(brokerControl) }
        brokerControl = nil
        if let cluster { try? cluster.stop() }
        cluster = nil
    }

    func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}

/// A minimal JSON-over-HTTP client for the local stack and the demo.
enum HTTP {
    static func call(_ method: String, _ url: String, token: String? = nil, json: String? = nil, headers: [String: String] = [:]) async throws -> (Int, [String: Any]) {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.timeoutInterval = 10
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let json {
            request.httpBody = Data(json.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        for (key, value) in headers { request.setValue(value, forHTTPHeaderField: key) }
        let (data, response) = try await URLSession.shared.data(for: request)
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, object)
    }

    static func list(_ url: String, token: String? = nil) async throws -> [[String: Any]] {
        var request = URLRequest(url: URL(string: url)!)
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let (data, _) = try await URLSession.shared.data(for: request)
        return (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]] ?? []
    }
}
