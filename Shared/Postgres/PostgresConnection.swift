import CLibPQ
import Dispatch
import Foundation
import Logging
import Synchronization

/// One libpq connection.
///
/// Statements are sent without blocking from the task that runs them, which then awaits the
/// socket (`SocketReadiness`); the calls that can block (connecting, waiting for notifications)
/// run on the connection's own serial Dispatch queue. Swift's cooperative threads never block.
/// A `PGconn` is not thread-safe: use a connection from one task at a time (the pool's lease
/// guarantees that; a second caller waits its turn).
public final class PostgresConnection: @unchecked Sendable {
    /// Used by the holder of `turn` only; `nil` once closed.
    private var handle: OpaquePointer?
    private let queue: DispatchQueue
    private let broken = Atomic<Bool>(false)
    /// Who may touch `handle` now, and who waits to, in order of arrival.
    private let turn = Mutex(Turn())
    /// SQL text and parameter types → name of its prepared statement on this connection (the
    /// same text may be sent with other types: a string is left for the server to type);
    /// used by the holder of `turn` only.
    private var preparedStatements: [StatementKey: String] = [:]
    private var preparedStatementCount = 0
    /// The transaction `withTransaction` runs on this connection.
    private struct TransactionState {
        /// Inside `withTransaction`.
        var open = false
        /// A `BEGIN` not yet sent: it goes out with the transaction's first statement.
        var pendingBegin: String?
        /// The `COMMIT` went out with the transaction's last statements (`queryCommitting`).
        var ended = false
        /// What runs once the transaction has committed (`afterCommit`).
        var committed: [@Sendable () -> Void] = []
    }
    private let transaction = Mutex(TransactionState())
    public let configuration: PostgresConfiguration
    /// The server process serving this connection.
    public let backendPID: Int32
    private let logger: Logger

    private init(handle: OpaquePointer, queue: DispatchQueue, configuration: PostgresConfiguration, logger: Logger) {
        self.handle = handle
        self.queue = queue
        self.configuration = configuration
        self.backendPID = PQbackendPID(handle)
        self.logger = logger
    }

    deinit {
        // Nothing can be using the handle once `self` is gone (every use holds `self`).
        if let handle { PQfinish(handle) }
    }

    /// Opens a connection; fails within the configuration's connect timeout with an error whose
    /// code says why (`authenticationFailed`, `databaseMissing`, `unreachable`, ...).
    public static func connect(
        _ configuration: PostgresConfiguration, logger: Logger = Logger(label: "fission.postgres")
    ) async throws -> PostgresConnection {
        let queue = DispatchQueue(label: "fission.postgres.connection")
        return try await onQueue(queue) { () throws -> PostgresConnection in
            let pairs = configuration.libpqKeywords
            let keywords = pairs.map { strdup($0.0) }
            let values = pairs.map { strdup($0.1) }
            defer {
                keywords.forEach { free($0) }
                values.forEach { free($0) }
            }
            let keywordPointers = keywords.map { UnsafePointer($0) } + [nil]
            let valuePointers = values.map { UnsafePointer($0) } + [nil]
            guard let handle = PQconnectdbParams(keywordPointers, valuePointers, 0) else {
                throw PostgresError(.connectionFailed, "libpq could not allocate a connection")
            }
            guard PQstatus(handle) == CONNECTION_OK else {
                let message = String(cString: PQerrorMessage(handle))
                PQfinish(handle)
                throw connectionError(message, configuration: configuration)
            }
            // libpq prints notices and warnings to stderr unless told otherwise.
            PQsetNoticeReceiver(handle, { _, result in
                guard let result, let text = PQresultErrorMessage(result) else { return }
                noticeLogger.debug("server notice", metadata: ["message": "\(String(cString: text).trimmingCharacters(in: .whitespacesAndNewlines))"])
            }, nil)
            // Sends never wait for the socket; `flush` does, without blocking a thread.
            guard PQsetnonblocking(handle, 1) == 0 else {
                let message = String(cString: PQerrorMessage(handle))
                PQfinish(handle)
                throw PostgresError(.connectionFailed, "libpq could not make the connection non-blocking: \(message)")
            }
            return PostgresConnection(handle: handle, queue: queue, configuration: configuration, logger: logger)
        }
    }

