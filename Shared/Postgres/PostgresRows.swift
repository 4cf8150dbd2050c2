/// The result of one statement, copied out of libpq so it outlives the connection lease.
public struct PostgresRows: Sendable, Sequence {
    public struct Column: Sendable, Equatable {
        public var name: String
        public var type: PostgresType
    }

    public let columns: [Column]
    /// Row-major cells; `nil` is SQL NULL.
    let cells: [String?]
    /// Rows a command touched (`INSERT`, `UPDATE`, `DELETE`, ...), or rows returned.
    public let affectedRows: Int
    /// The server's command tag (`INSERT 0 1`, `COMMIT`, `ROLLBACK`, ...).
    public let commandTag: String
    let query: String

    init(columns: [Column], cells: [String?], affectedRows: Int, commandTag: String, query: String) {
        self.columns = columns
        self.cells = cells
        self.affectedRows = affectedRows
        self.commandTag = commandTag
        self.query = query
    }

    public var count: Int { columns.isEmpty ? 0 : cells.count / columns.count }
    public var isEmpty: Bool { count == 0 }
    public var first: PostgresRow? { isEmpty ? nil : self[0] }

    public subscript(index: Int) -> PostgresRow { PostgresRow(rows: self, index: index) }

    public func makeIterator() -> AnyIterator<PostgresRow> {
        var index = 0
        return AnyIterator {
            guard index < self.count else { return nil }
            defer { index += 1 }
            return self[index]
        }
    }

    /// The single row a statement must return, or an error saying it did not.
    public func single() throws(PostgresError) -> PostgresRow {
        guard count == 1 else {
            throw PostgresError(.decoding, "expected exactly one row, got \(count)", query: query)
        }
        return self[0]
    }

    func columnIndex(_ name: String) -> Int? {
        columns.firstIndex { $0.name == name }
    }
}

public struct PostgresRow: Sendable {
    let rows: PostgresRows
    let index: Int

    /// Decodes the named column; the error names the column and both types when they differ.
    public func decode<Value: PostgresDecodable>(_ column: String, as: Value.Type = Value.self) throws(PostgresError) -> Value {
        guard let position = rows.columnIndex(column) else {
            throw PostgresError(
                .decoding, "no column '\(column)' in result (columns: \(rows.columns.map(\.name).joined(separator: ", ")))",
                column: column, query: rows.query)
        }
        return try decode(position, as: Value.self)
    }

    /// Decodes the column at `position` (0-based).
    public func decode<Value: PostgresDecodable>(_ position: Int, as: Value.Type = Value.self) throws(PostgresError) -> Value {
        guard position >= 0, position < rows.columns.count else {
            throw PostgresError(.decoding, "no column at position \(position)", query: rows.query)
        }
        let column = rows.columns[position]
        guard let text = rows.cells[index * rows.columns.count + position] else {
            guard let null = Value.postgresNull else {
                throw PostgresError(
                    .decoding, "column '\(column.name)' is NULL but \(Value.self) is not optional",
                    column: column.name, query: rows.query)
            }
            return null
        }
        do {
            return try Value.decode(postgresText: text, type: column.type)
        } catch {
            throw PostgresError(
                .decoding, "column '\(column.name)' (\(column.type)) cannot be decoded as \(Value.self)",
                serverMessage: error.reason, column: column.name, query: rows.query)
        }
    }
}
