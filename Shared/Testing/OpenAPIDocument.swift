import Foundation

/// Reads the operations (method, path) a service's `openapi.yaml` declares, so tests can check
/// that each one is served.
public enum OpenAPIDocument {
    /// One operation and the roles it declares (`x-fission-roles`; empty: public).
    public struct Operation: Sendable {
        public var method: String
        public var path: String
        public var roles: [String]?
        public var takesBody = false
    }

    public static func operations(of document: URL) throws -> [(method: String, path: String)] {
        try declaredOperations(of: document).map { ($0.method, $0.path) }
    }

    /// The operations in document order, read line by line (the documents keep one layout:
    /// paths at two spaces, methods at four, `x-fission-roles` first inside each method).
    public static func declaredOperations(of document: URL) throws -> [Operation] {
        let lines = try String(contentsOf: document, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        var operations: [Operation] = []
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
                if ["get", "post", "put", "patch", "delete"].contains(key) { operations.append(Operation(method: key, path: current, roles: nil)) }
            } else if line.hasPrefix("      x-fission-roles:"), !operations.isEmpty, operations[operations.count - 1].roles == nil {
                let list = line.drop { $0 != "[" }.dropFirst().prefix { $0 != "]" }
                operations[operations.count - 1].roles = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            } else if line.hasPrefix("      requestBody:"), !operations.isEmpty {
                operations[operations.count - 1].takesBody = true
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