    /// libpq reports connection failures only as text; this maps the stable parts of that text to
    /// codes a caller (and an operator reading one log line) can act on.
    static func connectionError(_ message: String, configuration: PostgresConfiguration) -> PostgresError {
        let lower = message.lowercased()
        let target = "\(configuration.host):\(configuration.port)/\(configuration.database) as \(configuration.user)"
        let code: PostgresError.Code
        let reason: String
        if lower.contains("password authentication failed") || lower.contains("no password supplied")
            || lower.contains("authentication failed")
        {
            (code, reason) = (.authenticationFailed, "authentication failed (wrong user or password)")
        } else if lower.contains("database") && lower.contains("does not exist") {
            (code, reason) = (.databaseMissing, "database '\(configuration.database)' does not exist")
        } else if lower.contains("connection refused") || lower.contains("timeout expired")
            || lower.contains("no route to host") || lower.contains("network is unreachable")
            || lower.contains("could not translate host name") || lower.contains("could not connect")
        {
            (code, reason) = (.unreachable, "no server reachable at \(configuration.host):\(configuration.port)")
        } else {
            (code, reason) = (.connectionFailed, "connection failed")
        }
        return PostgresError(code, "cannot connect to \(target): \(reason)", serverMessage: message)
    }

    /// True once the connection failed or was closed; the pool never hands it out again.
    public var isBroken: Bool { broken.load(ordering: .acquiring) }

    // MARK: Statements

    /// Runs one statement with its interpolated values bound as parameters.
    ///
    /// A statement's text is parsed by the server once per connection (a named prepared
    /// statement, planned as the server chooses: see `PostgresConfiguration`), not on every call; a
    /// transaction's `BEGIN` travels in the same round trip as its first statement (libpq
    /// pipeline mode).
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresRows {
        try await self.query([query])[0]
    }

    /// Runs statements in order, sent together in one round trip (libpq pipeline mode): the
    /// server runs each as if sent alone, each with its own snapshot under READ COMMITTED, so a
    /// statement still sees what the ones before it did and waited for (locks included); only
    /// the client's waits in between are saved. The first failure is thrown and the statements
    /// after it are not run. For statements that do not depend on each other's results.
    @discardableResult
    public func query(_ queries: [PostgresQuery]) async throws -> [PostgresRows] {
        try await run(queries, committing: false)
    }

    /// Runs a transaction's last statements and its `COMMIT`, sent together in one round trip,
    /// inside `withTransaction` (which then sends no `COMMIT` of its own). When a statement fails
    /// the rest and the `COMMIT` are not run: the error is thrown and the transaction rolled back
    /// as usual. A statement that finds the transaction must not stand therefore has to fail on
    /// the server (raise an error), not leave the decision to the caller reading its result: by
    /// then the transaction has committed. Saves the client's wait between its last statement
    /// and the `COMMIT`, during which the transaction's locks are held.
    @discardableResult
    public func queryCommitting(_ queries: [PostgresQuery]) async throws -> [PostgresRows] {
        try await run(queries, committing: true)
    }

    private func run(_ queries: [PostgresQuery], committing: Bool) async throws -> [PostgresRows] {
        guard !queries.isEmpty else { return [] }
        for query in queries { logger.trace("query", metadata: ["sql": "\(query.sql)"]) }
        return try await withHandle { handle in
            var texts: [UnsafeMutablePointer<CChar>?] = []
            defer { texts.forEach { free($0) } }
            var statements: [Statement] = []
            for query in queries {
                var values: [UnsafePointer<CChar>?] = []
                for bind in query.binds {
                    if let text = bind.text {
                        let copy = strdup(text)
                        texts.append(copy)
                        // PostgreSQL text cannot hold NUL; truncating at it would store a different
                        // value. The copy stops at the first NUL, so a shorter one means the text
                        // holds one (looking for it byte by byte in Swift first was about 1% of a
                        // service's CPU: every event's payload is a bind).
                        guard let copy, strlen(copy) == text.utf8.count else {
                            throw PostgresError(.server, "a bound string contains a NUL character", query: query.sql)
                        }
                        values.append(UnsafePointer(copy))
                    } else {
                        values.append(nil)
                    }
                }
                statements.append(Statement(
                    sql: query.sql, types: query.binds.map { Oid($0.type.rawValue) }, values: values, planning: query.planning))
            }
            return try await self.execute(statements, committing: committing, handle: handle)
        }
    }

