import Domain
import Foundation
import Hummingbird
import Kafka
import Logging
import Postgres
import ServiceLifecycle

/// What every Fission service process is made of, assembled once: a migrated database pool,
/// the idempotent producer, the outbox relay, the inbox consumer of the service's topics, the
/// scheduler of its due work, and the HTTP application with the kit's routes and the service's
/// own. A service supplies only what is its own.
public struct ServiceDefinition: Sendable {
    public var name: String
    public var migrations: [Migration]
    public var consumedTopics: [String]
    public var eventHandlers: [EventHandler]
    public var scheduledJobs: [String: Scheduler.Handler]
    /// The service's own long-running work, run and shut down with the process.
    public var services: [any Service]
    /// How the service consumes (partitions handled at once: see `InboxConsumer.Options`).
    public var consumerOptions: InboxConsumer.Options

    public init(name: String, migrations: [Migration], consumedTopics: [String], eventHandlers: [EventHandler],
                scheduledJobs: [String: Scheduler.Handler] = [:], services: [any Service] = [],
                consumerOptions: InboxConsumer.Options = InboxConsumer.Options()) {
        self.consumerOptions = consumerOptions
        self.name = name
        self.migrations = migrations
        self.consumedTopics = consumedTopics
        self.eventHandlers = eventHandlers
        self.scheduledJobs = scheduledJobs
        self.services = services
    }
}

extension ServiceApplication {
    /// Migrates the service's database, then builds the whole process (see `ServiceDefinition`).
    public static func assemble(
        _ definition: ServiceDefinition, settings: ServiceSettings, logger: Logger,
        routes: @escaping (RouterGroup<FissionRequestContext>, ServiceRuntime) -> Void
    ) async throws -> some ApplicationProtocol {
        let pool = PostgresPool(configuration: settings.database, options: .init(maxConnections: settings.databasePoolSize), logger: logger)
        _ = try await Migrator(migrations: definition.migrations, logger: logger).migrate(pool)
        var producerConfiguration = KafkaProducerConfiguration(bootstrapServers: settings.kafkaBrokers)
        producerConfiguration.clientID = definition.name
        // Never time a record out: librdkafka retries it until the broker takes it, in order. With
        // a timeout, a broker back just after one batch timed out could take the next, and the
        // relay, sending the first again, would put an aggregate's events out of order. Stopping
        // does not wait on a broker that is down (`KafkaDeliveries.outcomes`).
        producerConfiguration.messageTimeoutMilliseconds = 0
        let producer = try KafkaProducer(configuration: producerConfiguration, logger: logger)
        let metrics = ServiceMetrics()
        let runtime = ServiceRuntime(
            name: definition.name, pool: pool, producer: producer, metrics: metrics,
            verifier: try await TokenVerifier(settings.tokenKeys), logger: logger, rateLimits: settings.rateLimits)
        var services: [any Service] = []
        var relayOptions = OutboxRelay.Options()
        relayOptions.retention = settings.outboxRetention
        services.append(OutboxRelay(service: definition.name, pool: pool, producer: producer, metrics: metrics, options: relayOptions, logger: logger))
        if !definition.consumedTopics.isEmpty {
            // Each service consumes as the group named after it; the local broker needs short
            // fetch waits and sessions.
            var consumer = settings.localBroker
                ? KafkaConsumerConfiguration.local(bootstrapServers: settings.kafkaBrokers, groupID: definition.name, topics: definition.consumedTopics)
                : KafkaConsumerConfiguration(bootstrapServers: settings.kafkaBrokers, groupID: definition.name, topics: definition.consumedTopics)
            consumer.clientID = definition.name
            services.append(try InboxConsumer(
                consumer: consumer, pool: pool, deadLetterProducer: producer, handlers: definition.eventHandlers, metrics: metrics,
                options: definition.consumerOptions, logger: logger))
        }
        var retention = RetentionSweeper.Options()
        retention.inboxRetention = settings.inboxRetention
        retention.idempotencyRetention = settings.idempotencyRetention
        services.append(RetentionSweeper(pool: pool, options: retention, logger: logger))
        if !definition.scheduledJobs.isEmpty {
            services.append(Scheduler(pool: pool, handlers: definition.scheduledJobs, logger: logger))
        }
        services += definition.services
        return build(runtime: runtime, host: settings.host, port: settings.port, services: services) { api in
            routes(api, runtime)
        }
    }
}
