import ArgumentParser
import AsyncHTTPClient
import Domain
import FissionTesting
import Foundation
import Kafka
import Logging
import NIOCore
import Postgres
import ServiceKit
import Synchronization

/// Group-buy order flows end to end through the real `campaigns` and `orders` executables and
/// the broker between them, next to `pgbench -N` on the same PostgreSQL server in the same run.
///
/// K team drivers each form one team of three at a time, as shoppers and the payment provider
/// would: the leader places an "open a team" order, waits until it can be paid (campaigns
/// reserved the stock), pays through the signed webhook, waits until orders knows the team
/// campaigns opened; two friends then place "join team" orders and pay, concurrently; then every
/// member's order is polled until it is confirmed (campaigns completed the team). A flow is one
/// order; its latency runs from its placement to when it was seen confirmed (so a leader's
/// includes the time its friends took to join). Any answer other than the expected ones aborts
/// the run: nothing is counted that did not go through.
struct OrdersBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "orders",
        abstract: "Group-buy order flows (place, pay, team completed, confirmed) through the HTTP APIs against pgbench -N on the same server.")

    @Option(help: "Concurrent team drivers (each forms one team of three at a time).")
    var concurrency = 16

    @Option(help: "Seconds of the measured run.")
    var seconds = 20

    @Option(help: "The orders and campaigns services' database pool size.")
    var pool = 16

    @Option(help: "Longest wait for one step of a flow (payable, team known, confirmed), in seconds.")
    var stageTimeout = 60

    @Option(help: "Longest pause between two polls of an order, in milliseconds (pauses start at 5 ms and double up to this).")
    var pollMilliseconds = 50

    @Option(help: "JSON results file (merged with what is there).")
    var output = "bench/results.json"

    @Option(help: "Seconds of the pgbench -N reference run.")
    var pgbenchSeconds = 15

    func run() async throws {
        guard concurrency >= 1, seconds >= 1, stageTimeout >= 1, pollMilliseconds >= 1 else {
            throw ValidationError("--concurrency, --seconds, --stage-timeout and --poll-milliseconds must be at least 1")
        }
        var logger = Logger(label: "fission.bench.orders")
        logger.logLevel = .error
        let stack = try await BenchStack.start(["campaigns", "orders"], pool: pool, label: "orders", logger: logger)
        var succeeded = false
        defer { stack.stop(keepingLogs: !succeeded) }
        let (cluster, bases, pids, logs, secret) = (stack.cluster, stack.bases, stack.pids, stack.logs, BenchStack.secret)
        guard let webhookSecret = stack.environments["orders"]?["FISSION_PAYMENT_WEBHOOK_SECRET"], !webhookSecret.isEmpty else {
            throw ValidationError("BenchProcesses.environment gives orders no FISSION_PAYMENT_WEBHOOK_SECRET")
        }

        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 1_024)
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        let measured: Measured
        do {
            measured = try await measure(
                api: BenchHTTP(client: client), campaigns: bases["campaigns"]!, orders: bases["orders"]!, secret: secret,
                webhookSecret: webhookSecret, cluster: cluster, ordersPID: pids["orders"]!, campaignsPID: pids["campaigns"]!,
                logs: logs.path)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()

        let ordersPerSecond = Double(measured.teamsInWindow * 3) / Double(seconds)
        let teamsPerSecond = Double(measured.teamsInWindow) / Double(seconds)
        let latency = OpenLoop.Percentiles(measured.latencies)
        let ratio = ordersPerSecond / measured.reference

        print("Group-buy order flows through the campaigns and orders HTTP APIs (release executables), pgbench -N on the same server, same run")
        func column(_ text: String, _ width: Int) -> String { text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0) }
        print(column("figure", 52) + " " + ["orders/s", "teams/s", "p50 ms", "p99 ms"].map { column($0, 10) }.joined(separator: " "))
        func row(_ name: String, _ orders: Double, _ teams: Double, _ p50: Double, _ p99: Double) {
            let numbers = [orders, teams, p50, p99].map { $0.isNaN ? "" : String(format: $0 >= 100 ? "%.0f" : "%.1f", $0) }
            print(column(name, 52) + " " + numbers.map { column($0, 10) }.joined(separator: " "))
        }
        row("pgbench -N, 32 clients (tps)", measured.reference, .nan, .nan, .nan)
        row("group-buy flows, \(concurrency) team drivers, \(seconds) s (confirmed)", ordersPerSecond, teamsPerSecond, latency.p50, latency.p99)
        print(String(format: "orders ÷ pgbench = %.3f; ", ratio)
            + "\(measured.teamsInWindow) teams (\(measured.teamsInWindow * 3) orders) confirmed in the window, \(measured.teamsAfter) more while draining; "
            + String(format: "%.1f order reads (GET) per order", measured.getsPerOrder))
        print(String(format: "CPU per confirmed order (whole pipeline): orders %.0f µs, campaigns %.0f µs, PostgreSQL (both databases) %.0f µs",
                     measured.ordersCPU, measured.campaignsCPU, measured.databaseCPU))
        try BenchResults.record([
            ("orders.flows", ["orders_per_s": ordersPerSecond, "teams_per_s": teamsPerSecond, "p50_ms": latency.p50, "p99_ms": latency.p99,
                              "reference_pgbench_tps": measured.reference, "ratio": ratio]),
        ], to: output)
        succeeded = true
    }

    struct Measured {
        var reference: Double
        var teamsInWindow: Int
        var teamsAfter: Int
        var latencies: [Double]
        var getsPerOrder: Double
        /// µs per order, over every order of the run (those confirmed while draining included).
        var ordersCPU: Double
        var campaignsCPU: Double
        var databaseCPU: Double
    }

    /// Publishes the campaign, warms up with one team (which also waits until orders knows the
    /// campaign), measures pgbench, then runs the team drivers.
    private func measure(
        api: BenchHTTP, campaigns: String, orders: String, secret: String, webhookSecret: String, cluster: EphemeralPostgres,
        ordersPID: pid_t, campaignsPID: pid_t, logs: String
    ) async throws -> Measured {
        let issuer = await DevelopmentTokenIssuer(secret: secret)
        let merchant = try await issuer.token(for: "m-bench", roles: [.merchant])
        let campaign = try await Self.publishGroupBuy(api: api, campaigns: campaigns, merchant: merchant)
        let flow = GroupBuyFlow(
            api: api, orders: orders, campaign: campaign, issuer: issuer, webhookSecret: webhookSecret,
            stageTimeout: .seconds(stageTimeout), pollCap: .milliseconds(pollMilliseconds), logs: logs, counter: GetCounter())

        // Orders learns the campaign from campaigns' event: until then it refuses the leader's
        // order as not on sale, which only this first order may wait out.
        _ = try await flow.formTeam("warmup", leaderPatience: .seconds(max(60, stageTimeout)))

        // The reference: pgbench's simple-update transaction (`-N`, 32 clients) on the same
        // server, measured in this run before the flows.
        let reference = try await PgBench.tps(cluster, seconds: pgbenchSeconds)

        let getsBefore = flow.counter.gets.load(ordering: .relaxed)
        let (ordersBefore, campaignsBefore) = (BenchProcesses.cpuSeconds(ordersPID), BenchProcesses.cpuSeconds(campaignsPID))
        let databaseBefore = BenchProcesses.clusterCPUSeconds(cluster)
        let end = ContinuousClock.now.advanced(by: .seconds(seconds))
        let runs = try await withThrowingTaskGroup(of: [GroupBuyFlow.TeamRun].self) { group in
            for driver in 0..<concurrency {
                group.addTask {
                    var done: [GroupBuyFlow.TeamRun] = []
                    var index = 0
                    while ContinuousClock.now < end {
                        done.append(try await flow.formTeam("d\(driver)-t\(index)", leaderPatience: .zero))
                        index += 1
                    }
                    return done
                }
            }
            var all: [GroupBuyFlow.TeamRun] = []
            for try await done in group { all.append(contentsOf: done) }
            return all
        }
        let orderCount = Double(runs.count * 3)
        guard orderCount > 0 else { throw ValidationError("no team was formed in \(seconds) s (see \(logs))") }
        let ordersCPU = (BenchProcesses.cpuSeconds(ordersPID) - ordersBefore) / orderCount * 1e6
        let campaignsCPU = (BenchProcesses.cpuSeconds(campaignsPID) - campaignsBefore) / orderCount * 1e6
        let databaseCPU = (BenchProcesses.clusterCPUSeconds(cluster) - databaseBefore) / orderCount * 1e6
        let gets = flow.counter.gets.load(ordering: .relaxed) - getsBefore
        let inWindow = runs.filter { $0.finishedAt <= end }.count
        guard inWindow > 0 else { throw ValidationError("no team completed within \(seconds) s (see \(logs))") }
        return Measured(
            reference: reference, teamsInWindow: inWindow, teamsAfter: runs.count - inWindow, latencies: runs.flatMap(\.latencies),
            getsPerOrder: Double(gets) / orderCount, ordersCPU: ordersCPU, campaignsCPU: campaignsCPU, databaseCPU: databaseCPU)
    }

    /// A group-buy campaign as a merchant creates and publishes it through the campaigns API:
    /// teams of three, stock no run can exhaust, deadlines no run reaches. Returns its id.
    static func publishGroupBuy(api: BenchHTTP, campaigns: String, merchant: String) async throws -> String {
        let now = Date()
        let start = EventCoding.formatTimestamp(now.addingTimeInterval(-60))
        let end = EventCoding.formatTimestamp(now.addingTimeInterval(7 * 86_400))
        let terms = """
            {"kind":"groupBuy","product":{"sku":"BENCH-TEAM","title":"bench group-buy"},"listPrice":{"amount":3990,"currency":"CNY"},
             "stock":10000000,"perUserLimit":1,"startsAt":"\(start)","endsAt":"\(end)",
             "groupBuy":{"teamSize":3,"groupPrice":{"amount":2990,"currency":"CNY"},"leaderPrice":{"amount":2490,"currency":"CNY"},
                         "teamTimeLimitSeconds":86400,"virtualFillPercent":0,"latePaymentPolicy":"openNewTeam"}}
            """
        let (created, body) = try await api.send(
            .post, "\(campaigns)/campaigns", token: merchant, body: Data(terms.utf8), headers: ["Idempotency-Key": UUID().uuidString])
        guard created == 201 else { throw ValidationError("POST /campaigns answered \(created): \(BenchHTTP.text(body))") }
        let id = try BenchHTTP.decode(CampaignCreated.self, body, "POST /campaigns").id
        let (published, answer) = try await api.send(.post, "\(campaigns)/campaigns/\(id)/publish", token: merchant, body: nil)
        guard published == 200 else { throw ValidationError("POST /campaigns/\(id)/publish answered \(published): \(BenchHTTP.text(answer))") }
        return id
    }

    struct CampaignCreated: Decodable {
        var id: String
    }
}

