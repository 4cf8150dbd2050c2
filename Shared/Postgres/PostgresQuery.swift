/// A statement whose interpolated values become `$n` parameters.
///
///     let rows = try await connection.query("SELECT name FROM users WHERE id = \(id)")
///
/// Every interpolation is a bind: there is no way to splice a value into the SQL text, so SQL
/// injection cannot be written. Identifiers (a database or table name chosen by code) go through
/// `\(identifier: name)`, which quotes them.
public struct PostgresQuery: Sendable, ExpressibleByStringInterpolation, CustomStringConvertible {
    public var sql: String
    public var binds: [PostgresBind]
    /// How the server plans the statement; see `plannedForEachExecution` and `plannedOnce`.
    public private(set) var planning = Planning.serverChooses

    public enum Planning: Sendable {
        /// A generic plan once it is estimated to cost no more than the custom ones so far.
        case serverChooses
        /// Sent unprepared: planned for each execution's values.
        case eachExecution
        /// One generic plan, kept for every execution on the connection, made without
        /// sequential scans where an index serves.
        case once
    }

    public init(unsafeSQL sql: String, binds: [PostgresBind] = []) {
        self.sql = sql
        self.binds = binds
    }

    public init(stringLiteral value: String) {
        self.init(unsafeSQL: value)
    }

    public init(stringInterpolation: StringInterpolation) {
        self.init(unsafeSQL: stringInterpolation.sql, binds: stringInterpolation.binds)
    }

    /// This statement, planned for each execution's values. For the statements a plan made once
    /// would mislead, such as a read whose best plan depends on how many rows were just changed
    /// (estimates know nothing of dead index entries).
    public func plannedForEachExecution() -> PostgresQuery {
        var query = self
        query.planning = .eachExecution
        return query
    }

    /// This statement, planned once per connection with no regard to its values. For statements
    /// whose generic plan is right but estimated dearer than a custom one (arrays of unknown
    /// length), which the server would otherwise plan again on every execution. The plan uses
    /// indexes wherever it can, however small the tables were when it was made: for statements
    /// that look rows up by key.
    public func plannedOnce() -> PostgresQuery {
        var query = self
        query.planning = .once
        return query
    }

    /// The SQL text only: bound values never reach logs.
    public var description: String { sql }

    public struct StringInterpolation: StringInterpolationProtocol {
        @usableFromInline var sql = ""
        @usableFromInline var binds: [PostgresBind] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
            binds.reserveCapacity(interpolationCount)
        }

        public mutating func appendLiteral(_ literal: String) {
            sql += literal
        }

        // Inlinable, as is `Array.postgresText`: specialized where the query is written, a bind
        // costs no run-time generic metadata or witness lookups.
        @inlinable
        public mutating func appendInterpolation<Value: PostgresEncodable>(_ value: Value) {
            binds.append(PostgresBind(type: Value.postgresType, text: value.postgresText))
            sql += "$\(binds.count)"
        }

        @inlinable
        public mutating func appendInterpolation<Value: PostgresEncodable>(_ value: Value?) {
            binds.append(PostgresBind(type: Value.postgresType, text: value?.postgresText))
            sql += "$\(binds.count)"
        }

        /// Another query as a part of this one (a common table expression built elsewhere): its
        /// parameters follow this one's, renumbered.
        public mutating func appendInterpolation(_ query: PostgresQuery) {
            let offset = binds.count
            var placeholders = 0
            var text = Substring(query.sql)
            while let dollar = text.firstIndex(of: "$") {
                sql += text[..<dollar]
                let digits = text[text.index(after: dollar)...].prefix { $0.isASCII && $0.isNumber }
                // Only this type writes `$n`, once each and in order; anything else (a dollar in a
                // literal) would be renumbered wrongly, so it is refused.
                placeholders += 1
                precondition(Int(digits) == placeholders, "a nested query may hold no '$' but its own placeholders")
                sql += "$\(offset + placeholders)"
                text = text[digits.endIndex...]
            }
            precondition(placeholders == query.binds.count, "a nested query's placeholders do not match its values")
            sql += text
            binds += query.binds
        }

        /// A piece of SQL text written in the source code (a column list shared by queries).
        public mutating func appendInterpolation(_ fragment: PostgresSQLFragment) {
            sql += fragment.text
        }

        /// A quoted identifier (`"name"`), for names chosen by code such as a test database.
        public mutating func appendInterpolation(identifier: String) {
            sql += "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
    }
}

/// One parameter in libpq's text format; `nil` is SQL NULL.
public struct PostgresBind: Sendable, Equatable {
    public var type: PostgresType
    public var text: String?

    @inlinable
    public init(type: PostgresType, text: String?) {
        self.type = type
        self.text = text
    }
}

/// SQL text that can only come from a literal in the source code (`StaticString`), never from a
/// runtime value: safe to splice into a query.
public struct PostgresSQLFragment: Sendable, ExpressibleByStringLiteral {
    let text: String
    public init(stringLiteral value: StaticString) {
        text = value.description
    }
}
