import Domain
import Foundation
import Testing
import TextCoding

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

    /// The hand-written UUID text matches Foundation's, both ways, and refuses what it refuses.
    @Test func uuidTextMatchesFoundationBothWays() throws {
        for _ in 0..<2_000 {
            let id = UUID()
            #expect(id.lowercasedText == id.uuidString.lowercased())
            #expect(UUID(hyphenatedHex: id.lowercasedText) == id)
            #expect(UUID(hyphenatedHex: id.uuidString) == id)
            #expect(HelpID(id.uuidString)?.description == id.lowercasedText)
        }
        let edges = [UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)),
                     UUID(uuid: (255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255))]
        for id in edges { #expect(id.lowercasedText == id.uuidString.lowercased()) }
        let valid = "e621e1f8-c36c-495a-93fc-0c247a3e6e5f"
        for text in ["", valid.uppercased() + "0", String(valid.dropLast()), valid.replacingOccurrences(of: "-", with: ""),
                     "e621e1f8c-36c-495a-93fc-0c247a3e6e5f", "g621e1f8-c36c-495a-93fc-0c247a3e6e5f", "e621e1f8-c36c-495a-93fc-0c247a3e6e5 ",
                     "{e621e1f8-c36c-495a-93fc-0c247a3e6e5}", "é621e1f8-c36c-495a-93fc-0c247a3e6e5"] {
            #expect(UUID(uuidString: text) == nil)
            #expect(UUID(hyphenatedHex: text) == nil)
            #expect(HelpID(text) == nil)
        }
    }

    /// Batches lock tasks in this order and PostgreSQL in its own: they must agree.
    @Test func uuidsCompareAsPostgreSQLSortsThem() {
        for _ in 0..<2_000 {
            let (left, right) = (UUID(), UUID())
            #expect((left < right) == (left.lowercasedText < right.lowercasedText))
        }
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

@Suite("Timestamps")
struct TimestampTests {
    /// The hand-written RFC 3339 coding agrees with Foundation's formatter on random instants
    /// from 1600 to 9999, with and without milliseconds. (Before the Gregorian reform Foundation
    /// switches to the Julian calendar; RFC 3339 and PostgreSQL stay proleptic Gregorian.)
    @Test func agreeWithFoundationsFormatter() {
        var random = SystemRandomNumberGenerator()
        let whole = ISO8601DateFormatter()
        whole.formatOptions = [.withInternetDateTime]
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for index in 0..<5_000 {
            let seconds = Int64.random(in: -11_676_096_000...253_402_300_799, using: &random)
            let milliseconds = index % 2 == 0 ? 0 : Int64.random(in: 1...999, using: &random)
            let date = Date(timeIntervalSince1970: Double(seconds) + Double(milliseconds) / 1000)
            let expected = milliseconds == 0 ? whole.string(from: date) : fractional.string(from: date)
            #expect(EventCoding.formatTimestamp(date) == expected)
            #expect(EventCoding.parseTimestamp(expected).map { abs($0.timeIntervalSince(date)) < 0.0005 } == true, "\(expected)")
        }
    }

    @Test func readsOffsetsAndFractionsOfAnyLength() {
        #expect(EventCoding.parseTimestamp("2026-11-23T16:00:00+08:00") == EventCoding.parseTimestamp("2026-11-23T08:00:00Z"))
        #expect(EventCoding.parseTimestamp("2026-11-23T02:30:00-05:30") == EventCoding.parseTimestamp("2026-11-23T08:00:00Z"))
        #expect(EventCoding.parseTimestamp("2026-11-23T08:00:00.5Z")!.timeIntervalSince1970.truncatingRemainder(dividingBy: 1) == 0.5)
        #expect(EventCoding.parseTimestamp("2026-11-23T08:00:00.123456789123Z") != nil)
        #expect(EventCoding.formatTimestamp(EventCoding.parseTimestamp("2024-02-29T23:59:59.999Z")!) == "2024-02-29T23:59:59.999Z")
    }

    @Test func refusesWhatIsNotRFC3339() {
        for text in ["", "2026-11-23", "2026-11-23T08:00:00", "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z", "2026-11-23T24:00:00Z",
                     "2026-11-23T08:00:00.Z", "2026-11-23T08:00:00Zjunk", "2026-11-23T08:00:00+0800", "２０２６-11-23T08:00:00Z",
                     "2026-11-23 08:00:00Z"] {
            #expect(EventCoding.parseTimestamp(text) == nil, "\(text)")
        }
    }
}

@Suite("Event JSON")
struct EventJSONTests {
    struct Awkward: Codable, Equatable {
        enum Shade: String, Codable { case light, dark }
        struct Inner: Codable, Equatable {
            var b: Int
            var A: String?
        }
        var text: String
        var zeta: Double
        var alpha: [Double]
        var small: Float
        var big: UInt64
        var negative: Int32
        var flag: Bool
        var missing: String?
        var when: Date
        var byKey: [String: Int]
        var nested: [[Inner]]
        var shade: Shade
        var data: Data
        var link: URL
        var empty: [String: String]
        var priceNow: Int
        var pricedAt: Int
    }

    /// Every control character, quotes, backslashes, slashes, non-ASCII and keys whose byte order
    /// differs from a case-insensitive one: the bytes Foundation's encoder writes, exactly.
    @Test func writesWhatFoundationWritesByteForByte() throws {
        let controls = String(decoding: (0..<0x20).map { UInt8($0) }, as: UTF8.self)
        let values = [
            Awkward(
                text: controls + "\"\\/ é 😀 \u{2028} \u{7f} </script>", zeta: 0.1, alpha: [1, -0.0, 1e-7, 1e20, 123456789012, 2.5, .pi],
                small: 0.1, big: .max, negative: .min, flag: true, missing: nil, when: Date(timeIntervalSince1970: 1_764_547_200.125),
                byKey: ["b": 2, "B": 1, "a10": 3, "a9": 4, "é": 5], nested: [[Awkward.Inner(b: 1, A: "x")], [], [Awkward.Inner(b: -2, A: nil)]],
                shade: .dark, data: Data([0, 1, 2, 250]), link: URL(string: "https://fission.example/s/abc?x=1&y=/2")!, empty: [:],
                priceNow: 1, pricedAt: 2),
            Awkward(
                text: "", zeta: -1e-300, alpha: [], small: 3, big: 0, negative: 0, flag: false, missing: "present",
                when: Date(timeIntervalSince1970: 0), byKey: [:], nested: [], shade: .light, data: Data(), link: URL(string: "a")!,
                empty: [:], priceNow: 0, pricedAt: 0),
        ]
        for value in values {
            let ours = try EventJSONEncoder.encode(value)
            let foundation = Array(try EventCoding.encoder().encode(value))
            #expect(String(decoding: ours, as: UTF8.self) == String(decoding: foundation, as: UTF8.self))
            #expect(try EventCoding.decoder().decode(Awkward.self, from: Data(ours)) == value)
        }
        // Bare values and top-level arrays too.
        #expect(try EventJSONEncoder.encode("a\"b") == Array(EventCoding.encoder().encode("a\"b")))
        #expect(try EventJSONEncoder.encode([1, 2, 3]) == Array(EventCoding.encoder().encode([1, 2, 3])))
        #expect(try EventJSONEncoder.encode(Optional<Int>.none) == Array(EventCoding.encoder().encode(Optional<Int>.none)))
    }

    /// Escapes at the start, at the end, side by side and alone, around runs copied whole.
    @Test func stringsAreEscapedAsFoundationEscapesThem() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        for text in ["", "plain", "\"", "\"start", "end\\", "a\n\tb", "\u{1}\u{1f}\u{7f}", "é😀/\"\\\"", "x\u{0}y", String(repeating: "ab\"", count: 50)] {
            var ours: [UInt8] = []
            JSONStringText.write(text, to: &ours)
            #expect(String(decoding: ours, as: UTF8.self) == String(decoding: try encoder.encode(text), as: UTF8.self))
        }
    }

    @Test func refusesNumbersJSONCannotHold() {
        #expect(throws: EncodingError.self) { try EventJSONEncoder.encode([Double.nan]) }
        #expect(throws: EncodingError.self) { try EventJSONEncoder.encode(["x": Double.infinity]) }
        // The error says where, as Foundation's does.
        func place(_ body: () throws -> Any) -> [String] {
            do {
                _ = try body()
            } catch let EncodingError.invalidValue(_, context) {
                return context.codingPath.map(\.stringValue)
            } catch {}
            return []
        }
        let nested = ["outer": ["inner": [1, 2, Double.nan]]]
        #expect(place { try EventJSONEncoder.encode(nested) } == ["outer", "inner", "Index 2"])
        #expect(place { try EventJSONEncoder.encode(nested) } == place { try EventCoding.encoder().encode(nested) })
    }
}

