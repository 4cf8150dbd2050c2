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

    /// (method, path) pairs the document declares, read from its `paths:` block.
    static func operations() throws -> [(String, String)] {
        let lines = try String(contentsOf: document, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        var operations: [(String, String)] = []
        var current: String?
        var inPaths = false
        for line in lines {
            if line == "paths:" { inPaths = true; continue }
            if inPaths, !line.hasPrefix(" "), !line.isEmpty { inPaths = false }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":") {
                current = String(line.dropFirst(2).dropLast())
            } else if let current, line.hasPrefix("    "), !line.hasPrefix("     ") {
                let key = line.dropFirst(4).prefix { $0 != ":" }
                if ["get", "post", "put", "patch", "delete"].contains(String(key)) { operations.append((String(key), current)) }
            }
        }
        return operations
    }

    @Test func documentIsValidOpenAPI31() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import sys, yaml; from openapi_spec_validator import validate; validate(yaml.safe_load(open(sys.argv[1])))", Self.document.path]
        let output = Pipe()
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(text)")
    }

    @Test func everyDocumentedOperationIsServed() async throws {
        let operations = try Self.operations()
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
