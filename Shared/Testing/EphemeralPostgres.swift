import Foundation
import Logging
import Postgres

/// A throwaway PostgreSQL cluster started from the installed server binaries, for tests and the
/// local stack.
///
/// - Runs `initdb`/`pg_ctl` as the `postgres` user when the caller is root (PostgreSQL refuses
///   to run as root).
/// - Listens on 127.0.0.1 on a free port, password auth (scram) over TCP, durability off
///   (`fsync`, `synchronous_commit`, `full_page_writes`): data is thrown away anyway.
/// - A watchdog process stops the cluster and deletes its files when the owning process exits,
///   however it exits (crash, SIGKILL, Ctrl-C).
public struct EphemeralPostgres: Sendable {
    public let directory: URL
    public let port: Int
    /// The superuser's configuration, on database `postgres`.
    public let adminConfiguration: PostgresConfiguration
    /// The PostgreSQL programs this cluster runs (benchmarks use its `pgbench`).
    public let binDirectory: URL
    let runsAsPostgresUser: Bool

    public static let superuser = "fission"
    public static let superuserPassword = "fission-dev"

    /// More server settings from `FISSION_POSTGRES_SETTINGS`, to profile a run without editing
    /// code, e.g. `-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on`.
    static var extraSettings: String {
        guard let extra = ProcessInfo.processInfo.environment["FISSION_POSTGRES_SETTINGS"], !extra.isEmpty else { return "" }
        return " " + extra
    }

