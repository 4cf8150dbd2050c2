import Domain
import Foundation
import Testing

@Suite("Money")
struct MoneyTests {
    @Test func formatsInTheCurrencysOwnUnits() {
        #expect(Money(1230, .cny).formatted == "¥12.30")
        #expect(Money(5, .cny).formatted == "¥0.05")
        #expect(Money(-5, .cny).formatted == "-¥0.05")
        #expect(Money(123_450, .usd).formatted == "$1,234.50")
        #expect(Money(1500, .jpy).formatted == "¥1,500")
        #expect(Money(0, .cny).formatted == "¥0.00")
    }

    @Test func arithmeticRefusesToMixCurrencies() throws {
        #expect(try Money(1230, .cny).adding(Money(70, .cny)) == Money(1300, .cny))
        #expect(try Money(1230, .cny).subtracting(Money(1300, .cny)) == Money(-70, .cny))
        #expect(throws: Money.CurrencyMismatch.self) { try Money(1, .cny).adding(Money(1, .usd)) }
        #expect(throws: Money.CurrencyMismatch.self) { try Money(1, .cny).subtracting(Money(1, .usd)) }
    }

    @Test func codesAreCheckedWhenDecoding() throws {
        let decoded = try JSONDecoder().decode(Money.self, from: Data("{\"amount\":1230,\"currency\":\"CNY\"}".utf8))
        #expect(decoded == Money(1230, .cny))
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(Money.self, from: Data("{\"amount\":1,\"currency\":\"yuan\"}".utf8))
        }
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(Money.self, from: Data("{\"amount\":12.3,\"currency\":\"CNY\"}".utf8))
        }
    }
}

@Suite("Identifiers")
struct IdentifierTests {
    @Test func timeOrderedIDsSortByCreation() {
        let earlier = UUID.timeOrdered(at: Date(timeIntervalSince1970: 1_700_000_000))
        let later = UUID.timeOrdered(at: Date(timeIntervalSince1970: 1_700_000_001))
        #expect(earlier.uuidString < later.uuidString)
        #expect(earlier.uuidString.dropFirst(14).first == "7", "version 7")
        #expect(CampaignID() != CampaignID())
    }

    @Test func idsEncodeAsBareLowercaseUUIDs() throws {
        let id = try #require(TeamID("0193A5C5-0A11-7E22-8F33-445566778899"))
        #expect(String(decoding: try JSONEncoder().encode(id), as: UTF8.self) == "\"0193a5c5-0a11-7e22-8f33-445566778899\"")
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(TeamID.self, from: Data("\"nope\"".utf8)) }
    }
}

@Suite("Campaign rules")
struct CampaignRuleTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)

    func bargain(_ change: (inout CampaignTerms) -> Void = { _ in }) -> CampaignTerms {
        var terms = CampaignTerms(
            kind: .bargain, product: Product(sku: "TEA", title: "Tea"), listPrice: Money(3990, .cny), stock: 10,
            perUserLimit: 1, startsAt: start, endsAt: start.addingTimeInterval(86_400),
            bargain: BargainRules(
                floorPrice: Money(0, .cny), maxHelpers: 20, firstCutMin: Money(100, .cny), firstCutMax: Money(500, .cny),
                taskTimeLimitSeconds: 86_400, payWindowSeconds: 1_800))
        change(&terms)
        return terms
    }

    func fields(_ terms: CampaignTerms) -> [String] { terms.violations().map(\.field) }

    @Test func consistentTermsHaveNoViolations() {
        #expect(bargain().violations().isEmpty)
    }

    @Test func invalidCombinationsNameTheirField() {
        #expect(fields(bargain { $0.bargain!.floorPrice = Money(3990, .cny) }).contains("bargain.floorPrice"))
        #expect(fields(bargain { $0.bargain!.maxHelpers = 5000 }).contains("bargain.maxHelpers"))
        #expect(fields(bargain { $0.stock = -1 }) == ["stock"])
        #expect(fields(bargain { $0.endsAt = $0.startsAt.addingTimeInterval(-1) }) == ["endsAt"])
        #expect(fields(bargain { $0.bargain!.floorPrice = Money(0, .usd) }).contains("bargain.floorPrice"))
        #expect(fields(bargain { $0.kind = .groupBuy }).contains("groupBuy"))

        var groupBuy = bargain()
        groupBuy.kind = .groupBuy
        groupBuy.bargain = nil
        groupBuy.groupBuy = GroupBuyRules(teamSize: 3, groupPrice: Money(3990, .cny), teamTimeLimitSeconds: 3600)
        #expect(fields(groupBuy) == ["groupBuy.groupPrice"])
        groupBuy.groupBuy!.groupPrice = Money(2990, .cny)
        groupBuy.groupBuy!.teamSize = 101
        #expect(fields(groupBuy) == ["groupBuy.teamSize"])
        groupBuy.groupBuy!.teamSize = 5
        groupBuy.groupBuy!.ladder = [
            .init(minMembers: 3, price: Money(2990, .cny)), .init(minMembers: 5, price: Money(3000, .cny)),
        ]
        #expect(fields(groupBuy) == ["groupBuy.ladder[1].price"])
    }
}

@Suite("Envelope")
struct EnvelopeTests {
    @Test func envelopeCarriesTypeSubjectAndTimestampsWithMilliseconds() throws {
        let campaign = CampaignID()
        let event = CloudEvent(
            CampaignPaused(campaignId: campaign, pausedAt: Date(timeIntervalSince1970: 1_800_000_000.25)),
            time: Date(timeIntervalSince1970: 1_800_000_000), correlationID: "req-1")
        #expect(event.type == "campaigns.CampaignPaused.v1")
        #expect(event.subject == campaign.description)
        let text = String(decoding: try EventCoding.encode(event), as: UTF8.self)
        #expect(text.contains("\"pausedAt\":\"2027-01-15T08:00:00.250Z\""))
        #expect(text.contains("\"time\":\"2027-01-15T08:00:00Z\""))
        #expect(try EventCoding.decode(CampaignPaused.self, from: Array(text.utf8)) == event)
    }
}
