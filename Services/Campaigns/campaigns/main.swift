import CampaignsService
import Foundation
import Hummingbird
import Logging
import ServiceKit

// The campaigns service process: configuration from FISSION_* variables (exit 2 with one line
// per problem), JSON logs, migrations, then HTTP, consumer, relay and scheduler until SIGTERM.
var environment = EnvironmentReader()
let settings = ServiceSettings.read(service: CampaignsService.name, from: &environment)
environment.exitOnProblems(service: CampaignsService.name)
JSONLogHandler.bootstrap(level: settings.logLevel)
let logger = Logger(label: CampaignsService.name)
do {
    let app = try await CampaignsService.makeApplication(settings: settings, logger: logger)
    try await app.runService()
} catch {
    FileHandle.standardError.write(Data("\(CampaignsService.name): \(error)\n".utf8))
    exit(1)
}