    /// A statement ready to send: its text, parameter types and values (alive for the call).
    private struct Statement {
        var sql: String
        var types: [Oid]
        var values: [UnsafePointer<CChar>?]
        var planning: PostgresQuery.Planning

        /// The session settings the statement runs under, and what puts them back.
        var planModes: (set: [String], reset: [String]) {
            planning == .once ? PostgresConnection.plannedOnceModes : ([], [])
        }
    }

    /// Runs fixed SQL text with no parameters, possibly several statements (migration files,
    /// `BEGIN`/`COMMIT`). Module-internal so that callers cannot build SQL from values.
    @discardableResult
    func runScript(_ sql: String) async throws -> PostgresRows {
        logger.trace("script", metadata: ["sql": "\(sql.prefix(200))"])
        return try await withHandle { handle in
            if let begin = self.takePendingBegin() {
                _ = try await self.simpleQuery(begin, handle: handle)
            }
            return try await self.simpleQuery(sql, handle: handle)
        }
    }

    /// Like `PQexec` (every statement of `sql` runs; the last result counts), without blocking.
    private func simpleQuery(_ sql: String, handle: OpaquePointer) async throws -> PostgresRows {
        guard PQsendQuery(handle, sql) == 1 else { throw connectionFailure(handle, sql: sql) }
        try await flush(handle, sql: sql)
        var last: OpaquePointer?
        while let result = try await nextResult(handle, sql: sql) {
            if let last { PQclear(last) }
            last = result
        }
        return try rows(from: last, handle: handle, sql: sql)
    }

    // MARK: Transactions

    /// Opens a transaction with `sql` (`BEGIN ...`) sent together with the next statement, so a
    /// transaction costs no round trip of its own for starting.
    func beginLazily(_ sql: String) {
        transaction.withLock { $0 = TransactionState(open: true, pendingBegin: sql) }
    }

    /// Runs `action` once the transaction `withTransaction` runs on this connection has committed,
    /// never if it rolls back (an action registered inside a savepoint rolled back alone still
    /// runs when the transaction commits); outside a transaction (the statements before it have
    /// committed already), at once: register it after the statements it follows. For what others
    /// should learn only of committed changes, where a `NOTIFY` in the transaction would cost too
    /// much (see `ChannelWakeups` in the service kit).
    public func afterCommit(_ action: @escaping @Sendable () -> Void) {
        let now = transaction.withLock { state -> Bool in
            guard state.open else { return true }
            state.committed.append(action)
            return false
        }
        if now { action() }
    }

    /// The `afterCommit` actions of the transaction about to commit, taken off the connection.
    func takeCommitActions() -> [@Sendable () -> Void] {
        transaction.withLock { state in
            defer { state.committed = [] }
            return state.committed
        }
    }

    /// Ends the transaction with `sql` (`COMMIT` or `ROLLBACK`); `nil` when there is nothing to
    /// end: it never reached the server (no statement ran in it), or its `COMMIT` already went
    /// out with its last statements.
    func endTransaction(_ sql: String) async throws -> PostgresRows? {
        let over = transaction.withLock { state in
            defer { state = TransactionState() }
            return state.pendingBegin != nil || state.ended
        }
        return over ? nil : try await runScript(sql)
    }

    private func takePendingBegin() -> String? {
        transaction.withLock { state in
            defer { state.pendingBegin = nil }
            return state.pendingBegin
        }
    }

