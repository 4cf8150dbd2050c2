import Domain
import Foundation
import Hummingbird
import Kafka
import Logging
import Postgres
import ServiceLifecycle

/// What a service's routes and handlers share: its database, producer, metrics and token check.
public struct ServiceRuntime: Sendable {
    public var name: String
    public var pool: PostgresPool
    public var producer: KafkaProducer
    public var metrics: ServiceMetrics
    public var verifier: TokenVerifier
    public var logger: Logger
    public var rateLimits: RateLimiter

    public init(name: String, pool: PostgresPool, producer: KafkaProducer, metrics: ServiceMetrics, verifier: TokenVerifier, logger: Logger,
                rateLimits: RateLimiter = .unlimited) {
        self.name = name
        self.pool = pool
        self.producer = producer
        self.metrics = metrics
        self.verifier = verifier
        self.logger = logger
        self.rateLimits = rateLimits
    }

    public var idempotency: IdempotentHandler { IdempotentHandler(pool: pool) }
}

/// Builds a service's HTTP application: the kit's routes (`/health/live`, `/health/ready`,
/// `/metrics`), its middleware (request id and access log, metrics, problem+json errors,
/// bearer tokens), the service's own routes, and the long-running parts (pool, producer, outbox
/// relay, consumers, scheduler) as services that start before the server and stop after it.
public enum ServiceApplication {
    public static func build(
        runtime: ServiceRuntime,
        host: String = "127.0.0.1",
        port: Int,
        services: [any Service],
        routes: (RouterGroup<FissionRequestContext>) -> Void
    ) -> some ApplicationProtocol {
        let router = Router(context: FissionRequestContext.self)
        router.add(middleware: RequestObservationMiddleware(metrics: runtime.metrics))
        router.add(middleware: ProblemMiddleware())

        router.get("/health/live") { _, _ in
            HealthReport(status: "live", checks: [:])
        }
        router.get("/health/ready") { _, _ -> Response in
            async let database = Self.databaseReachable(runtime.pool)
            async let broker = runtime.producer.isBrokerReachable()
            let checks = ["database": await database ? "up" : "down", "broker": await broker ? "up" : "down"]
            let ready = !checks.values.contains("down")
            return try .json(ready ? .ok : .serviceUnavailable, HealthReport(status: ready ? "ready" : "not-ready", checks: checks))
        }
        router.get("/metrics") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(string: runtime.metrics.render())))
        }

        let api = router.group().add(middleware: AuthenticationMiddleware(verifier: runtime.verifier))
        routes(api)

        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: runtime.name),
            services: [runtime.pool, runtime.producer] + services,
            logger: runtime.logger)
    }

    static func databaseReachable(_ pool: PostgresPool) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await pool.query("SELECT 1")) != nil }
            group.addTask {
                try? await Task.sleep(for: .seconds(2))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}

struct HealthReport: ResponseEncodable {
    var status: String
    var checks: [String: String]
}
