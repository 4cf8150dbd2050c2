import CampaignsService
import ServiceKit

// The campaigns service process (see ServiceMain for what every service process does).
await ServiceMain.run(CampaignsService.name) { settings, logger in
    try await CampaignsService.makeApplication(settings: settings, logger: logger)
}
