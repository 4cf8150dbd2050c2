import Domain
import FissionTesting
import Foundation
import Kafka
import Postgres
import ServiceKit

/// A pool on a fresh database with the kit's tables.
func withKitDatabase<T>(
    isolation: isolated (any Actor)? = #isolation,
    maxConnections: Int = 16,
    _ body: (PostgresPool) async throws -> T
) async throws -> T {
    try await withTestPool(options: .init(maxConnections: maxConnections, waitTimeout: .seconds(60))) { pool in
        _ = try await Migrator(migrations: KitMigrations.all).migrate(pool)
        return try await body(pool)
    }
}

/// Reads a topic from the start into memory, in the background.
actor TopicRecorder {
    private(set) var messages: [KafkaMessage] = []
    private var task: Task<Void, any Error>?

    init() {}

    func start(bootstrap: String, topic: String) throws {
        let consumer = try KafkaConsumer(
            configuration: .local(bootstrapServers: bootstrap, groupID: "recorder-\(UUID())", topics: [topic]))
        task = Task {
            for try await message in consumer.messages { self.append(message) }
        }
    }

    private func append(_ message: KafkaMessage) { messages.append(message) }

    func stop() { task?.cancel() }

    func events<Payload: DomainEvent>(_ type: Payload.Type) -> [CloudEvent<Payload>] {
        messages.compactMap { try? EventCoding.decode(Payload.self, from: $0.value) }
    }
}

func stockReserved(campaign: CampaignID, sequence: Int) -> CloudEvent<StockReserved> {
    CloudEvent(StockReserved(campaignId: campaign, orderId: OrderID(), userId: UserID(rawValue: "u-\(sequence)"), quantity: 1, stockLeft: sequence))
}