    /// The statements as prepared statements where they may be, in one round trip with a
    /// pending `BEGIN`, their own preparation and, when `committing`, the `COMMIT`.
    private func execute(_ statements: [Statement], committing: Bool, handle: OpaquePointer) async throws -> [PostgresRows] {
        struct Plan {
            var key: StatementKey
            var prepared: String?
            var preparing: String?
        }
        var plans: [Plan] = []
        var preparingHere: [StatementKey: String] = [:]
        for statement in statements {
            let key = StatementKey(sql: statement.sql, types: statement.types)
            let prepare = statement.planning != .eachExecution
            // A statement prepared earlier in this same pipeline is executed by that name.
            let prepared = prepare ? preparedStatements[key] ?? preparingHere[key] : nil
            var preparing: String?
            if prepare, prepared == nil, preparedStatements.count + preparingHere.count < Self.maxPreparedStatements,
               Self.isPreparable(statement.sql) {
                preparedStatementCount += 1
                preparing = "fission_\(preparedStatementCount)"
                preparingHere[key] = preparing
            }
            plans.append(Plan(key: key, prepared: prepared, preparing: preparing))
        }
        let begin = takePendingBegin()
        let firstSQL = statements[0].sql

        // One round trip: [BEGIN] then per statement [SETs] [Parse] Bind/Execute [RESETs], [COMMIT], then Sync.
        // A statement planned once is executed under `plannedOnceModes`; if the statement fails,
        // the RESETs are skipped but the SETs are rolled back with the (explicit or implicit)
        // transaction.
        guard PQenterPipelineMode(handle) == 1 else { throw connectionFailure(handle, sql: firstSQL) }
        var sent = true
        if let begin { sent = sent && PQsendQueryParams(handle, begin, 0, nil, nil, nil, nil, 0) == 1 }
        for (statement, plan) in zip(statements, plans) {
            let count = Int32(statement.values.count)
            for set in statement.planModes.set { sent = sent && PQsendQueryParams(handle, set, 0, nil, nil, nil, nil, 0) == 1 }
            if let preparing = plan.preparing { sent = sent && PQsendPrepare(handle, preparing, statement.sql, count, statement.types) == 1 }
            if let name = plan.preparing ?? plan.prepared {
                sent = sent && PQsendQueryPrepared(handle, name, count, statement.values, nil, nil, 0) == 1
            } else {
                sent = sent && PQsendQueryParams(handle, statement.sql, count, statement.types, statement.values, nil, nil, 0) == 1
            }
            for reset in statement.planModes.reset { sent = sent && PQsendQueryParams(handle, reset, 0, nil, nil, nil, nil, 0) == 1 }
        }
        if committing { sent = sent && PQsendQueryParams(handle, "COMMIT", 0, nil, nil, nil, nil, 0) == 1 }
        sent = sent && PQpipelineSync(handle) == 1
        guard sent else { throw connectionFailure(handle, sql: firstSQL) }

        // Each command's results end with NULL; after the last comes the sync. A command after a
        // failed one comes back aborted; the first failure is the one reported.
        func commandResult(_ sql: String) async throws -> OpaquePointer {
            guard let result = try await nextResult(handle, sql: sql) else { throw connectionFailure(handle, sql: sql) }
            while let extra = try await nextResult(handle, sql: sql) { PQclear(extra) }
            return result
        }
        var failure: (any Error)?
        var statementRows: [PostgresRows?] = Array(repeating: nil, count: statements.count)
        /// `BEGIN`, `SET`, `RESET`, `COMMIT`: no rows, only a failure matters. The command tag when
        /// the command ran (`""` when it failed), `nil` when it came back aborted.
        @discardableResult
        func utilityResult(_ utility: String) async throws -> String? {
            let result = try await commandResult(utility)
            switch PQresultStatus(result) {
            case PGRES_PIPELINE_ABORTED:
                PQclear(result)
                return nil
            case PGRES_COMMAND_OK:
                defer { PQclear(result) }
                return String(cString: PQcmdStatus(result))
            default:
                do { _ = try rows(from: result, handle: handle, sql: utility) } catch { failure = failure ?? error }
                return ""
            }
        }
        do {
            try await flush(handle, sql: firstSQL)
            if let begin { try await utilityResult(begin) }
            for (index, (statement, plan)) in zip(statements, plans).enumerated() {
                for set in statement.planModes.set { try await utilityResult(set) }
                if let preparing = plan.preparing {
                    let result = try await commandResult(statement.sql)
                    if PQresultStatus(result) == PGRES_COMMAND_OK {
                        PQclear(result)
                        preparedStatements[plan.key] = preparing
                    } else if PQresultStatus(result) == PGRES_PIPELINE_ABORTED {
                        PQclear(result)
                    } else {
                        do { _ = try rows(from: result, handle: handle, sql: statement.sql) } catch { failure = failure ?? error }
                    }
                }
                let result = try await commandResult(statement.sql)
                if PQresultStatus(result) == PGRES_PIPELINE_ABORTED {
                    PQclear(result)
                } else {
                    do {
                        statementRows[index] = try rowsEvictingStale(result, key: plan.key, handle: handle)
                    } catch {
                        failure = failure ?? error
                    }
                }
                for reset in statement.planModes.reset { try await utilityResult(reset) }
            }
            // Skipped after a failure (the transaction stays open, aborted, for the caller's
            // ROLLBACK); otherwise the transaction is over, committed or not. A transaction
            // already aborted before this round trip answers `COMMIT` with `ROLLBACK`.
            if committing, let tag = try await utilityResult("COMMIT") {
                transaction.withLock { $0.ended = true }
                if tag == "ROLLBACK" { failure = failure ?? PostgresError.rolledBackAtCommit }
            }
            guard let sync = try await nextResult(handle, sql: firstSQL), PQresultStatus(sync) == PGRES_PIPELINE_SYNC else {
                throw connectionFailure(handle, sql: firstSQL)
            }
            PQclear(sync)
            guard PQexitPipelineMode(handle) == 1 else { throw connectionFailure(handle, sql: firstSQL) }
        } catch {
            // The conversation with the server is out of step: never use this connection again.
            broken.store(true, ordering: .releasing)
            throw error
        }
        if let failure { throw failure }
        return try statementRows.map { rows in
            guard let rows else {
                throw PostgresError(.server, "statement was not run: the transaction could not begin", query: firstSQL)
            }
            return rows
        }
    }

