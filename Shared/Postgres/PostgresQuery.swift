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

    /// The SQL text only: bound values never reach logs.
    public var description: String { sql }

    public struct StringInterpolation: StringInterpolationProtocol {
        var sql = ""
        var binds: [PostgresBind] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
            binds.reserveCapacity(interpolationCount)
        }

        public mutating func appendLiteral(_ literal: String) {
            sql += literal
        }

        public mutating func appendInterpolation<Value: PostgresEncodable>(_ value: Value) {
            binds.append(PostgresBind(type: Value.postgresType, text: value.postgresText))
            sql += "$\(binds.count)"
        }

        public mutating func appendInterpolation<Value: PostgresEncodable>(_ value: Value?) {
            binds.append(PostgresBind(type: Value.postgresType, text: value?.postgresText))
            sql += "$\(binds.count)"
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
}

/// SQL text that can only come from a literal in the source code (`StaticString`), never from a
/// runtime value: safe to splice into a query.
public struct PostgresSQLFragment: Sendable, ExpressibleByStringLiteral {
    let text: String
    public init(stringLiteral value: StaticString) {
        text = value.description
    }
}