@Suite("Event JSON decoding")
struct EventJSONDecodingTests {
    typealias Awkward = EventJSONTests.Awkward

    static func foundation<T: Decodable>(_ type: T.Type, _ text: String) -> Result<T, any Error> {
        Result { try EventCoding.decoder().decode(T.self, from: Data(text.utf8)) }
    }

    static func ours<T: Decodable>(_ type: T.Type, _ text: String) -> Result<T, any Error> {
        Result { try EventJSONDecoder.decode(T.self, from: Array(text.utf8)) }
    }

    /// What went wrong, where: the kind of `DecodingError` and its coding path.
    static func failure<T>(_ result: Result<T, any Error>) -> String? {
        guard case .failure(let error) = result else { return nil }
        switch error as? DecodingError {
        case .keyNotFound(let key, let context)?: return "keyNotFound \(key.stringValue) at \(context.codingPath.map(\.stringValue))"
        case .valueNotFound(_, let context)?: return "valueNotFound at \(context.codingPath.map(\.stringValue))"
        case .typeMismatch(_, let context)?: return "typeMismatch at \(context.codingPath.map(\.stringValue))"
        case .dataCorrupted(let context)?: return "dataCorrupted at \(context.codingPath.map(\.stringValue))"
        default: return "\(error)"
        }
    }