    /// Rows of a result; a prepared statement the server no longer has, or whose result shape a
    /// schema change altered, is forgotten so the next call prepares it afresh.
    private func rowsEvictingStale(_ result: OpaquePointer?, key: StatementKey, handle: OpaquePointer) throws -> PostgresRows {
        do {
            return try rows(from: result, handle: handle, sql: key.sql)
        } catch let error as PostgresError where error.sqlState == .invalidStatementName || error.sqlState == .featureNotSupported {
            preparedStatements[key] = nil
            throw error
        }
    }

    /// Statements worth a server-side plan: data queries. Utility commands (DDL, `LISTEN`,
    /// `SET`) run unnamed, as before.
    private static func isPreparable(_ sql: String) -> Bool {
        let head = sql.utf8.drop { $0 == 32 || $0 == 10 || $0 == 9 || $0 == 13 }.prefix(6)
        let word = String(decoding: head, as: UTF8.self).uppercased()
        return ["SELECT", "INSERT", "UPDATE", "DELETE", "WITH"].contains { word.hasPrefix($0) }
    }

    private struct StatementKey: Hashable {
        var sql: String
        var types: [Oid]
    }

    /// Beyond this many distinct texts a connection stops preparing (text built at run time
    /// would otherwise grow the server's plan cache without bound).
    static let maxPreparedStatements = 256

    /// What a statement planned once runs under, and what puts the session back afterwards.
    /// `force_generic_plan`: the cached plan source keeps its generic plan from the first call.
    /// `enable_seqscan = off`: that plan is made again only after the table is next analyzed,
    /// so it must not depend on how big the table was when it was made. Made on an empty table,
    /// it scans the whole table, and goes on scanning it as it grows until autoanalyze catches
    /// up: on the benchmark's first 10 s the velocity counts took about 1 ms a help this way
    /// (a few thousand rows compared with each key). Statements planned once look rows up by
    /// key, for which an index is right at any size.
    static let plannedOnceModes = (
        set: ["SET plan_cache_mode = force_generic_plan", "SET enable_seqscan = off"],
        reset: ["RESET plan_cache_mode", "RESET enable_seqscan"])