/// How many order reads the drivers made (each poll is a GET the orders service serves).
final class GetCounter: Sendable {
    let gets = Atomic<Int>(0)
}

/// One group-buy team at a time, through the public APIs only: what a leader, two friends and
/// the payment provider send.
struct GroupBuyFlow: Sendable {
    let api: BenchHTTP
    let orders: String
    let campaign: String
    let issuer: DevelopmentTokenIssuer
    let webhookSecret: String
    let stageTimeout: Duration
    let pollCap: Duration
    /// Where the services' logs are, for error messages.
    let logs: String
    let counter: GetCounter

    struct TeamRun: Sendable {
        /// When the last member's order was seen confirmed.
        var finishedAt: ContinuousClock.Instant
        /// Milliseconds from each order's placement to when it was seen confirmed.
        var latencies: [Double]
    }

    struct Member: Sendable {
        var user: String
        var token: String
        var order: String
        var placedAt: ContinuousClock.Instant
    }

    /// The order as `GET /orders/{id}` shows it (what the flow needs of it).
    struct OrderSnapshot: Decodable, Sendable {
        var orderId: String
        var purpose: String
        var state: String
        var teamId: String?
        var paymentIntentId: String?
        var total: Amount
        var history: [HistoryEntry]?

        struct HistoryEntry: Decodable, Sendable {
            var state: String
            var note: String?
        }

