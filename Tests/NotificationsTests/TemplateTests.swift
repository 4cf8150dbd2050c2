@testable import NotificationsService
import Domain
import FissionTesting
import Foundation
import Postgres
import ServiceKit
import Testing

@Suite("Templates and milestones")
struct TemplateTests {
    @Test func merchantWordingOverridesTheTemplateForTheirCampaignAndXPMilestonesAreAnnounced() async throws {
        try await withNotificationsDatabase { pool in
            let campaign = CampaignID()
            try await pool.query(
                "INSERT INTO campaign_templates (campaign_id, category, locale, title, body) VALUES (\(campaign.rawValue), 'assistRecorded', 'zh-CN', '茶友助力', '{helper} 为你的龙井砍了 {cut}')")
            var event = help(task: TaskID(), helper: "Li Wei", cut: 320, left: 410, helpersLeft: 3)
            event.data.campaignId = campaign
            try await handle(event, on: pool, NotificationHandlers.assistRecorded)
            #expect(try await inbox("u-li", on: pool).first.map { [$0.title, $0.body] } == ["茶友助力", "Li Wei 为你的龙井砍了 ¥3.20"])
            for (total, points) in [(95, 20), (103, 8), (110, 7)] {
                try await handle(CloudEvent(XPAwarded(userId: "u-xp", entryId: LedgerEntryID(), rule: .friendPurchase, points: points,
                                                      causeEventId: EventID(), totalXP: total, awardedAt: Date())), on: pool, NotificationHandlers.xpAwarded)
            }
            #expect(try await inbox("u-xp", on: pool).map(\.body) == ["你的经验值达到了 100"])
        }
    }

    /// One pass over the template: a value is never read as a placeholder, unknown names and
    /// stray braces stay as written.
    @Test func variablesAreFilledInOnePass() {
        let values = ["helper": "{cut}", "cut": "¥3.20", "left": "¥4"]
        #expect(Templates.fill("{helper} 帮你砍了 {cut}，还差 {left}", values) == "{cut} 帮你砍了 ¥3.20，还差 ¥4")
        #expect(Templates.fill("{unknown} {cut} { {cut {{cut}} }", values) == "{unknown} ¥3.20 { {cut {¥3.20} }")
        #expect(Templates.fill("no variables", values) == "no variables")
        #expect(Templates.fill("{cut}", values) == "¥3.20")
        #expect(Templates.fill("", values) == "")
    }
}
