import LevelsService
import Foundation
import Hummingbird
import Logging
import ServiceKit

// The levels service process: configuration from FISSION_* variables (exit 2 with one line
// per problem), JSON logs, migrations, then HTTP, consumer, relay and scheduler until SIGTERM.
var environment = EnvironmentReader()
let settings = ServiceSettings.read(service: LevelsService.name, from: &environment)
environment.exitOnProblems(service: LevelsService.name)
JSONLogHandler.bootstrap(level: settings.logLevel)
let logger = Logger(label: LevelsService.name)
do {
    let app = try await LevelsService.makeApplication(settings: settings, logger: logger)
    try await app.runService()
} catch {
    FileHandle.standardError.write(Data("\(LevelsService.name): \(error)\n".utf8))
    exit(1)
}
