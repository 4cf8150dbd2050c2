import Domain
import Foundation
import Hummingbird
import Postgres
import ServiceKit

/// A task's state as shoppers see it.
struct TaskState: ResponseEncodable, Codable, Sendable {
    var taskId: TaskID
    var campaignId: CampaignID
    var kind: CampaignKind
    var initiatorId: UserID
    var status: String
    var listPrice: Money
    var priceNow: Money
    /// Left to cut before the floor (bargain); zero for unlock tasks.
    var amountLeft: Money
    var helperCount: Int
    /// Helpers still needed at most: the promise, counted down.
    var helpersLeftAtMost: Int
    var deadline: Date
    var secondsLeft: Int
    var seedHash: String
    /// Revealed once the task has ended.
    var seed: String?
    var payBy: Date?
}

/// Why a help was not counted: each a distinct problem type.
enum HelpRefusal {
    static let ownTask = Problem(.forbidden, kind: "own-task", title: "You cannot help your own task")
    static let alreadyHelped = Problem(.conflict, kind: "already-helped", title: "You already helped this task")
    static let taskClosed = Problem(.conflict, kind: "task-closed", title: "This task is complete or has expired")
    static let dailyLimit = Problem(.tooManyRequests, kind: "daily-limit", title: "You reached today's help limit")
    static let deviceLimit = Problem(.tooManyRequests, kind: "device-limit", title: "This device reached today's help limit")
    static let networkLimit = Problem(.tooManyRequests, kind: "network-limit", title: "This network reached today's help limit")
}

/// The codes a help's write aborts its transaction with (`abort_help`, migration 0003), when
/// that statement travels with the `COMMIT` and the client cannot roll back after reading it.
extension SQLState {
    /// The task moved (another help came first, or it ended) since the help read it.
    static let helpRaced = SQLState(rawValue: "FA001")
    /// The help row was not written: the helper already helped.
    static let alreadyHelped = SQLState(rawValue: "FA002")
    /// A batch's write did not go as its read (see `HelpBatcher`).
    static let helpBatchConflict = SQLState(rawValue: "FA003")
}

/// When a help is suspicious enough to wait for an operator instead of counting.
public struct FraudRules: Sendable {
    /// More than this many helps from one device within `window` are held.
    public var deviceBurst = 5
    /// More than this many helps from one network within `window` are held.
    public var networkBurst = 30
    public var window: Duration = .seconds(60)
    public init() {}

    /// Why a help from a device and network with this many recent helps (without it) is held,
    /// or nil when it counts.
    func suspicion(device recentOnDevice: Int?, network recentOnNetwork: Int?) -> String? {
        if let recent = recentOnDevice, recent >= deviceBurst { return "deviceBurst: \(recent + 1) helps from one device within \(window)" }
        if let recent = recentOnNetwork, recent >= networkBurst { return "networkBurst: \(recent + 1) helps from one network within \(window)" }
        return nil
    }
}

/// A help as it arrives: who, from which device and network.
struct HelpRequest: Sendable {
    var task: TaskID
    var helper: UserID
    var device: String?
    var network: String?
}

enum HelpOutcome: Sendable {
    case counted(TaskState, cut: Money)
    case held(TaskState)
}

enum TaskBook {
    static let expiryJob = "task-expiry"

    static let columns: PostgresSQLFragment = """
        id, campaign_id, kind, initiator_id, currency, list_price, floor_price, price_now, promised_helpers, helper_count,
        status, seed, seed_hash, schedule, deadline, pay_by
        """

    struct Row {
        var id: TaskID
        var campaign: CampaignID
        var kind: CampaignKind
        var initiator: UserID
        var currency: Currency
        var listPrice: Int64
        var floorPrice: Int64
        var priceNow: Int64
        var promised: Int
        var helperCount: Int
        var status: String
        var seed: String
        var seedHash: String
        var schedule: CutSchedule?
        var deadline: Date
        var payBy: Date?
        /// The cut of the help that last moved this value (not stored: the response reports it).
        var lastCut: Int64 = 0

