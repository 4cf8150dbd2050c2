import Domain
import Foundation
import Hummingbird
import Postgres
import ServiceKit

/// Merchants create and run campaigns; shoppers browse published ones.
struct CampaignRoutes {
    let runtime: ServiceRuntime

    func register(on api: RouterGroup<FissionRequestContext>) {
        api.post("/campaigns", use: create)
        api.get("/campaigns", use: list)
        api.get("/campaigns/{id}", use: read)
        api.put("/campaigns/{id}", use: update)
        api.post("/campaigns/{id}/publish") { request, context in
            try await transition(request, context, from: [.draft], to: .published)
        }
        api.post("/campaigns/{id}/pause") { request, context in
            try await transition(request, context, from: [.published], to: .paused)
        }
        api.post("/campaigns/{id}/resume") { request, context in
            try await transition(request, context, from: [.paused], to: .published)
        }
        api.post("/campaigns/{id}/end") { request, context in
            try await transition(request, context, from: [.published, .paused], to: .ended)
        }
        api.post("/campaigns/{id}/stock", use: addStock)
        api.post("/campaigns/{id}/audit", use: audit)
    }

    @Sendable func create(_ request: Request, context: FissionRequestContext) async throws -> Response {
        let merchant = try context.require(.merchant)
        return try await runtime.idempotency.run(request, context: context, scope: merchant.userID.rawValue, keyRequired: false) { body, connection in
            let draft = try decodeBody(CampaignDraft.self, from: body)
            try draft.validate()
            let id = CampaignID()
            try await connection.query(
                """
                INSERT INTO campaigns (id, merchant_id, status, kind, terms, stock_left, attribution_window_seconds)
                VALUES (\(id.rawValue), \(merchant.userID.rawValue), 'draft', \(draft.terms.kind.rawValue),
                        \(PostgresJSON(draft.terms)), \(draft.terms.stock), \(draft.attributionWindowSeconds ?? 604_800))
                """)
            return try await CampaignStore.find(id, on: connection)!
        }
    }

    /// Replaces the terms of a draft; a published campaign's promises are fixed (stock can grow).
    @Sendable func update(_ request: Request, context: FissionRequestContext) async throws -> CampaignView {
        let merchant = try context.require(.merchant)
        let id: CampaignID = try context.pathID("id")
        var request = request
        let draft = try decodeBody(CampaignDraft.self, from: try await request.collectBody(upTo: context.maxUploadSize))
        try draft.validate()
        return try await runtime.pool.withTransaction { connection in
            let campaign = try await owned(id, by: merchant, on: connection)
            guard campaign.status == .draft else {
                throw Problem.conflict(kind: "not-draft", "only a draft can be edited; add stock with POST /campaigns/{id}/stock")
            }
            try await connection.query(
                """
                UPDATE campaigns SET terms = \(PostgresJSON(draft.terms)), kind = \(draft.terms.kind.rawValue),
                    stock_left = \(draft.terms.stock), attribution_window_seconds = \(draft.attributionWindowSeconds ?? campaign.attributionWindowSeconds),
                    updated_at = now()
                WHERE id = \(id.rawValue)
                """)
            return try await CampaignStore.find(id, on: connection)!
        }
    }

    @Sendable func transition(
        _ request: Request, _ context: FissionRequestContext, from allowed: Set<CampaignStatus>, to target: CampaignStatus
    ) async throws -> CampaignView {
        let merchant = try context.require(.merchant)
        let id: CampaignID = try context.pathID("id")
        return try await runtime.pool.withTransaction { connection in
            let campaign = try await owned(id, by: merchant, on: connection, lock: true)
            if campaign.status == target { return campaign }  // a retried request changes nothing
            guard allowed.contains(campaign.status) else {
                throw Problem.conflict(kind: "invalid-transition", "a \(campaign.status.rawValue) campaign cannot become \(target.rawValue)")
            }
            if target == .published, campaign.auditStatus == "rejected" {
                throw Problem.conflict(kind: "audit-rejected", "an operator rejected this campaign")
            }
            let now = Date()
            try await connection.query(
                """
                UPDATE campaigns SET status = \(target.rawValue), updated_at = now(),
                    published_at = CASE WHEN \(target == .published) AND published_at IS NULL THEN now() ELSE published_at END
                WHERE id = \(id.rawValue)
                """)
            let correlation = context.requestID
            switch (campaign.status, target) {
            case (.draft, .published):
                try await Outbox.append(
                    CampaignPublished(campaignId: id, merchantId: campaign.merchantId, terms: campaign.terms, publishedAt: now),
                    correlationID: correlation, on: connection)
            case (_, .paused):
                try await Outbox.append(CampaignPaused(campaignId: id, pausedAt: now), correlationID: correlation, on: connection)
            case (.paused, .published):
                try await Outbox.append(CampaignResumed(campaignId: id, resumedAt: now), correlationID: correlation, on: connection)
            case (_, .ended):
                try await Outbox.append(CampaignEnded(campaignId: id, reason: .merchant, endedAt: now), correlationID: correlation, on: connection)
            default:
                break
            }
            return try await CampaignStore.find(id, on: connection)!
        }
    }

