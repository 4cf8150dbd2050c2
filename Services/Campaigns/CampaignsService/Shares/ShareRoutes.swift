import Domain
import Foundation
import HTTPTypes
import Hummingbird
import Postgres
import ServiceKit

/// Share links: a short code naming sharer, target and channel; opening it records a click.
struct ShareRoutes {
    let runtime: ServiceRuntime

    struct NewShare: Codable, Sendable {
        var campaignId: CampaignID
        var target: ShareTarget
        var channel: ShareChannel
    }

    struct ShareView: ResponseEncodable, Codable, Sendable {
        var shareId: ShareID
        var code: String
        var campaignId: CampaignID
        var target: ShareTarget
        var channel: ShareChannel
        var sharerId: UserID
    }

    func register(on api: RouterGroup<FissionRequestContext>) {
        api.post("/shares", use: create)
        api.get("/s/{code}", use: open)
    }

    @Sendable func create(_ request: Request, context: FissionRequestContext) async throws -> Response {
        let sharer = try context.require(.shopper)
        try context.admit("share", request, limits: runtime.rateLimits)
        return try await runtime.idempotency.run(request, context: context, scope: sharer.userID.rawValue, keyRequired: false) { body, connection in
            let share = try decodeBody(NewShare.self, from: body)
            guard let campaign = try await CampaignStore.find(share.campaignId, on: connection), campaign.status == .published else {
                throw Problem.invalidField("campaignId", "is not a published campaign")
            }
            guard share.target.kind != .campaign || share.target.id.lowercased() == share.campaignId.description else {
                throw Problem.invalidField("target.id", "must be the campaign's id for a campaign target")
            }
            let id = ShareID()
            var code = ""
            // Codes are random; a collision (rare) just draws again.
            for _ in 0..<5 {
                code = Self.newCode()
                let inserted = try await connection.withSavepoint {
                    try await connection.query(
                        """
                        INSERT INTO shares (id, code, sharer_id, campaign_id, target_kind, target_id, channel)
                        VALUES (\(id.rawValue), \(code), \(sharer.userID.rawValue), \(share.campaignId.rawValue),
                                \(share.target.kind.rawValue), \(share.target.id), \(share.channel.rawValue))
                        ON CONFLICT (code) DO NOTHING
                        """).affectedRows == 1
                }
                if inserted { break }
                code = ""
            }
            guard !code.isEmpty else { throw Problem(.serviceUnavailable, kind: "code-space-exhausted", title: "Try again") }
            try await Statistics.add(1, to: "shares", of: share.campaignId, on: connection)
            try await Fission.participate(sharer.userID, in: share.campaignId, at: Date(), on: connection)
            try await Outbox.append(
                ShareCreated(
                    shareId: id, code: code, sharerId: sharer.userID, campaignId: share.campaignId, target: share.target,
                    channel: share.channel, createdAt: Date()),
                correlationID: context.requestID, on: connection)
            return ShareView(shareId: id, code: code, campaignId: share.campaignId, target: share.target, channel: share.channel, sharerId: sharer.userID)
        }
    }

    /// Resolves a code to its target and records the click: the logged-in clicker, or the
    /// anonymous visitor id from `X-Visitor-ID`.
    @Sendable func open(_ request: Request, context: FissionRequestContext) async throws -> ShareView {
        guard let code = context.parameters.get("code"), code.count <= 16 else { throw Problem.notFound("no such share") }
        let visitor = request.headers[HTTPField.Name("X-Visitor-ID")!].map { String($0.prefix(64)) }
        return try await runtime.pool.withTransaction { connection in
            guard let row = try await connection.query(
                "SELECT id, sharer_id, campaign_id, target_kind, target_id, channel FROM shares WHERE code = \(code)"
            ).first else { throw Problem.notFound("no share \(code)") }
            let view = ShareView(
                shareId: ShareID(rawValue: try row.decode("id")), code: code, campaignId: CampaignID(rawValue: try row.decode("campaign_id")),
                target: ShareTarget(kind: ShareTargetKind(rawValue: try row.decode("target_kind")) ?? .campaign, id: try row.decode("target_id")),
                channel: ShareChannel(rawValue: try row.decode("channel")) ?? .other, sharerId: UserID(rawValue: try row.decode("sharer_id")))
            let clicker = context.identity?.userID
            try await connection.query(
                """
                INSERT INTO share_clicks (share_id, campaign_id, sharer_id, clicker_id, visitor_id)
                VALUES (\(view.shareId.rawValue), \(view.campaignId.rawValue), \(view.sharerId.rawValue), \(clicker?.rawValue), \(visitor))
                """)
            try await Statistics.add(1, to: "clicks", of: view.campaignId, on: connection)
            try await Outbox.append(
                ShareClicked(shareId: view.shareId, code: code, sharerId: view.sharerId, campaignId: view.campaignId, clickerId: clicker, clickedAt: Date()),
                correlationID: context.requestID, on: connection)
            return view
        }
    }

    static func newCode() -> String {
        let alphabet = Array("23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ")
        return String((0..<8).map { _ in alphabet.randomElement()! })
    }
}