        init(_ row: PostgresRow) throws {
            id = TaskID(rawValue: try row.decode("id"))
            campaign = CampaignID(rawValue: try row.decode("campaign_id"))
            kind = CampaignKind(rawValue: try row.decode("kind")) ?? .bargain
            initiator = UserID(rawValue: try row.decode("initiator_id"))
            currency = Currency(rawValue: try row.decode("currency"))
            listPrice = try row.decode("list_price")
            floorPrice = try row.decode("floor_price")
            priceNow = try row.decode("price_now")
            promised = try row.decode("promised_helpers")
            helperCount = try row.decode("helper_count")
            status = try row.decode("status")
            seed = try row.decode("seed")
            seedHash = try row.decode("seed_hash")
            // An unlock task has no cut schedule: its column holds JSON null, not SQL NULL.
            schedule = try row.decode("schedule", as: String?.self).flatMap { $0 == "null" ? nil : try ReadModels.schedules.decode($0) }
            deadline = try row.decode("deadline")
            payBy = try row.decode("pay_by")
        }

        var state: TaskState {
            let ended = status != "open"
            return TaskState(
                taskId: id, campaignId: campaign, kind: kind, initiatorId: initiator, status: status,
                listPrice: Money(listPrice, currency), priceNow: Money(priceNow, currency),
                amountLeft: Money(priceNow - floorPrice, currency), helperCount: helperCount,
                helpersLeftAtMost: ended ? 0 : max(0, promised - helperCount), deadline: deadline,
                secondsLeft: ended ? 0 : max(0, Int(deadline.timeIntervalSinceNow)), seedHash: seedHash,
                seed: ended ? seed : nil, payBy: payBy)
        }
    }

    static func find(_ id: TaskID, on connection: PostgresConnection, lock: Bool = false) async throws -> Row? {
        let rows = lock
            // NO KEY UPDATE: a help's foreign-key check (KEY SHARE) on the same row does not wait on it.
            ? try await connection.query("SELECT \(columns) FROM tasks WHERE id = \(id.rawValue) FOR NO KEY UPDATE")
            : try await connection.query("SELECT \(columns) FROM tasks WHERE id = \(id.rawValue)")
        return try rows.first.map(Row.init)
    }

    /// Starts a task; a bargain applies the initiator's first cut at once.
    static func start(campaign: CampaignID, initiator: UserID, correlation: String?, on connection: PostgresConnection) async throws -> TaskState {
        guard let (status, terms) = try await ReadModels.rules(campaign, on: connection) else {
            throw Problem.invalidField("campaignId", "is not a campaign assists knows of (yet)")
        }
        let now = Date()
        guard status == "published", terms.startsAt <= now, now < terms.endsAt else {
            throw Problem.conflict(kind: "campaign-not-on-sale", "the campaign is not running")
        }
        let started = try await connection.query(
            "SELECT count(*)::int8 AS n FROM tasks WHERE campaign_id = \(campaign.rawValue) AND initiator_id = \(initiator.rawValue)"
        ).single().decode("n", as: Int.self)
        guard started < terms.perUserLimit else {
            throw Problem.conflict(kind: "task-limit", "you already started \(started) task(s) on this campaign")
        }
        let seed = CutSchedule.newSeed()
        let id = TaskID()
        let currency = terms.listPrice.currency
        var schedule: CutSchedule?
        var floor: Int64 = 0
        var priceNow = terms.listPrice.amount
        var promised: Int
        var limitSeconds: Int
        switch terms.kind {
        case .bargain:
            guard let rules = terms.bargain else { throw Problem.conflict(kind: "campaign-not-on-sale", "the campaign has no bargain rules") }
            let cuts = CutSchedule(rules: rules, listPrice: terms.listPrice, seed: seed)
            schedule = cuts
            floor = rules.floorPrice.amount
            priceNow -= cuts.firstCut
            promised = rules.maxHelpers
            limitSeconds = rules.taskTimeLimitSeconds
        case .unlock:
            guard let rules = terms.unlock else { throw Problem.conflict(kind: "campaign-not-on-sale", "the campaign has no unlock rules") }
            floor = priceNow
            promised = rules.helpersRequired
            limitSeconds = rules.taskTimeLimitSeconds
        case .groupBuy:
            throw Problem.invalidField("campaignId", "is a group-buy campaign; tasks are for bargain and unlock campaigns")
        }
        let deadline = min(now.addingTimeInterval(TimeInterval(limitSeconds)), terms.endsAt)
        try await connection.query(
            """
            INSERT INTO tasks (id, campaign_id, kind, initiator_id, currency, list_price, floor_price, price_now, promised_helpers,
                               status, seed, seed_hash, schedule, deadline)
            VALUES (\(id.rawValue), \(campaign.rawValue), \(terms.kind.rawValue), \(initiator.rawValue), \(currency.rawValue),
                    \(terms.listPrice.amount), \(floor), \(priceNow), \(promised), 'open', \(seed), \(CutSchedule.commitment(to: seed)),
                    \(PostgresJSON(schedule)), \(deadline))
            """)
        try await Schedule.at(deadline, kind: expiryJob, key: id.description, on: connection)
        try await Outbox.append(
            AssistTaskStarted(
                taskId: id, campaignId: campaign, kind: terms.kind, initiatorId: initiator, listPrice: terms.listPrice,
                floorPrice: terms.kind == .bargain ? Money(floor, currency) : nil, priceNow: Money(priceNow, currency),
                helpersRequired: terms.kind == .unlock ? promised : nil, maxHelpers: promised,
                seedHash: CutSchedule.commitment(to: seed), deadline: deadline, startedAt: now),
            correlationID: correlation, on: connection)
        return try await find(id, on: connection)!.state
    }

