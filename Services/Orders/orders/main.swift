import Foundation
import Hummingbird
import Logging
import OrdersService
import ServiceKit

// The orders service process: FISSION_* settings plus the payment webhook secret (exit 2 with
// one line per problem), JSON logs, migrations, then HTTP, consumer, relay and scheduler.
var environment = EnvironmentReader()
let settings = ServiceSettings.read(service: OrdersService.name, from: &environment)
let options = OrdersService.Options.read(from: &environment)
environment.exitOnProblems(service: OrdersService.name)
JSONLogHandler.bootstrap(level: settings.logLevel)
let logger = Logger(label: OrdersService.name)
do {
    let app = try await OrdersService.makeApplication(settings: settings, options: options, logger: logger)
    try await app.runService()
} catch {
    FileHandle.standardError.write(Data("\(OrdersService.name): \(error)\n".utf8))
    exit(1)
}