    /// Every kind of value Foundation decodes specially (dates, data, URLs, floats, unsigned,
    /// dictionaries, nested arrays, enums, optionals), from Foundation's own output and from
    /// text written with whitespace, escapes and reordered keys.
    @Test func readsWhatFoundationReads() throws {
        let controls = String(decoding: (0..<0x20).map { UInt8($0) }, as: UTF8.self)
        let value = Awkward(
            text: controls + "\"\\/ é 😀 \u{2028} \u{7f}", zeta: 0.1, alpha: [1, -0.0, 1e-7, 1e20, 123456789012, 2.5, .pi],
            small: 0.1, big: .max, negative: .min, flag: true, missing: nil, when: Date(timeIntervalSince1970: 1_764_547_200.125),
            byKey: ["b": 2, "B": 1, "a10": 3, "é": 5], nested: [[Awkward.Inner(b: 1, A: "x")], [], [Awkward.Inner(b: -2, A: nil)]],
            shade: .dark, data: Data([0, 1, 2, 250]), link: URL(string: "https://fission.example/s/abc?x=1&y=/2")!, empty: [:],
            priceNow: 1, pricedAt: 2)
        let written = try EventCoding.encoder().encode(value)
        #expect(try EventJSONDecoder.decode(Awkward.self, from: Array(written)) == value)
        let handWritten = #"""
             { "pricedAt" : 2e0, "priceNow": 10E-1, "empty": {}, "link": "https:\/\/fission.example\/x", "data": "AAEC+g==",
               "shade": "light", "nested": [ [ {"b": -0, "A": "\u00e9\ud83d\ude00\n"} ] ], "byKey": {"\u0061": 1},
               "when": "2026-12-01T08:00:00+08:00", "missing": null, "flag": false, "negative": -2147483648,
               "big": 18446744073709551615, "small": 1.5, "alpha": [], "zeta": -1.25e-3, "text": "\"x\" \\ \t", "extra": [{"deep": [null]}] }
            """#
        let ours = try Self.ours(Awkward.self, handWritten).get()
        #expect(ours == (try Self.foundation(Awkward.self, handWritten).get()))
        #expect(ours.nested[0][0].A == "é😀\n" && ours.byKey == ["a": 1] && ours.priceNow == 1 && ours.pricedAt == 2)
        // Decimals are numbers in JSON, as Foundation reads them (not Decimal's own keyed form).
        struct Priced: Codable, Equatable { var amount: Decimal; var amounts: [Decimal] }
        let priced = #"{"amount": 12.50, "amounts": [0.1, -3, 1e3]}"#
        #expect(try Self.ours(Priced.self, priced).get() == (try Self.foundation(Priced.self, priced).get()))
    }

    /// Foundation's rules where JSON leaves a choice: the first of two equal keys, whole numbers
    /// written with a fraction or an exponent, escaped keys, null for an optional; and the same
    /// kind of error at the same place when a value is missing, null or of the wrong type.
    @Test func decidesAsFoundationDecides() {
        struct Shape: Codable, Equatable {
            struct Inner: Codable, Equatable { var n: Int; var s: String? }
            var a: Int
            var b: String?
            var inner: Inner?
            var list: [Inner]?
        }
        let texts = [
            #"{"a":1,"a":2}"#, #"{"a":1.0}"#, #"{"a":1e2}"#, #"{"a":-0}"#, #"{"\u0061":3}"#, #"{"a":1,"b":null}"#,
            #"{"a":1.5}"#, #"{"a":99999999999999999999}"#, #"{"a":null}"#, #"{"b":"x"}"#, #"{"a":"1"}"#, #"{"a":true}"#,
            #"{"a":1,"b":2}"#, #"{"a":1,"inner":{"s":"x"}}"#, #"{"a":1,"inner":{"n":null}}"#, #"{"a":1,"inner":[]}"#,
            #"{"a":1,"list":[{"n":1},{"n":"2"}]}"#, #"{"a":1,"list":[{"n":1},null]}"#, #"{"a":1,"list":{}}"#, #"[1]"#, #""a""#,
            #"{"a":1,"b":"\ud800"}"#, #"{"a":1,"b":"\udc00\ud800"}"#,
        ]
        for text in texts {
            let (ours, foundation) = (Self.ours(Shape.self, text), Self.foundation(Shape.self, text))
            #expect((try? ours.get()) == (try? foundation.get()), "\(text)")
            // Foundation does not say where a number does not fit its type; ours does.
            let notFitting = Self.failure(foundation) == "dataCorrupted at []" && Self.failure(ours)?.hasPrefix("dataCorrupted at [") == true
            #expect(Self.failure(ours) == Self.failure(foundation) || notFitting, "\(text)")
        }
    }

    /// Tokens' times: seconds since 1970, whole or not, as Foundation's `.secondsSince1970` reads them.
    @Test func readsSecondsSince1970AsFoundationDoes() {
        struct Claims: Codable, Equatable { var exp: Date; var iat: Date?; var sub: String }
        let foundation = JSONDecoder()
        foundation.dateDecodingStrategy = .secondsSince1970
        for text in [#"{"exp":1764547200,"iat":1764547100.5,"sub":"u"}"#, #"{"exp":1.7645472e9,"sub":"u","iat":null}"#,
                     #"{"exp":"2026-12-01T00:00:00Z","sub":"u"}"#, #"{"exp":-1,"sub":"u"}"#] {
            let ours = Result { try EventJSONDecoder.decode(Claims.self, from: Array(text.utf8), dates: .secondsSince1970) }
            let theirs = Result { try foundation.decode(Claims.self, from: Data(text.utf8)) }
            #expect((try? ours.get()) == (try? theirs.get()), "\(text)")
            #expect(Self.failure(ours) == Self.failure(theirs), "\(text)")
        }
    }

    /// Text that is not JSON is refused even where Foundation lets it through; nothing is half
    /// read from it.
    @Test func refusesWhatIsNotJSON() {
        struct Small: Codable { var a: Int }
        let lenientInFoundation = [
            #"{"a":1,}"#, "{\"a\":1,\"x\":\"\u{1}\"}", #"{"a":1,"x":01}"#, #"{"a":1,"x":"\q"}"#, #"{"a":1,"x":1.}"#,
            #"{"a":1,"x":-}"#, #"{"a":1,"x":[1,2,]}"#, #"{"a":1,"x":"\u00zz"}"#,
        ]
        for text in lenientInFoundation {
            #expect((try? Self.foundation(Small.self, text).get()) != nil, "Foundation reads \(text)")
            #expect(Self.failure(Self.ours(Small.self, text)) == "dataCorrupted at []", "\(text)")
        }
        var invalidUTF8 = Array(#"{"a":1,"x":"é"}"#.utf8)
        invalidUTF8[invalidUTF8.count - 3] = 0xFF
        #expect(throws: DecodingError.self) { try EventJSONDecoder.decode(Small.self, from: invalidUTF8) }
        for text in ["", " ", "{", #"{"a":1} x"#, #"{"a":1"#, #"{"a" 1}"#, #"{a:1}"#, "[" + String(repeating: "[", count: 600) + "]", #"{"a":tru}"#] {
            #expect(Self.failure(Self.ours(Small.self, text)) == "dataCorrupted at []", "\(text)")
            #expect(Self.failure(Self.foundation(Small.self, text)) != nil, "\(text)")
        }
    }
}
