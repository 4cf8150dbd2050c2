import Domain
import FissionTesting
import Foundation
import Postgres
import ServiceKit

/// The events a topic holds, read from its beginning with `kcat` (one process per topic, exiting
/// at the end of every partition).
struct TopicContents: Sendable {
    struct Position: Sendable {
        var partition: Int
        var offset: Int
    }

    /// Event id → event type.
    var events: [String: String] = [:]
    /// Where each event first appears (a relay that died before marking a row published sends
    /// it again later; consumers skip the copy).
    var firstSeen: [String: Position] = [:]
    /// A partition whose first record is not at offset 0 lost its oldest records to the local
    /// broker's 5 MiB-per-partition limit: its events cannot all be looked for.
    var truncated = false

    static func read(_ topic: String, bootstrap: String) async throws -> TopicContents {
        let output = try await ChildProcess.run(
            "/usr/bin/env", ["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p %o %s\\n"],
            timeLimit: .seconds(120))
        var contents = TopicContents()
        var firstOffsets: [Int: Int] = [:]
        struct Envelope: Decodable { var id: String; var type: String }
        for line in output.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 2)
            guard fields.count == 3, let partition = Int(fields[0]), let offset = Int(fields[1]) else { continue }
            firstOffsets[partition] = min(firstOffsets[partition] ?? offset, offset)
            if let envelope = try? JSONDecoder().decode(Envelope.self, from: Data(fields[2].utf8)) {
                let id = envelope.id.lowercased()
                contents.events[id] = envelope.type
                if contents.firstSeen[id].map({ $0.offset > offset }) ?? true {
                    contents.firstSeen[id] = Position(partition: partition, offset: offset)
                }
            }
        }
        contents.truncated = firstOffsets.values.contains { $0 > 0 }
        return contents
    }
}

/// One database pool per service, for the checks.
struct ServiceDatabases {
    let pools: [String: PostgresPool]

    init(_ databases: [String: PostgresConfiguration]) {
        pools = databases.mapValues { PostgresPool(configuration: $0, options: .init(maxConnections: 2)) }
    }

    subscript(_ service: String) -> PostgresPool { pools[service]! }

    func close() async {
        for pool in pools.values { await pool.close() }
    }

    /// Published events per type, over every service's outbox.
    func publishedPerType() async throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for pool in pools.values {
            for row in try await pool.query(
                "SELECT event_type, count(*)::int AS n FROM outbox_history WHERE published_at IS NOT NULL GROUP BY event_type") {
                counts[try row.decode("event_type"), default: 0] += try row.decode("n", as: Int.self)
            }
        }
        return counts
    }

    /// What a service's consumer group recorded in its inbox, per event type.
    func handledPerType(by service: String) async throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for row in try await self[service].query(
            "SELECT event_type, count(*)::int AS n FROM inbox WHERE consumer = \(service) GROUP BY event_type") {
            counts[try row.decode("event_type")] = try row.decode("n", as: Int.self)
        }
        return counts
    }
}

/// How long after the last fault each service had caught up: ready, its outbox drained, and its
/// consumer group past every published event of the types it handles (in its inbox, or in its
/// dead-letter topic).
///
/// The types a group handles are the ones its inbox has recorded: the handler tables are each
/// service's own, and an inbox row is written for every event a handler exists for.
struct CatchUp {
    let stack: LocalStack

