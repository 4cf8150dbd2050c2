import FissionTesting
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@Suite("Assists OpenAPI document")
struct AssistsOpenAPITests {
    static let document = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Services/Assists/openapi.yaml")

    @Test func documentIsValidOpenAPI31() async throws {
        #expect(try await OpenAPIDocument.validationProblem(Self.document) == nil)
    }

    @Test func everyDocumentedOperationIsServed() async throws {
        let operations = try OpenAPIDocument.operations(of: Self.document)
        #expect(operations.count == 9, "\(operations)")
        try await AssistsHTTPTests().withService { api, _ in
            let unserved = try await api.call(.get, "/definitely/not/served", as: "u-1")
            #expect(String(buffer: unserved.body).contains("no such resource"))
            for (method, path) in operations {
                let uri = path.replacingOccurrences(of: "{id}", with: UUID().uuidString.lowercased())
                let response = try await api.call(HTTPRequest.Method(rawValue: method.uppercased())!, uri, as: "u-1", roles: [.shopper, .operator], json: "{}")
                #expect(response.status != .methodNotAllowed, "\(method) \(path)")
                #expect(!String(buffer: response.body).contains("no such resource"), "\(method) \(path) is documented but not served")
            }
        }
    }
}
