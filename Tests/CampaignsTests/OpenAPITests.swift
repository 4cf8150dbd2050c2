import FissionTesting
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@Suite("Campaigns OpenAPI document")
struct OpenAPITests {
    static let document = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Services/Campaigns/openapi.yaml")

    @Test func documentIsValidOpenAPI31() async throws {
        #expect(try await OpenAPIDocument.validationProblem(Self.document) == nil)
    }

    @Test func everyDocumentedOperationIsServed() async throws {
        let operations = try OpenAPIDocument.operations(of: Self.document)
        #expect(operations.count >= 18, "\(operations)")
        try await CampaignHTTPTests().withService { api, _ in
            // What an unserved route looks like, so the checks below can tell.
            let unserved = try await api.call(.get, "/definitely/not/served", as: "m-tea")
            #expect(unserved.status == .notFound)
            #expect(String(buffer: unserved.body).contains("no such resource"))
            for (method, path) in operations {
                let uri = path.replacingOccurrences(of: "{id}", with: UUID().uuidString.lowercased())
                    .replacingOccurrences(of: "{code}", with: "nosuchcode")
                let response = try await api.call(HTTPRequest.Method(rawValue: method.uppercased())!, uri, as: "m-tea", roles: [.merchant, .shopper, .operator], json: "{}")
                let body = String(buffer: response.body)
                #expect(response.status != .methodNotAllowed, "\(method) \(path) is documented but not served")
                #expect(!body.contains("no such resource"), "\(method) \(path) is documented but not served: \(body)")
            }
        }
    }
}
