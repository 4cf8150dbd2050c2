import Domain
import Foundation
import Postgres
import ServiceKit
import Synchronization

/// Helps that arrive together are applied together: one transaction of two round trips for up
/// to `maxBatch` helps (with the `BEGIN`, the helpers' standing, the velocity rules' turns and
/// counts and the tasks locked in id order and read; one statement writing every task, help and
/// event, with the `COMMIT`) instead of two or more round trips each.
/// Nothing waits to form a batch: a help that finds a batcher free runs at once, alone, through
/// `TaskBook.help`; helps that arrive while `maxRunning` batches are in progress queue and go
/// together in the next one. Under load that is what takes the database's per-transaction and
/// per-statement work off each help, and on a hot task it applies many helps per lock.
///
/// A batch gives each help the answer `TaskBook.help` would have given, velocity rules included:
/// it takes the device and network turns of all its helps at once (`TaskBook.recentHelpsStatements`, as a
/// lone help does for its own), counts their recent helps once and counts its own helps on as
/// it goes. A help on a campaign with a daily,
/// device or network limit (a counter per help) is taken alone, and a batch whose write
/// conflicts is rolled back and every help in it taken alone.
final class HelpBatcher: Sendable {
    private struct Waiting {
        var request: HelpRequest
        var correlation: String?
        var continuation: CheckedContinuation<HelpOutcome, any Error>
    }

    private struct State {
        var waiting: [Waiting] = []
        var running = 0
    }

    private let pool: PostgresPool
    private let fraud: FraudRules
    private let maxBatch: Int
    private let maxRunning: Int
    private let state = Mutex(State())

    /// Four batches in progress at most: more only queue for the database's cores and leave each
    /// batch smaller, more helps alone. Under the assists benchmark (two cores, two alternating
    /// pairs of runs) four against eight gave 910 and 1,061 against 833 and 936 helps/s at
    /// saturation, and help → stream p99 at half saturation 146 and 226 ms against 280 and 304;
    /// two against four did not separate from the runs' spread.
    init(pool: PostgresPool, fraud: FraudRules, maxBatch: Int = 32, maxRunning: Int = 4) {
        self.pool = pool
        self.fraud = fraud
        self.maxBatch = maxBatch
        self.maxRunning = maxRunning
    }

    func help(_ request: HelpRequest, correlation: String?) async throws -> HelpOutcome {
        try await withCheckedThrowingContinuation { continuation in
            let start = state.withLock { state -> Bool in
                state.waiting.append(Waiting(request: request, correlation: correlation, continuation: continuation))
                guard state.running < maxRunning else { return false }
                state.running += 1
                return true
            }
            if start { Task { await self.drain() } }
        }
    }

    private func alone(_ request: HelpRequest, correlation: String?) async throws -> HelpOutcome {
        try await TaskBook.help(request, fraud: fraud, correlation: correlation, pool: pool)
    }

    /// Takes what waits, batch after batch, until nothing does.
    private func drain() async {
        while true {
            let batch = state.withLock { state -> [Waiting] in
                let batch = Array(state.waiting.prefix(maxBatch))
                state.waiting.removeFirst(batch.count)
                if batch.isEmpty { state.running -= 1 }
                return batch
            }
            guard !batch.isEmpty else { return }
            if batch.count == 1 {
                let only = batch[0]
                only.continuation.resume(with: await resultOf { try await alone(only.request, correlation: only.correlation) })
                continue
            }
            var outcomes: [Result<HelpOutcome, any Error>?]
            do {
                outcomes = try await pool.withTransaction(retryingSerializationFailures: 3) { connection in
                    try await TaskBook.helpTogether(batch.map { ($0.request, $0.correlation) }, fraud: fraud, on: connection)
                }
            } catch {
                outcomes = Array(repeating: nil, count: batch.count)
            }
            for (waiting, outcome) in zip(batch, outcomes) {
                if let outcome {
                    waiting.continuation.resume(with: outcome)
                } else {
                    // Alone, concurrently: these wait on their own locks and counters.
                    Task { waiting.continuation.resume(with: await resultOf { try await self.alone(waiting.request, correlation: waiting.correlation) }) }
                }
            }
        }
    }
}

/// The outcome of `body`, thrown errors included, to resume a waiting help with.
private func resultOf<Value>(_ body: () async throws -> Value) async -> Result<Value, any Error> {
    do { return .success(try await body()) } catch { return .failure(error) }
}

