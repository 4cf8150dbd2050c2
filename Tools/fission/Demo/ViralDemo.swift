import FissionTesting
import Foundation
import Postgres

/// The second act of `fission dev up --demo`: the viral simulation, waiting for every deadline
/// to pass and the services to settle, then the report and the invariant check.
struct ViralDemo {
    let stack: LocalStack
    let shoppers: Int
    let seed: UInt64
    let reportPath: String

    /// Returns whether every invariant held.
    func play() async throws -> Bool {
        let store = Storefront(stack: stack)
        var rng = SplitMix64(seed: seed)
        let graph = SocialGraph(shoppers: shoppers, rng: &rng)
        stack.say("== the viral campaign: \(shoppers) shoppers in \(graph.groups.count) chat groups of 20–500 (seed \(seed)) ==")
        let progress = Progress()
        let simulation = ViralSimulation(store: store, graph: graph, seed: rng.next(), progress: progress)
        let campaigns = try await simulation.publishCampaigns()
        stack.say("merchant published a group-buy (teams of 3, 60 s), a bargain (4 helpers, 60 s) and an unlock (3 helpers, 60 s)")
        let started = Date()
        _ = try await simulation.spread(campaigns)
        stack.say("sharing stopped after \(Int(Date().timeIntervalSince(started))) s; waiting for deadlines to pass and the services to settle")
        let settled = try await Self.settle(databases: stack.databases, progress: progress)
        let report = try await ViralReport.gather(
            store: store, campaigns: campaigns, graph: graph, databases: stack.databases, settledAfter: settled)
        for line in report.text() { stack.say(line) }
        try report.html().write(toFile: reportPath, atomically: true, encoding: .utf8)
        stack.say("HTML report with the fission trees: \(reportPath)")
        return report.invariantsHold
    }

    /// Waits until no team or task is open, no order awaits payment, every outbox is drained
    /// and no consumer handled anything new for two seconds. Returns the seconds it took, or
    /// nil when that did not happen within `limit` seconds. `fission chaos` waits the same way.
    static func settle(databases: [String: PostgresConfiguration], progress: Progress, limit: TimeInterval = 300) async throws -> TimeInterval? {
        let started = Date()
        var pools: [String: PostgresPool] = [:]
        for (service, configuration) in databases { pools[service] = PostgresPool(configuration: configuration, options: .init(maxConnections: 1)) }
        defer { progress.end() }
        var previous = -1
        var quietSince: Date?
        while Date().timeIntervalSince(started) < limit {
            var pending = 0, handled = 0
            for pool in pools.values {
                pending += try await pool.query("SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL").single().decode("n", as: Int.self)
                handled += try await pool.query("SELECT count(*)::int AS n FROM inbox").single().decode("n", as: Int.self)
            }
            let open = try await pools["campaigns"]!.query("SELECT count(*)::int AS n FROM teams WHERE status = 'open'").single().decode("n", as: Int.self)
                + pools["assists"]!.query("SELECT count(*)::int AS n FROM tasks WHERE status = 'open'").single().decode("n", as: Int.self)
            let awaiting = try await pools["orders"]!.query(
                "SELECT count(*)::int AS n FROM orders WHERE state IN ('placed', 'awaiting_payment')").single().decode("n", as: Int.self)
            let busy = open + awaiting + pending > 0 || handled != previous
            previous = handled
            if busy { quietSince = nil } else if quietSince == nil { quietSince = Date() }
            let elapsed = Date().timeIntervalSince(started)
            progress.show(min(1, elapsed / 90), "settling: \(open) teams/tasks open, \(awaiting) orders awaiting payment, \(pending) events to relay")
            if let quietSince, Date().timeIntervalSince(quietSince) >= 2 {
                for pool in pools.values { await pool.close() }
                return elapsed
            }
            try await Task.sleep(for: .seconds(1))
        }
        for pool in pools.values { await pool.close() }
        return nil
    }
}
