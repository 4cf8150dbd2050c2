/// The one error type of the PostgreSQL layer.
///
/// `description` is safe for logs: it names what failed, the SQLSTATE and the constraint, but never
/// parameter values, server messages that may echo them, or passwords. `debugDescription` adds the
/// server's message, detail and hint and the SQL text (still without bound values).
public struct PostgresError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public enum Code: String, Sendable {
        /// The server refused the credentials.
        case authenticationFailed
        /// The database named in the URL does not exist.
        case databaseMissing
        /// Nothing answered at host:port (refused, unreachable or connect timeout).
        case unreachable
        /// Connecting failed for another reason (TLS, too many connections, ...).
        case connectionFailed
        /// The connection broke while in use; it is discarded and never handed out again.
        case connectionClosed
        /// The server rejected a statement; see `sqlState`.
        case server
        /// No pooled connection became free within the pool's wait timeout.
        case poolTimeout
        /// The pool was shut down.
        case poolClosed
        /// A column could not be decoded as the requested Swift type.
        case decoding
        /// The connection URL is malformed.
        case invalidConfiguration
    }

    public var code: Code
    public var sqlState: SQLState?
    /// Safe summary (no values): set by the layer, not by the server.
    public var summary: String
    /// Server or libpq text; may echo values, so only in `debugDescription`.
    public var serverMessage: String?
    public var detail: String?
    public var hint: String?
    public var constraint: String?
    public var table: String?
    public var column: String?
    /// SQL text without bound values.
    public var query: String?

    public init(
        _ code: Code, _ summary: String, sqlState: SQLState? = nil, serverMessage: String? = nil,
        detail: String? = nil, hint: String? = nil, constraint: String? = nil, table: String? = nil,
        column: String? = nil, query: String? = nil
    ) {
        self.code = code
        self.summary = summary
        self.sqlState = sqlState
        self.serverMessage = serverMessage
        self.detail = detail
        self.hint = hint
        self.constraint = constraint
        self.table = table
        self.column = column
        self.query = query
    }

    public var description: String {
        var text = "PostgresError.\(code.rawValue): \(summary)"
        if let sqlState { text += " [SQLSTATE \(sqlState.rawValue) \(sqlState.name)]" }
        if let constraint { text += " constraint=\(constraint)" }
        if let table { text += " table=\(table)" }
        if let column { text += " column=\(column)" }
        return text
    }

    public var debugDescription: String {
        var text = description
        if let serverMessage { text += "\n  message: \(serverMessage)" }
        if let detail { text += "\n  detail: \(detail)" }
        if let hint { text += "\n  hint: \(hint)" }
        if let query { text += "\n  query: \(query)" }
        return text
    }

    /// Serialization failures and deadlocks succeed when the whole transaction is run again.
    public var isSerializationFailure: Bool {
        sqlState == .serializationFailure || sqlState == .deadlockDetected
    }
}

/// A five-character SQLSTATE with names for the ones Fission code reacts to.
public struct SQLState: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let uniqueViolation = SQLState(rawValue: "23505")
    public static let foreignKeyViolation = SQLState(rawValue: "23503")
    public static let notNullViolation = SQLState(rawValue: "23502")
    public static let checkViolation = SQLState(rawValue: "23514")
    public static let exclusionViolation = SQLState(rawValue: "23P01")
    public static let serializationFailure = SQLState(rawValue: "40001")
    public static let deadlockDetected = SQLState(rawValue: "40P01")
    /// A prepared statement the session does not have.
    public static let invalidStatementName = SQLState(rawValue: "26000")
    /// Among others: a prepared statement whose result shape a schema change altered.
    public static let featureNotSupported = SQLState(rawValue: "0A000")
    public static let undefinedTable = SQLState(rawValue: "42P01")
    public static let syntaxError = SQLState(rawValue: "42601")
    public static let invalidTextRepresentation = SQLState(rawValue: "22P02")
    public static let adminShutdown = SQLState(rawValue: "57P01")
    public static let queryCanceled = SQLState(rawValue: "57014")
    public static let invalidPassword = SQLState(rawValue: "28P01")
    public static let invalidCatalogName = SQLState(rawValue: "3D000")
    public static let lockNotAvailable = SQLState(rawValue: "55P03")

    public var name: String {
        switch self {
        case .uniqueViolation: "unique_violation"
        case .foreignKeyViolation: "foreign_key_violation"
        case .notNullViolation: "not_null_violation"
        case .checkViolation: "check_violation"
        case .exclusionViolation: "exclusion_violation"
        case .serializationFailure: "serialization_failure"
        case .deadlockDetected: "deadlock_detected"
        case .undefinedTable: "undefined_table"
        case .syntaxError: "syntax_error"
        case .invalidTextRepresentation: "invalid_text_representation"
        case .adminShutdown: "admin_shutdown"
        case .queryCanceled: "query_canceled"
        case .invalidPassword: "invalid_password"
        case .invalidCatalogName: "invalid_catalog_name"
        case .lockNotAvailable: "lock_not_available"
        default: "class \(rawValue.prefix(2))"
        }
    }

    public var description: String { rawValue }
}
