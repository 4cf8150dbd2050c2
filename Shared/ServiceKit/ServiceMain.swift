import Foundation
import Hummingbird
import Logging

/// The process around every service executable, so the five `main.swift` files stay one line:
/// settings from `FISSION_*` variables (and the service's own options), exit 2 with one line per
/// problem; JSON logs; then the application (migrations, HTTP, consumer, relay, scheduler) until
/// SIGTERM. A failure to start is one line on standard error and exit 1.
public enum ServiceMain {
    public static func run<Options, App: ApplicationProtocol>(
        _ service: String,
        options readOptions: (inout EnvironmentReader) -> Options,
        makeApplication: (ServiceSettings, Options, Logger) async throws -> App
    ) async {
        var environment = EnvironmentReader()
        let settings = ServiceSettings.read(service: service, from: &environment)
        let options = readOptions(&environment)
        environment.exitOnProblems(service: service)
        JSONLogHandler.bootstrap(level: settings.logLevel)
        let logger = Logger(label: service)
        do {
            let app = try await makeApplication(settings, options, logger)
            try await app.runService()
        } catch {
            FileHandle.standardError.write(Data("\(service): \(error)\n".utf8))
            exit(1)
        }
    }

    /// For services configured by the common settings alone.
    public static func run<App: ApplicationProtocol>(
        _ service: String, makeApplication: (ServiceSettings, Logger) async throws -> App
    ) async {
        await run(service, options: { _ in () }) { settings, _, logger in try await makeApplication(settings, logger) }
    }
}
