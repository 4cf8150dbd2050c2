@testable import CampaignsService
import Domain
import FissionTesting
import Foundation
import Postgres
import ServiceKit
import Testing

@Suite("Group-buy teams")
struct TeamTests {
    func openTeam(_ campaign: CampaignID, leader: String = "u-leader", on pool: PostgresPool) async throws -> TeamID {
        try await handle(orderPaid(campaign, user: leader, purpose: .openTeam), on: pool, TeamHandlers.orderPaid)
        return try #require(try await emitted(TeamOpened.self, on: pool).last?.teamId)
    }

    func members(_ team: TeamID, on pool: PostgresPool) async throws -> Int {
        try await pool.query("SELECT count(*)::int8 AS n FROM team_members WHERE team_id = \(team.rawValue) AND left_at IS NULL")
            .single().decode("n", as: Int.self)
    }

    @Test(arguments: [GroupBuyRules.LatePaymentPolicy.openNewTeam, .refund])
    func teamOfThreeWithConcurrentPaidJoinsEndsFullAndTheRestGetNewTeamsOrRefunds(policy: GroupBuyRules.LatePaymentPolicy) async throws {
        try await withCampaignsDatabase { pool in
            let campaign = try await publishedCampaign(groupBuyTerms(teamSize: 3, policy: policy), on: pool)
            let team = try await openTeam(campaign, on: pool)
            // With the leader's, ten paid orders for this team.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<9 {
                    group.addTask {
                        try await handle(orderPaid(campaign, user: "u-\(index)", purpose: .joinTeam, team: team), on: pool, TeamHandlers.orderPaid)
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await members(team, on: pool) == 3)
            #expect(try await emitted(TeamMemberJoined.self, on: pool).filter { $0.teamId == team }.count == 2)
            let completed = try await emitted(TeamCompleted.self, on: pool)
            #expect(completed.map(\.teamId) == [team])
            #expect(completed.first?.members.count == 3)
            let rejected = try await emitted(TeamJoinRejected.self, on: pool)
            #expect(rejected.count == 7)
            #expect(rejected.allSatisfy { $0.reason == .teamFull })
            if policy == .openNewTeam {
                #expect(rejected.allSatisfy { $0.resolution == .newTeamOpened && $0.newTeamId != nil })
                #expect(try await emitted(TeamOpened.self, on: pool).count == 8)
            } else {
                #expect(rejected.allSatisfy { $0.resolution == .refund && $0.newTeamId == nil })
                #expect(try await emitted(TeamOpened.self, on: pool).count == 1)
            }
        }
    }

    @Test(arguments: [(3, true), (2, false)])
    func virtualCompletionAtExactlyTheThresholdAndExpiryJustUnder(joined: Int, completes: Bool) async throws {
        try await withCampaignsDatabase { pool in
            // Size 4 at 75 %: three real members complete it, two do not.
            let campaign = try await publishedCampaign(groupBuyTerms(teamSize: 4, virtualPercent: 75), on: pool)
            let team = try await openTeam(campaign, on: pool)
            for index in 1..<joined {
                try await handle(orderPaid(campaign, user: "u-\(index)", purpose: .joinTeam, team: team), on: pool, TeamHandlers.orderPaid)
            }
            try await pool.query("UPDATE scheduled_jobs SET due_at = now() - interval '1 second'")
            let ran = try await Scheduler(pool: pool, handlers: CampaignsService.scheduledJobs).runDueJobs()
            #expect(ran == 1)
            if completes {
                let done = try #require(try await emitted(TeamCompleted.self, on: pool).first)
                #expect(done.virtualMembers == 1)
                #expect(done.members.filter(\.virtual).count == 1)
                #expect(done.members.filter { !$0.virtual }.count == 3)
                #expect(try await emitted(TeamExpired.self, on: pool).isEmpty)
            } else {
                #expect(try await emitted(TeamExpired.self, on: pool).map(\.teamId) == [team])
                #expect(try await emitted(TeamCompleted.self, on: pool).isEmpty)
            }
        }
    }

    @Test func teamsExpireExactlyOnceWithTwoSchedulerInstances() async throws {
        try await withCampaignsDatabase { pool in
            let campaign = try await publishedCampaign(groupBuyTerms(teamSize: 5), on: pool)
            var teams: [TeamID] = []
            for index in 0..<20 { teams.append(try await openTeam(campaign, leader: "u-\(index)", on: pool)) }
            try await pool.query("UPDATE scheduled_jobs SET due_at = now() - interval '1 second'")
            let schedulers = (0..<2).map { _ in Scheduler(pool: pool, handlers: CampaignsService.scheduledJobs) }
            try await withThrowingTaskGroup(of: Int.self) { group in
                for scheduler in schedulers { group.addTask { try await scheduler.runDueJobs() } }
                try await group.waitForAll()
            }
            // A late payment for an expired team is not a member of it.
            try await handle(orderPaid(campaign, user: "u-late", purpose: .joinTeam, team: teams[0]), on: pool, TeamHandlers.orderPaid)
            let expired = try await emitted(TeamExpired.self, on: pool).map(\.teamId)
            #expect(expired.count == 20)
            #expect(Set(expired) == Set(teams))
            #expect(try await emitted(TeamJoinRejected.self, on: pool).map(\.reason) == [.teamExpired])
        }
    }

    @Test func leaderWhoRefundsBeforeCompletionHandsLeadershipToTheNextMember() async throws {
        try await withCampaignsDatabase { pool in
            let campaign = try await publishedCampaign(groupBuyTerms(teamSize: 3), on: pool)
            let leaderOrder = OrderID()
            try await handle(orderPaid(campaign, user: "u-leader", purpose: .openTeam, order: leaderOrder), on: pool, TeamHandlers.orderPaid)
            let team = try #require(try await emitted(TeamOpened.self, on: pool).first?.teamId)
            try await handle(orderPaid(campaign, user: "u-second", purpose: .joinTeam, team: team), on: pool, TeamHandlers.orderPaid)
            try await handle(
                OrderRefunded(
                    orderId: leaderOrder, userId: "u-leader", campaignId: campaign, teamId: team, quantity: 1, amount: Money(2490, yuan),
                    reason: .shopper, refundedAt: Date()),
                on: pool, StockHandlers.orderRefunded)
            let change = try #require(try await emitted(TeamLeaderChanged.self, on: pool).first)
            #expect(change.previousLeaderId == "u-leader")
            #expect(change.leaderId == "u-second")
            #expect(try await members(team, on: pool) == 1)
        }
    }
}