        /// The state, with the last history note (why it was cancelled or refunded).
        var described: String {
            if let note = history?.last?.note, !note.isEmpty { return "\(state) (\(note))" }
            return state
        }
    }

    struct Amount: Codable, Sendable, Equatable {
        var amount: Int64
        var currency: String
    }

    struct Placement: Encodable {
        var campaignId: String
        var purpose: String
        var teamId: String?
    }

    struct PaymentNotice: Encodable {
        var providerRef: String
        var paymentIntentId: String
        var amount: Amount
        var status: String
    }

    struct Receipt: Decodable {
        var received: Bool
        var orderId: String
        var state: String
    }

    /// Forms one team of three and waits until every member's order is confirmed.
    /// `leaderPatience`: how long the leader's order may be refused as not known yet.
    func formTeam(_ name: String, leaderPatience: Duration) async throws -> TeamRun {
        let leader = try await placeAndPay(purpose: "openTeam", team: nil, user: "\(name)-leader", patience: leaderPatience)
        // Campaigns opens the team when the leader's payment reaches it; orders writes the team
        // onto the leader's order when campaigns' TeamOpened reaches it. Friends join by its id.
        let opened = try await poll(leader, waitingFor: "its team to open") { snapshot -> Bool? in
            snapshot.state == "waiting_for_team" ? snapshot.teamId != nil : nil
        }
        guard let team = opened.order.teamId else { throw ValidationError("order \(leader.order) has no team") }
        async let first = placeAndPay(purpose: "joinTeam", team: team, user: "\(name)-joiner-1", patience: .zero)
        async let second = placeAndPay(purpose: "joinTeam", team: team, user: "\(name)-joiner-2", patience: .zero)
        let members = try await [leader, first, second]

        // The third payment completes the team; orders confirms every member's order on
        // TeamCompleted, in one go.
        var latencies: [Double] = []
        var finishedAt = ContinuousClock.now
        for member in members {
            let (order, seen) = try await poll(member, waitingFor: "its team to complete (confirmed)") { snapshot -> Bool? in
                switch snapshot.state {
                case "confirmed": return true
                case "paid", "waiting_for_team": return false
                default: return nil
                }
            }
            guard order.teamId == team else {
                throw ValidationError(
                    "order \(member.order) of \(member.user) was confirmed in team \(order.teamId ?? "none"), not \(team) (purpose now \(order.purpose)): "
                        + "a payment reached a full team (see \(logs))")
            }
            latencies.append((seen - member.placedAt).inMilliseconds)
            finishedAt = seen
        }
        return TeamRun(finishedAt: finishedAt, latencies: latencies)
    }

