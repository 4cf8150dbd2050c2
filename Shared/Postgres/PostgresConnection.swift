import CLibPQ
import Dispatch
import Foundation
import Logging
import Synchronization

/// One libpq connection.
///
/// libpq blocks and a `PGconn` is not thread-safe, so every libpq call for this connection runs
/// on its own serial Dispatch queue: Swift's cooperative threads only await the result. Use a
/// connection from one task at a time (the pool's lease guarantees that).
public final class PostgresConnection: @unchecked Sendable {
    /// Guarded by `queue`; `nil` once closed.
    private var handle: OpaquePointer?
    private let queue: DispatchQueue
    private let broken = Atomic<Bool>(false)
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
        // No queued work can hold `self` any more, so touching the handle here is safe.
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
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresRows {
        logger.trace("query", metadata: ["sql": "\(query.sql)"])
        return try await withHandle { handle in
            var texts: [UnsafeMutablePointer<CChar>?] = []
            texts.reserveCapacity(query.binds.count)
            defer { texts.forEach { free($0) } }
            for bind in query.binds {
                if let text = bind.text {
                    // PostgreSQL text cannot hold NUL; truncating at it would store a different value.
                    guard !text.utf8.contains(0) else {
                        throw PostgresError(.server, "a bound string contains a NUL character", query: query.sql)
                    }
                    texts.append(strdup(text))
                } else {
                    texts.append(nil)
                }
            }
            let types = query.binds.map { Oid($0.type.rawValue) }
            let values = texts.map { $0.map { UnsafePointer($0) } }
            let result = PQexecParams(handle, query.sql, Int32(query.binds.count), types, values, nil, nil, 0)
            return try self.rows(from: result, handle: handle, sql: query.sql)
        }
    }

    /// Runs fixed SQL text with no parameters, possibly several statements (migration files,
    /// `BEGIN`/`COMMIT`). Module-internal so that callers cannot build SQL from values.
    @discardableResult
    func runScript(_ sql: String) async throws -> PostgresRows {
        logger.trace("script", metadata: ["sql": "\(sql.prefix(200))"])
        return try await withHandle { handle in
            try self.rows(from: PQexec(handle, sql), handle: handle, sql: sql)
        }
    }

    /// Reads what the server sent without blocking (libpq's socket is non-blocking) and reports
    /// whether the connection is still usable. A backend killed while the connection sat idle
    /// has sent its goodbye and closed the socket, which this notices.
    func checkAlive() async -> Bool {
        guard !isBroken else { return false }
        let alive = (try? await withHandle { handle in
            // The first read takes what is buffered (a dying backend's FATAL message); only the
            // next one sees the end of the stream and marks the connection bad.
            PQconsumeInput(handle) == 1 && PQconsumeInput(handle) == 1 && PQstatus(handle) == CONNECTION_OK
        }) ?? false
        if !alive { broken.store(true, ordering: .releasing) }
        return alive
    }

    /// Usable for the next lease: connected and not inside a transaction someone left open.
    func isReusable() async -> Bool {
        guard !isBroken else { return false }
        return (try? await withHandle { handle in
            PQstatus(handle) == CONNECTION_OK && PQtransactionStatus(handle) == PQTRANS_IDLE
        }) ?? false
    }

    /// Closes the connection; later calls fail with `connectionClosed`.
    public func close() async {
        broken.store(true, ordering: .releasing)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                if let handle = self.handle { PQfinish(handle) }
                self.handle = nil
                continuation.resume()
            }
        }
    }

    // MARK: LISTEN / NOTIFY

    /// Waits up to `timeoutMilliseconds` on the socket (on this connection's queue, not a
    /// cooperative thread) and returns the notifications that arrived.
    func awaitNotifications(timeoutMilliseconds: Int32) async throws -> [PostgresNotification] {
        try await withHandle { handle in
            var notifications = self.drainNotifications(handle)
            if notifications.isEmpty {
                var descriptor = pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0)
                _ = poll(&descriptor, 1, timeoutMilliseconds)
                guard PQconsumeInput(handle) == 1, PQstatus(handle) == CONNECTION_OK else {
                    self.broken.store(true, ordering: .releasing)
                    throw PostgresError(.connectionClosed, "listening connection closed")
                }
                notifications = self.drainNotifications(handle)
            }
            return notifications
        }
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

    private func withHandle<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws -> T) async throws -> T {
        try await Self.onQueue(queue) { () throws -> T in
            guard let handle = self.handle, !self.isBroken else {
                throw PostgresError(.connectionClosed, "connection is closed")
            }
            return try body(handle)
        }
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
