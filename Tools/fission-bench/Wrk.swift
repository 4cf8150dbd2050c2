import ArgumentParser
import FissionTesting
import Foundation

/// One help as a phone sends it through the ingress: the path, the helper's token, the phone's
/// id (`X-Device-ID`) and the client address the ingress puts first in `X-Forwarded-For`. Every
/// helper has their own phone and their own /24, so the velocity rules run (they take their
/// locks and counts) without holding anyone.
struct HelpLine: Sendable {
    var path: String
    var token: String
    var helper: Int

    var device: String { "bench-phone-\(helper)" }
    var address: String { "10.\(helper % 256).\((helper / 256) % 256).7" }
}

/// Saturation load from `wrk` (Debian), a separate process, so the load generator's CPU is not
/// the service's: each request is one line of a file (`path<TAB>token<TAB>device<TAB>address`),
/// every line used once per pass, the lines split between wrk's threads so no two connections
/// send the same one.
enum Wrk {
    struct Run {
        var requests: Int
        var seconds: Double
        /// Responses other than 2xx/3xx, and connect/read/write/timeout errors.
        var failed: Int
        var p50: Double
        var p99: Double
        var rate: Double { Double(requests - failed) / seconds }
    }

    static let script = """
        -- Lines "path<TAB>token<TAB>device<TAB>address"; thread k of n takes lines k, k+n, k+2n, ...
        local counter = 0
        function setup(thread)
          thread:set("id", counter)
          counter = counter + 1
        end

        local requests = {}
        local position = 0
        function init(args)
          local threads = tonumber(args[2])
          local index = 0
          for line in io.lines(args[1]) do
            if index % threads == id then
              local path, token, device, address = line:match("([^\\t]+)\\t([^\\t]+)\\t([^\\t]+)\\t(.+)")
              requests[#requests + 1] = wrk.format("POST", path,
                { ["Authorization"] = "Bearer " .. token, ["X-Device-ID"] = device, ["X-Forwarded-For"] = address }, nil)
            end
            index = index + 1
          end
        end

        function request()
          position = position % #requests + 1
          return requests[position]
        end

        function done(summary, latency, requests)
          local e = summary.errors
          io.write(string.format("FISSION-WRK %d %d %d %d %d\\n", summary.requests, summary.duration,
            e.status + e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
        end
        """

    /// Runs wrk for `seconds` against `base` with the given request lines.
    static func run(base: String, lines: [HelpLine], connections: Int, seconds: Int) async throws -> Run {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fission-wrk-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let scriptFile = directory.appendingPathComponent("requests.lua")
        let linesFile = directory.appendingPathComponent("requests.tsv")
        try script.write(to: scriptFile, atomically: true, encoding: .utf8)
        try lines.map { "\($0.path)\t\($0.token)\t\($0.device)\t\($0.address)\n" }.joined().write(to: linesFile, atomically: true, encoding: .utf8)
        let threads = 2
        let output = try await ChildProcess.run(
            "/usr/bin/wrk",
            ["-t", String(threads), "-c", String(connections), "-d", "\(seconds)s", "--timeout", "30s", "--latency", "-s", scriptFile.path, base,
             "--", linesFile.path, String(threads)],
            environment: [:], timeLimit: .seconds(Double(seconds) + 60))
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("FISSION-WRK ") }) else {
            throw ValidationError("wrk printed no summary: \(output.suffix(400))")
        }
        let numbers = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard numbers.count == 5 else { throw ValidationError("unexpected wrk summary: \(line)") }
        return Run(requests: Int(numbers[0]), seconds: numbers[1] / 1e6, failed: Int(numbers[2]), p50: numbers[3] / 1000, p99: numbers[4] / 1000)
    }
}
