import Foundation
import Kafka

/// Runs helper programs (`initdb`, `pg_ctl`, the watchdog) with posix_spawn and waitpid.
///
/// Foundation's `Process.waitUntilExit` was seen hanging here after `pg_ctl start` had exited, so
/// the harness keeps to the plain system calls. Output goes to a temporary file rather than a
/// pipe: a daemon that inherits a pipe would keep it open and a reader waiting forever.
public enum ChildProcess {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs a program to completion; throws with its output when it exits non-zero. Blocks the
    /// calling thread: for short helpers (`initdb`, `chown`) from a Dispatch thread or a command.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String]) throws -> String {
        let outputPath = temporaryOutputPath()
        defer { unlink(outputPath) }
        let pid = try spawn(executable, arguments, outputPath: outputPath, newSession: false)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { throw Failure(description: "waitpid failed: \(errno)") }
        }
        return try outcome(executable, arguments, status: status, outputPath: outputPath)
    }

    /// How a program ended: its exit status (128 + signal when killed by one) and what it wrote.
    public struct Outcome: Sendable {
        public var status: Int32
        public var output: String
        public var errors: String
    }

    /// Runs a program to completion from async code without holding a cooperative thread (it
    /// polls for the exit), standard output and standard error kept apart. When `timeLimit`
    /// passes or the task is cancelled, the program and everything it started (its own
    /// session) are killed and the error carries its output: a stuck child is a failure with a
    /// story rather than a test run that never ends. `environment` replaces the inherited one.
    public static func execute(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil, timeLimit: Duration
    ) async throws -> Outcome {
        let outputPath = temporaryOutputPath()
        let errorPath = temporaryOutputPath()
        defer {
            unlink(outputPath)
            unlink(errorPath)
        }
        let pid = try spawn(executable, arguments, outputPath: outputPath, errorPath: errorPath, newSession: true, environment: environment)
        let deadline = ContinuousClock.now.advanced(by: timeLimit)
        var status: Int32 = 0
        func written() -> (String, String) {
            ((try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "", (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "")
        }
        while waitpid(pid, &status, WNOHANG) != pid {
            if ContinuousClock.now >= deadline || Task.isCancelled {
                kill(-pid, SIGKILL)
                waitpid(pid, &status, 0)
                let (output, errors) = written()
                throw Failure(description: "\(name(executable)) \(arguments.prefix(4).joined(separator: " ")) did not finish within \(timeLimit) and was killed: \(output.suffix(4000)) \(errors.suffix(2000))")
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        let (output, errors) = written()
        let signalled = status & 0x7f
        return Outcome(status: signalled == 0 ? (status >> 8) & 0xff : 128 + signalled, output: output, errors: errors)
    }

    /// `execute`, throwing with the program's output unless it exits 0; returns standard output.
    @discardableResult
    public static func run(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil, timeLimit: Duration
    ) async throws -> String {
        let outcome = try await execute(executable, arguments, environment: environment, timeLimit: timeLimit)
        guard outcome.status == 0 else {
            throw Failure(description: "\(name(executable)) \(arguments.prefix(4).joined(separator: " ")) failed (status \(outcome.status)): \(outcome.output.suffix(800)) \(outcome.errors.suffix(800))")
        }
        return outcome.output
    }

    private static func temporaryOutputPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("fission-child-\(UUID().uuidString).log").path
    }

    private static func name(_ executable: String) -> String {
        URL(fileURLWithPath: executable).lastPathComponent
    }

    private static func outcome(_ executable: String, _ arguments: [String], status: Int32, outputPath: String) throws -> String {
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        let exited = (status & 0x7f) == 0
        let code = (status >> 8) & 0xff
        guard exited, code == 0 else {
            throw Failure(description: "\(name(executable)) \(arguments.prefix(4).joined(separator: " ")) failed (status \(status)): \(output.suffix(800))")
        }
        return output
    }

    /// Runs a program to completion; nil when it exits 0, else its output.
    public static func runCapturingFailure(_ executable: String, _ arguments: [String], timeLimit: Duration) async throws -> String? {
        let outcome = try await execute(executable, arguments, timeLimit: timeLimit)
        return outcome.status == 0 ? nil : outcome.output + outcome.errors
    }

    /// Starts a program in its own session and does not wait for it.
    public static func startDetached(_ executable: String, _ arguments: [String]) throws {
        _ = try spawn(executable, arguments, outputPath: "/dev/null", newSession: true)
    }

    /// Starts a long-running child (a service) with extra environment, its output appended to
    /// `logPath`; returns its pid for `stop`.
    public static func start(_ executable: String, _ arguments: [String], environment extra: [String: String], logPath: String) throws -> pid_t {
        var variables = ProcessInfo.processInfo.environment
        for (key, value) in extra { variables[key] = value }
        return try spawn(executable, arguments, outputPath: logPath, newSession: false, environment: variables, append: true)
    }

    /// `start`, with the child's standard input connected to a socket the caller keeps, for a
    /// child that takes commands line by line (the local broker's `down`/`up`). Returns the pid
    /// and the caller's end, for `sendLine(_:to:)`; closing that end is the child's end of input.
    /// A socket rather than a pipe: a write after the child died fails instead of raising SIGPIPE.
    public static func startWithControl(
        _ executable: String, _ arguments: [String], environment extra: [String: String], logPath: String
    ) throws -> (pid: pid_t, control: Int32) {
        var ends: [Int32] = [-1, -1]
        // Close-on-exec on both ends, so that later children (the services) do not inherit the
        // control socket; the child's copy on fd 0 is made by dup2, which clears the flag.
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
            throw Failure(description: "socketpair failed: \(String(cString: strerror(errno)))")
        }
        var variables = ProcessInfo.processInfo.environment
        for (key, value) in extra { variables[key] = value }
        do {
            let pid = try spawn(executable, arguments, outputPath: logPath, newSession: false, environment: variables, append: true, input: ends[1])
            close(ends[1])
            return (pid, ends[0])
        } catch {
            close(ends[0])
            close(ends[1])
            throw error
        }
    }

    /// Writes one command line to a child started with `startWithControl`; false when it is gone.
    @discardableResult
    public static func sendLine(_ line: String, to control: Int32) -> Bool {
        let bytes = Array((line + "\n").utf8)
        return bytes.withUnsafeBytes { buffer in
            send(control, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL)) == buffer.count
        }
    }

    /// SIGKILL, as a crash would end it, then reaps it without holding a thread.
    public static func killAndReap(_ pid: pid_t) async {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; reaps the child.
    public static func stop(_ pid: pid_t, grace: TimeInterval = 10) {
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(grace)
        var status: Int32 = 0
        while Date() < deadline {
            if waitpid(pid, &status, WNOHANG) == pid { return }
            usleep(50_000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
    }

    /// Whether the child is still running (reaps it if it exited).
    public static func isRunning(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == 0
    }

    private static func spawn(
        _ executable: String, _ arguments: [String], outputPath: String, errorPath: String? = nil, newSession: Bool,
        environment: [String: String]? = nil, append: Bool = false, input: Int32? = nil
    ) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let input {
            posix_spawn_file_actions_adddup2(&actions, input, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0o644)
        if let errorPath {
            posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        // The child keeps only its three standard descriptors: librdkafka accepts a local
        // broker's connections without close-on-exec, and a server started from a test process
        // (PostgreSQL, a service) would otherwise hold them open for its whole life. Closed
        // before `exec`, so also gone by the time `posix_spawn` returns (see `spawningChild`).
        if let closeFrom = addCloseFrom { _ = closeFrom(&actions, 3) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // A child starts with no signal blocked and default dispositions for the signals this
        // process blocks or ignores: it would otherwise inherit the spawning Dispatch thread's
        // mask (pgbench's -T alarm never fired) and NIO's ignored SIGPIPE.
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGALRM, SIGINT, SIGTERM, SIGCHLD, SIGHUP] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        // POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK, and POSIX_SPAWN_SETSID (glibc 2.26+) for
        // a session of its own; Glibc does not export these to Swift.
        posix_spawnattr_setflags(&attributes, Int16(0x04 | 0x08 | (newSession ? 0x80 : 0)))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result: Int32
        if let environment {
            let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer { envp.forEach { free($0) } }
            result = KafkaLocalBroker.spawningChild { posix_spawn(&pid, executable, &actions, &attributes, argv, envp) }
        } else {
            result = KafkaLocalBroker.spawningChild { posix_spawn(&pid, executable, &actions, &attributes, argv, environ) }
        }
        guard result == 0 else {
            throw Failure(description: "cannot start \(executable): \(String(cString: strerror(result)))")
        }
        return pid
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later), which Glibc does not
    /// export to Swift; nil on an older C library.
    private static let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        // RTLD_DEFAULT: the symbol wherever the process has it.
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()
}
