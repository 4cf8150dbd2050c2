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
    func documentIsValid(service: String) throws {
        let document = Self.services.appendingPathComponent("\(service)/openapi.yaml")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", "-c", "import sys, yaml; from openapi_spec_validator import validate; validate(yaml.safe_load(open(sys.argv[1])))",
            document.path,
        ]
        let output = Pipe()
        process.standardError = output
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(service): \(text)")
    }
}