    /// Reads what the server sent without blocking (libpq's socket is non-blocking) and reports
    /// whether the connection is still usable. A backend killed while the connection sat idle
    /// has sent its goodbye and closed the socket, which this notices.
    ///
    /// Runs without taking the connection's turn: the pool calls it only on a connection no one
    /// holds, and it never blocks.
    func checkAlive() -> Bool {
        guard !isBroken, let handle else { return false }
        // The first read takes what is buffered (a dying backend's FATAL message); only the
        // next one sees the end of the stream and marks the connection bad.
        let alive = PQconsumeInput(handle) == 1 && PQconsumeInput(handle) == 1 && PQstatus(handle) == CONNECTION_OK
        if !alive { broken.store(true, ordering: .releasing) }
        return alive
    }

    /// Usable for the next lease: connected and not inside a transaction someone left open.
    /// Like `checkAlive`, only for a connection its holder has finished with.
    func isReusable() -> Bool {
        // A BEGIN that never went out left nothing open on the server.
        _ = takePendingBegin()
        guard !isBroken, let handle else { return false }
        return PQstatus(handle) == CONNECTION_OK && PQtransactionStatus(handle) == PQTRANS_IDLE
    }

    /// Closes the connection; later calls fail with `connectionClosed`.
    public func close() async {
        broken.store(true, ordering: .releasing)
        // After whatever statement is under way.
        await takeTurn()
        if let handle { PQfinish(handle) }
        handle = nil
        passTurn()
    }

    // MARK: LISTEN / NOTIFY

    /// Waits up to `timeoutMilliseconds` on the socket (on this connection's queue, not a
    /// cooperative thread) and returns the notifications that arrived.
    func awaitNotifications(timeoutMilliseconds: Int32) async throws -> [PostgresNotification] {
        try await withHandle { _ in try await Self.onQueue(self.queue) { try self.pollNotifications(timeoutMilliseconds: timeoutMilliseconds) } }
    }

