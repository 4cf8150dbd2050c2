import Foundation
import FissionTesting
import Postgres
import Testing

struct Voucher: Codable, Equatable, Sendable {
    var code: String
    var amountMinor: Int64
    var tags: [String]
}

@Suite("Parameter binding and row decoding")
struct BindingTests {
    static let hostileStrings = [
        "", "plain", "O'Reilly", "''; DROP TABLE items; --", "\"quoted\" and \\backslash\\", "semi;colon;;",
        "砍一刀 帮我砍 ¥12.30", "emoji 🧧🎉", "$1 $2 ?", "line\nbreak\ttab", String(repeating: "x'", count: 5000),
    ]

    @Test func bindingRoundTripsEverySupportedTypeIncludingNull() async throws {
        try await withTestPool { pool in
            try await pool.query(
                """
                CREATE TABLE items (
                    id uuid PRIMARY KEY, n int8, small int4, label text, flag bool, ratio float8,
                    at timestamptz, blob bytea, doc jsonb
                )
                """)
            let id = UUID()
            let at = Date(timeIntervalSince1970: 1_763_860_000.123456)
            let blob = Data([0, 1, 2, 0x27, 0x5c, 0xff, 0x00])
            let voucher = Voucher(code: "HELP-'ME'-CUT", amountMinor: 1230, tags: ["拼团", "a\"b"])
            try await pool.query(
                """
                INSERT INTO items (id, n, small, label, flag, ratio, at, blob, doc)
                VALUES (\(id), \(Int64.max), \(Int32.min), \("O'Reilly; DROP TABLE items; --"), \(true), \(-0.1),
                        \(at), \(blob), \(PostgresJSON(voucher)))
                """)
            let row = try await pool.query("SELECT * FROM items WHERE id = \(id)").single()
            #expect(try row.decode("id", as: UUID.self) == id)
            #expect(try row.decode("n", as: Int64.self) == .max)
            #expect(try row.decode("small", as: Int32.self) == .min)
            #expect(try row.decode("label", as: String.self) == "O'Reilly; DROP TABLE items; --")
            #expect(try row.decode("flag", as: Bool.self) == true)
            #expect(try row.decode("ratio", as: Double.self) == -0.1)
            let decodedAt = try row.decode("at", as: Date.self)
            #expect(abs(decodedAt.timeIntervalSince(at)) < 0.000_001)
            #expect(try row.decode("blob", as: Data.self) == blob)
            #expect(try row.decode("doc", as: PostgresJSON<Voucher>.self).value == voucher)

            // The table survived the hostile label.
            #expect(try await pool.query("SELECT count(*) AS c FROM items").single().decode("c", as: Int.self) == 1)

            // NULL for every type.
            let noID: UUID? = nil
            try await pool.query(
                """
                INSERT INTO items (id, n, small, label, flag, ratio, at, blob, doc)
                VALUES (\(UUID()), \(Int64?.none), \(Int32?.none), \(String?.none), \(Bool?.none), \(Double?.none),
                        \(Date?.none), \(Data?.none), \(PostgresJSON<Voucher>?.none))
                """)
            let nullRow = try await pool.query("SELECT * FROM items WHERE label IS NULL").single()
            #expect(try nullRow.decode("n", as: Int64?.self) == nil)
            #expect(try nullRow.decode("small", as: Int32?.self) == nil)
            #expect(try nullRow.decode("label", as: String?.self) == nil)
            #expect(try nullRow.decode("flag", as: Bool?.self) == nil)
            #expect(try nullRow.decode("ratio", as: Double?.self) == nil)
            #expect(try nullRow.decode("at", as: Date?.self) == nil)
            #expect(try nullRow.decode("blob", as: Data?.self) == nil)
            #expect(try nullRow.decode("doc", as: PostgresJSON<Voucher>?.self) == nil)
            #expect(try await pool.query("SELECT \(noID) IS NULL AS isnull").single().decode("isnull", as: Bool.self))
        }
    }

    /// UUIDs in PostgreSQL's text form, both ways (the text itself is checked against Foundation's
    /// in DomainTests); what is not a UUID is a decoding failure.
    @Test func uuidsReadTheirTextEitherCase() throws {
        let id = UUID()
        #expect(id.postgresText == id.uuidString.lowercased())
        #expect(try UUID.decode(postgresText: id.postgresText, type: .uuid) == id)
        #expect(try UUID.decode(postgresText: id.uuidString, type: .uuid) == id)
        #expect(throws: PostgresDecodingFailure.self) { try UUID.decode(postgresText: "e621e1f8c-36c-495a-93fc-0c247a3e6e5f", type: .uuid) }
    }