    /// One help in a transaction of its own, in as few round trips as it can: the task, its
    /// campaign's rules and the helper's standing and referral in one read, with the velocity
    /// rules' turns and counts (sent with the `BEGIN`); the limits where the campaign sets them;
    /// then one statement, sent with the `COMMIT`, that moves the task on only if no other help
    /// moved it since that read (compare-and-set on the helper count), inserts the help in its
    /// final state and appends the events. The task row is locked only from that statement to the
    /// commit. A help that lost the race to another help on the same task is taken again with the
    /// task locked from its read, and applied to what it finds. The unique (task, helper) key
    /// refuses a second help even from concurrent requests.
    static func help(_ request: HelpRequest, fraud: FraudRules, correlation: String?, pool: PostgresPool) async throws -> HelpOutcome {
        func attempt(lockingTask: Bool) async throws -> HelpOutcome {
            try await pool.withTransaction(retryingSerializationFailures: 3) { connection in
                try await help(request, fraud: fraud, correlation: correlation, lockingTask: lockingTask, on: connection)
            }
        }
        do {
            return try await attempt(lockingTask: false)
        } catch let error as PostgresError where error.sqlState == .helpRaced {
            return try await attempt(lockingTask: true)
        }
    }

    /// The help of `help(_:fraud:correlation:pool:)` in the transaction `connection` is in, which
    /// it commits (or, with `.helpRaced`, aborts for the caller to take it again locking the task).
    private static func help(
        _ request: HelpRequest, fraud: FraudRules, correlation: String?, lockingTask: Bool, on connection: PostgresConnection
    ) async throws -> HelpOutcome {
        // The velocity rules' turns and counts, then the read, in one round trip with the `BEGIN`
        // (run in that order, as a batch's are): the velocity locks are taken before the task's
        // and the limit counters in every path, so no two helps wait on each other in a cycle.
        let velocity = recentHelpsStatements(
            devices: request.device.map { [$0] } ?? [], networks: request.network.map { [$0] } ?? [], fraud: fraud)
        let read = try await connection.query(velocity + [
            """
            SELECT task.*, (SELECT terms FROM campaign_rules WHERE campaign_id = task.campaign_id) AS terms, \(standingColumns)
            FROM (SELECT \(columns) FROM tasks WHERE id = \(request.task.rawValue) \(lockingTask ? "FOR NO KEY UPDATE" : "" as PostgresSQLFragment)) AS task
            CROSS JOIN (SELECT \(request.helper.rawValue)::text AS helper) AS r
            \(referralJoin())
            """,
        ])
        guard let row = read[read.count - 1].first else { throw Problem.notFound("no task \(request.task)") }
        let seen = try Row(row)
        guard request.helper != seen.initiator else { throw HelpRefusal.ownTask }
        guard seen.status == "open", Date() < seen.deadline else { throw HelpRefusal.taskClosed }
        guard let termsJSON = try row.decode("terms", as: String?.self) else { throw HelpRefusal.taskClosed }
        let terms = try ReadModels.terms.decode(termsJSON)
        let helper = try Helper(request, standing: row)

        let rules = terms.bargain
        try await countLimit("helper:\(request.helper.rawValue)", limit: rules?.helperDailyLimit ?? 0, refusal: HelpRefusal.dailyLimit, on: connection)
        if let device = request.device {
            try await countLimit("device:\(seen.campaign):\(device)", limit: rules?.deviceLimit ?? 0, refusal: HelpRefusal.deviceLimit, on: connection)
        }
        if let network = request.network {
            try await countLimit("network:\(seen.campaign):\(network)", limit: rules?.networkLimit ?? 0, refusal: HelpRefusal.networkLimit, on: connection)
        }

        let helpID = HelpID()
        let (byDevice, byNetwork) = try recentHelpsCounted(read.prefix(velocity.count))
        if let reason = fraud.suspicion(
            device: request.device.map { byDevice[$0, default: 0] }, network: request.network.map { byNetwork[$0, default: 0] }) {
            guard let task = try await find(request.task, on: connection, lock: true), task.status == "open", Date() < task.deadline else {
                throw HelpRefusal.taskClosed
            }
            let inserted = try await connection.query(
                """
                INSERT INTO helps (id, task_id, helper_id, state, new_user, device_id, network, share_id, referrer_id)
                VALUES (\(helpID.rawValue), \(request.task.rawValue), \(request.helper.rawValue), 'held', \(helper.newUser),
                        \(request.device), \(request.network), \(helper.shareID?.rawValue), \(helper.referrer?.rawValue))
                ON CONFLICT (task_id, helper_id) DO NOTHING
                """).affectedRows == 1
            guard inserted else { throw HelpRefusal.alreadyHelped }
            try await Outbox.append(
                AssistHeldForReview(taskId: task.id, campaignId: task.campaign, helpId: helpID, helperId: request.helper, reason: reason, heldAt: Date()),
                correlationID: correlation, on: connection)
            return .held(task.state)
        }

        var task = seen
        try await advance(&task, help: helpID, by: helper, counting: .new, terms: terms, correlation: correlation, committing: true, on: connection)
        return .counted(task.state, cut: Money(task.lastCut, task.currency))
    }

