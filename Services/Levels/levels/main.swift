import LevelsService
import ServiceKit

// The levels service process (see ServiceMain for what every service process does).
await ServiceMain.run(LevelsService.name) { settings, logger in
    try await LevelsService.makeApplication(settings: settings, logger: logger)
}