    @Test func hostileStringsRoundTripUnchanged() async throws {
        try await withTestPool { pool in
            for text in Self.hostileStrings {
                let echoed = try await pool.query("SELECT \(text)::text AS t, length(\(text)) AS n").single()
                #expect(try echoed.decode("t", as: String.self) == text)
                #expect(try echoed.decode("n", as: Int.self) == text.count)
            }
        }
    }

    /// PostgreSQL text cannot hold NUL: a bound string with one, wherever it is, is refused
    /// before anything is sent, and the connection goes on working.
    @Test func stringsHoldingNULAreRefusedAndChangeNothing() async throws {
        try await withTestPool { pool in
            try await pool.query("CREATE TABLE notes (body text)")
            for text in ["\u{0}", "\u{0}start", "mid\u{0}dle", "end\u{0}", String(repeating: "x", count: 5_000) + "\u{0}"] {
                await #expect(throws: PostgresError.self) { try await pool.query("INSERT INTO notes VALUES (\(text))") }
            }
            #expect(try await pool.query("SELECT count(*) AS n FROM notes").single().decode("n", as: Int.self) == 0)
            try await pool.query("INSERT INTO notes VALUES (\("fine"))")
            #expect(try await pool.query("SELECT body FROM notes").single().decode("body", as: String.self) == "fine")
        }
    }

    @Test func hostileStringsRoundTripUnchangedAsAnArray() async throws {
        try await withTestPool { pool in
            let rows = try await pool.query(
                "SELECT t, n FROM unnest(\(Self.hostileStrings)::text[]) WITH ORDINALITY AS u(t, n) ORDER BY n")
            #expect(try rows.map { try $0.decode("t", as: String.self) } == Self.hostileStrings)
        }
    }

