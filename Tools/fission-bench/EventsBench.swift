import ArgumentParser
import Domain
import Foundation

/// What reading and writing the event every help sends costs a service's CPU: ours against
/// Foundation's `JSONDecoder`/`JSONEncoder` configured alike (`EventCoding`), on one core.
struct EventsBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Decoding and encoding an AssistRecorded event: ours against Foundation's.")

    @Option(help: "Events per round; the median of five rounds is reported.")
    var rounds = 4_000

    @Option(help: "JSON results file (merged with what is there).")
    var output = "bench/results.json"

    func run() throws {
        // Whole seconds: times travel with milliseconds, and the round trip below compares.
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let event = CloudEvent(
            AssistRecorded(
                taskId: TaskID(), campaignId: CampaignID(), initiatorId: "initiator-17", helpId: HelpID(), helperId: "helper-4242",
                cut: Money(320, .cny), priceNow: Money(410, .cny), amountLeft: Money(410, .cny), helperCount: 17, helpersLeftAtMost: 3,
                newUser: false, shareId: ShareID(), referrerId: "initiator-17", recordedAt: now),
            time: now, correlationID: "req-7f3a9c", causationID: EventID().description, traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        let bytes = try EventCoding.encode(event)
        let data = Data(bytes)
        guard try EventCoding.decode(AssistRecorded.self, from: bytes) == event,
              try EventCoding.decoder().decode(CloudEvent<AssistRecorded>.self, from: data) == event else {
            throw ValidationError("the event does not survive a round trip")
        }
        let foundationEncoder = EventCoding.encoder()
        let foundationDecoder = EventCoding.decoder()
        let decode = try median { _ = try EventCoding.decode(AssistRecorded.self, from: bytes) }
        let decodeFoundation = try median { _ = try foundationDecoder.decode(CloudEvent<AssistRecorded>.self, from: data) }
        let header = try median { _ = try EventCoding.decodeHeader(from: bytes) }
        let headerFoundation = try median { _ = try foundationDecoder.decode(CloudEventHeader.self, from: data) }
        let encode = try median { _ = try EventCoding.encode(event) }
        let encodeFoundation = try median { _ = try foundationEncoder.encode(event) }

        print("Events: an AssistRecorded of \(bytes.count) bytes, µs per event (median of five rounds of \(rounds)), one core")
        for (name, ours, foundation) in [("decode", decode, decodeFoundation), ("decode envelope only", header, headerFoundation),
                                         ("encode", encode, encodeFoundation)] {
            print(name.padding(toLength: 22, withPad: " ", startingAt: 0)
                  + String(format: "ours %6.1f µs   Foundation %6.1f µs   ours ÷ Foundation = %.2f", ours, foundation, ours / foundation))
        }
        try BenchResults.record([
            ("events.decode_us", ["value": decode, "reference": decodeFoundation, "ratio": decode / decodeFoundation]),
            ("events.encode_us", ["value": encode, "reference": encodeFoundation, "ratio": encode / encodeFoundation]),
        ], to: output)
    }

    /// Microseconds per call, the median of five rounds.
    func median(_ body: () throws -> Void) throws -> Double {
        var times: [Double] = []
        for _ in 0..<5 {
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<rounds { try body() }
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / Double(rounds) / 1000)
        }
        return OpenLoop.Percentiles(times).p50
    }
}
