/// An amount of money: an integer count of the currency's smallest unit (fen for CNY) and the
/// ISO 4217 code. Never a floating point number. Arithmetic refuses to mix currencies.
public struct Money: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    /// Smallest units: 1230 CNY is ¥12.30.
    public var amount: Int64
    public var currency: Currency

    public init(_ amount: Int64, _ currency: Currency) {
        self.amount = amount
        self.currency = currency
    }

    public static func zero(_ currency: Currency) -> Money { Money(0, currency) }

    public struct CurrencyMismatch: Error, CustomStringConvertible {
        public var left: Currency
        public var right: Currency
        public var description: String { "cannot combine \(left) and \(right)" }
    }

    public func adding(_ other: Money) throws(CurrencyMismatch) -> Money {
        guard currency == other.currency else { throw CurrencyMismatch(left: currency, right: other.currency) }
        return Money(amount + other.amount, currency)
    }

    public func subtracting(_ other: Money) throws(CurrencyMismatch) -> Money {
        guard currency == other.currency else { throw CurrencyMismatch(left: currency, right: other.currency) }
        return Money(amount - other.amount, currency)
    }

    public func multiplied(by factor: Int64) -> Money { Money(amount * factor, currency) }

    /// Comparing different currencies is a programming error, not a business outcome.
    public static func < (lhs: Money, rhs: Money) -> Bool {
        precondition(lhs.currency == rhs.currency, "comparing \(lhs.currency) with \(rhs.currency)")
        return lhs.amount < rhs.amount
    }

    public var isNegative: Bool { amount < 0 }

    /// `¥12.30`, `-¥0.05`, `$1,234.50` style: symbol, grouping, the currency's decimals.
    public var formatted: String {
        let digits = currency.minorDigits
        let scale = Int64(pow10(digits))
        let magnitude = amount.magnitude
        let whole = magnitude / UInt64(scale)
        let fraction = magnitude % UInt64(scale)
        var wholeText = String(whole)
        var grouped = ""
        while wholeText.count > 3 {
            grouped = "," + wholeText.suffix(3) + grouped
            wholeText.removeLast(3)
        }
        grouped = wholeText + grouped
        var text = currency.symbol + grouped
        if digits > 0 {
            let fractionText = String(fraction)
            text += "." + String(repeating: "0", count: digits - fractionText.count) + fractionText
        }
        return (amount < 0 ? "-" : "") + text
    }

    public var description: String { formatted }

    private func pow10(_ exponent: Int) -> Int { (0..<exponent).reduce(1) { value, _ in value * 10 } }
}

/// An ISO 4217 currency code.
public struct Currency: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue.uppercased() }

    public static let cny = Currency(rawValue: "CNY")
    public static let usd = Currency(rawValue: "USD")
    public static let eur = Currency(rawValue: "EUR")
    public static let jpy = Currency(rawValue: "JPY")
    public static let hkd = Currency(rawValue: "HKD")

    public var isValid: Bool { rawValue.count == 3 && rawValue.allSatisfy { $0.isASCII && $0.isUppercase } }

    /// Digits after the decimal point (ISO 4217 minor units).
    public var minorDigits: Int {
        switch rawValue {
        case "JPY", "KRW", "VND", "CLP", "ISK": 0
        case "BHD", "KWD", "OMR", "JOD", "TND": 3
        default: 2
        }
    }

    public var symbol: String {
        switch rawValue {
        case "CNY", "JPY": "¥"
        case "USD": "$"
        case "EUR": "€"
        case "GBP": "£"
        case "HKD": "HK$"
        default: rawValue + " "
        }
    }

    public var description: String { rawValue }

    public init(from decoder: any Decoder) throws {
        let code = try decoder.singleValueContainer().decode(String.self)
        self.init(rawValue: code)
        guard isValid else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "'\(code)' is not an ISO 4217 code"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
