import OrdersService
import ServiceKit

// The orders service process: the common settings plus the payment webhook secret and timeout
// (see ServiceMain for what every service process does).
await ServiceMain.run(OrdersService.name, options: { OrdersService.Options.read(from: &$0) }) { settings, options, logger in
    try await OrdersService.makeApplication(settings: settings, options: options, logger: logger)
}