    /// Places an order (201), waits until campaigns reserved its stock (`awaiting_payment`),
    /// then pays it through the provider's signed webhook (200, `waiting_for_team`).
    func placeAndPay(purpose: String, team: String?, user: String, patience: Duration) async throws -> Member {
        let token = try await issuer.token(for: UserID(rawValue: user), roles: [.shopper])
        let body = try JSONEncoder().encode(Placement(campaignId: campaign, purpose: purpose, teamId: team))
        // One key for every attempt, as a shopper's app sends it.
        let key = UUID().uuidString
        let placedAt = ContinuousClock.now
        let giveUp = placedAt.advanced(by: patience)
        var placed: OrderSnapshot?
        while placed == nil {
            let (status, answer) = try await api.send(.post, "\(orders)/orders", token: token, body: body, headers: ["Idempotency-Key": key])
            if status == 201 {
                placed = try BenchHTTP.decode(OrderSnapshot.self, answer, "POST /orders")
            } else if BenchHTTP.notKnownYet(status, answer), ContinuousClock.now < giveUp {
                try await Task.sleep(for: .milliseconds(200))
            } else {
                throw ValidationError("POST /orders (\(purpose), \(user)) answered \(status): \(BenchHTTP.text(answer)) (see \(logs))")
            }
        }
        guard let order = placed, order.state == "placed" else {
            throw ValidationError("the order of \(user) was \(placed?.described ?? "?") when placed (see \(logs))")
        }
        let member = Member(user: user, token: token, order: order.orderId, placedAt: placedAt)
        let (due, _) = try await poll(member, waitingFor: "its stock (awaiting_payment)") { snapshot -> Bool? in
            switch snapshot.state {
            case "awaiting_payment": return snapshot.paymentIntentId != nil
            case "placed": return false
            default: return nil
            }
        }
        try await pay(due, of: member)
        return member
    }

