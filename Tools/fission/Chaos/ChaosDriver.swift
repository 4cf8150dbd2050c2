import FissionTesting
import Foundation

/// The faults of a chaos run, injected into the local stack while the load runs:
///
/// - every `killEvery`, a random service process is SIGKILLed (no shutdown, no flushing, as a
///   crash or the OOM killer ends it) and started again after a short pause;
/// - once, the broker goes down for `brokerOutage` (connections closed, new ones refused, data
///   kept) and comes back;
/// - once, PostgreSQL is restarted (every service's connections are cut).
///
/// Like an orchestrator, it also starts again a service that exited on its own (one that could
/// not reach its database while starting, say) and counts that apart. Each fault is logged with
/// its time since the start of the run.
actor ChaosDriver {
    struct Fault: Sendable {
        enum Kind: String, Sendable {
            case kill = "SIGKILL"
            case brokerOutage = "broker down"
            case databaseRestart = "PostgreSQL restart"
            case exitedOnItsOwn = "exited on its own"
        }

        var kind: Kind
        var target: String
        /// Seconds since the run started.
        var at: TimeInterval
        /// Seconds until it was over (the process started again, the broker up, the server back).
        var lasted: TimeInterval
    }

    let stack: LocalStack
    let killEvery: Duration
    let brokerOutage: Duration
    private var rng: SplitMix64
    private let started = Date()
    private(set) var faults: [Fault] = []
    /// Services this driver has killed and not yet started again: not to be mistaken for crashes.
    private var downOnPurpose: Set<String> = []
    /// Set when the last kill is over: supervision ends with it, so that `run` returns when the
    /// chaos does (the catch-up is timed from then).
    private var killsOver = false

    init(stack: LocalStack, killEvery: Duration, brokerOutage: Duration, seed: UInt64) {
        self.stack = stack
        self.killEvery = killEvery
        self.brokerOutage = brokerOutage
        rng = SplitMix64(seed: seed)
    }

    /// Injects faults for `duration`, then makes sure everything is up again. Returns when the
    /// last fault is over.
    func run(for duration: Duration) async {
        let end = ContinuousClock.now.advanced(by: duration)
        let seconds = Double(duration.components.seconds)
        // The broker outage a quarter of the way in, PostgreSQL's restart two thirds in: both
        // while the load is in full swing, and apart, so that each one's effect can be told.
        let outageAt = Duration.seconds(seconds * 0.25)
        let restartAt = Duration.seconds(seconds * 0.65)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.killRepeatedly(until: end) }
            group.addTask { await self.superviseServices(until: end) }
            group.addTask {
                try? await Task.sleep(for: outageAt)
                await self.takeTheBrokerDown()
            }
            group.addTask {
                try? await Task.sleep(for: restartAt)
                await self.restartPostgreSQL()
            }
        }
        // Whatever a kill left down at the end comes back (the supervisor has stopped).
        for service in LocalStack.services where !stack.isRunning(service) {
            try? stack.launch(service)
        }
    }

    /// When the last fault was over.
    var lastFaultEnded: Date {
        started.addingTimeInterval(faults.map { $0.at + $0.lasted }.max() ?? 0)
    }

    private var elapsed: TimeInterval { Date().timeIntervalSince(started) }

    /// Records a fault once it is over, and says so with the time it ended.
    private func log(_ fault: Fault) {
        faults.append(fault)
        let lasted = String(format: "%.1f", fault.lasted)
        let detail = switch fault.kind {
        case .kill, .exitedOnItsOwn: "\(fault.kind.rawValue) \(fault.target), started again after \(lasted) s"
        case .brokerOutage: "the broker is up again after \(lasted) s down"
        case .databaseRestart: "PostgreSQL restarted in \(lasted) s"
        }
        stack.say("[chaos +\(String(format: "%5.1f", elapsed)) s] \(detail)")
    }

    private func killRepeatedly(until end: ContinuousClock.Instant) async {
        // On a fixed beat, whatever the pauses: `killEvery` apart.
        var next = ContinuousClock.now.advanced(by: killEvery)
        while next < end {
            try? await Task.sleep(until: next)
            next = next.advanced(by: killEvery)
            let service = LocalStack.services.randomElement(using: &rng)!
            // Down for 0.5–3 s: sometimes before its consumer group noticed it left, sometimes after.
            let pause = Duration.milliseconds(Int.random(in: 500...3_000, using: &rng))
            let at = elapsed
            downOnPurpose.insert(service)
            await stack.kill(service)
            try? await Task.sleep(for: pause)
            await startAgain(service)
            downOnPurpose.remove(service)
            log(Fault(kind: .kill, target: service, at: at, lasted: elapsed - at))
        }
        killsOver = true
    }

    /// Starts again any service that exited without being killed here, as Kubernetes would.
    private func superviseServices(until end: ContinuousClock.Instant) async {
        while ContinuousClock.now < end && !killsOver {
            try? await Task.sleep(for: .milliseconds(500))
            for service in LocalStack.services where !downOnPurpose.contains(service) && !stack.isRunning(service) {
                let at = elapsed
                let lastWords = (try? String(contentsOfFile: "\(stack.logDirectory)/\(service).log", encoding: .utf8))?
                    .split(separator: "\n").last.map { String($0.prefix(300)) } ?? ""
                stack.say("[chaos +\(String(format: "%5.1f", at)) s] \(service) exited on its own; its last log line: \(lastWords)")
                try? await Task.sleep(for: .seconds(1))
                await startAgain(service)
                log(Fault(kind: .exitedOnItsOwn, target: service, at: at, lasted: elapsed - at))
            }
        }
    }

    /// Starts a service process again, retrying for up to 30 s if it cannot be spawned: a
    /// service that never came back would look like lost events rather than what it is.
    private func startAgain(_ service: String) async {
        for attempt in 1...30 {
            do {
                try stack.launch(service)
                return
            } catch {
                if attempt == 1 || attempt == 30 { stack.say("[chaos] could not start \(service) again (attempt \(attempt)): \(error)") }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func takeTheBrokerDown() async {
        let at = elapsed
        do {
            try stack.controlBroker("down")
        } catch {
            stack.say("[chaos] could not take the broker down: \(error)")
            return
        }
        stack.say("[chaos +\(String(format: "%5.1f", at)) s] broker down for \(brokerOutage)")
        try? await Task.sleep(for: brokerOutage)
        do {
            try stack.controlBroker("up")
        } catch {
            stack.say("[chaos] could not bring the broker back: \(error)")
        }
        log(Fault(kind: .brokerOutage, target: "the broker", at: at, lasted: elapsed - at))
    }

    private func restartPostgreSQL() async {
        let at = elapsed
        stack.say("[chaos +\(String(format: "%5.1f", at)) s] restarting PostgreSQL")
        do {
            try await stack.restartDatabase()
        } catch {
            stack.say("[chaos] could not restart PostgreSQL: \(error)")
            return
        }
        log(Fault(kind: .databaseRestart, target: "PostgreSQL", at: at, lasted: elapsed - at))
    }
}
