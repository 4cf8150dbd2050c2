import Foundation

/// Where and how to connect, read from a `postgres://user:pass@host:port/db?key=value` URL.
///
/// Query parameters are passed to libpq as connection keywords (`sslmode`, `application_name`,
/// `connect_timeout`, ...). `description` hides the password.
public struct PostgresConfiguration: Sendable, CustomStringConvertible, Hashable {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String
    /// Extra libpq keywords from the URL's query.
    public var parameters: [String: String]
    /// Seconds before an unreachable server is reported; libpq's own minimum is 2.
    public var connectTimeoutSeconds: Int

    public init(
        host: String = "127.0.0.1", port: Int = 5432, user: String, password: String? = nil,
        database: String, parameters: [String: String] = [:], connectTimeoutSeconds: Int = 4
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.parameters = parameters
        self.connectTimeoutSeconds = connectTimeoutSeconds
    }

    public init(url: String) throws(PostgresError) {
        guard let components = URLComponents(string: url),
            components.scheme == "postgres" || components.scheme == "postgresql"
        else {
            throw PostgresError(.invalidConfiguration, "database URL must look like postgres://user:pass@host:port/db")
        }
        guard let user = components.percentEncodedUser.flatMap({ $0.removingPercentEncoding }), !user.isEmpty else {
            throw PostgresError(.invalidConfiguration, "database URL names no user")
        }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty else {
            throw PostgresError(.invalidConfiguration, "database URL names no database")
        }
        var parameters: [String: String] = [:]
        var timeout = 4
        for item in components.queryItems ?? [] {
            guard let value = item.value else { continue }
            if item.name == "connect_timeout" {
                guard let seconds = Int(value), seconds > 0 else {
                    throw PostgresError(.invalidConfiguration, "connect_timeout must be a positive number of seconds")
                }
                timeout = seconds
            } else {
                parameters[item.name] = value
            }
        }
        self.init(
            host: components.host.map { $0.isEmpty ? "127.0.0.1" : $0 } ?? "127.0.0.1",
            port: components.port ?? 5432,
            user: user,
            password: components.percentEncodedPassword.flatMap { $0.removingPercentEncoding },
            database: database.removingPercentEncoding ?? database,
            parameters: parameters,
            connectTimeoutSeconds: timeout
        )
    }

    /// The same server and credentials, another database.
    public func with(database: String) -> PostgresConfiguration {
        var copy = self
        copy.database = database
        return copy
    }

    /// A URL for this configuration (with the password: for handing to child processes, not logs).
    public var url: String {
        var components = URLComponents()
        components.scheme = "postgres"
        components.user = user
        components.password = password
        components.host = host
        components.port = port
        components.path = "/" + database
        var items = parameters.sorted { $0.key < $1.key }.map { URLQueryItem(name: $0.key, value: $0.value) }
        items.append(URLQueryItem(name: "connect_timeout", value: String(connectTimeoutSeconds)))
        components.queryItems = items
        return components.string ?? ""
    }

    public var description: String {
        "postgres://\(user)\(password == nil ? "" : ":***")@\(host):\(port)/\(database)"
    }

    /// Keyword/value pairs for `PQconnectdbParams`: no conninfo string is assembled, so nothing
    /// needs escaping.
    var libpqKeywords: [(String, String)] {
        var pairs: [(String, String)] = [
            ("host", host),
            ("port", String(port)),
            ("user", user),
            ("dbname", database),
            ("connect_timeout", String(max(2, connectTimeoutSeconds))),
            ("application_name", parameters["application_name"] ?? "fission"),
            // Text results are decoded assuming UTC ISO timestamps. Prepared statements keep the
            // server's default plan choice (a generic plan once it costs no more than the custom
            // ones): planning each execution cost PostgreSQL more CPU than running the statement
            // for most of a help's statements. The few statements the server would choose wrongly
            // for say so themselves: planned per execution where a generic plan misleads
            // (`PostgresQuery.plannedForEachExecution`), once where a right generic plan is
            // estimated dearer than custom ones and would never be kept (`plannedOnce`).
            ("options", "-c TimeZone=UTC -c DateStyle=ISO,YMD -c bytea_output=hex"),
            ("client_encoding", "UTF8"),
        ]
        if let password { pairs.append(("password", password)) }
        for (key, value) in parameters where !["application_name", "options", "client_encoding"].contains(key) {
            pairs.append((key, value))
        }
        return pairs
    }
}