    /// Starts a cluster; blocking work (`initdb`, `pg_ctl`) runs on a queue of its own, not on
    /// `DispatchQueue.global()`, whose threads on Linux are the ones Swift's concurrency runs
    /// every test on.
    public static func start(logger: Logger = Logger(label: "fission.testing.postgres")) async throws -> EphemeralPostgres {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue(label: "fission.testing.postgres.start").async {
                continuation.resume(with: Result { try startBlocking(logger: logger) })
            }
        }
    }

    static func startBlocking(logger: Logger) throws -> EphemeralPostgres {
        let binDirectory = try findBinDirectory()
        let asPostgres = getuid() == 0
        var template = Array("/tmp/fission-pg-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw HarnessError("cannot create a temporary directory") }
        let directory = URL(fileURLWithPath: String(cString: made))
        let passwordFile = directory.appendingPathComponent("pwfile")
        try superuserPassword.write(to: passwordFile, atomically: true, encoding: .utf8)
        if asPostgres {
            try ChildProcess.run("/bin/chown", ["-R", "postgres:postgres", directory.path])
        }
        let data = directory.appendingPathComponent("data").path
        try run(
            binDirectory.appendingPathComponent("initdb").path,
            ["-D", data, "-U", superuser, "--pwfile=\(passwordFile.path)", "--auth-local=trust",
             "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"],
            asPostgres: asPostgres)

        // Another process may grab the free port between our probe and the server's bind; a
        // failed start is retried on a new port.
        var lastError: (any Error)?
        for _ in 0..<5 {
            let port = try freeTCPPort()
            let settings = [
                "-c port=\(port)", "-c listen_addresses=127.0.0.1", "-c unix_socket_directories=\(directory.path)",
                "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
                "-c max_connections=500", "-c shared_buffers=128MB", "-c max_locks_per_transaction=128",
                // Busy tables are vacuumed within seconds, as a production server tuned for
                // this churn would (the default minute lets a benchmark run on dead rows).
                "-c autovacuum_naptime=5",
            ].joined(separator: " ") + Self.extraSettings
            do {
                try run(
                    binDirectory.appendingPathComponent("pg_ctl").path,
                    ["-D", data, "-l", directory.appendingPathComponent("server.log").path, "-w", "-t", "60",
                     "-o", settings, "start"],
                    asPostgres: asPostgres)
            } catch {
                lastError = error
                continue
            }
            let server = EphemeralPostgres(
                directory: directory, port: port,
                // A throwaway cluster serves tests and the local stack on busy machines, where a
                // backend can take longer than a service's 4 s just to fork and authenticate.
                adminConfiguration: PostgresConfiguration(
                    host: "127.0.0.1", port: port, user: superuser, password: superuserPassword, database: "postgres",
                    connectTimeoutSeconds: 30),
                binDirectory: binDirectory, runsAsPostgresUser: asPostgres)
            try server.startWatchdog(ownerPID: getpid())
            logger.info("started ephemeral PostgreSQL", metadata: ["port": "\(port)", "directory": "\(directory.path)"])
            return server
        }
        throw lastError ?? HarnessError("PostgreSQL did not start")
    }

    /// Stops the server now (the watchdog would do it at process exit).
    public func stop() throws {
        try Self.run(
            binDirectory.appendingPathComponent("pg_ctl").path,
            ["-D", directory.appendingPathComponent("data").path, "-m", "fast", "-w", "stop"],
            asPostgres: runsAsPostgresUser)
        try? FileManager.default.removeItem(at: directory)
    }

    /// Restarts the server in place (same port, same data): for outage tests.
    public func restart() throws {
        try Self.run(
            binDirectory.appendingPathComponent("pg_ctl").path,
            ["-D", directory.appendingPathComponent("data").path, "-m", "fast", "-w", "restart"],
            asPostgres: runsAsPostgresUser)
    }

    /// `restart` from async code: waits for `pg_ctl` without holding a thread, and kills it when
    /// it takes longer than `timeLimit`. Open connections are cut, as in a real server restart.
    public func restart(timeLimit: Duration) async throws {
        let pgCtl = binDirectory.appendingPathComponent("pg_ctl").path
        // The server's output goes on into its log (pg_ctl would otherwise hand it our output file).
        let arguments = [
            "-D", directory.appendingPathComponent("data").path, "-l", directory.appendingPathComponent("server.log").path,
            "-m", "fast", "-w", "-t", "60", "restart",
        ]
        if runsAsPostgresUser {
            try await ChildProcess.run("/usr/sbin/runuser", ["-u", "postgres", "--", pgCtl] + arguments, timeLimit: timeLimit)
        } else {
            try await ChildProcess.run(pgCtl, arguments, timeLimit: timeLimit)
        }
    }

    private func startWatchdog(ownerPID: Int32) throws {
        let pgCtl = binDirectory.appendingPathComponent("pg_ctl").path
        let data = directory.appendingPathComponent("data").path
        let stop = (runsAsPostgresUser ? "runuser -u postgres -- " : "") + "'\(pgCtl)' -D '\(data)' -m immediate stop"
        let script = "while kill -0 \(ownerPID) 2>/dev/null; do sleep 1; done; \(stop) >/dev/null 2>&1; rm -rf '\(directory.path)'"
        // Its own session, so a Ctrl-C to the test's process group does not kill the watchdog
        // before it has cleaned up.
        try ChildProcess.startDetached("/bin/sh", ["-c", script])
    }

    static func findBinDirectory() throws -> URL {
        if let configured = ProcessInfo.processInfo.environment["FISSION_PG_BINDIR"] {
            return URL(fileURLWithPath: configured)
        }
        let root = "/usr/lib/postgresql"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        for version in versions.sorted(by: { (Int($0) ?? 0) > (Int($1) ?? 0) }) {
            let bin = URL(fileURLWithPath: "\(root)/\(version)/bin")
            if FileManager.default.isExecutableFile(atPath: bin.appendingPathComponent("initdb").path) { return bin }
        }
        throw HarnessError("no PostgreSQL server binaries under \(root) (install postgresql, or set FISSION_PG_BINDIR)")
    }

    @discardableResult
    static func run(_ executable: String, _ arguments: [String], asPostgres: Bool = false) throws -> String {
        if asPostgres {
            return try ChildProcess.run("/usr/sbin/runuser", ["-u", "postgres", "--", executable] + arguments)
        }
        return try ChildProcess.run(executable, arguments)
    }
}

/// A free TCP port on 127.0.0.1, found by binding port 0.
public func freeTCPPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("socket() failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw HarnessError("bind() failed") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw HarnessError("getsockname() failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}

public struct HarnessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