    struct StockChange: Codable { var add: Int }

    /// Adds stock to a published campaign (the one change allowed after publishing).
    @Sendable func addStock(_ request: Request, context: FissionRequestContext) async throws -> Response {
        let merchant = try context.require(.merchant)
        let id: CampaignID = try context.pathID("id")
        return try await runtime.idempotency.run(
            request, context: context, scope: merchant.userID.rawValue, keyRequired: false, status: .ok
        ) { body, connection in
            let change = try decodeBody(StockChange.self, from: body)
            guard (1...1_000_000).contains(change.add) else { throw Problem.invalidField("add", "must be between 1 and 1000000") }
            var campaign = try await owned(id, by: merchant, on: connection, lock: true)
            guard campaign.status != .ended else { throw Problem.conflict(kind: "invalid-transition", "the campaign has ended") }
            campaign.terms.stock += change.add
            let left = try await connection.query(
                """
                UPDATE campaigns SET stock_left = stock_left + \(change.add), terms = \(PostgresJSON(campaign.terms)), updated_at = now()
                WHERE id = \(id.rawValue) RETURNING stock_left
                """).single().decode("stock_left", as: Int.self)
            if campaign.status != .draft {
                try await Outbox.append(
                    CampaignUpdated(campaignId: id, terms: campaign.terms, stockLeft: left, updatedAt: Date()),
                    correlationID: context.requestID, on: connection)
            }
            return try await CampaignStore.find(id, on: connection)!
        }
    }

    struct AuditDecision: Codable { var status: String }

    /// Operators approve or reject campaigns; a rejected one cannot be published.
    @Sendable func audit(_ request: Request, context: FissionRequestContext) async throws -> CampaignView {
        _ = try context.require(.operator)
        let id: CampaignID = try context.pathID("id")
        var request = request
        let decision = try decodeBody(AuditDecision.self, from: try await request.collectBody(upTo: context.maxUploadSize))
        guard ["approved", "rejected"].contains(decision.status) else {
            throw Problem.invalidField("status", "must be approved or rejected")
        }
        return try await runtime.pool.withTransaction { connection in
            guard try await connection.query(
                "UPDATE campaigns SET audit_status = \(decision.status), updated_at = now() WHERE id = \(id.rawValue)"
            ).affectedRows == 1 else { throw Problem.notFound("no campaign \(id)") }
            return try await CampaignStore.find(id, on: connection)!
        }
    }

    /// Shoppers (and anonymous visitors) see published, paused and ended campaigns; the owning
    /// merchant also sees drafts.
    @Sendable func read(_ request: Request, context: FissionRequestContext) async throws -> CampaignView {
        let id: CampaignID = try context.pathID("id")
        guard let campaign = try await runtime.pool.withConnection({ try await CampaignStore.find(id, on: $0) }) else {
            throw Problem.notFound("no campaign \(id)")
        }
        if campaign.status == .draft, context.identity?.userID != campaign.merchantId {
            throw Problem.notFound("no campaign \(id)")
        }
        return campaign
    }

    struct CampaignPage: ResponseEncodable {
        var items: [CampaignView]
        var nextCursor: String?
    }

    /// Published campaigns, newest first (`?mine=true` for a merchant's own, drafts included).
    @Sendable func list(_ request: Request, context: FissionRequestContext) async throws -> CampaignPage {
        let limit = min(max(request.uri.queryParameters.get("limit", as: Int.self) ?? 20, 1), 100)
        // A cursor before 1970 (nothing was created then) is the epoch: PostgreSQL refuses year 1 and earlier.
        let before = request.uri.queryParameters.get("cursor").flatMap { EventCoding.parseTimestamp(String($0)) }
            .map { max($0, Date(timeIntervalSince1970: 0)) } ?? .distantFuture
        let rows: PostgresRows
        if request.uri.queryParameters.get("mine") == "true" {
            let merchant = try context.require(.merchant)
            rows = try await runtime.pool.query(
                """
                SELECT \(CampaignStore.columns) FROM campaigns WHERE merchant_id = \(merchant.userID.rawValue) AND created_at < \(before)
                ORDER BY created_at DESC LIMIT \(limit)
                """)
        } else {
            rows = try await runtime.pool.query(
                """
                SELECT \(CampaignStore.columns) FROM campaigns WHERE status = 'published' AND published_at < \(before)
                ORDER BY published_at DESC LIMIT \(limit)
                """)
        }
        let items = try rows.map(CampaignStore.view)
        let last = items.last.flatMap { request.uri.queryParameters.get("mine") == "true" ? $0.createdAt : $0.publishedAt }
        return CampaignPage(items: items, nextCursor: items.count == limit ? last.map(EventCoding.formatTimestamp) : nil)
    }

    private func owned(_ id: CampaignID, by merchant: Identity, on connection: PostgresConnection, lock: Bool = false) async throws -> CampaignView {
        guard let campaign = try await CampaignStore.find(id, on: connection, lock: lock), campaign.merchantId == merchant.userID else {
            throw Problem.notFound("no campaign \(id) of yours")
        }
        return campaign
    }
}

extension CampaignView: ResponseEncodable {}
