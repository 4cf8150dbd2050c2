import ArgumentParser
import Foundation

/// The one table `make bench` ends with: every figure in the results file next to the reference
/// it was measured against in the same run, and whether it meets the issue's target.
struct BenchReport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report", abstract: "One table of every recorded figure, its reference and its target.")

    @Option(help: "JSON results file written by the other subcommands.")
    var input = "bench/results.json"

    /// One line of the table: how to read it out of the results, and the target it answers to.
    struct Line {
        var figure: String
        var key: String
        var value: String
        var unit: String
        var reference: (field: String, name: String)?
        var target: Target
    }

    enum Target {
        case ratioAtLeast(Double)
        case atLeast(Double)
        case atMost(Double)
        case none
    }

    static var lines: [Line] {
        var lines: [Line] = [
            Line(figure: "Kafka producer", key: "kafka.produce_msgs_per_s", value: "value", unit: "msg/s",
                 reference: ("reference", "kcat"), target: .ratioAtLeast(0.8)),
            Line(figure: "Kafka consumer", key: "kafka.consume_msgs_per_s", value: "value", unit: "msg/s",
                 reference: ("reference", "kcat"), target: .ratioAtLeast(0.8)),
            Line(figure: "helps, spread over tasks (saturation)", key: "assists.helps_vs_pgbench", value: "value", unit: "helps/s",
                 reference: ("reference", "pgbench -N tps"), target: .ratioAtLeast(0.8)),
            Line(figure: "helps, one hot task (saturation)", key: "assists.hot_task_helps_per_s", value: "value", unit: "helps/s",
                 reference: ("reference", "spread helps/s"), target: .ratioAtLeast(0.5)),
            Line(figure: "help p99 at half saturation", key: "assists.half_saturation_latency", value: "p99_ms", unit: "ms",
                 reference: nil, target: .atMost(25)),
            Line(figure: "help p50 at half saturation", key: "assists.half_saturation_latency", value: "p50_ms", unit: "ms",
                 reference: nil, target: .none),
            Line(figure: "help → initiator's stream p99", key: "assists.help_to_inbox_latency", value: "p99_ms", unit: "ms",
                 reference: nil, target: .atMost(250)),
            Line(figure: "help → initiator's stream p50", key: "assists.help_to_inbox_latency", value: "p50_ms", unit: "ms",
                 reference: nil, target: .none),
            Line(figure: "help p99 at the sustained rate", key: "assists.sustained_latency", value: "p99_ms", unit: "ms",
                 reference: nil, target: .none),
            // What the hypervisor took while each was measured: it moves rates and latencies
            // more than most changes do.
            Line(figure: "CPU stolen during pgbench -N", key: "assists.helps_vs_pgbench", value: "reference_stolen_percent",
                 unit: "%", reference: nil, target: .none),
            Line(figure: "CPU stolen during spread saturation", key: "assists.helps_vs_pgbench", value: "stolen_percent",
                 unit: "%", reference: nil, target: .none),
            Line(figure: "CPU stolen at half saturation", key: "assists.half_saturation_latency", value: "stolen_percent",
                 unit: "%", reference: nil, target: .none),
            Line(figure: "PostgreSQL backends waiting on a lock", key: "assists.half_saturation_backends", value: "lock_wait_percent",
                 unit: "% of samples", reference: nil, target: .none),
            Line(figure: "help → stream p99 at the sustained rate", key: "assists.sustained_latency", value: "help_to_inbox_p99_ms", unit: "ms",
                 reference: nil, target: .none),
            Line(figure: "outbox relay", key: "relay.events_per_s", value: "value", unit: "events/s",
                 reference: ("reference", "bare producer"), target: .atLeast(20_000)),
            Line(figure: "AssistRecorded event decoded", key: "events.decode_us", value: "value", unit: "µs",
                 reference: ("reference", "Foundation"), target: .none),
            Line(figure: "AssistRecorded event encoded", key: "events.encode_us", value: "value", unit: "µs",
                 reference: ("reference", "Foundation"), target: .none),
            Line(figure: "group-buy orders confirmed", key: "orders.flows", value: "orders_per_s", unit: "orders/s",
                 reference: ("reference_pgbench_tps", "pgbench -N tps"), target: .none),
            Line(figure: "group-buy order p99 (placed → confirmed)", key: "orders.flows", value: "p99_ms", unit: "ms",
                 reference: nil, target: .none),
        ]
        for service in ServicesBench.services {
            lines += [
                Line(figure: "\(service): ready after start", key: "services.\(service)", value: "ready_ms", unit: "ms",
                     reference: nil, target: .atMost(1000)),
                Line(figure: "\(service): resident idle", key: "services.\(service)", value: "idle_rss_mb", unit: "MB",
                     reference: nil, target: .atMost(50)),
                Line(figure: "\(service): resident under load", key: "services.\(service)", value: "loaded_rss_mb", unit: "MB",
                     reference: nil, target: .atMost(200)),
            ]
        }
        return lines
    }

    func run() throws {
        guard let data = FileManager.default.contents(atPath: input),
              let results = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ValidationError("no benchmark results in \(input): run the benchmarks first")
        }
        func column(_ text: String, _ width: Int) -> String { text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0) }
        func number(_ value: Double) -> String { String(format: value >= 100 ? "%.0f" : "%.1f", value) }
        print("Fission benchmarks (\(input), recorded \(results["recorded_at"] as? String ?? "?"))")
        let widths = [42, 18, 30, 8, 12, 6]
        print(zip(["figure", "measured", "reference (same run)", "ratio", "target", "met"], widths).map { column($0, $1) }.joined(separator: " "))
        var missed = 0
        for line in Self.lines {
            guard let figure = results[line.key] as? [String: Any], let value = figure[line.value] as? Double else {
                print(column(line.figure, widths[0]) + " not measured")
                continue
            }
            var referenceText = ""
            var ratio: Double?
            if let reference = line.reference, let referenceValue = figure[reference.field] as? Double, referenceValue > 0 {
                referenceText = "\(number(referenceValue)) \(reference.name)"
                ratio = value / referenceValue
            }
            let targetText: String
            let met: Bool?
            switch line.target {
            case .ratioAtLeast(let target):
                targetText = String(format: "≥ %.2f×", target)
                met = ratio.map { $0 >= target }
            case .atLeast(let target):
                targetText = "≥ \(number(target))"
                met = value >= target
            case .atMost(let target):
                targetText = "≤ \(number(target))"
                met = value <= target
            case .none:
                (targetText, met) = ("", nil)
            }
            if met == false { missed += 1 }
            print(zip([line.figure, "\(number(value)) \(line.unit)", referenceText, ratio.map { String(format: "%.2f×", $0) } ?? "",
                       targetText, met.map { $0 ? "yes" : "NO" } ?? ""], widths).map { column($0, $1) }.joined(separator: " "))
        }
        print("\(missed) target(s) missed")
    }
}
