import AssistsService
import Foundation
import Hummingbird
import Logging
import ServiceKit

// The assists service process: configuration from FISSION_* variables (exit 2 with one line
// per problem), JSON logs, migrations, then HTTP, consumer, relay and scheduler until SIGTERM.
var environment = EnvironmentReader()
let settings = ServiceSettings.read(service: AssistsService.name, from: &environment)
environment.exitOnProblems(service: AssistsService.name)
JSONLogHandler.bootstrap(level: settings.logLevel)
let logger = Logger(label: AssistsService.name)
do {
    let app = try await AssistsService.makeApplication(settings: settings, logger: logger)
    try await app.runService()
} catch {
    FileHandle.standardError.write(Data("\(AssistsService.name): \(error)\n".utf8))
    exit(1)
}