    /// Seconds from `faultEnded` to the first moment each service was caught up (nil: not within
    /// `limit`), and what each one still lacked when the wait ended.
    func measure(from faultEnded: Date, limit: TimeInterval = 300) async throws -> (seconds: [String: TimeInterval], lacking: [String: String]) {
        let databases = ServiceDatabases(stack.databases)
        var caughtUp: [String: TimeInterval] = [:]
        var lacking: [String: String] = [:]
        var deadLetters: [String: [String: Int]] = [:]
        var deadLettersRead = Date.distantPast
        let started = Date()
        while caughtUp.count < LocalStack.services.count && Date().timeIntervalSince(started) < limit {
            do {
                // Dead letters are rare and reading the topics takes a process each: only while a
                // consumer seems behind, and every ten seconds at most.
                if lacking.values.contains(where: { $0.contains("to consume") }), Date().timeIntervalSince(deadLettersRead) > 10 {
                    deadLetters = try await Self.deadLettersPerType(bootstrap: stack.bootstrap)
                    deadLettersRead = Date()
                }
                let published = try await databases.publishedPerType()
                for service in LocalStack.services where caughtUp[service] == nil {
                    let ready = (try? await HTTP.call("GET", "\(stack.url(service))/health/ready"))?.0 == 200
                    let backlog = try await databases[service].query(
                        "SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL").single().decode("n", as: Int.self)
                    let handled = try await databases.handledPerType(by: service)
                    let behind = handled.keys.reduce(0) { sum, type in
                        sum + max(0, published[type, default: 0] - handled[type, default: 0] - (deadLetters[service]?[type] ?? 0))
                    }
                    if ready && backlog == 0 && behind == 0 {
                        caughtUp[service] = Date().timeIntervalSince(faultEnded)
                        lacking[service] = nil
                    } else {
                        lacking[service] = [ready ? nil : "not ready", backlog > 0 ? "\(backlog) events to publish" : nil,
                                            behind > 0 ? "\(behind) events to consume" : nil].compactMap { $0 }.joined(separator: ", ")
                    }
                }
            } catch {
                lacking["(checker)"] = "\(error)"
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
        await databases.close()
        return (caughtUp, lacking)
    }

    /// Dead-lettered events per consumer group and event type.
    static func deadLettersPerType(bootstrap: String) async throws -> [String: [String: Int]] {
        var counts: [String: [String: Int]] = [:]
        for service in LocalStack.services {
            let contents = try await TopicContents.read(Topics.deadLetter(of: service), bootstrap: bootstrap)
            for type in contents.events.values { counts[service, default: [:]][type, default: 0] += 1 }
        }
        return counts
    }
}

/// The end-of-run audit: every accepted request found in the database of the service that
/// accepted it, every event published and consumed, no effect doubled (the demo's invariant
/// checker, extended), stock and cuts exact.
struct ChaosAudit {
    let stack: LocalStack
    let ledger: ChaosLedger

    /// One figure of the table: how many, and a few examples.
    struct Figure: Sendable {
        var name: String
        var count: Int
        var checked: Int
        var examples: [String]
        /// Part of the verdict (a non-zero count fails the run) or only shown.
        var mustBeZero: Bool
    }

    func run() async throws -> (figures: [Figure], invariants: [InvariantChecker.Outcome]) {
        let databases = ServiceDatabases(stack.databases)
        do {
            var figures = try await acceptedRequests(databases)
            figures += try await events(databases)
            await databases.close()
            let invariants = try await InvariantChecker(databases: stack.databases).checkAll()
            return (figures, invariants)
        } catch {
            await databases.close()
            throw error
        }
    }

    /// Each ledger entry, looked for where it must be.
    private func acceptedRequests(_ databases: ServiceDatabases) async throws -> [Figure] {
        func set(_ service: String, _ query: PostgresQuery) async throws -> Set<String> {
            Set(try await databases[service].query(query).map { try $0.decode(0, as: String.self).lowercased() })
        }
        var lost: [String] = []
        var checked = 0
        func expect(_ found: Bool, _ what: @autoclosure () -> String) {
            checked += 1
            if !found { lost.append(what()) }
        }
        let campaigns = try await set("campaigns", "SELECT id::text FROM campaigns")
        for id in await ledger.campaigns { expect(campaigns.contains(id.lowercased()), "campaign \(id) published, unknown to campaigns") }

        var orderStates: [String: String] = [:]
        for row in try await databases["orders"].query("SELECT id::text AS id, state FROM orders") {
            orderStates[try row.decode("id", as: String.self)] = try row.decode("state", as: String.self)
        }
        let orders = await ledger.orders
        for order in orders { expect(orderStates[order.id.lowercased()] != nil, "order \(order.id) (\(order.purpose)) placed, unknown to orders") }

        let paymentRefs = try await set("orders", "SELECT provider_ref FROM payments")
        let members = try await set("campaigns", "SELECT order_id::text FROM team_members")
        let purposes = Dictionary(orders.map { ($0.id.lowercased(), $0.purpose) }) { first, _ in first }
        for payment in await ledger.payments {
            let order = payment.order.lowercased()
            expect(paymentRefs.contains(payment.providerRef.lowercased()), "payment \(payment.providerRef) of order \(order) acknowledged, unknown to orders")
            // Once everything settled, a paid order is confirmed or was refunded; a paid group-buy
            // order sits in a team unless it was refunded.
            let state = orderStates[order] ?? "unknown"
            expect(state == "confirmed" || state == "refunded", "order \(order) paid, yet \(state) after settling")
            if purposes[order] == "openTeam" || purposes[order] == "joinTeam" {
                expect(members.contains(order) || state == "refunded", "order \(order) paid for a team seat, in no team and not refunded")
            }
        }

        let tasks = try await set("assists", "SELECT id::text FROM tasks")
        for task in await ledger.tasks { expect(tasks.contains(task.task.lowercased()), "task \(task.task) started, unknown to assists") }
        let helps = try await set("assists", "SELECT task_id::text || ' ' || helper_id FROM helps")
        for help in await ledger.helps {
            expect(helps.contains("\(help.task.lowercased()) \(help.helper.lowercased())"), "help by \(help.helper) on task \(help.task) accepted, unknown to assists")
        }
        let shares = try await set("campaigns", "SELECT code FROM shares")
        for code in await ledger.shares { expect(shares.contains(code.lowercased()), "share \(code) created, unknown to campaigns") }
        let clicks = try await set(
            "campaigns", "SELECT s.code || ' ' || c.clicker_id FROM share_clicks c JOIN shares s ON s.id = c.share_id WHERE c.clicker_id IS NOT NULL")
        for click in await ledger.clicks {
            expect(clicks.contains("\(click.code.lowercased()) \(click.clicker.lowercased())"), "open of \(click.code) by \(click.clicker) answered, no click recorded")
        }
        return [Figure(name: "accepted requests lost", count: lost.count, checked: checked, examples: Array(lost), mustBeZero: true)]
    }

    /// Every event in an outbox was published and is on its topic; every event of a type a
    /// consumer group handles is in that group's inbox or its dead-letter topic.
    private func events(_ databases: ServiceDatabases) async throws -> [Figure] {
        var unpublished: [String] = []
        var outboxDeadLetters = 0
        var outbox: [String: (type: String, topic: String)] = [:]
        // Per topic and aggregate, its events in the order they were written.
        var written: [String: [(sequence: Int64, id: String)]] = [:]
        for service in LocalStack.services {
            for row in try await databases[service].query(
                "SELECT id, event_id::text AS event_id, event_type, topic, key, published_at IS NOT NULL AS published FROM outbox_history") {
                let id: String = try row.decode("event_id"), type: String = try row.decode("event_type"), topic: String = try row.decode("topic")
                outbox[id] = (type, topic)
                written["\(topic) \(try row.decode("key", as: String.self))", default: []].append((try row.decode("id"), id))
                if !(try row.decode("published", as: Bool.self)) { unpublished.append("\(service): \(type) \(id) never published") }
            }
            // Refused by the broker and set aside by the relay: written, never published.
            let deadLetters = try await OutboxDeadLetters.list(on: databases[service])
            for letter in deadLetters {
                unpublished.append(
                    "\(service): \(letter.eventType) \(letter.eventID.uuidString.lowercased()) dead-lettered by the relay: \(letter.error)")
            }
            outboxDeadLetters += deadLetters.count
        }
        var onTopics: [String: String] = [:]
        var firstSeen: [String: TopicContents.Position] = [:]
        var truncated: [String] = []
        for topic in Topics.all.map(\.name) {
            let contents = try await TopicContents.read(topic, bootstrap: stack.bootstrap)
            onTopics.merge(contents.events) { first, _ in first }
            firstSeen.merge(contents.firstSeen) { first, _ in first }
            if contents.truncated { truncated.append(topic) }
        }
        var missing: [String] = []
        for (id, event) in outbox where onTopics[id] == nil && !truncated.contains(event.topic) {
            missing.append("\(event.type) \(id) marked published, not on \(event.topic)")
        }
        // Events of one aggregate reach their partition in the order they were written (first
        // copies; a later re-send of an event already delivered is a duplicate, not a reordering).
        var disordered: [String] = []
        for (aggregate, events) in written where events.count > 1 {
            let positions = events.sorted { $0.sequence < $1.sequence }.compactMap { firstSeen[$0.id] }
            let inOrder = zip(positions, positions.dropFirst()).allSatisfy { $0.partition == $1.partition && $0.offset < $1.offset }
            if !inOrder { disordered.append("\(aggregate): \(events.count) events, not in the order written") }
        }
        var deadLettered: [String] = []
        var notConsumed: [String] = []
        var consumptions = 0
        for service in LocalStack.services {
            let dead = try await TopicContents.read(Topics.deadLetter(of: service), bootstrap: stack.bootstrap)
            deadLettered += dead.events.map { "\(service): \($0.value) \($0.key)" }
            var handled: [String: Set<String>] = [:]
            for row in try await databases[service].query("SELECT event_id::text AS id, event_type FROM inbox WHERE consumer = \(service)") {
                handled[try row.decode("event_type"), default: []].insert(try row.decode("id"))
            }
            for (id, event) in outbox where handled[event.type] != nil {
                consumptions += 1
                if !handled[event.type]!.contains(id) && dead.events[id] == nil {
                    notConsumed.append("\(service) never handled \(event.type) \(id)")
                }
            }
        }
        var figures = [
            Figure(name: "events lost: never published", count: unpublished.count, checked: outbox.count + outboxDeadLetters, examples: Array(unpublished.prefix(5)), mustBeZero: true),
            Figure(name: "events lost: published, not on the topic", count: missing.count, checked: outbox.count - (unpublished.count - outboxDeadLetters),
                   examples: Array(missing.prefix(5)), mustBeZero: true),
            Figure(name: "events lost: never consumed", count: notConsumed.count, checked: consumptions, examples: Array(notConsumed), mustBeZero: true),
            Figure(name: "aggregates whose events arrived out of order", count: disordered.count, checked: written.values.filter { $0.count > 1 }.count,
                   examples: Array(disordered.prefix(5)), mustBeZero: true),
            Figure(name: "events dead-lettered (kept, replayable)", count: deadLettered.count, checked: consumptions,
                   examples: Array(deadLettered.prefix(5)), mustBeZero: false),
        ]
        if !truncated.isEmpty {
            figures.append(Figure(
                name: "topics cut by the local broker's 5 MiB limit (not checked)", count: truncated.count, checked: Topics.all.count,
                examples: truncated, mustBeZero: false))
        }
        return figures
    }
}