    /// Who helps, as the help row records them.
    struct Helper {
        var id: UserID
        var newUser: Bool
        var shareID: ShareID?
        var referrer: UserID?
        var device: String?
        var network: String?
    }

    /// A helper's standing (never paid: a new user) and the share that brought them (the last
    /// click on the campaign within a week, not their own), as `standingColumns` over
    /// `referralJoin` read them, for a query with `task` and `r.helper` in scope.
    static let standingColumns: PostgresSQLFragment = """
        NOT EXISTS (SELECT 1 FROM paid_users WHERE user_id = r.helper) AS new_user,
        click.share_id AS click_share_id, click.sharer_id AS click_sharer_id
        """

    static func referralJoin() -> PostgresQuery {
        """
        LEFT JOIN LATERAL (
            SELECT share_id, sharer_id FROM share_clicks
            WHERE campaign_id = task.campaign_id AND clicker_id = r.helper AND sharer_id <> r.helper
              AND clicked_at > \(Date().addingTimeInterval(-7 * 86_400))
            ORDER BY clicked_at DESC LIMIT 1) AS click ON true
        """
    }

    /// A counted help applied to `task` as read: the task it leaves (price, count, completion),
    /// and the events it records, in order (`AssistTaskCompleted` after `AssistRecorded` when it
    /// completes the task).
    static func counting(
        _ helpID: HelpID, by helper: Helper, on task: Row, terms: CampaignTerms, correlation: String?, at now: Date
    ) throws -> (task: Row, events: [Outbox.Record]) {
        let (step, cut) = nextCut(on: task, newUser: helper.newUser)
        var moved = task
        moved.priceNow -= cut
        moved.helperCount = step
        moved.lastCut = cut
        let complete = task.kind == .bargain ? moved.priceNow == moved.floorPrice : step >= task.promised
        if complete {
            moved.status = "completed"
            moved.payBy = now.addingTimeInterval(TimeInterval(terms.bargain?.payWindowSeconds ?? 1_800))
        }
        let state = moved.state
        var events = [try Outbox.Record(CloudEvent(
            AssistRecorded(
                taskId: task.id, campaignId: task.campaign, initiatorId: task.initiator, helpId: helpID, helperId: helper.id,
                cut: Money(cut, task.currency), priceNow: state.priceNow, amountLeft: state.amountLeft, helperCount: step,
                helpersLeftAtMost: state.helpersLeftAtMost, newUser: helper.newUser, shareId: helper.shareID, referrerId: helper.referrer,
                recordedAt: now),
            correlationID: correlation))]
        if complete {
            events.append(try Outbox.Record(CloudEvent(
                AssistTaskCompleted(
                    taskId: task.id, campaignId: task.campaign, kind: task.kind, initiatorId: task.initiator, finalPrice: state.priceNow,
                    helperCount: step, payBy: moved.payBy!, seed: task.seed, completedAt: now),
                correlationID: correlation)))
        }
        return (moved, events)
    }