    /// On the connection's queue, by the holder of `turn`.
    private func pollNotifications(timeoutMilliseconds: Int32) throws -> [PostgresNotification] {
        guard let handle else { throw PostgresError(.connectionClosed, "connection is closed") }
        var notifications = drainNotifications(handle)
        if notifications.isEmpty {
            var descriptor = pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0)
            _ = poll(&descriptor, 1, timeoutMilliseconds)
            guard PQconsumeInput(handle) == 1, PQstatus(handle) == CONNECTION_OK else {
                broken.store(true, ordering: .releasing)
                throw PostgresError(.connectionClosed, "listening connection closed")
            }
            notifications = drainNotifications(handle)
        }
        return notifications
    }

    private func drainNotifications(_ handle: OpaquePointer) -> [PostgresNotification] {
        var notifications: [PostgresNotification] = []
        while let notify = PQnotifies(handle) {
            notifications.append(
                PostgresNotification(
                    channel: String(cString: notify.pointee.relname),
                    payload: String(cString: notify.pointee.extra),
                    senderPID: notify.pointee.be_pid))
            PQfreemem(notify)
        }
        return notifications
    }

    // MARK: libpq plumbing

    /// Runs `body` with the handle once it is this caller's turn.
    private func withHandle<T>(_ body: (OpaquePointer) async throws -> T) async throws -> T {
        await takeTurn()
        defer { passTurn() }
        guard let handle, !isBroken else {
            throw PostgresError(.connectionClosed, "connection is closed")
        }
        return try await body(handle)
    }

    private struct Turn {
        var taken = false
        var waiting: [CheckedContinuation<Void, Never>] = []
    }

    private func takeTurn() async {
        // The usual case, a free connection, takes the turn without making a continuation.
        let free = turn.withLock { turn in
            if turn.taken { return false }
            turn.taken = true
            return true
        }
        if free { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = turn.withLock { turn in
                if turn.taken {
                    turn.waiting.append(continuation)
                    return false
                }
                turn.taken = true
                return true
            }
            if now { continuation.resume() }
        }
    }

    /// Hands the turn to the next waiter, in order of arrival.
    private func passTurn() {
        let next = turn.withLock { turn -> CheckedContinuation<Void, Never>? in
            if turn.waiting.isEmpty {
                turn.taken = false
                return nil
            }
            return turn.waiting.removeFirst()
        }
        next?.resume()
    }

    /// Sends what libpq has buffered, awaiting the socket whenever it is full.
    private func flush(_ handle: OpaquePointer, sql: String) async throws {
        while true {
            switch PQflush(handle) {
            case 0: return
            case 1:
                await SocketReadiness.shared.wait(for: PQsocket(handle), writable: true)
                // The server may be waiting for us to read before it reads more.
                guard PQconsumeInput(handle) == 1 else { throw connectionFailure(handle, sql: sql) }
            default: throw connectionFailure(handle, sql: sql)
            }
        }
    }

    /// The next result, `nil` at the end of a command's results, awaiting the socket while the
    /// result has not fully arrived (`PQgetResult` would block).
    private func nextResult(_ handle: OpaquePointer, sql: String) async throws -> OpaquePointer? {
        while PQisBusy(handle) == 1 {
            await SocketReadiness.shared.wait(for: PQsocket(handle))
            guard PQconsumeInput(handle) == 1 else { throw connectionFailure(handle, sql: sql) }
        }
        return PQgetResult(handle)
    }

    private static func onQueue<T: Sendable>(
        _ queue: DispatchQueue, _ body: @escaping @Sendable () throws -> T
    ) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try body() })
            }
        }
    }

    private func rows(from result: OpaquePointer?, handle: OpaquePointer, sql: String) throws -> PostgresRows {
        guard let result else {
            throw connectionFailure(handle, sql: sql)
        }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            let columnCount = Int(PQnfields(result))
            let rowCount = Int(PQntuples(result))
            var columns: [PostgresRows.Column] = []
            columns.reserveCapacity(columnCount)
            for column in 0..<columnCount {
                columns.append(
                    .init(
                        name: String(cString: PQfname(result, Int32(column))),
                        type: PostgresType(rawValue: PQftype(result, Int32(column)))))
            }
            var cells: [String?] = []
            cells.reserveCapacity(rowCount * columnCount)
            for row in 0..<rowCount {
                for column in 0..<columnCount {
                    if PQgetisnull(result, Int32(row), Int32(column)) == 1 {
                        cells.append(nil)
                    } else {
                        cells.append(String(cString: PQgetvalue(result, Int32(row), Int32(column))))
                    }
                }
            }
            let affected = Int(String(cString: PQcmdTuples(result))) ?? rowCount
            return PostgresRows(
                columns: columns, cells: cells, affectedRows: affected,
                commandTag: String(cString: PQcmdStatus(result)), query: sql)
        default:
            let field = { (code: Character) -> String? in
                guard let value = PQresultErrorField(result, Int32(code.asciiValue!)) else { return nil }
                return String(cString: value)
            }
            if PQstatus(handle) != CONNECTION_OK {
                throw connectionFailure(handle, sql: sql, sqlState: field("C").map(SQLState.init(rawValue:)))
            }
            let sqlState = field("C").map(SQLState.init(rawValue:))
            throw PostgresError(
                .server, "statement failed", sqlState: sqlState, serverMessage: field("M"), detail: field("D"),
                hint: field("H"), constraint: field("n"), table: field("t"), column: field("c"), query: sql)
        }
    }

    private func connectionFailure(_ handle: OpaquePointer, sql: String, sqlState: SQLState? = nil) -> PostgresError {
        broken.store(true, ordering: .releasing)
        return PostgresError(
            .connectionClosed, "connection to the server was lost", sqlState: sqlState,
            serverMessage: String(cString: PQerrorMessage(handle)), query: sql)
    }
}

private let noticeLogger = Logger(label: "fission.postgres.notice")

/// A `NOTIFY` received on a channel the listener follows.
public struct PostgresNotification: Sendable, Equatable {
    public var channel: String
    public var payload: String
    public var senderPID: Int32
}