    /// The payment provider reports a succeeded payment of the order's total, signed.
    func pay(_ order: OrderSnapshot, of member: Member) async throws {
        let notice = PaymentNotice(
            providerRef: "bench-\(UUID().uuidString)", paymentIntentId: order.paymentIntentId!, amount: order.total, status: "succeeded")
        let body = try JSONEncoder().encode(notice)
        let signature = WebhookSignature.header(body: body, timestamp: Int(Date().timeIntervalSince1970), secret: webhookSecret)
        let (status, answer) = try await api.send(
            .post, "\(orders)/payments/webhook", token: nil, body: body, headers: [WebhookSignature.headerName: signature])
        guard status == 200 else {
            throw ValidationError("the payment webhook for order \(member.order) answered \(status): \(BenchHTTP.text(answer)) (see \(logs))")
        }
        let receipt = try BenchHTTP.decode(Receipt.self, answer, "POST /payments/webhook")
        guard receipt.received, receipt.orderId == member.order, receipt.state == "waiting_for_team" else {
            throw ValidationError("the payment webhook for order \(member.order) of \(member.user) answered \(BenchHTTP.text(answer))")
        }
    }

    /// Reads the member's order until `done` says true (false: not yet; nil: a state the flow
    /// cannot go on from, which aborts). Returns the order and when it was seen so.
    func poll(
        _ member: Member, waitingFor what: String, until done: (OrderSnapshot) -> Bool?
    ) async throws -> (order: OrderSnapshot, seen: ContinuousClock.Instant) {
        let giveUp = ContinuousClock.now.advanced(by: stageTimeout)
        var pause: Duration = .milliseconds(5)
        while true {
            let (status, answer) = try await api.send(.get, "\(orders)/orders/\(member.order)", token: member.token, body: nil)
            let seen = ContinuousClock.now
            counter.gets.add(1, ordering: .relaxed)
            guard status == 200 else {
                throw ValidationError("GET /orders/\(member.order) (\(member.user)) answered \(status): \(BenchHTTP.text(answer)) (see \(logs))")
            }
            let order = try BenchHTTP.decode(OrderSnapshot.self, answer, "GET /orders/\(member.order)")
            switch done(order) {
            case true?:
                return (order, seen)
            case nil:
                throw ValidationError("order \(member.order) of \(member.user) is \(order.described) while waiting for \(what) (see \(logs))")
            case false?:
                guard seen < giveUp else {
                    throw ValidationError(
                        "order \(member.order) of \(member.user) still \(order.described) after \(stageTimeout) waiting for \(what) (see \(logs))")
                }
                try await Task.sleep(for: pause)
                pause = min(pause * 2, pollCap)
            }
        }
    }
}

/// JSON over HTTP/1.1 with keep-alive (AsyncHTTPClient): the drivers' client.
struct BenchHTTP: Sendable {
    let client: HTTPClient

    enum Verb: Sendable {
        case get, post
    }

    /// The status and the whole body; a failed connection or a timeout (30 s) throws.
    func send(_ verb: Verb, _ url: String, token: String?, body: Data?, headers: [String: String] = [:]) async throws -> (Int, Data) {
        var request = HTTPClientRequest(url: url)
        switch verb {
        case .get: request.method = .GET
        case .post: request.method = .POST
        }
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await client.execute(request, timeout: .seconds(30))
        let buffer = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), Data(buffer.readableBytesView))
    }

    static func text(_ body: Data) -> String {
        String(decoding: body.prefix(600), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ body: Data, _ what: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: body)
        } catch {
            throw ValidationError("\(what): unexpected body (\(error)): \(text(body))")
        }
    }

    struct ProblemBody: Decodable {
        var type: String?
        var detail: String?
    }

    /// Orders learns campaigns from events: until the campaign's arrives it refuses an order as
    /// not on sale (409 campaign-not-on-sale, or 422 on the campaign field), and a client that
    /// just saw the campaign elsewhere retries (as `Storefront.notKnownYet`).
    static func notKnownYet(_ status: Int, _ body: Data) -> Bool {
        guard let problem = try? JSONDecoder().decode(ProblemBody.self, from: body) else { return false }
        return (problem.type ?? "").hasSuffix("/campaign-not-on-sale")
            || (status == 422 && (problem.detail ?? "").contains("not a campaign on sale"))
    }
}
