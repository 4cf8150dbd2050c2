import NotificationsService
import ServiceKit

// The notifications service process (see ServiceMain for what every service process does).
await ServiceMain.run(NotificationsService.name) { settings, logger in
    try await NotificationsService.makeApplication(settings: settings, logger: logger)
}
