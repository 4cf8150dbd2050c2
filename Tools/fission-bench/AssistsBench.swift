import ArgumentParser
import Domain
import FissionTesting
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Kafka
import Logging
import Postgres
import ServiceKit

/// Helps through the real HTTP API of the real `assists` executable, next to `pgbench -N` on
/// the same PostgreSQL server in the same run: saturation spread over many tasks and on one hot
/// task (load from wrk, a separate process), then latency at half the saturation rate and the
/// time from a help's response to the initiator's notification (the `notifications` executable,
/// through the broker), from an open-loop generator of ours.
struct AssistsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "assists", abstract: "Helps through the assists HTTP API against pgbench -N on the same server.")

    @Option(help: "Seconds of each saturation run.")
    var seconds = 10

    @Option(help: "Concurrent connections of the saturation runs.")
    var connections = 32

    @Option(help: "Tasks the spread measurements use.")
    var tasks = 200

    @Option(help: "The assists service's database pool size.")
    var pool = 32

    @Option(help: "Seconds of the half-saturation run.")
    var latencySeconds = 10

    @Option(help: "Helps/s of the latency run (default: half the spread saturation rate).")
    var latencyRate: Double?

    @Option(help: "Helps/s of the second latency run: a rate the whole pipeline keeps up with on two cores.")
    var sustainedRate: Double = 300

    @Option(help: "JSON results file (merged with what is there).")
    var output = "bench/results.json"

    @Option(help: "Seconds of the pgbench -N reference run.")
    var pgbenchSeconds = 15

    /// Enough distinct helpers for any saturation run on this kind of machine.
    @Option(help: "Distinct helpers prepared per saturation run.")
    var helpers = 60_000

    func run() async throws {
        var logger = Logger(label: "fission.bench.assists")
        logger.logLevel = .error
        let stack = try await BenchStack.start(["assists", "notifications"], pool: pool, label: "assists", logger: logger)
        var succeeded = false
        defer { stack.stop(keepingLogs: !succeeded) }
        let (cluster, broker, bases, logs, secret) = (stack.cluster, stack.broker, stack.bases, stack.logs, BenchStack.secret)
        let pids = [stack.pids["assists"]!, stack.pids["notifications"]!]
        let assists = bases["assists"]!

        // A bargain campaign with room for every help: the promise is larger than any run.
        let campaign = CampaignID()
        let terms = CampaignTerms(
            kind: .bargain, product: Product(sku: "BENCH", title: "bench"), listPrice: Money(1_000_000_000, .cny), stock: 1_000_000,
            perUserLimit: 1, startsAt: Date().addingTimeInterval(-60), endsAt: Date().addingTimeInterval(86_400),
            bargain: BargainRules(floorPrice: Money(0, .cny), maxHelpers: 1_000_000, firstCutMin: Money(1, .cny), firstCutMax: Money(10, .cny),
                                  taskTimeLimitSeconds: 86_400, payWindowSeconds: 600))
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: broker.bootstrapServers), logger: logger)
        let event = CloudEvent(CampaignPublished(campaignId: campaign, merchantId: "m-bench", terms: terms, publishedAt: Date()))
        try await producer.send(KafkaOutgoingMessage(
            topic: Topics.campaign.name, key: event.subject, value: try EventCoding.encode(event),
            headers: [KafkaHeader(key: "ce_type", value: event.type)]))
        await producer.shutdown()

        let issuer = await DevelopmentTokenIssuer(secret: secret)
        var initiators: [(task: String, token: String)] = []
        for index in 0..<(tasks + 1) {
            let token = try await issuer.token(for: UserID(rawValue: "initiator-\(index)"), roles: [.shopper])
            let body = "{\"campaignId\":\"\(campaign)\"}"
            var started: [String: Any]?
            for _ in 0..<300 where started == nil {
                let (status, object) = try await Self.post("\(assists)/tasks", token: token, body: body)
                if status == 201 { started = object } else { try await Task.sleep(for: .milliseconds(50)) }
            }
            guard let id = started?["taskId"] as? String else { throw ValidationError("could not start tasks: has assists seen the campaign?") }
            initiators.append((id, token))
        }
        let hot = initiators[0].task
        let spread = initiators.dropFirst().map(\.task)
        var nextHelper = 0
        func helpLines(_ count: Int, task: (Int) -> String) async throws -> [HelpLine] {
            var lines: [HelpLine] = []
            lines.reserveCapacity(count)
            for index in 0..<count {
                let token = try await issuer.token(for: UserID(rawValue: "helper-\(nextHelper)"), roles: [.shopper])
                lines.append(HelpLine(path: "/tasks/\(task(index))/helps", token: token, helper: nextHelper))
                nextHelper += 1
            }
            return lines
        }

        // The reference: what the same server does with pgbench's simple-update transaction
        // (`-N`, 32 clients), measured in this run before the helps.
        let pgbenchTicks = BenchProcesses.machineTicks()
        let reference = try await PgBench.tps(cluster, seconds: pgbenchSeconds)
        let pgbenchStolen = BenchProcesses.stolenShare(since: pgbenchTicks)
        let spreadLines = try await helpLines(helpers) { spread[$0 % spread.count] }
        // CPU per help, by process: what a help costs the service and the database, whatever
        // else the machine is doing.
        let (serviceBefore, databaseBefore) = (BenchProcesses.cpuSeconds(pids[0]), BenchProcesses.clusterCPUSeconds(cluster))
        let notifierBefore = BenchProcesses.cpuSeconds(pids[1])
        let spreadStarted = Date()
        let spreadTicks = BenchProcesses.machineTicks()
        let spreadRun = try await Wrk.run(base: assists, lines: spreadLines, connections: connections, seconds: seconds)
        let spreadStolen = BenchProcesses.stolenShare(since: spreadTicks)
        // Whether the notifications kept up inside the window or left work for after it, which
        // the CPU per help and the rate would then not count.
        let behind = try await notificationsBehind(cluster, since: spreadStarted)
        let helpsDone = Double(spreadRun.requests - spreadRun.failed)
        let serviceCPU = (BenchProcesses.cpuSeconds(pids[0]) - serviceBefore) / helpsDone * 1e6
        let databaseCPU = (BenchProcesses.clusterCPUSeconds(cluster) - databaseBefore) / helpsDone * 1e6
        let notifierCPU = (BenchProcesses.cpuSeconds(pids[1]) - notifierBefore) / helpsDone * 1e6
        let hotRun = try await Wrk.run(base: assists, lines: try await helpLines(helpers) { _ in hot }, connections: connections, seconds: seconds)
        for run in [spreadRun, hotRun] where run.failed > 0 {
            throw ValidationError("\(run.failed) of \(run.requests) helps failed under wrk (see \(logs.path))")
        }

        // Each open-loop run starts once notifications caught up with what came before (its
        // inbox stopped growing), or it would measure that backlog.
        func settled() async throws {
            let notificationsDB = PostgresPool(configuration: cluster.adminConfiguration.with(database: "notifications"), options: .init(maxConnections: 1))
            var handled = -1
            var steadySince = ContinuousClock.now
            while ContinuousClock.now - steadySince < .seconds(3) {
                let now = try await notificationsDB.query("SELECT count(*)::int8 AS n FROM inbox").single().decode("n", as: Int.self)
                if now != handled { (handled, steadySince) = (now, .now) }
                try await Task.sleep(for: .milliseconds(250))
            }
            await notificationsDB.close()
        }

        /// An open-loop run at `rate`, spread over the same tasks, every initiator following their
        /// inbox stream; with where the notifications waited and the cores each process kept busy.
        func openLoop(at rate: Double) async throws -> (
            OpenLoop.Result, stages: (published: OpenLoop.Percentiles, consumed: OpenLoop.Percentiles), cores: [Double], waits: BackendWaits.Tally,
            stolen: Double
        ) {
            try await settled()
            let lines = try await helpLines(Int(rate * Double(latencySeconds))) { spread[$0 % spread.count] }
            let started = Date()
            let before = [BenchProcesses.cpuSeconds(getpid()), BenchProcesses.cpuSeconds(pids[0]), BenchProcesses.cpuSeconds(pids[1]),
                          BenchProcesses.clusterCPUSeconds(cluster)]
            let histogramBefore = try await Self.helpDurations(assists)
            let ticks = BenchProcesses.machineTicks()
            let waits = try await BackendWaits(cluster)
            let result = try await OpenLoop.run(
                base: assists, inbox: bases["notifications"]!, helps: lines, rate: rate,
                initiators: Dictionary(uniqueKeysWithValues: initiators.dropFirst().map { ($0.task, $0.token) }))
            let waited = await waits.stop()
            let stolen = BenchProcesses.stolenShare(since: ticks)
            let seconds = Date().timeIntervalSince(started)
            let histogramAfter = try await Self.helpDurations(assists)
            // The service's own view (its request-duration histogram, from reading the request to
            // writing the response), next to the generator's (from each help's due time): the
            // difference is what the client side (the generator, its connections, the machine's
            // scheduling) adds.
            let total = (histogramAfter[.infinity] ?? 0) - (histogramBefore[.infinity] ?? 0)
            let shares = histogramAfter.keys.sorted().filter { $0.isFinite }.map { bound -> String in
                let within = (histogramAfter[bound] ?? 0) - (histogramBefore[bound] ?? 0)
                return String(format: "≤ %g ms %.1f%%", bound * 1000, total > 0 ? within / total * 100 : 0)
            }
            print(String(format: "%.0f helps/s: the assists service's own request durations: ", rate) + shares.joined(separator: ", "))
            let after = [BenchProcesses.cpuSeconds(getpid()), BenchProcesses.cpuSeconds(pids[0]), BenchProcesses.cpuSeconds(pids[1]),
                         BenchProcesses.clusterCPUSeconds(cluster)]
            return (result, try await pipelineStages(cluster, since: started), zip(after, before).map { ($0 - $1) / seconds }, waited, stolen)
        }
        // Half the saturation rate, as the target is set; then a rate this machine sustains with
        // the whole pipeline (notifications, their streams and the load generator) beside it.
        let (half, stages, cores, waits, halfStolen) = try await openLoop(at: latencyRate ?? spreadRun.rate / 2)
        let (sustained, sustainedStages, sustainedCores, _, sustainedStolen) = try await openLoop(at: sustainedRate)

        print("Assists helps through HTTP (release executables), pgbench -N on the same server, same run")
        func column(_ text: String, _ width: Int) -> String { text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0) }
        print(column("figure", 52) + " " + ["helps/s", "p50 ms", "p99 ms", "target"].map { column($0, 10) }.joined(separator: " "))
        func row(_ name: String, _ rate: Double, _ p50: Double, _ p99: Double, _ target: String) {
            let numbers = [String(format: "%.0f", rate), p50.isNaN ? "" : String(format: "%.1f", p50), p99.isNaN ? "" : String(format: "%.1f", p99)]
            print(column(name, 52) + " " + (numbers + [target]).map { column($0, 10) }.joined(separator: " "))
        }
        row("pgbench -N, 32 clients (tps)", reference, .nan, .nan, "")
        row("saturation spread over \(spread.count) tasks (wrk, \(connections) conns)", spreadRun.rate, spreadRun.p50, spreadRun.p99,
            String(format: "≥ %.0f", reference * 0.8))
        row("saturation, one hot task", hotRun.rate, hotRun.p50, hotRun.p99, String(format: "≥ %.0f", spreadRun.rate * 0.5))
        row("half saturation, open loop", half.rate, half.latency.p50, half.latency.p99, "p99 ≤ 25")
        row("help response → initiator's stream", half.rate, half.endToEnd.p50, half.endToEnd.p99, "p99 ≤ 250")
        row("sustained rate, open loop", sustained.rate, sustained.latency.p50, sustained.latency.p99, "")
        row("sustained: help response → initiator's stream", sustained.rate, sustained.endToEnd.p50, sustained.endToEnd.p99, "")
        for (name, stages, cores) in [("half saturation", stages, cores), ("sustained rate", sustainedStages, sustainedCores)] {
            print(String(format: "%@: a help's notification, from the help's commit: relay acknowledged p50 %.1f p99 %.1f ms, notifications consumer took it up p50 %.1f p99 %.1f ms",
                         name as NSString, stages.published.p50, stages.published.p99, stages.consumed.p50, stages.consumed.p99))
            // What the pipeline leaves of the machine (the load generator, its inbox streams and
            // the broker are this process).
            print(String(format: "%@: cores busy: load generator, streams and broker %.2f, assists %.2f, notifications %.2f, PostgreSQL %.2f (of %d)",
                         name as NSString, cores[0], cores[1], cores[2], cores[3], ProcessInfo.processInfo.activeProcessorCount))
        }
        for (name, run) in [("half saturation", half), ("sustained rate", sustained)] {
            print("\(name): help latency p50/p99 ms by second of the run: " + run.latencyBySecondSummary)
        }
        // The hypervisor's share moves the figures more than most changes: read them with it.
        print(String(format: "CPU time stolen by the hypervisor: pgbench %.0f%%, spread saturation %.0f%%, half saturation %.0f%%, sustained rate %.0f%%",
                     pgbenchStolen * 100, spreadStolen * 100, halfStolen * 100, sustainedStolen * 100))
        print("half saturation: PostgreSQL's active backends, \(waits.total) samples every 50 ms: " + waits.summary)
        print(String(format: "CPU per help (spread, whole pipeline): assists %.0f µs, notifications %.0f µs, PostgreSQL (both databases) %.0f µs",
                     serviceCPU, notifierCPU, databaseCPU))
        print(String(format: "spread saturation: when wrk stopped, notifications had %d of its %d helps' events still to take up; caught up %.1f s later",
                     behind.waiting, behind.written, behind.caughtUpSeconds))
        print(String(format: "spread ÷ pgbench = %.2f (target ≥ 0.80); hot ÷ spread = %.2f (target ≥ 0.50); %d of %d notifications seen after the help's response, %d more before it was read",
                     spreadRun.rate / reference, hotRun.rate / spreadRun.rate, half.notified, half.sent, half.notifiedBeforeResponse))
        try BenchResults.record([
            ("assists.helps_vs_pgbench", ["value": spreadRun.rate, "reference": reference, "ratio": spreadRun.rate / reference,
                                          "target_ratio": 0.8, "p50_ms": spreadRun.p50, "p99_ms": spreadRun.p99,
                                          "service_cpu_us_per_help": serviceCPU, "notifications_cpu_us_per_help": notifierCPU,
                                          "database_cpu_us_per_help": databaseCPU, "notifications_behind_at_end": Double(behind.waiting),
                                          "notifications_caught_up_s": behind.caughtUpSeconds,
                                          "stolen_percent": spreadStolen * 100, "reference_stolen_percent": pgbenchStolen * 100]),
            ("assists.hot_task_helps_per_s", ["value": hotRun.rate, "reference": spreadRun.rate, "ratio": hotRun.rate / spreadRun.rate,
                                              "target_ratio": 0.5, "p50_ms": hotRun.p50, "p99_ms": hotRun.p99]),
            ("assists.sustained_latency", ["rate": sustained.rate, "p50_ms": sustained.latency.p50, "p99_ms": sustained.latency.p99,
                                           "help_to_inbox_p50_ms": sustained.endToEnd.p50, "help_to_inbox_p99_ms": sustained.endToEnd.p99,
                                           "busy_cores": sustainedCores.reduce(0, +), "stolen_percent": sustainedStolen * 100]),
            ("assists.half_saturation_latency", ["rate": half.rate, "p50_ms": half.latency.p50, "p99_ms": half.latency.p99, "target_p99_ms": 25,
                                                 "stolen_percent": halfStolen * 100]),
            ("assists.help_to_inbox_latency", ["rate": half.rate, "p50_ms": half.endToEnd.p50, "p99_ms": half.endToEnd.p99,
                                               "target_p99_ms": 250, "seen": Double(half.notified), "sent": Double(half.sent),
                                               "relay_acked_p50_ms": stages.published.p50, "relay_acked_p99_ms": stages.published.p99,
                                               "consumer_started_p50_ms": stages.consumed.p50, "consumer_started_p99_ms": stages.consumed.p99]),
            ("assists.half_saturation_backends", ["samples": Double(waits.total), "running_percent": waits.share("running") * 100,
                                                  "lock_wait_percent": waits.share("Lock:") * 100, "client_read_percent": waits.share("Client:") * 100]),
        ], to: output)
        succeeded = true
    }

    /// How many of the AssistRecorded events written since `since` the notifications consumer had
    /// not yet taken up now, and how long after now it had them all (at most 60 s).
    func notificationsBehind(_ cluster: EphemeralPostgres, since: Date) async throws -> (written: Int, waiting: Int, caughtUpSeconds: Double) {
        let stopped = ContinuousClock.now
        let (written, handled) = try await PostgresPool.using(cluster.adminConfiguration.with(database: "assists")) { assists in
            try await PostgresPool.using(cluster.adminConfiguration.with(database: "notifications")) { notifications in
                func handled() async throws -> Int {
                    try await notifications.query("""
                        SELECT count(*)::int8 AS n FROM inbox
                        WHERE consumer = 'notifications' AND event_type = 'assists.AssistRecorded.v1' AND handled_at >= \(since)
                        """).single().decode("n", as: Int.self)
                }
                let atEnd = try await handled()
                let written = try await assists.query("""
                    SELECT count(*)::int8 AS n FROM outbox_history WHERE event_type = 'assists.AssistRecorded.v1' AND created_at >= \(since)
                    """).single().decode("n", as: Int.self)
                _ = try await eventually(timeout: .seconds(60)) { try await handled() >= written }
                return (written, atEnd)
            }
        }
        return (written, max(0, written - handled), (ContinuousClock.now - stopped).inSeconds)
    }

    /// The stages of the half-saturation run's AssistRecorded events, from the help's commit
    /// (its outbox row, stamped at the help's transaction start): until the relay had the
    /// broker's acknowledgement, and until the notifications consumer began handling it.
    func pipelineStages(_ cluster: EphemeralPostgres, since: Date) async throws -> (published: OpenLoop.Percentiles, consumed: OpenLoop.Percentiles) {
        func read(_ database: String, _ query: PostgresQuery) async throws -> [String: (Double, Double?)] {
            let pool = PostgresPool(configuration: cluster.adminConfiguration.with(database: database), options: .init(maxConnections: 1))
            defer { Task { await pool.close() } }
            var times: [String: (Double, Double?)] = [:]
            for row in try await pool.query(query) {
                times[try row.decode("event_id", as: String.self)] = (try row.decode("at"), try row.decode("published", as: Double?.self))
            }
            return times
        }
        let written = try await read("assists", """
            SELECT event_id::text AS event_id, extract(epoch FROM created_at)::float8 AS at, extract(epoch FROM published_at)::float8 AS published
            FROM outbox_history WHERE event_type = 'assists.AssistRecorded.v1' AND created_at >= \(since)
            """)
        let handled = try await read("notifications", """
            SELECT event_id::text AS event_id, extract(epoch FROM handled_at)::float8 AS at, NULL::float8 AS published
            FROM inbox WHERE consumer = 'notifications' AND event_type = 'assists.AssistRecorded.v1' AND handled_at >= \(since)
            """)
        var published: [Double] = []
        var consumed: [Double] = []
        for (event, (created, publishedAt)) in written {
            if let publishedAt { published.append((publishedAt - created) * 1000) }
            if let (handledAt, _) = handled[event] { consumed.append((handledAt - created) * 1000) }
        }
        return (OpenLoop.Percentiles(published), OpenLoop.Percentiles(consumed))
    }

    /// Cumulative counts of the help route's request-duration histogram on `/metrics`, by upper
    /// bound in seconds (`.infinity` for `+Inf`).
    static func helpDurations(_ base: String) async throws -> [Double: Double] {
        let (data, _) = try await URLSession.shared.data(from: URL(string: base + "/metrics")!)
        var buckets: [Double: Double] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n")
        where line.hasPrefix("http_request_duration_seconds_bucket") && line.contains("help") && line.contains("POST") {
            guard let start = line.range(of: "le=\"")?.upperBound, let end = line[start...].firstIndex(of: "\""),
                  let count = line.split(separator: " ").last.flatMap({ Double($0) }) else { continue }
            let bound = line[start..<end] == "+Inf" ? Double.infinity : Double(line[start..<end]) ?? .nan
            buckets[bound, default: 0] += count
        }
        return buckets
    }

    static func post(_ url: String, token: String, body: String?) async throws -> (Int, [String: Any]) {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = "POST"
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:])
    }
}

