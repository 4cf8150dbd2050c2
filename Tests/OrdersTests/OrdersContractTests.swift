@testable import OrdersService
import Domain
import FissionTesting
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Postgres
import ServiceKit
import Testing

@Suite("Orders contracts and OpenAPI")
struct OrdersContractTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let contracts = root.appendingPathComponent("Shared/Contracts")
    static let document = root.appendingPathComponent("Services/Orders/openapi.yaml")

    @Test func whatTheServiceEmitsOnOrdersOrderValidates() async throws {
        try await withOrders { orders in
            let campaign = try await orders.publish()
            let plain = try await orders.placeAndReserve(campaign, purpose: "plain")
            _ = try await orders.pay(plain)
            let team = try await orders.placeAndReserve(campaign, purpose: "openTeam", user: "u-2")
            _ = try await orders.pay(team)
            _ = try await orders.call(.post, "/orders/\(team.orderId)/cancel", as: "u-2")
            let unpaid = try await orders.placeAndReserve(campaign, purpose: "plain", user: "u-3")
            _ = try await orders.call(.post, "/orders/\(unpaid.orderId)/cancel", as: "u-3")

            let emitted = try await Contracts.validateEmitted(on: orders.pool)
            let types = emitted.types
            #expect(types == Set(EventCatalog.types(on: Topics.order).map { $0.eventType }), "every orders.order.v1 type is emitted")
            #expect(emitted.problems == nil, "\(emitted.problems ?? "")")
        }
    }

    @Test func everyConsumedExampleIsHandled() async throws {
        try await withTestPool { pool in
            _ = try await Migrator(migrations: try OrdersService.migrations()).migrate(pool)
            let handlers = OrdersService.eventHandlers(OrderSagas(paymentTimeout: .seconds(900)))
            for topic in Topics.all where topic.consumers.contains(.orders) {
                #expect(OrdersService.consumedTopics.contains(topic.name), "\(topic.name)")
            }
            for handler in handlers {
                let example = try Data(contentsOf: Self.contracts.appendingPathComponent("examples/\(handler.eventType).example.json"))
                try await pool.withTransaction { try await handler(Array(example), on: $0) }
            }
            #expect(try await pool.query("SELECT count(*)::int8 AS n FROM campaign_terms").single().decode("n", as: Int.self) == 1)
            #expect(try await pool.query("SELECT count(*)::int8 AS n FROM completed_tasks").single().decode("n", as: Int.self) == 1)
        }
    }

    @Test func openAPIDocumentIsValidAndEveryOperationIsServed() async throws {
        #expect(try await OpenAPIDocument.validationProblem(Self.document) == nil)
        let operations = try OpenAPIDocument.operations(of: Self.document)
        #expect(operations.count == 10, "\(operations)")
        try await withOrders { orders in
            for (method, path) in operations {
                let uri = path.replacingOccurrences(of: "{id}", with: UUID().uuidString.lowercased())
                let response = try await orders.call(HTTPRequest.Method(rawValue: method.uppercased())!, uri, roles: [.shopper, .merchant], json: "{}")
                #expect(response.status != .methodNotAllowed, "\(method) \(path)")
                #expect(!String(buffer: response.body).contains("no such resource"), "\(method) \(path) is documented but not served")
            }
        }
    }
}
