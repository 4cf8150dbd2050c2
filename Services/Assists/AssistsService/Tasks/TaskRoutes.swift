import Domain
import Foundation
import HTTPTypes
import Hummingbird
import Postgres
import ServiceKit

struct TaskRoutes {
    let runtime: ServiceRuntime
    let fraud: FraudRules
    let helps: HelpBatcher

    init(runtime: ServiceRuntime, fraud: FraudRules) {
        self.runtime = runtime
        self.fraud = fraud
        self.helps = HelpBatcher(pool: runtime.pool, fraud: fraud)
    }

    struct StartTask: Codable { var campaignId: CampaignID }

    struct HelpResult: ResponseEncodable {
        /// `counted`, or `held` for review.
        var outcome: String
        var cut: Money?
        var task: TaskState
    }

    struct Verification: ResponseEncodable {
        var taskId: TaskID
        var seed: String
        var seedHash: String
        var procedure: String
        /// In order: the initiator's first cut, then one per counted help.
        var cuts: [Int64]
        var helps: [VerifiedHelp]
    }

    struct VerifiedHelp: Codable {
        var step: Int
        var helperId: UserID
        var newUser: Bool
        var cut: Int64
    }

    func register(on api: RouterGroup<FissionRequestContext>) {
        api.post("/tasks", use: start)
        api.get("/tasks/{id}", use: read)
        api.post("/tasks/{id}/helps", use: help)
        api.get("/tasks/{id}/verification", use: verification)
    }

    @Sendable func start(_ request: Request, context: FissionRequestContext) async throws -> Response {
        let shopper = try context.require(.shopper)
        return try await runtime.idempotency.run(request, context: context, scope: shopper.userID.rawValue, keyRequired: false) { body, connection in
            let start = try decodeBody(StartTask.self, from: body)
            return try await TaskBook.start(campaign: start.campaignId, initiator: shopper.userID, correlation: context.requestID, on: connection)
        }
    }

    @Sendable func read(_ request: Request, context: FissionRequestContext) async throws -> TaskState {
        let id: TaskID = try context.pathID("id")
        guard let task = try await runtime.pool.withConnection({ try await TaskBook.find(id, on: $0) }) else {
            throw Problem.notFound("no task \(id)")
        }
        return task.state
    }

    /// A friend helps. Device id and client network come with the request (`X-Device-ID`,
    /// `X-Forwarded-For`); a refusal is a 4xx problem with its own type and changes nothing.
    @Sendable func help(_ request: Request, context: FissionRequestContext) async throws -> Response {
        let helper = try context.require(.shopper)
        try context.admit("help", request, limits: runtime.rateLimits)
        let id: TaskID = try context.pathID("id")
        let help = HelpRequest(
            task: id, helper: helper.userID,
            device: request.headers[HTTPField.Name("X-Device-ID")!].map { String($0.prefix(128)) },
            network: Self.network(request))
        let outcome = try await helps.help(help, correlation: context.requestID)
        switch outcome {
        case .counted(let state, let cut):
            return try .json(.ok, HelpResult(outcome: "counted", cut: cut, task: state))
        case .held(let state):
            return try .json(.accepted, HelpResult(outcome: "held", cut: nil, task: state))
        }
    }

    /// After a task ended: its seed and every cut, to recompute with `CutSchedule.replay`.
    @Sendable func verification(_ request: Request, context: FissionRequestContext) async throws -> Verification {
        let id: TaskID = try context.pathID("id")
        return try await runtime.pool.withConnection { connection in
            guard let task = try await TaskBook.find(id, on: connection) else { throw Problem.notFound("no task \(id)") }
            guard task.status != "open" else {
                throw Problem.conflict(kind: "task-open", "the seed is revealed when the task has ended; its hash is \(task.seedHash)")
            }
            let helps = try await connection.query(
                "SELECT step, helper_id, new_user, cut FROM helps WHERE task_id = \(id.rawValue) AND state = 'counted' ORDER BY step"
            ).map { row in
                VerifiedHelp(step: try row.decode("step"), helperId: UserID(rawValue: try row.decode("helper_id")),
                             newUser: try row.decode("new_user"), cut: try row.decode("cut"))
            }
            let first = task.listPrice - task.priceNow - helps.reduce(0) { $0 + $1.cut }
            return Verification(
                taskId: id, seed: task.seed, seedHash: task.seedHash,
                procedure: "docs/cut-schedule.md: check sha256(seed) == seedHash, then CutSchedule.replay(newUserFlags:) over the helps in step order",
                cuts: task.kind == .bargain ? [first] + helps.map(\.cut) : [], helps: helps)
        }
    }

    /// The client's network: the first X-Forwarded-For address (set by the ingress), IPv4
    /// grouped by /24 so one household or office counts as one network.
    static func network(_ request: Request) -> String? {
        guard let address = request.forwardedClientAddress else { return nil }
        let octets = address.split(separator: ".")
        if octets.count == 4 { return octets.prefix(3).joined(separator: ".") + ".0/24" }
        return address.isEmpty ? nil : String(address.prefix(64))
    }
}