    /// The help a task moves on for: one arriving now, or a held one an operator approved.
    enum CountedHelp {
        case new
        case approved
    }

    /// The next help's step and cut on a task as read.
    static func nextCut(on task: Row, newUser: Bool) -> (step: Int, cut: Int64) {
        let step = task.helperCount + 1
        return (step, task.schedule?.cut(helper: step, left: task.priceNow - task.floorPrice, newUser: newUser) ?? 0)
    }

    /// Counts a held help an operator approved, on a locked task, in the caller's transaction.
    static func count(
        _ helpID: HelpID, helper: Helper, task: inout Row, terms: CampaignTerms, correlation: String?, on connection: PostgresConnection
    ) async throws {
        try await advance(&task, help: helpID, by: helper, counting: .approved, terms: terms, correlation: correlation, committing: false, on: connection)
    }

    /// A counted help moves the task on from the state in `task`: price, count, completion (its
    /// deadline cancelled), the help row and the events, in one statement; with `committing`,
    /// sent with the transaction's `COMMIT`. The statement aborts the transaction, changing
    /// nothing, when the task is no longer in that state (`.helpRaced`: another help came first,
    /// or it ended) or the help was not written (the helper already helped).
    private static func advance(
        _ task: inout Row, help helpID: HelpID, by helper: Helper, counting: CountedHelp, terms: CampaignTerms, correlation: String?,
        committing: Bool, on connection: PostgresConnection
    ) async throws {
        let (moved, events) = try Self.counting(helpID, by: helper, on: task, terms: terms, correlation: correlation, at: Date())
        let (step, cut, complete) = (moved.helperCount, moved.lastCut, moved.status == "completed")
        let moveTask: PostgresQuery = """
            UPDATE tasks SET price_now = \(moved.priceNow), helper_count = \(step), status = \(moved.status), pay_by = \(moved.payBy),
                ended_at = CASE WHEN \(complete) THEN now() END
            WHERE id = \(task.id.rawValue) AND helper_count = \(task.helperCount) AND status = 'open'
            RETURNING id
            """
        let writeHelp: PostgresQuery = switch counting {
        case .new: """
            INSERT INTO helps (id, task_id, helper_id, state, step, cut, counted_at, new_user, device_id, network, share_id, referrer_id)
            SELECT \(helpID.rawValue), id, \(helper.id.rawValue), 'counted', \(step), \(cut), now(), \(helper.newUser),
                   \(helper.device), \(helper.network), \(helper.shareID?.rawValue), \(helper.referrer?.rawValue)
            FROM moved
            ON CONFLICT (task_id, helper_id) DO NOTHING
            RETURNING 1
            """
        case .approved: """
            UPDATE helps SET state = 'counted', step = \(step), cut = \(cut), counted_at = now()
            WHERE id = \(helpID.rawValue) AND state = 'held' AND EXISTS (SELECT 1 FROM moved)
            RETURNING 1
            """
        }
        // The events and the deadline's cancellation are written unconditionally: the statement
        // aborts when the task or the help was not written.
        let write: PostgresQuery = """
            WITH moved AS (\(moveTask)), helped AS (\(writeHelp)), appended AS (\(Outbox.insertion(of: events)))\(deadlinesCancelled(complete ? [task.id] : []))
            SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM moved) THEN abort_help(\(SQLState.helpRaced.rawValue), 'the task moved since it was read')
                        WHEN NOT EXISTS (SELECT 1 FROM helped) THEN abort_help(\(SQLState.alreadyHelped.rawValue), 'the helper already helped') END
            """
        do {
            _ = committing ? try await connection.queryCommitting([write]) : try await connection.query([write])
        } catch let error as PostgresError where error.sqlState == .alreadyHelped {
            throw HelpRefusal.alreadyHelped
        }
        Outbox.wakeRelay(afterCommitOn: connection)
        task = moved
    }

    /// The expiry jobs of the tasks a write completes, as one more common table expression of
    /// that write (`, cancelled AS (...)`). Empty when it completes none: even with no key to
    /// delete, the statement would open and lock the jobs table and its indexes.
    static func deadlinesCancelled(_ completed: [TaskID]) -> PostgresQuery {
        completed.isEmpty ? "" : ", cancelled AS (\(Schedule.cancellation(kind: expiryJob, keys: completed.map(\.description))))"
    }

