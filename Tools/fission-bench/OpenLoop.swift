import AsyncHTTPClient
import Foundation
import NIOCore
import ServiceKit
import Synchronization

/// Helps sent at a fixed rate whatever the responses do (open loop: a slow response does not
/// delay the next request, so latency is measured from when each request was due and queueing
/// is not hidden), while every initiator follows their inbox stream; a help's end-to-end time
/// is from its response to the first notification its initiator's stream delivers after it.
enum OpenLoop {
    struct Percentiles {
        var p50: Double
        var p99: Double

        init(_ values: [Double]) {
            let sorted = values.sorted()
            p50 = sorted.isEmpty ? .nan : sorted[sorted.count / 2]
            p99 = sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]
        }
    }

    struct Result {
        var rate: Double
        var latency: Percentiles
        var endToEnd: Percentiles
        var sent: Int
        var notified: Int
        /// Helps with no notification after their response was read but one between the help's
        /// due time and reading its response (the pipeline beat the response to the generator).
        var notifiedBeforeResponse: Int
        /// Help latency by the second the helps were due in: whether the tail is spread over
        /// the run (queueing) or gathered in a few seconds (a stall).
        var latencyBySecond: [Percentiles]

        /// `p50/p99` per second, in ms.
        var latencyBySecondSummary: String {
            latencyBySecond.map { String(format: "%.0f/%.0f", $0.p50, $0.p99) }.joined(separator: " ")
        }
    }

    /// What the inbox streams saw: how many are open, and when notifications arrived per task.
    final class Streamed: Sendable {
        let connected = Atomic<Int>(0)
        let arrivals = Mutex<[String: [ContinuousClock.Instant]]>([:])
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// `initiators`: task id → the initiator's token. Help paths are `/tasks/<id>/helps`.
    static func run(
        base: String, inbox: String, helps: [HelpLine], rate: Double, initiators: [String: String]
    ) async throws -> Result {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 1_024)
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        let streamed = Streamed()

        let streams = Task {
            await withTaskGroup(of: Void.self) { group in
                for (task, token) in initiators {
                    group.addTask {
                        var request = HTTPClientRequest(url: "\(inbox)/inbox/stream")
                        request.headers.add(name: "Authorization", value: "Bearer \(token)")
                        guard let response = try? await client.execute(request, timeout: .hours(1)) else { return }
                        var first = true
                        // A marker split between two reads is kept for the next one.
                        var carry = ""
                        do {
                            for try await buffer in response.body {
                                let now = ContinuousClock.now
                                if first {
                                    first = false
                                    streamed.connected.add(1, ordering: .relaxed)
                                }
                                let text = carry + String(buffer: buffer)
                                let count = text.components(separatedBy: "event: notification").count - 1
                                carry = String(text.suffix(24))
                                if count > 0 {
                                    carry = ""
                                    streamed.arrivals.withLock { $0[task, default: []].append(contentsOf: repeatElement(now, count: count)) }
                                }
                            }
                        } catch {
                            return
                        }
                    }
                }
            }
        }
        defer { streams.cancel() }
        let waitingSince = ContinuousClock.now
        while streamed.connected.load(ordering: .relaxed) < initiators.count {
            guard ContinuousClock.now - waitingSince < .seconds(60) else {
                throw Failure(description: "only \(streamed.connected.load(ordering: .relaxed)) of \(initiators.count) inbox streams connected")
            }
            try await Task.sleep(for: .milliseconds(50))
        }

        let interval = Duration.seconds(1 / rate)
        let start = ContinuousClock.now.advanced(by: .milliseconds(100))
        // (task, latency in ms from when the request was due, when the response came, index)
        let responses = try await withThrowingTaskGroup(of: (String, Double, ContinuousClock.Instant, Int).self) { group in
            for (index, help) in helps.enumerated() {
                let due = start.advanced(by: interval * index)
                try await Task.sleep(until: due, clock: .continuous)
                group.addTask {
                    var request = HTTPClientRequest(url: base + help.path)
                    request.method = .POST
                    request.headers.add(name: "Authorization", value: "Bearer \(help.token)")
                    request.headers.add(name: "X-Device-ID", value: help.device)
                    request.headers.add(name: "X-Forwarded-For", value: help.address)
                    let response = try await client.execute(request, timeout: .seconds(60))
                    _ = try await response.body.collect(upTo: 1 << 20)
                    let done = ContinuousClock.now
                    guard response.status.code == 200 else { throw Failure(description: "a help answered \(response.status.code)") }
                    let task = help.path.split(separator: "/").dropFirst().first.map(String.init) ?? ""
                    return (task, (done - due).inMilliseconds, done, index)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let finished = responses.map(\.2).max() ?? start
        let rateAchieved = Double(responses.count) / (finished - start).inSeconds

        // Give the last helps' notifications time to arrive.
        try await Task.sleep(for: .seconds(3))
        streams.cancel()
        _ = await streams.value
        let seen = streamed.arrivals.withLock { $0 }
        var endToEnd: [Double] = []
        var beforeResponse = 0
        for (task, latency, done, _) in responses {
            if let arrival = seen[task]?.first(where: { $0 >= done }) {
                endToEnd.append((arrival - done).inMilliseconds)
            } else {
                let due = done - .microseconds(Int64(latency * 1000))
                if seen[task]?.contains(where: { $0 >= due && $0 < done }) == true { beforeResponse += 1 }
            }
        }
        let perSecond = max(1, Int(rate.rounded()))
        let bySecond = Dictionary(grouping: responses) { $0.3 / perSecond }
        try await client.shutdown()
        return Result(rate: rateAchieved, latency: Percentiles(responses.map(\.1)), endToEnd: Percentiles(endToEnd),
                      sent: responses.count, notified: endToEnd.count,
                      notifiedBeforeResponse: beforeResponse,
                      latencyBySecond: bySecond.keys.sorted().map { Percentiles(bySecond[$0]!.map(\.1)) })
    }
}

extension Duration {
    var inMilliseconds: Double { inSeconds * 1000 }
}
