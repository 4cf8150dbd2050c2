import FissionTesting
import Foundation
import Testing

/// The real service executables, the broker process and a throwaway PostgreSQL, driven through
/// their public APIs by the demo scenario.
@Suite("End to end")
struct DemoTests {
    @Test func theDemoRunsAGroupBuyAndABargainThroughEveryServiceAndStopsCleanly() async throws {
        let command = try builtProduct("fission")
        let logs = FileManager.default.temporaryDirectory.appendingPathComponent("fission-e2e-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: logs) }
        // A stack that never gets ready or a demo step that never ends is killed with its output
        // rather than holding the test run forever.
        let output = try await ChildProcess.run(
            command.path, ["dev", "up", "--demo", "--base-port", "0", "--log-directory", logs, "--shoppers", "120"],
            timeLimit: .seconds(600))
        #expect(output.contains("team complete: 3/3 members, status completed; Li Wei's order is confirmed"), "\(output)")
        #expect(output.contains("= ¥99.00"), "\(output)")
        #expect(output.contains("the demo is complete"), "\(output)")
        #expect(output.contains("Li Wei's inbox"), "\(output)")
        // The viral act: deadlines passed, the services settled, the invariants were checked on
        // every service's database, and the report was written.
        #expect(output.contains("settled "), "\(output)")
        #expect(output.contains("all invariants hold."), "\(output)")
        let report = (try? String(contentsOfFile: "\(logs)/report.html", encoding: .utf8)) ?? ""
        #expect(report.contains("<svg") && report.contains("Funnel per campaign"))
        // Nothing is left running: every service process was stopped.
        for service in ["campaigns", "assists", "orders", "levels", "notifications", "broker"] {
            let log = (try? String(contentsOfFile: "\(logs)/\(service).log", encoding: .utf8)) ?? ""
            #expect(!log.isEmpty, "\(service) wrote no log")
        }
        let running = try await ChildProcess.run("/bin/sh", ["-c", "ps -eo args | grep -c -- '--log-directory \(logs)' || true"], timeLimit: .seconds(60))
        #expect(Int(running.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0 <= 2)
    }
}
