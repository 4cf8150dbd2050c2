import Domain
import Foundation
import Hummingbird
import Postgres
import ServiceKit

/// Merchants reword their campaign's messages (same `{variables}`), per category and locale.
struct TemplateRoutes {
    let runtime: ServiceRuntime

    struct Override: ResponseEncodable, Codable {
        var category: String
        var locale: String
        var title: String
        var body: String
    }

    func register(on api: RouterGroup<FissionRequestContext>) {
        api.put("/campaigns/{id}/templates", use: put)
    }

    @Sendable func put(_ request: Request, context: FissionRequestContext) async throws -> Override {
        let merchant = try context.require(.merchant)
        let campaign: CampaignID = try context.pathID("id")
        var request = request
        let override = try decodeBody(Override.self, from: try await request.collectBody(upTo: context.maxUploadSize))
        guard Templates.campaignCategories.contains(override.category) else {
            throw Problem.invalidField("category", "one of \(Templates.campaignCategories.sorted().joined(separator: ", "))")
        }
        guard ["zh-CN", "en"].contains(override.locale) else { throw Problem.invalidField("locale", "zh-CN or en") }
        guard !override.title.isEmpty, override.title.count <= 100, override.body.count <= 500 else {
            throw Problem.invalidField("title", "1–100 characters (body at most 500)")
        }
        return try await runtime.pool.withTransaction { connection in
            guard try await !connection.query(
                "SELECT 1 FROM campaign_merchants WHERE campaign_id = \(campaign.rawValue) AND merchant_id = \(merchant.userID.rawValue)"
            ).isEmpty else { throw Problem.notFound("no campaign \(campaign) of yours") }
            try await connection.query(
                """
                INSERT INTO campaign_templates (campaign_id, category, locale, title, body)
                VALUES (\(campaign.rawValue), \(override.category), \(override.locale), \(override.title), \(override.body))
                ON CONFLICT (campaign_id, category, locale) DO UPDATE SET title = EXCLUDED.title, body = EXCLUDED.body
                """)
            return override
        }
    }
}