extension TaskBook {
    /// Several helps in the caller's transaction; one outcome per help, in order, `nil` for a help
    /// to be taken alone. See `HelpBatcher`.
    static func helpTogether(
        _ helps: [(request: HelpRequest, correlation: String?)], fraud: FraudRules, on connection: PostgresConnection
    ) async throws -> [Result<HelpOutcome, any Error>?] {
        let taskIDs = helps.map(\.request.task.rawValue)
        let helperIDs = helps.map(\.request.helper.rawValue)
        // The helpers' standing and referral, before any lock. This statement and the tasks' read
        // are planned once: their generic plans (index lookups per element) are right, but the
        // server, estimating arrays of unknown length, would plan them again on every batch
        // (half a millisecond each for this one, per pg_stat_statements).
        let standingQuery: PostgresQuery = """
            SELECT r.n, \(standingColumns)
            FROM unnest(\(taskIDs)::uuid[], \(helperIDs)::text[]) WITH ORDINALITY AS r(task_id, helper, n)
            LEFT JOIN tasks task ON task.id = r.task_id
            \(referralJoin())
            """
        // The velocity rules: every device's and network's turn at once, and their recent helps.
        let velocity = recentHelpsStatements(
            devices: Array(Set(helps.compactMap(\.request.device))), networks: Array(Set(helps.compactMap(\.request.network))), fraud: fraud)
        // The tasks, locked in id order (two batches never wait on each other in a cycle).
        let lockedTasks: PostgresQuery = """
            SELECT task.*, (SELECT terms FROM campaign_rules WHERE campaign_id = task.campaign_id) AS terms
            FROM (SELECT \(columns) FROM tasks WHERE id = ANY(\(Array(Set(taskIDs)))) ORDER BY id FOR NO KEY UPDATE) AS task
            """
        // All of it in one round trip with the `BEGIN` (each statement still runs after the one
        // before it, so the standing is read before any lock and the counts after theirs): a
        // batch was six round trips, each waiting its turn on a busy machine, and the service's
        // own median help at 600 helps/s took 10–25 ms.
        let read = try await connection.query([standingQuery.plannedOnce()] + velocity + [lockedTasks.plannedOnce()])
        var standing: [Int: PostgresRow] = [:]
        for row in read[0] {
            standing[try row.decode("n", as: Int.self) - 1] = row
        }
        var (recentByDevice, recentByNetwork) = try recentHelpsCounted(read.dropFirst().prefix(velocity.count))
        var tasks: [TaskID: (row: Row, terms: CampaignTerms?)] = [:]
        for row in read[read.count - 1] {
            let task = try Row(row)
            tasks[task.id] = (task, try row.decode("terms", as: String?.self).map { try ReadModels.terms.decode($0) })
        }

        // Each help applied in arrival order to its task as the helps before it left it.
        let now = Date()
        var outcomes: [Result<HelpOutcome, any Error>?] = Array(repeating: nil, count: helps.count)
        struct TaskHelper: Hashable { var task: TaskID, helper: UserID }
        var helped: Set<TaskHelper> = []
        // A held help has no step.
        var helpRows: [(id: HelpID, task: TaskID, helper: Helper, step: Int?, cut: Int64)] = []
        var events: [Outbox.Record] = []
        var moved: Set<TaskID> = []
        for (index, (request, correlation)) in helps.enumerated() {
            guard let entry = tasks[request.task] else {
                outcomes[index] = .failure(Problem.notFound("no task \(request.task)"))
                continue
            }
            var task = entry.row
            guard request.helper != task.initiator else {
                outcomes[index] = .failure(HelpRefusal.ownTask)
                continue
            }
            guard task.status == "open", now < task.deadline, let terms = entry.terms else {
                outcomes[index] = .failure(HelpRefusal.taskClosed)
                continue
            }
            // A limit is a counter per help: taken alone.
            if let rules = terms.bargain, rules.helperDailyLimit > 0 || rules.deviceLimit > 0 || rules.networkLimit > 0 { continue }
            guard helped.insert(TaskHelper(task: request.task, helper: request.helper)).inserted else {
                outcomes[index] = .failure(HelpRefusal.alreadyHelped)
                continue
            }
            guard let row = standing[index] else { continue }
            let helper = try Helper(request, standing: row)
            let helpID = HelpID()
            // As `suspicion` would see it: the recent helps plus this batch's before this one.
            let suspicion = fraud.suspicion(
                device: request.device.map { recentByDevice[$0, default: 0] }, network: request.network.map { recentByNetwork[$0, default: 0] })
            if let device = request.device { recentByDevice[device, default: 0] += 1 }
            if let network = request.network { recentByNetwork[network, default: 0] += 1 }
            if let reason = suspicion {
                events.append(try Outbox.Record(CloudEvent(
                    AssistHeldForReview(taskId: task.id, campaignId: task.campaign, helpId: helpID, helperId: request.helper, reason: reason, heldAt: now),
                    correlationID: correlation)))
                helpRows.append((helpID, task.id, helper, nil, 0))
                outcomes[index] = .success(.held(task.state))
                continue
            }
            let counted = try counting(helpID, by: helper, on: task, terms: terms, correlation: correlation, at: now)
            task = counted.task
            events += counted.events
            let (step, cut) = (task.helperCount, task.lastCut)
            helpRows.append((helpID, task.id, helper, step, cut))
            moved.insert(task.id)
            tasks[task.id] = (task, terms)
            outcomes[index] = .success(.counted(task.state, cut: Money(cut, task.currency)))
        }
        guard !helpRows.isEmpty else { return outcomes }

        // Foundation orders UUIDs byte by byte, as PostgreSQL does.
        let finals = moved.sorted { $0.rawValue < $1.rawValue }.compactMap { tasks[$0]?.row }
        let cancellation = deadlinesCancelled(finals.filter { $0.status == "completed" }.map(\.id))
        // One statement, sent with the `COMMIT`. A write that did not go as the batch read it
        // (another help came first through `TaskBook.help`, a helper who already helped) aborts
        // the transaction (`.helpBatchConflict`) and the batch's helps are taken alone.
        // Planned once: its arrays made the server plan it for every batch (218 µs of planning
        // on 1,560 µs of execution, under the assists benchmark); every row it touches is found
        // by key.
        let write: PostgresQuery = """
            WITH moved AS (
                UPDATE tasks SET price_now = m.price_now, helper_count = m.helper_count, status = m.status,
                    pay_by = NULLIF(m.pay_by, '')::timestamptz, ended_at = CASE WHEN m.status = 'completed' THEN now() END
                FROM unnest(\(finals.map(\.id.rawValue))::uuid[], \(finals.map(\.priceNow))::int8[], \(finals.map { Int64($0.helperCount) })::int8[],
                            \(finals.map(\.status))::text[], \(finals.map { $0.payBy?.postgresText ?? "" })::text[])
                     AS m(id, price_now, helper_count, status, pay_by)
                WHERE tasks.id = m.id AND tasks.status = 'open'
                RETURNING 1),
            helped AS (
                INSERT INTO helps (id, task_id, helper_id, state, step, cut, counted_at, new_user, device_id, network, share_id, referrer_id)
                SELECT h.id, h.task_id, h.helper_id, CASE WHEN h.step > 0 THEN 'counted' ELSE 'held' END, NULLIF(h.step, 0), h.cut,
                       CASE WHEN h.step > 0 THEN now() END, h.new_user::bool, NULLIF(h.device_id, ''), NULLIF(h.network, ''),
                       NULLIF(h.share_id, '')::uuid, NULLIF(h.referrer_id, '')
                FROM unnest(\(helpRows.map(\.id.rawValue))::uuid[], \(helpRows.map(\.task.rawValue))::uuid[],
                            \(helpRows.map(\.helper.id.rawValue))::text[], \(helpRows.map { Int64($0.step ?? 0) })::int8[], \(helpRows.map(\.cut))::int8[],
                            \(helpRows.map { $0.helper.newUser ? "true" : "false" })::text[],
                            \(helpRows.map { $0.helper.device ?? "" })::text[], \(helpRows.map { $0.helper.network ?? "" })::text[],
                            \(helpRows.map { $0.helper.shareID?.description ?? "" })::text[],
                            \(helpRows.map { $0.helper.referrer?.rawValue ?? "" })::text[])
                     AS h(id, task_id, helper_id, step, cut, new_user, device_id, network, share_id, referrer_id)
                ON CONFLICT (task_id, helper_id) DO NOTHING
                RETURNING 1),
            appended AS (\(Outbox.insertion(of: events)))\(cancellation)
            SELECT CASE WHEN (SELECT count(*) FROM moved) <> \(finals.count) OR (SELECT count(*) FROM helped) <> \(helpRows.count)
                        THEN abort_help(\(SQLState.helpBatchConflict.rawValue), 'the batch did not go as it read') END
            """
        try await connection.queryCommitting([write.plannedOnce()])
        Outbox.wakeRelay(afterCommitOn: connection)
        return outcomes
    }
}