    /// Adds one to a per-day counter; over `limit` (0 = no limit) refuses, rolling everything back.
    static func countLimit(_ scope: String, limit: Int, refusal: Problem, on connection: PostgresConnection) async throws {
        guard limit > 0 else { return }
        let count = try await connection.query(
            """
            INSERT INTO help_limits (scope, day, count) VALUES (\(scope), current_date, 1)
            ON CONFLICT (scope, day) DO UPDATE SET count = help_limits.count + 1 RETURNING count
            """).single().decode("count", as: Int.self)
        if count > limit { throw refusal }
    }

    /// The velocity rules' two statements, sent together with a help's reads (empty when there
    /// is nothing to count): recent helps per device and per network, after taking their turn.
    /// Helps from one device (and from one network) take turns on an advisory lock held to
    /// commit, so a farm firing them all at once cannot slip through with each seeing only the
    /// others' committed helps. All the locks go in the first statement, in sorted order
    /// (devices before networks), so two callers never wait on each other in a cycle; the counts
    /// are a statement of their own, run after the locks were granted, whose snapshot therefore
    /// sees what the previous holders committed. Sent together, they still run one after the
    /// other.
    static func recentHelpsStatements(devices: [String], networks: [String], fraud: FraudRules) -> [PostgresQuery] {
        guard !devices.isEmpty || !networks.isEmpty else { return [] }
        let keys = Set(devices.map { "fission.help.device:" + $0 } + networks.map { "fission.help.network:" + $0 }).sorted()
        let since = Date().addingTimeInterval(-Double(fraud.window.components.seconds))
        // `IS NOT NULL` repeats the partial indexes' condition: a plan made once for any array
        // cannot infer it from `= ANY(...)`, and without it read every help in the table. With
        // it, the generic plan is two index-only scans; planned once, as the server (estimating
        // arrays of unknown length) would plan it again on every call.
        let counts: PostgresQuery = """
            SELECT 'device' AS kind, device_id AS key, count(*)::int8 AS n FROM helps
            WHERE device_id IS NOT NULL AND device_id = ANY(\(devices)::text[]) AND created_at > \(since) GROUP BY device_id
            UNION ALL
            SELECT 'network', network, count(*)::int8 FROM helps
            WHERE network IS NOT NULL AND network = ANY(\(networks)::text[]) AND created_at > \(since) GROUP BY network
            """
        return [
            "SELECT count(pg_advisory_xact_lock(hashtext(key))) FROM (SELECT key FROM unnest(\(keys)::text[]) AS key ORDER BY key) AS ordered",
            counts.plannedOnce(),
        ]
    }

    /// The counts by device and by network, from the results of `recentHelpsStatements` (none
    /// when it had nothing to count).
    static func recentHelpsCounted(_ results: some Collection<PostgresRows>) throws -> (byDevice: [String: Int], byNetwork: [String: Int]) {
        var byDevice: [String: Int] = [:]
        var byNetwork: [String: Int] = [:]
        // The first result is the locks' turn; the second, when there is one, the counts.
        guard let counts = results.dropFirst().first else { return (byDevice, byNetwork) }
        for row in counts {
            let key: String = try row.decode("key")
            if try row.decode("kind", as: String.self) == "device" {
                byDevice[key] = try row.decode("n")
            } else {
                byNetwork[key] = try row.decode("n")
            }
        }
        return (byDevice, byNetwork)
    }

    /// The task's deadline: expire it if still open, exactly once (row lock + status check).
    static func deadlinePassed(_ job: ScheduledJob, _ connection: PostgresConnection) async throws {
        guard let id = TaskID(job.key), let task = try await find(id, on: connection, lock: true), task.status == "open" else { return }
        try await connection.query("UPDATE tasks SET status = 'expired', ended_at = now() WHERE id = \(id.rawValue)")
        try await Outbox.append(
            AssistTaskExpired(
                taskId: id, campaignId: task.campaign, kind: task.kind, initiatorId: task.initiator,
                priceReached: Money(task.priceNow, task.currency), helperCount: task.helperCount, seed: task.seed, expiredAt: Date()),
            correlationID: nil, on: connection)
    }
}

extension TaskBook.Helper {
    /// The helper of `request`, with their standing as a row of `TaskBook.standingColumns`.
    init(_ request: HelpRequest, standing row: PostgresRow) throws {
        self.init(
            id: request.helper, newUser: try row.decode("new_user"),
            shareID: try row.decode("click_share_id", as: UUID?.self).map(ShareID.init(rawValue:)),
            referrer: try row.decode("click_sharer_id", as: String?.self).map(UserID.init(rawValue:)),
            device: request.device, network: request.network)
    }
}
