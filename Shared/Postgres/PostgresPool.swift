import Logging
import ServiceLifecycle
import Synchronization

/// A bounded pool of connections.
///
/// - At most `maxConnections` exist at once; a lease waits up to `waitTimeout` for one to free
///   up and then fails with `poolTimeout`.
/// - A connection is checked before it is handed out (without a round trip: libpq reads what the
///   server sent), and one that broke, or was returned inside an open transaction, is closed and
///   replaced, never handed out again.
/// - As a `Service`, `run()` pings idle connections every `healthCheckInterval` and closes the
///   pool on graceful shutdown. The pool also works without `run()` (tests, commands).
public final class PostgresPool: Service, Sendable {
    public struct Options: Sendable {
        public var maxConnections: Int
        public var waitTimeout: Duration
        public var healthCheckInterval: Duration

        public init(maxConnections: Int = 10, waitTimeout: Duration = .seconds(10), healthCheckInterval: Duration = .seconds(30)) {
            precondition(maxConnections > 0, "a pool needs at least one connection")
            self.maxConnections = maxConnections
            self.waitTimeout = waitTimeout
            self.healthCheckInterval = healthCheckInterval
        }
    }

    public let configuration: PostgresConfiguration
    public let options: Options
    let logger: Logger
    private let state = Mutex(State())
    private let nextWaiterID = Atomic<Int>(0)

    /// What a waiting lease is given.
    private enum Handoff: Sendable {
        case connection(PostgresConnection)
        /// A free slot already counted in `State.open`: the lease opens the connection itself.
        case slot
    }

    private struct Waiter {
        var id: Int
        var continuation: CheckedContinuation<Handoff, any Error>
        var timer: Task<Void, Never>?
    }

    private struct State {
        var idle: [PostgresConnection] = []
        /// Idle + leased + being opened.
        var open = 0
        var waiters: [Waiter] = []
        var closed = false
    }

    public init(configuration: PostgresConfiguration, options: Options = Options(), logger: Logger = Logger(label: "fission.postgres")) {
        self.configuration = configuration
        self.options = options
        self.logger = logger
    }

    /// Leases a connection for the duration of `body`.
    public func withConnection<T>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        let connection = try await lease()
        let value: T
        do {
            value = try await body(connection)
        } catch {
            await release(connection)
            throw error
        }
        await release(connection)
        return value
    }

    /// Runs one statement on a leased connection.
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresRows {
        try await withConnection { try await $0.query(query) }
    }

    /// Connections currently open (idle, leased or being opened).
    public var openConnections: Int { state.withLock { $0.open } }

    // MARK: Leasing

    func lease() async throws -> PostgresConnection {
        while true {
            switch try await nextHandoff() {
            case .connection(let connection):
                if connection.checkAlive() { return connection }
                logger.info("discarding a broken pooled connection", metadata: ["pid": "\(connection.backendPID)"])
                await discard(connection)
            case .slot:
                do {
                    return try await PostgresConnection.connect(configuration, logger: logger)
                } catch {
                    freeSlot()
                    throw error
                }
            }
        }
    }

    private func nextHandoff() async throws -> Handoff {
        let id = nextWaiterID.add(1, ordering: .relaxed).newValue
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Handoff, any Error>) in
                state.withLock { state in
                    if state.closed {
                        continuation.resume(throwing: PostgresError(.poolClosed, "the connection pool is shut down"))
                    } else if let connection = state.idle.popLast() {
                        continuation.resume(returning: .connection(connection))
                    } else if state.open < options.maxConnections {
                        state.open += 1
                        continuation.resume(returning: .slot)
                    } else if Task.isCancelled {
                        // Cancelled before this waiter was registered: `onCancel` already ran and
                        // found nothing to fail, so it must not wait for the timeout.
                        continuation.resume(throwing: CancellationError())
                    } else {
                        let timeout = options.waitTimeout
                        let timer = Task { [weak self] in
                            try? await Task.sleep(for: timeout)
                            guard !Task.isCancelled else { return }
                            self?.failWaiter(
                                id,
                                PostgresError(
                                    .poolTimeout,
                                    "no connection became free within \(timeout) (pool of \(self?.options.maxConnections ?? 0))"))
                        }
                        state.waiters.append(Waiter(id: id, continuation: continuation, timer: timer))
                    }
                }
            }
        } onCancel: {
            failWaiter(id, CancellationError())
        }
    }

    private func failWaiter(_ id: Int, _ error: any Error) {
        state.withLock { state in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return }
            let waiter = state.waiters.remove(at: index)
            waiter.timer?.cancel()
            waiter.continuation.resume(throwing: error)
        }
    }

    func release(_ connection: PostgresConnection) async {
        guard connection.isReusable() else {
            await discard(connection)
            return
        }
        let closeIt = state.withLock { state -> Bool in
            if state.closed {
                state.open -= 1
                return true
            }
            if !state.waiters.isEmpty {
                let waiter = state.waiters.removeFirst()
                waiter.timer?.cancel()
                waiter.continuation.resume(returning: .connection(connection))
            } else {
                state.idle.append(connection)
            }
            return false
        }
        if closeIt { await connection.close() }
    }

    private func discard(_ connection: PostgresConnection) async {
        await connection.close()
        freeSlot()
    }

    /// A connection is gone: its slot goes to the first waiter, who opens a replacement.
    private func freeSlot() {
        state.withLock { state in
            if !state.closed, !state.waiters.isEmpty {
                let waiter = state.waiters.removeFirst()
                waiter.timer?.cancel()
                waiter.continuation.resume(returning: .slot)
            } else {
                state.open -= 1
            }
        }
    }

    // MARK: Lifecycle

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await Task.sleep(for: self.options.healthCheckInterval)
                } catch {
                    break
                }
                await self.pingIdleConnections()
            }
        }
        await close()
    }

    /// A round trip on each idle connection, so that one a firewall or server restart cut is
    /// found and replaced before a request needs it.
    private func pingIdleConnections() async {
        let idle = state.withLock { state in
            defer { state.idle.removeAll() }
            return state.idle
        }
        for connection in idle {
            _ = try? await connection.query("SELECT 1")
            await release(connection)
        }
    }

    /// Opens a pool for `body` alone and closes it after, whether `body` returns or throws.
    public static func using<T>(
        isolation: isolated (any Actor)? = #isolation,
        _ configuration: PostgresConfiguration, options: Options = Options(), logger: Logger = Logger(label: "fission.postgres"),
        _ body: (PostgresPool) async throws -> T
    ) async throws -> T {
        let pool = PostgresPool(configuration: configuration, options: options, logger: logger)
        do {
            let value = try await body(pool)
            await pool.close()
            return value
        } catch {
            await pool.close()
            throw error
        }
    }

    /// Closes idle connections and fails waiting leases; leased connections close on release.
    public func close() async {
        let (idle, waiters) = state.withLock { state in
            state.closed = true
            defer {
                state.open -= state.idle.count
                state.idle.removeAll()
                state.waiters.removeAll()
            }
            return (state.idle, state.waiters)
        }
        for waiter in waiters {
            waiter.timer?.cancel()
            waiter.continuation.resume(throwing: PostgresError(.poolClosed, "the connection pool is shut down"))
        }
        for connection in idle { await connection.close() }
    }
}
