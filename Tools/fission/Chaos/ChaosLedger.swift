import Foundation

/// Every request of a chaos run's load that a service accepted (answered 2xx), with what it
/// created: afterwards each must be found in the database of the service that accepted it. A
/// request whose answer was lost (the process died mid-request) and that a retry could not
/// confirm is not here: the ledger holds only what a shopper was told had happened.
actor ChaosLedger {
    struct PlacedOrder: Sendable {
        var id: String
        var shopper: String
        var campaign: String
        var purpose: String
        var team: String?
    }

    struct Payment: Sendable {
        var order: String
        var providerRef: String
    }

    struct Help: Sendable {
        var task: String
        var helper: String
    }

    struct StartedTask: Sendable {
        var task: String
        var initiator: String
    }

    struct Click: Sendable {
        var code: String
        var clicker: String
    }

    private(set) var campaigns: [String] = []
    private(set) var orders: [PlacedOrder] = []
    private(set) var payments: [Payment] = []
    private(set) var tasks: [StartedTask] = []
    private(set) var helps: [Help] = []
    private(set) var shares: [String] = []
    private(set) var clicks: [Click] = []
    /// Requests that were answered only after at least one retry.
    private(set) var retriedRequests = 0
    /// Shopper journeys abandoned once a request had failed for the whole patience, by reason.
    private(set) var givenUp: [String: Int] = [:]

    func published(campaign: String) { campaigns.append(campaign) }
    func placed(_ order: PlacedOrder) { orders.append(order) }
    func paid(order: String, providerRef: String) { payments.append(Payment(order: order, providerRef: providerRef)) }
    func started(task: String, by initiator: String) { tasks.append(StartedTask(task: task, initiator: initiator)) }
    func helped(task: String, helper: String) { helps.append(Help(task: task, helper: helper)) }
    func shared(code: String) { shares.append(code) }
    func clicked(code: String, by clicker: String) { clicks.append(Click(code: code, clicker: clicker)) }
    func retried() { retriedRequests += 1 }

    func gaveUp(_ error: any Error) {
        // The kind of failure, without ids, so that alike failures add up.
        let reason = String(describing: error).prefix(60).replacingOccurrences(
            of: "[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}", with: "…", options: .regularExpression)
        givenUp[reason, default: 0] += 1
    }

    var accepted: Int { campaigns.count + orders.count + payments.count + tasks.count + helps.count + shares.count + clicks.count }
}
