import NotificationsService
import Foundation
import Hummingbird
import Logging
import ServiceKit

// The notifications service process: configuration from FISSION_* variables (exit 2 with one line
// per problem), JSON logs, migrations, then HTTP, consumer, relay and scheduler until SIGTERM.
var environment = EnvironmentReader()
let settings = ServiceSettings.read(service: NotificationsService.name, from: &environment)
environment.exitOnProblems(service: NotificationsService.name)
JSONLogHandler.bootstrap(level: settings.logLevel)
let logger = Logger(label: NotificationsService.name)
do {
    let app = try await NotificationsService.makeApplication(settings: settings, logger: logger)
    try await app.runService()
} catch {
    FileHandle.standardError.write(Data("\(NotificationsService.name): \(error)\n".utf8))
    exit(1)
}
