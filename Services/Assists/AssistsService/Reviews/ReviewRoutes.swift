import Domain
import Foundation
import Hummingbird
import Postgres
import ServiceKit

/// Operators decide on held helps. Every decision is recorded with who and why; an approved
/// help counts as of the decision (if its task is still open), a rejected one never.
struct ReviewRoutes {
    let runtime: ServiceRuntime

    struct HeldHelp: ResponseEncodable, Codable {
        var helpId: HelpID
        var taskId: TaskID
        var helperId: UserID
        var deviceId: String?
        var network: String?
        var heldAt: Date
    }

    struct Decision: Codable {
        var decision: String
        var reason: String
    }

    func register(on api: RouterGroup<FissionRequestContext>) {
        api.get("/reviews", use: queue)
        api.post("/reviews/{id}", use: decide)
    }

    @Sendable func queue(_ request: Request, context: FissionRequestContext) async throws -> [HeldHelp] {
        _ = try context.require(.operator)
        return try await runtime.pool.query(
            "SELECT id, task_id, helper_id, device_id, network, created_at FROM helps WHERE state = 'held' ORDER BY created_at LIMIT 200"
        ).map { row in
            HeldHelp(helpId: HelpID(rawValue: try row.decode("id")), taskId: TaskID(rawValue: try row.decode("task_id")),
                     helperId: UserID(rawValue: try row.decode("helper_id")), deviceId: try row.decode("device_id"),
                     network: try row.decode("network"), heldAt: try row.decode("created_at"))
        }
    }

    @Sendable func decide(_ request: Request, context: FissionRequestContext) async throws -> TaskState {
        let reviewer = try context.require(.operator)
        let helpID: HelpID = try context.pathID("id")
        var request = request
        let decision = try decodeBody(Decision.self, from: try await request.collectBody(upTo: context.maxUploadSize))
        guard ["approved", "rejected"].contains(decision.decision) else { throw Problem.invalidField("decision", "must be approved or rejected") }
        guard !decision.reason.trimmingCharacters(in: .whitespaces).isEmpty else { throw Problem.invalidField("reason", "must say why") }
        return try await runtime.pool.withTransaction { connection in
            guard let help = try await connection.query(
                "SELECT task_id, helper_id, new_user, share_id, referrer_id, state FROM helps WHERE id = \(helpID.rawValue) FOR UPDATE"
            ).first else { throw Problem.notFound("no help \(helpID)") }
            guard try help.decode("state", as: String.self) == "held" else {
                throw Problem.conflict(kind: "already-decided", "this help was decided before")
            }
            let taskID = TaskID(rawValue: try help.decode("task_id"))
            guard var task = try await TaskBook.find(taskID, on: connection, lock: true) else { throw Problem.notFound("no task") }
            try await connection.query(
                """
                INSERT INTO review_decisions (help_id, decision, operator_id, reason)
                VALUES (\(helpID.rawValue), \(decision.decision), \(reviewer.userID.rawValue), \(decision.reason))
                """)
            let open = task.status == "open" && Date() < task.deadline
            if decision.decision == "approved", open, let (_, terms) = try await ReadModels.rules(task.campaign, on: connection) {
                let helper = TaskBook.Helper(
                    id: UserID(rawValue: try help.decode("helper_id")), newUser: try help.decode("new_user"),
                    shareID: try help.decode("share_id", as: UUID?.self).map(ShareID.init(rawValue:)),
                    referrer: try help.decode("referrer_id", as: String?.self).map(UserID.init(rawValue:)))
                try await TaskBook.count(helpID, helper: helper, task: &task, terms: terms, correlation: context.requestID, on: connection)
            } else {
                try await connection.query("UPDATE helps SET state = 'rejected' WHERE id = \(helpID.rawValue)")
            }
            return try await TaskBook.find(taskID, on: connection)!.state
        }
    }
}
