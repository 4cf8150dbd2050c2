import ArgumentParser
import FissionTesting
import Foundation

/// `fission chaos`: the demo's viral traffic on the local stack for a few minutes while service
/// processes are SIGKILLed and restarted, the broker goes down for a while and PostgreSQL
/// restarts; then, once everything has caught up and settled, an audit of every service's
/// database and of the topics. Exits non-zero when an accepted request or an event was lost,
/// an effect happened twice, stock was oversold or a bargain's cuts do not add up.
struct Chaos: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the demo's traffic through crashes and outages, then check that nothing was lost or doubled.")

    @Option(help: "Minutes of load (and of faults).")
    var minutes: Double = 3

    @Option(help: "Shoppers in the synthetic social graph.")
    var shoppers = 2_000

    @Option(help: "Seed of the graph, the shoppers' choices and the faults, to replay a run.")
    var seed: UInt64 = 2_026

    @Option(help: "Seconds between two SIGKILLs of a random service.")
    var killEvery: Double = 5

    @Option(help: "Seconds the broker stays down (once).")
    var brokerOutage: Double = 30

    @Option(help: "Seconds a shopper's app retries a request that cannot get an answer.")
    var patience: Double = 90

    @Option(help: "First HTTP port; services take consecutive ones (0: any free ports).")
    var basePort = 0

    @Option(help: "Where logs of the broker and services go.")
    var logDirectory = "/tmp/fission-chaos"

    func validate() throws {
        guard minutes > 0, killEvery > 0, brokerOutage >= 0, patience > 0, shoppers > 0 else {
            throw ValidationError("--minutes, --kill-every, --patience and --shoppers must be positive, --broker-outage not negative")
        }
    }

    func run() async throws {
        // Each run's logs on their own: the stack appends (a restarted service goes on in its log).
        for name in LocalStack.services + ["broker"] { try? FileManager.default.removeItem(atPath: "\(logDirectory)/\(name).log") }
        let stack: LocalStack
        do {
            // As in the demo: abandoned payments time out within the run.
            stack = LocalStack(
                basePort: basePort, logDirectory: logDirectory, serviceEnvironment: ["FISSION_PAYMENT_TIMEOUT_SECONDS": "45"],
                executables: try snapshotExecutables())
        } catch {
            FileHandle.standardError.write(Data("fission chaos: \(error)\n".utf8))
            throw ExitCode.failure
        }
        do {
            try await stack.start()
        } catch {
            stack.stop()
            FileHandle.standardError.write(Data("fission chaos: \(error)\n".utf8))
            throw ExitCode.failure
        }
        let held: Bool
        do {
            held = try await ChaosRun(
                stack: stack, minutes: minutes, shoppers: shoppers, seed: seed, killEvery: killEvery, brokerOutage: brokerOutage,
                patience: patience
            ).play()
        } catch {
            FileHandle.standardError.write(Data("fission chaos: \(error) (logs in \(logDirectory))\n".utf8))
            stack.stop()
            throw ExitCode.failure
        }
        stack.stop()
        if !held { throw ExitCode.failure }
    }
}

extension Chaos {
    /// Copies the service and broker executables aside and runs those: every restart starts the
    /// same build, and a `swift build` relinking them meanwhile neither makes a restart fail
    /// ("Text file busy") nor is itself refused because the running file is busy.
    func snapshotExecutables() throws -> URL {
        let built = try LocalStack.builtExecutables()
        let snapshot = URL(fileURLWithPath: logDirectory).appendingPathComponent("bin")
        try? FileManager.default.removeItem(at: snapshot)
        try FileManager.default.createDirectory(at: snapshot, withIntermediateDirectories: true)
        for name in LocalStack.services + ["fission-broker"] {
            try FileManager.default.copyItem(at: built.appendingPathComponent(name), to: snapshot.appendingPathComponent(name))
        }
        return snapshot
    }
}

