import FissionTesting
import Foundation
import Testing

/// Every service's OpenAPI 3.1 document is valid (the served-operations checks live with each
/// service's tests where the app is built).
@Suite("OpenAPI documents")
struct OpenAPIDocumentsTests {
    static let services = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Services")

    @Test(arguments: ["Campaigns", "Assists", "Orders", "Levels", "Notifications"])
    func documentIsValid(service: String) async throws {
        let problem = try await OpenAPIDocument.validationProblem(Self.services.appendingPathComponent("\(service)/openapi.yaml"))
        #expect(problem == nil, "\(service): \(problem ?? "")")
    }
}
