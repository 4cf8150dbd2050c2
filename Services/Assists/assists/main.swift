import AssistsService
import ServiceKit

// The assists service process (see ServiceMain for what every service process does).
await ServiceMain.run(AssistsService.name) { settings, logger in
    try await AssistsService.makeApplication(settings: settings, logger: logger)
}