    /// The hand-written string map against the server's own `jsonb` (parsing what we write,
    /// printing what we read back) and against Foundation's JSON on the same maps.
    @Test func stringMapsRoundTripThroughJSONBAndAgreeWithFoundation() async throws {
        // Not NUL: jsonb refuses \u0000, as text refuses NUL.
        let controls = String(decoding: (1..<0x20).map { UInt8($0) }, as: UTF8.self)
        let maps: [[String: String]] = [
            [:],
            ["ce_type": "assists.recorded.v1", "ce_id": "0190e0b0-0000-7000-8000-000000000001"],
            Dictionary(uniqueKeysWithValues: Self.hostileStrings.enumerated().map { ("k\($0.offset) \($0.element.prefix(20))", $0.element) }),
            ["controls": controls, "slash/": "a/b", "🧧": "\u{1F9E7}\u{7F}x", "": ""],
        ]
        try await withTestPool { pool in
            for map in maps {
                let row = try await pool.query("SELECT \(PostgresStringMap(map)) AS m, \(PostgresStringMap(map))::jsonb = \(try Self.foundationJSON(map))::jsonb AS same").single()
                #expect(try row.decode("m", as: PostgresStringMap.self).value == map)
                #expect(try row.decode("same", as: Bool.self), "the server reads ours as it reads Foundation's")
                let foundation = try PostgresStringMap.decode(postgresText: try Self.foundationJSON(map), type: .jsonb)
                #expect(foundation.value == map)
            }
        }
        let escaped = try PostgresStringMap.decode(postgresText: #" { "a" : "\"\\\/\b\f\n\r\t\u00e9\ud83e\udde7" } "#, type: .json)
        #expect(escaped.value == ["a": "\"\\/\u{8}\u{C}\n\r\té🧧"])
        for broken in [#"{"a":1}"#, #"["a"]"#, #"{"a":"b""#, #"{"a":"b"} x"#, "{\"a\":\"\u{1}\"}", #"{"a":"\ud83e"}"#, #"{"a":"\q"}"#, ""] {
            #expect(throws: PostgresDecodingFailure.self, "\(broken)") { try PostgresStringMap.decode(postgresText: broken, type: .jsonb) }
        }
        #expect(throws: PostgresDecodingFailure.self) { try PostgresStringMap.decode(postgresText: "{}", type: .int8) }
    }

    private static func foundationJSON(_ map: [String: String]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: map, options: [.sortedKeys]), as: UTF8.self)
    }

    @Test func scalarsRoundTripThroughSelect() async throws {
        try await withTestPool { pool in
            for value in [0, 1, -1, Int.max, Int.min] {
                #expect(try await pool.query("SELECT \(value) AS v").single().decode("v", as: Int.self) == value)
            }
            for value in [0.0, 1.5, -2.25e-300, 1.7976931348623157e308, .infinity, -.infinity] {
                #expect(try await pool.query("SELECT \(value) AS v").single().decode("v", as: Double.self) == value)
            }
            #expect(try await pool.query("SELECT \(Double.nan) AS v").single().decode("v", as: Double.self).isNaN)
            for value in [true, false] {
                #expect(try await pool.query("SELECT \(value) AS v").single().decode("v", as: Bool.self) == value)
            }
            let dates = [
                Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: -86_400 * 365.25 * 30 + 0.5),
                Date(timeIntervalSince1970: 4_102_444_800.999999),
            ]
            for date in dates {
                let back = try await pool.query("SELECT \(date) AS v").single().decode("v", as: Date.self)
                #expect(abs(back.timeIntervalSince(date)) < 0.000_001)
            }
            let ids = [UUID(), UUID(), UUID()]
            let matched = try await pool.query(
                "SELECT count(*) AS c FROM unnest(\(ids)) AS u(id) WHERE id = ANY(\(Array(ids.prefix(2))))"
            ).single()
            #expect(try matched.decode("c", as: Int.self) == 2)
            let words = ["a,b", "c\"d", "e\\f", "{g}", "NULL"]
            let echoed = try await pool.query("SELECT x FROM unnest(\(words)) WITH ORDINALITY AS t(x, i) ORDER BY i")
            #expect(try echoed.map { try $0.decode("x", as: String.self) } == words)
        }
    }

    @Test func typeMismatchErrorNamesTheColumn() async throws {
        try await withTestPool { pool in
            let row = try await pool.query("SELECT 'not a number'::text AS price_label, NULL::int8 AS missing").single()
            do {
                _ = try row.decode("price_label", as: Int.self)
                Issue.record("decoding text as Int must fail")
            } catch let error as PostgresError {
                #expect(error.code == .decoding)
                #expect(error.description.contains("price_label"))
                #expect(error.description.contains("text"))
            }
            do {
                _ = try row.decode("missing", as: Int.self)
                Issue.record("decoding NULL as non-optional must fail")
            } catch let error as PostgresError {
                #expect(error.description.contains("missing"))
                #expect(error.description.contains("NULL"))
            }
            #expect(throws: PostgresError.self) { try row.decode("no_such_column", as: Int.self) }
        }
    }

    @Test func errorsExposeSQLStateButNeverParameterValues() async throws {
        try await withTestPool { pool in
            try await pool.query("CREATE TABLE users (email text PRIMARY KEY)")
            let secret = "secret-value-4711@example.com"
            try await pool.query("INSERT INTO users VALUES (\(secret))")
            do {
                try await pool.query("INSERT INTO users VALUES (\(secret))")
                Issue.record("duplicate insert must fail")
            } catch let error as PostgresError {
                #expect(error.sqlState == .uniqueViolation)
                #expect(error.constraint == "users_pkey")
                #expect(!error.description.contains(secret))
                #expect(!"\(error)".contains(secret))
            }
            do {
                try await pool.query("SELECT \(secret)::int")
                Issue.record("a bad cast must fail")
            } catch let error as PostgresError {
                #expect(error.sqlState == .invalidTextRepresentation)
                #expect(!error.description.contains(secret))
            }
            var withPassword = pool.configuration
            withPassword.password = "hunter2-very-secret"
            #expect(!withPassword.description.contains("hunter2"))
            let refused = await #expect(throws: PostgresError.self) {
                var wrong = withPassword
                wrong.port = try freeTCPPort()
                _ = try await PostgresConnection.connect(wrong)
            }
            #expect(!(refused?.description.contains("hunter2") ?? true))
            #expect(!(refused?.debugDescription.contains("hunter2") ?? true))
        }
    }

    @Test func configurationParsesURLs() throws {
        let configuration = try PostgresConfiguration(
            url: "postgres://shop%40owner:p%40ss%3Aword@db.internal:6543/campaigns?sslmode=disable&connect_timeout=3")
        #expect(configuration.user == "shop@owner")
        #expect(configuration.password == "p@ss:word")
        #expect(configuration.host == "db.internal")
        #expect(configuration.port == 6543)
        #expect(configuration.database == "campaigns")
        #expect(configuration.parameters["sslmode"] == "disable")
        #expect(configuration.connectTimeoutSeconds == 3)
        #expect(try PostgresConfiguration(url: configuration.url) == configuration)
        #expect(throws: PostgresError.self) { try PostgresConfiguration(url: "mysql://a@b/c") }
        #expect(throws: PostgresError.self) { try PostgresConfiguration(url: "postgres://host/db") }
        #expect(throws: PostgresError.self) { try PostgresConfiguration(url: "postgres://u@host/") }
    }
}