/// bench/results.json: every figure of every benchmark, merged run by run.
enum BenchResults {
    static func record(_ figures: [(String, [String: Double])], to output: String) throws {
        let url = URL(fileURLWithPath: output)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        var results = (try? JSONSerialization.jsonObject(with: Data(contentsOf: url))) as? [String: Any] ?? [:]
        for (name, figure) in figures { results[name] = figure }
        results["recorded_at"] = ISO8601DateFormatter().string(from: Date())
        try JSONSerialization.data(withJSONObject: results, options: [.prettyPrinted, .sortedKeys]).write(to: url)
    }
}

/// The reference the database-bound figures are measured against.
enum PgBench {
    /// pgbench -N (simple update) tps against the cluster, scale 10, 32 clients on 2 threads.
    static func tps(_ cluster: EphemeralPostgres, seconds: Int) async throws -> Double {
        let admin = PostgresPool(configuration: cluster.adminConfiguration, options: .init(maxConnections: 1))
        try await admin.query("CREATE DATABASE pgbench")
        await admin.close()
        let pgbench = cluster.binDirectory.appendingPathComponent("pgbench").path
        let connection = ["-h", "127.0.0.1", "-p", String(cluster.port), "-U", EphemeralPostgres.superuser]
        let environment = ["PGPASSWORD": EphemeralPostgres.superuserPassword, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        try await ChildProcess.run(pgbench, connection + ["-i", "-q", "-s", "10", "pgbench"], environment: environment, timeLimit: .seconds(300))
        let output = try await ChildProcess.run(
            pgbench, connection + ["-N", "-c", "32", "-j", "2", "-T", String(seconds), "pgbench"],
            environment: environment, timeLimit: .seconds(Double(seconds) + 120))
        // "tps = 1234.5 (without initial connection time)"
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("tps = ") }),
              let tps = Double(line.dropFirst("tps = ".count).prefix { $0 != " " }) else {
            throw ValidationError("pgbench printed no tps: \(output.suffix(400))")
        }
        return tps
    }
}