/// One chaos run on a started stack: load and faults side by side, catch-up, settling, audit.
struct ChaosRun {
    let stack: LocalStack
    let minutes: Double
    let shoppers: Int
    let seed: UInt64
    let killEvery: Double
    let brokerOutage: Double
    let patience: Double

    /// Returns whether every figure that must be zero is.
    func play() async throws -> Bool {
        let ledger = ChaosLedger()
        let store = Storefront(stack: stack, resilience: .init(patience: .milliseconds(Int(patience * 1000)), ledger: ledger))
        var rng = SplitMix64(seed: seed)
        let graph = SocialGraph(shoppers: shoppers, rng: &rng)
        let duration = Duration.milliseconds(Int(minutes * 60_000))
        let driver = ChaosDriver(
            stack: stack, killEvery: .milliseconds(Int(killEvery * 1000)), brokerOutage: .milliseconds(Int(brokerOutage * 1000)),
            seed: rng.next())
        stack.say("== chaos: \(String(format: "%g", minutes)) min of the viral campaign (\(shoppers) shoppers, seed \(seed)); "
            + "a service SIGKILLed every \(String(format: "%g", killEvery)) s, the broker down once for \(String(format: "%g", brokerOutage)) s, "
            + "PostgreSQL restarted once ==")
        let loadStarted = Date()
        let deadline = loadStarted.addingTimeInterval(minutes * 60)
        async let rounds = load(store: store, graph: graph, seed: rng.next(), until: deadline)
        await driver.run(for: duration)
        // Catching up is timed from the end of the last fault, while the last journeys finish.
        let faultEnded = await driver.lastFaultEnded
        async let caughtUp = CatchUp(stack: stack).measure(from: faultEnded)
        let played = await rounds
        stack.say("load ended after \(Int(Date().timeIntervalSince(loadStarted))) s (\(played) rounds of campaigns); "
            + "waiting for every service to catch up and for the deadlines to pass")
        let (catchUp, lacking) = try await caughtUp
        let settled = try await ViralDemo.settle(databases: stack.databases, progress: Progress())
        let (figures, invariants) = try await ChaosAudit(stack: stack, ledger: ledger).run()
        let lines = await report(
            ledger: ledger, faults: await driver.faults, catchUp: catchUp, lacking: lacking, settled: settled,
            figures: figures, invariants: invariants)
        for line in lines.text { stack.say(line) }
        return lines.held
    }

    /// Rounds of the viral simulation, each with three new campaigns, until the deadline. Returns
    /// how many rounds were played.
    private func load(store: Storefront, graph: SocialGraph, seed: UInt64, until deadline: Date) async -> Int {
        var rng = SplitMix64(seed: seed)
        var rounds = 0
        while Date() < deadline {
            let simulation = ViralSimulation(store: store, graph: graph, seed: rng.next(), progress: Progress())
            do {
                let campaigns = try await simulation.publishCampaigns()
                rounds += 1
                stack.say("round \(rounds): the merchant published a group-buy, a bargain and an unlock")
                _ = try await simulation.spread(campaigns, until: deadline)
            } catch {
                // Publishing outlasted the shopper's patience (or something unexpected broke
                // the round): the next round starts over.
                stack.say("round \(rounds + 1) ended early: \(error)")
                try? await Task.sleep(for: .seconds(1))
            }
        }
        return rounds
    }

