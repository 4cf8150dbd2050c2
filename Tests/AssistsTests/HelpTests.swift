@testable import AssistsService
import Domain
import FissionTesting
import Foundation
import Postgres
import ServiceKit
import Synchronization
import Testing

@Suite("Helps")
struct HelpTests {
    @Test(arguments: [false, true])
    func thousandConcurrentHelpsOnATaskPromisingThirtyCountExactlyThirtyAndTheCutsSumExactly(batched: Bool) async throws {
        try await withAssistsDatabase { pool in
            let batcher = batched ? HelpBatcher(pool: pool, fraud: FraudRules(), maxBatch: 16, maxRunning: 4) : nil
            let campaign = try await knownCampaign(bargainTerms(helpers: 30), on: pool)
            let task = try await startTask(campaign, on: pool)
            let helpers = (0..<1_000).map { "u-\($0)" }
            try await markPaid(helpers, on: pool)
            let outcomes = Tally()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for helper in helpers {
                    group.addTask {
                        let refusal = try await help(task.taskId, by: helper, through: batcher, on: pool) ?? "counted"
                        await outcomes.add(refusal)
                    }
                }
                try await group.waitForAll()
            }
            #expect(await outcomes.counts == ["counted": 30, "task-closed": 970])
            let final = try await pool.withConnection { try await TaskBook.find(task.taskId, on: $0)! }
            #expect(final.status == "completed")
            #expect(final.priceNow == 0)
            let cuts = try await pool.query("SELECT cut FROM helps WHERE task_id = \(task.taskId.rawValue) AND state = 'counted' ORDER BY step")
                .map { try $0.decode("cut", as: Int64.self) }
            #expect(cuts.count == 30)
            #expect(cuts.allSatisfy { $0 >= 1 })
            #expect(3990 - task.priceNow.amount + cuts.reduce(0, +) == 3990, "first cut plus helpers' cuts is the whole span")
            #expect(try await emitted(AssistRecorded.self, on: pool).count == 30)
            #expect(try await emitted(AssistTaskCompleted.self, on: pool).count == 1)
        }
    }

    @Test(arguments: [false, true])
    func fiftyConcurrentHelpsBySameHelperCountOnce(batched: Bool) async throws {
        try await withAssistsDatabase { pool in
            let batcher = batched ? HelpBatcher(pool: pool, fraud: FraudRules(), maxBatch: 16, maxRunning: 4) : nil
            let campaign = try await knownCampaign(bargainTerms(helpers: 30), on: pool)
            let task = try await startTask(campaign, on: pool)
            let outcomes = Tally()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<50 {
                    group.addTask {
                        let refusal = try await help(task.taskId, by: "u-eager", through: batcher, on: pool) ?? "counted"
                        await outcomes.add(refusal)
                    }
                }
                try await group.waitForAll()
            }
            #expect(await outcomes.counts == ["counted": 1, "already-helped": 49])
            let counted = try await pool.query("SELECT count(*)::int8 AS n FROM helps").single().decode("n", as: Int.self)
            #expect(counted == 1)
        }
    }

    @Test func batchedHelpsAcrossTasksMatchWhatEachHelpAloneWouldDo() async throws {
        try await withAssistsDatabase { pool in
            let campaign = try await knownCampaign(bargainTerms(helpers: 12), on: pool)
            var tasks: [TaskState] = []
            for index in 0..<6 { tasks.append(try await startTask(campaign, initiator: "u-initiator-\(index)", on: pool)) }
            // Half the helpers paid before (regular cuts), half are new users (boosted cuts).
            try await markPaid((0..<300).filter { $0 % 2 == 0 }.map { "u-\($0)" }, on: pool)
            let batcher = HelpBatcher(pool: pool, fraud: FraudRules(), maxBatch: 8, maxRunning: 3)
            let outcomes = Tally()
            let started = tasks
            try await withThrowingTaskGroup(of: Void.self) { group in
                for helper in 0..<300 {
                    group.addTask {
                        // Every fifth help goes alone, racing the batches on the same tasks.
                        let task = started[helper % started.count].taskId
                        let refusal = try await help(task, by: "u-\(helper)", through: helper % 5 == 0 ? nil : batcher, on: pool) ?? "counted"
                        await outcomes.add(refusal)
                    }
                    // A helper trying the same task twice, and an initiator helping their own task.
                    if helper % 50 == 0 {
                        group.addTask { await outcomes.add(try await help(started[helper % started.count].taskId, by: "u-\(helper)", through: batcher, on: pool) ?? "counted") }
                        group.addTask { await outcomes.add(try await help(started[0].taskId, by: "u-initiator-0", through: batcher, on: pool) ?? "counted") }
                    }
                }
                try await group.waitForAll()
            }
            let counts = await outcomes.counts
            #expect(counts["counted"] == 6 * 12, "every task reaches its floor at exactly the promised helper")
            #expect(counts["own-task"] == 6)
            #expect((counts["already-helped"] ?? 0) + (counts["task-closed"] ?? 0) == 300 + 6 - 72)
            for task in tasks {
                let final = try await pool.withConnection { try await TaskBook.find(task.taskId, on: $0)! }
                #expect(final.status == "completed")
                #expect(final.priceNow == final.floorPrice)
                let helps = try await pool.query(
                    "SELECT step, cut, new_user FROM helps WHERE task_id = \(task.taskId.rawValue) AND state = 'counted' ORDER BY step")
                #expect(try helps.map { try $0.decode("step", as: Int.self) } == Array(1...12))
                // The cuts are the schedule's, step by step, for exactly these helpers.
                var replay = final
                replay.priceNow = task.priceNow.amount
                replay.helperCount = 0
                for row in helps {
                    let (step, cut) = TaskBook.nextCut(on: replay, newUser: try row.decode("new_user"))
                    #expect(try row.decode("step", as: Int.self) == step)
                    #expect(try row.decode("cut", as: Int64.self) == cut)
                    replay.priceNow -= cut
                    replay.helperCount = step
                }
                #expect(replay.priceNow == final.floorPrice)
            }
            #expect(try await emitted(AssistRecorded.self, on: pool).count == 72)
            #expect(try await emitted(AssistTaskCompleted.self, on: pool).count == 6)
            #expect(try await pool.query("SELECT count(*)::int8 AS n FROM scheduled_jobs WHERE kind = \(TaskBook.expiryJob)").single()
                .decode("n", as: Int.self) == 0, "every completed task's expiry is cancelled")
        }
    }

    @Test func verificationProcedureReproducesEveryCutFromTheRevealedSeed() async throws {
        try await withAssistsDatabase { pool in
            let campaign = try await knownCampaign(bargainTerms(helpers: 12), on: pool)
            let task = try await startTask(campaign, on: pool)
            // A mix of new users (never paid) and returning buyers.
            try await markPaid((0..<12).filter { $0 % 3 != 0 }.map { "u-\($0)" }, on: pool)
            for index in 0..<12 { #expect(try await help(task.taskId, by: "u-\(index)", on: pool) == nil) }
            let ended = try await pool.withConnection { try await TaskBook.find(task.taskId, on: $0)! }
            #expect(CutSchedule.commitment(to: ended.seed) == task.seedHash, "the seed matches the hash published at the start")
            let helps = try await pool.query("SELECT new_user, cut FROM helps WHERE task_id = \(task.taskId.rawValue) ORDER BY step")
            let flags = try helps.map { try $0.decode("new_user", as: Bool.self) }
            let recorded = [3990 - task.priceNow.amount] + (try helps.map { try $0.decode("cut", as: Int64.self) })
            let schedule = CutSchedule(rules: bargainTerms(helpers: 12).bargain!, listPrice: Money(3990, .cny), seed: ended.seed)
            #expect(schedule.replay(newUserFlags: flags) == recorded)
            #expect(flags.filter { $0 }.count == 4)
            let completed = try #require(try await emitted(AssistTaskCompleted.self, on: pool).first)
            #expect(completed.seed == ended.seed)
        }
    }

    @Test func refusalsHaveDistinctTypesAndChangeNothing() async throws {
        try await withAssistsDatabase { pool in
            let campaign = try await knownCampaign(bargainTerms(helpers: 30, dailyLimit: 2, deviceLimit: 3), on: pool)
            let tasks = [
                try await startTask(campaign, initiator: "u-a", on: pool), try await startTask(campaign, initiator: "u-b", on: pool),
                try await startTask(campaign, initiator: "u-c", on: pool),
            ]
            #expect(try await help(tasks[0].taskId, by: "u-a", on: pool) == "own-task")
            #expect(try await help(tasks[0].taskId, by: "u-helper", on: pool) == nil)
            #expect(try await help(tasks[0].taskId, by: "u-helper", on: pool) == "already-helped")
            #expect(try await help(tasks[1].taskId, by: "u-helper", on: pool) == nil)
            #expect(try await help(tasks[2].taskId, by: "u-helper", on: pool) == "daily-limit")
            for (index, task) in tasks.enumerated() {
                #expect(try await help(task.taskId, by: "u-device-\(index)", device: "phone-1", on: pool) == nil)
            }
            #expect(try await help(tasks[0].taskId, by: "u-device-9", device: "phone-1", on: pool) == "device-limit")
            let helps = try await pool.query("SELECT count(*)::int8 AS n FROM helps").single().decode("n", as: Int.self)
            #expect(helps == 5, "refused helps leave no row")
            try await pool.query("UPDATE tasks SET deadline = now() - interval '1 second' WHERE id = \(tasks[1].taskId.rawValue)")
            #expect(try await help(tasks[1].taskId, by: "u-late", on: pool) == "task-closed")
            #expect(try await help(TaskID(), by: "u-late", on: pool) == "not-found")
        }
    }

    @Test func suspiciousBurstsFromOneDeviceAreHeldInsteadOfCounted() async throws {
        try await withAssistsDatabase { pool in
            let campaign = try await knownCampaign(bargainTerms(helpers: 30), on: pool)
            let task = try await startTask(campaign, on: pool)
            var fraud = FraudRules()
            fraud.deviceBurst = 2
            for index in 0..<4 {
                #expect(try await help(task.taskId, by: "u-\(index)", device: "farm-phone", fraud: fraud, on: pool) == nil)
            }
            let held = try await emitted(AssistHeldForReview.self, on: pool)
            #expect(held.count == 2)
            #expect(try await emitted(AssistRecorded.self, on: pool).count == 2)
            let state = try await pool.withConnection { try await TaskBook.find(task.taskId, on: $0)! }
            #expect(state.helperCount == 2, "held helps are not counted")
        }
    }

    /// A scripted farm: 300 fake accounts on 6 phones behind 3 networks, all at once, next to
    /// 100 honest friends each on their own phone and network. The device limit (10 a day) lets
    /// 10 helps per phone through; the velocity rule (more than 5 a minute from one device) holds
    /// the second 5 of those for review; every honest help counts.
    @Test(arguments: [false, true])
    func aFarmOfFakeAccountsSharingPhonesAndNetworksIsLimitedAndHeldForReview(batched: Bool) async throws {
        try await withAssistsDatabase { pool in
            let batcher = batched ? HelpBatcher(pool: pool, fraud: FraudRules(), maxBatch: 16, maxRunning: 4) : nil
            let campaign = try await knownCampaign(bargainTerms(helpers: 30, deviceLimit: 10), on: pool)
            var started: [TaskID] = []
            for index in 0..<30 { started.append(try await startTask(campaign, initiator: "u-initiator-\(index)", on: pool).taskId) }
            let tasks = started
            let farm = (0..<300).map { (helper: "u-farm-\($0)", device: "phone-\($0 % 6)", network: "10.0.\($0 % 3).0/24") }
            let honest = (0..<100).map { (helper: "u-friend-\($0)", device: "own-phone-\($0)", network: "172.16.\($0).0/24") }
            try await markPaid((farm + honest).map(\.helper), on: pool)
            let farmOutcomes = Tally()
            let honestOutcomes = Tally()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, account) in (farm + honest).enumerated() {
                    let tally = index < farm.count ? farmOutcomes : honestOutcomes
                    group.addTask {
                        let refusal = try await help(tasks[index % tasks.count], by: account.helper, device: account.device,
                                                     network: account.network, through: batcher, on: pool)
                        await tally.add(refusal ?? "counted or held")
                    }
                }
                try await group.waitForAll()
            }
            let states = try await pool.query(
                "SELECT state, count(*)::int8 AS n FROM helps WHERE helper_id LIKE 'u-farm-%' GROUP BY state"
            ).reduce(into: [String: Int]()) { $0[try $1.decode("state")] = try $1.decode("n", as: Int.self) }
            let honestCounted = try await pool.query(
                "SELECT count(*)::int8 AS n FROM helps WHERE helper_id LIKE 'u-friend-%' AND state = 'counted'").single().decode("n", as: Int.self)
            print("fraud farm: 300 fake accounts on 6 phones / 3 networks → \(states["counted", default: 0]) counted, "
                  + "\(states["held", default: 0]) held for review, \(await farmOutcomes.counts["device-limit", default: 0]) refused (device limit); "
                  + "100 honest friends → \(honestCounted) counted")
            #expect(await farmOutcomes.counts == ["counted or held": 60, "device-limit": 240])
            #expect(states == ["counted": 30, "held": 30])
            let perPhone = try await pool.query(
                "SELECT device_id, count(*) FILTER (WHERE state = 'counted')::int8 AS counted FROM helps WHERE helper_id LIKE 'u-farm-%' GROUP BY device_id")
            #expect(try perPhone.allSatisfy { try $0.decode("counted", as: Int.self) == 5 })
            #expect(await honestOutcomes.counts == ["counted or held": 100])
            #expect(honestCounted == 100)
            #expect(try await emitted(AssistHeldForReview.self, on: pool).count == 30)
        }
    }

    /// With no daily device limit nothing else makes one phone's helps take turns: the velocity
    /// rule itself must, or concurrent helps each see too few of the others.
    @Test(arguments: [false, true])
    func concurrentBurstsFromOnePhoneAreHeldExactlyWithoutADeviceLimit(batched: Bool) async throws {
        try await withAssistsDatabase { pool in
            let batcher = batched ? HelpBatcher(pool: pool, fraud: FraudRules(), maxBatch: 16, maxRunning: 4) : nil
            let campaign = try await knownCampaign(bargainTerms(helpers: 30), on: pool)
            var started: [TaskID] = []
            for index in 0..<20 { started.append(try await startTask(campaign, initiator: "u-initiator-\(index)", on: pool).taskId) }
            let tasks = started
            let farm = (0..<60).map { "u-farm-\($0)" }
            try await markPaid(farm, on: pool)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, helper) in farm.enumerated() {
                    group.addTask { _ = try await help(tasks[index % tasks.count], by: helper, device: "phone-\(index % 2)", through: batcher, on: pool) }
                }
                try await group.waitForAll()
            }
            let counted = try await pool.query("SELECT count(*)::int8 AS n FROM helps WHERE state = 'counted'").single().decode("n", as: Int.self)
            let held = try await pool.query("SELECT count(*)::int8 AS n FROM helps WHERE state = 'held'").single().decode("n", as: Int.self)
            #expect(counted == 10, "five a minute per phone")
            #expect(held == 50)
        }
    }

    /// Through the batcher, with no limits set: two farm phones, a farm of fresh phones behind
    /// one network, and honest friends each on their own phone and network, all at once. Exactly
    /// five a minute per phone and thirty per network count, and every honest help does.
    @Test func batchedBurstsFromPhonesAndANetworkAreHeldExactly() async throws {
        try await withAssistsDatabase { pool in
            let campaign = try await knownCampaign(bargainTerms(helpers: 100), on: pool)
            var started: [TaskID] = []
            for index in 0..<10 { started.append(try await startTask(campaign, initiator: "u-initiator-\(index)", on: pool).taskId) }
            let tasks = started
            // Two phones, each behind its own network, 20 helps each; and 45 helps from fresh
            // phones all behind one network.
            let farm = (0..<40).map { (helper: "u-farm-\($0)", device: "phone-\($0 % 2)", network: "10.8.\($0 % 2).0/24") }
                + (40..<85).map { (helper: "u-farm-\($0)", device: "fresh-\($0)", network: "10.9.9.0/24") }
            let honest = (0..<40).map { (helper: "u-friend-\($0)", device: "own-\($0)", network: "172.20.\($0).0/24") }
            try await markPaid((farm + honest).map(\.helper), on: pool)
            let batcher = HelpBatcher(pool: pool, fraud: FraudRules(), maxBatch: 16, maxRunning: 4)
            let outcomes = Tally()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, account) in (farm + honest).enumerated() {
                    group.addTask {
                        let refusal = try await help(
                            tasks[index % tasks.count], by: account.helper, device: account.device, network: account.network, through: batcher, on: pool)
                        await outcomes.add(refusal ?? "counted or held")
                    }
                }
                try await group.waitForAll()
            }
            #expect(await outcomes.counts == ["counted or held": 125])
            func count(_ condition: StaticString) async throws -> Int {
                try await pool.query("SELECT count(*)::int8 AS n FROM helps WHERE \(PostgresSQLFragment(stringLiteral: condition))").single().decode("n")
            }
            #expect(try await count("device_id = 'phone-0' AND state = 'counted'") == 5, "five a minute per phone")
            #expect(try await count("device_id = 'phone-1' AND state = 'counted'") == 5, "five a minute per phone")
            #expect(try await count("network = '10.9.9.0/24' AND state = 'counted'") == 30, "thirty a minute per network")
            #expect(try await count("helper_id LIKE 'u-friend-%' AND state = 'counted'") == 40, "every honest help counts")
            #expect(try await emitted(AssistHeldForReview.self, on: pool).count == 15 + 15 + 15)
            #expect(try await emitted(AssistRecorded.self, on: pool).count == 5 + 5 + 30 + 40)
        }
    }

    @Test func tasksExpireExactlyOnceWithTwoSchedulers() async throws {
        try await withAssistsDatabase { pool in
            let campaign = try await knownCampaign(bargainTerms(helpers: 30), on: pool)
            var tasks: [TaskID] = []
            for index in 0..<10 { tasks.append(try await startTask(campaign, initiator: "u-\(index)", on: pool).taskId) }
            try await pool.query("UPDATE scheduled_jobs SET due_at = now() - interval '1 second'")
            let schedulers = (0..<2).map { _ in Scheduler(pool: pool, handlers: AssistsService.scheduledJobs) }
            try await withThrowingTaskGroup(of: Int.self) { group in
                for scheduler in schedulers { group.addTask { try await scheduler.runDueJobs() } }
                try await group.waitForAll()
            }
            let expired = try await emitted(AssistTaskExpired.self, on: pool)
            #expect(expired.count == 10)
            #expect(Set(expired.map(\.taskId)) == Set(tasks))
            #expect(expired.allSatisfy { CutSchedule.commitment(to: $0.seed).count == 64 })
        }
    }
}

actor Tally {
    var counts: [String: Int] = [:]
    func add(_ key: String) { counts[key, default: 0] += 1 }
}
