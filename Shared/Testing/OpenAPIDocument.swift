import Foundation

/// Reads the operations (method, path) a service's `openapi.yaml` declares, so tests can check
/// that each one is served.
public enum OpenAPIDocument {
    public static func operations(of document: URL) throws -> [(method: String, path: String)] {
        let lines = try String(contentsOf: document, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        var operations: [(String, String)] = []
        var current: String?
        var inPaths = false
        for line in lines {
            if line == "paths:" {
                inPaths = true
                continue
            }
            if inPaths, !line.hasPrefix(" "), !line.isEmpty { inPaths = false }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":") {
                current = String(line.dropFirst(2).dropLast())
            } else if let current, line.hasPrefix("    "), !line.hasPrefix("     ") {
                let key = String(line.dropFirst(4).prefix { $0 != ":" })
                if ["get", "post", "put", "patch", "delete"].contains(key) { operations.append((key, current)) }
            }
        }
        return operations
    }

    /// Runs openapi-spec-validator on the document; returns its complaint, or nil when valid.
    public static func validationProblem(_ document: URL) async throws -> String? {
        try await ChildProcess.runCapturingFailure("/usr/bin/env", [
            "python3", "-c", "import sys, yaml; from openapi_spec_validator import validate; validate(yaml.safe_load(open(sys.argv[1])))",
            document.path,
        ], timeLimit: .seconds(300))
    }
}