    private func report(
        ledger: ChaosLedger, faults: [ChaosDriver.Fault], catchUp: [String: TimeInterval], lacking: [String: String],
        settled: TimeInterval?, figures: [ChaosAudit.Figure], invariants: [InvariantChecker.Outcome]
    ) async -> (text: [String], held: Bool) {
        var lines = ["== chaos: what the run survived =="]
        let kills = faults.filter { $0.kind == .kill }
        let perService = LocalStack.services.map { service in "\(service) \(kills.filter { $0.target == service }.count)" }
        let outages = faults.filter { $0.kind == .brokerOutage }, restarts = faults.filter { $0.kind == .databaseRestart }
        let exits = faults.filter { $0.kind == .exitedOnItsOwn }
        lines.append("faults: \(kills.count) SIGKILLs (\(perService.joined(separator: ", "))), broker down \(outages.count)× "
            + "(\(outages.map { String(format: "%.0f s", $0.lasted) }.joined(separator: ", "))), PostgreSQL restarted \(restarts.count)× "
            + "(\(restarts.map { String(format: "%.1f s", $0.lasted) }.joined(separator: ", "))), \(exits.count) exits on their own"
            + (exits.isEmpty ? "" : " (\(exits.map(\.target).joined(separator: ", ")))"))
        let (orders, payments, helps, tasks) = (await ledger.orders.count, await ledger.payments.count, await ledger.helps.count, await ledger.tasks.count)
        let (shares, clicks, campaigns) = (await ledger.shares.count, await ledger.clicks.count, await ledger.campaigns.count)
        lines.append("load: \(await ledger.accepted) requests accepted — \(campaigns) campaigns, \(orders) orders, \(payments) payments, "
            + "\(tasks) tasks, \(helps) helps, \(shares) shares, \(clicks) link opens; \(await ledger.retriedRequests) answered only after retrying")
        let givenUp = await ledger.givenUp
        if !givenUp.isEmpty {
            lines.append("journeys given up after \(Int(patience)) s of failures: \(givenUp.values.reduce(0, +)) — "
                + givenUp.sorted { $0.value > $1.value }.prefix(4).map { "\($0.value)× \($0.key)" }.joined(separator: "; "))
        }
        lines.append("caught up after the last fault: " + LocalStack.services.map { service in
            catchUp[service].map { "\(service) \(String(format: "%.1f", $0)) s" } ?? "\(service) NOT (\(lacking[service] ?? "?"))"
        }.joined(separator: ", "))
        lines.append(settled.map { "settled (deadlines passed, nothing left to relay or consume) \(Int($0)) s later" } ?? "did NOT settle within 5 minutes: figures may still move")

        // The table: the audit's figures, then the invariants grouped by what they count.
        var table: [(name: String, count: Int, checked: Int, examples: [String], mustBeZero: Bool)] =
            figures.map { ($0.name, $0.count, $0.checked, $0.examples, $0.mustBeZero) }
        for (kind, name) in [(InvariantChecker.Kind.duplicateEffect, "duplicate effects"), (.stockOversold, "stock oversold"),
                             (.cutsNotExact, "cuts not summing exactly"), (.inconsistent, "other invariants broken")] {
            let outcomes = invariants.filter { $0.kind == kind }
            table.append((
                name, outcomes.reduce(0) { $0 + $1.violations.count }, outcomes.reduce(0) { $0 + $1.checked },
                outcomes.flatMap { outcome in outcome.violations.prefix(5).map { "\(outcome.promise): \($0)" } }, true))
        }
        lines.append("")
        lines.append("  " + "figure".padding(toLength: 52, withPad: " ", startingAt: 0) + "count".leftPadded(8) + "checked".leftPadded(10))
        for row in table {
            let flag = row.count == 0 ? "  " : (row.mustBeZero ? "✗ " : "! ")
            lines.append(flag + row.name.padding(toLength: 52, withPad: " ", startingAt: 0) + String(row.count).leftPadded(8) + String(row.checked).leftPadded(10))
            for example in row.examples.prefix(row.count == 0 ? 0 : 8) { lines.append("      \(example)") }
        }
        lines.append("")
        var held = table.allSatisfy { !$0.mustBeZero || $0.count == 0 }
        if settled == nil || catchUp.count < LocalStack.services.count { held = false }
        lines.append(held ? "nothing lost, nothing doubled." : "CHAOS FOUND PROBLEMS (logs in \(stack.logDirectory)).")
        return (lines, held)
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
