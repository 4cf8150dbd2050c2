import Domain
import Foundation

/// Message texts per locale (zh-CN by default, en), with `{name}` variables; money is formatted
/// in the currency's own way.
enum Templates {
    struct Text {
        var title: String
        var body: String
    }

    static let texts: [String: [String: Text]] = [
        "assistRecorded": [
            "zh-CN": Text(title: "好友帮你砍了一刀", body: "{helper} 帮你砍了 {cut}，还差 {left}，最多还需 {helpers} 位好友"),
            "en": Text(title: "A friend helped", body: "{helper} helped you cut {cut} — {left} and at most {helpers} friends to go"),
        ],
        "assistRecordedDigest": [
            "zh-CN": Text(title: "{count} 位好友帮你砍价", body: "{count} 位好友刚刚帮你砍价，还差 {left}，最多还需 {helpers} 位好友"),
            "en": Text(title: "{count} friends helped", body: "{count} friends helped you just now — {left} and at most {helpers} friends to go"),
        ],
        "taskCompleted": [
            "zh-CN": Text(title: "砍价成功", body: "已砍到 {price}，请在 {payBy} 前下单"),
            "en": Text(title: "Bargain complete", body: "You reached {price}; order before {payBy}"),
        ],
        "taskExpiring": [
            "zh-CN": Text(title: "砍价即将结束", body: "还剩不到 1 小时，快邀请好友帮你砍价"),
            "en": Text(title: "Your bargain ends soon", body: "Less than an hour left: ask friends to help"),
        ],
        "taskExpired": [
            "zh-CN": Text(title: "砍价已结束", body: "本次砍到 {price}"),
            "en": Text(title: "Your bargain ended", body: "You reached {price}"),
        ],
        "teamMemberJoined": [
            "zh-CN": Text(title: "有人加入了你的团", body: "{member} 加入了拼团，还差 {left} 人"),
            "en": Text(title: "Someone joined your team", body: "{member} joined; {left} more to go"),
        ],
        "teamCompleted": [
            "zh-CN": Text(title: "拼团成功", body: "你的团已满员，订单即将确认"),
            "en": Text(title: "Your team is complete", body: "Your team is full; your order is being confirmed"),
        ],
        "teamExpired": [
            "zh-CN": Text(title: "拼团未成功", body: "你的团已过期，{amount} 正在退回"),
            "en": Text(title: "Your team expired", body: "Your team expired, {amount} is on its way back"),
        ],
        "orderPaid": [
            "zh-CN": Text(title: "支付成功", body: "已支付 {amount}"),
            "en": Text(title: "Payment received", body: "You paid {amount}"),
        ],
        "orderRefunded": [
            "zh-CN": Text(title: "退款已发起", body: "{amount} 正在退回"),
            "en": Text(title: "Refund on its way", body: "{amount} is on its way back"),
        ],
        "levelChanged": [
            "zh-CN": Text(title: "等级变化", body: "你现在是 {level} 级"),
            "en": Text(title: "Level changed", body: "You reached level {level}"),
        ],
        "xpMilestone": [
            "zh-CN": Text(title: "经验里程碑", body: "你的经验值达到了 {xp}"),
            "en": Text(title: "XP milestone", body: "You reached {xp} XP"),
        ],
        "drawWon": [
            "zh-CN": Text(title: "你中奖了", body: "恭喜获得 {prize}"),
            "en": Text(title: "You won the draw", body: "You won {prize}"),
        ],
    ]

    /// Categories that may wait out quiet hours.
    static let nonUrgent: Set<String> = ["assistRecorded", "teamMemberJoined", "levelChanged", "xpMilestone", "taskExpiring"]

    /// Promotional categories: at most `promotionalDailyCap` of them per user per day.
    static let promotional: Set<String> = ["taskExpiring", "xpMilestone"]
    static let promotionalDailyCap = 5

    /// Categories a merchant may reword for a campaign.
    static let campaignCategories: Set<String> = ["assistRecorded", "taskCompleted", "taskExpired", "teamMemberJoined", "teamCompleted"]

    static func render(_ category: String, locale: String, _ values: [String: String]) -> Text {
        let forCategory = texts[category] ?? [:]
        return fill(forCategory[locale] ?? forCategory["zh-CN"] ?? Text(title: category, body: ""), values)
    }

    static func fill(_ template: Text, _ values: [String: String]) -> Text {
        Text(title: fill(template.title, values), body: fill(template.body, values))
    }

    /// Each `{name}` with a value becomes that value, in one pass: a value that itself reads like
    /// a placeholder (a nickname such as "{price}") stays as written. Unknown names stay as
    /// written. (Foundation's `replacingOccurrences` per value took 7% of the service's CPU under
    /// load.)
    static func fill(_ template: String, _ values: [String: String]) -> String {
        guard template.utf8.contains(UInt8(ascii: "{")) else { return template }
        var filled = ""
        filled.reserveCapacity(template.utf8.count + 32)
        var rest = template[...]
        while let open = rest.firstIndex(of: "{") {
            filled += rest[..<open]
            let afterOpen = rest.index(after: open)
            guard let close = rest[afterOpen...].firstIndex(where: { $0 == "}" || $0 == "{" }), rest[close] == "}",
                  let value = values[String(rest[afterOpen..<close])]
            else {
                filled += "{"
                rest = rest[afterOpen...]
                continue
            }
            filled += value
            rest = rest[rest.index(after: close)...]
        }
        filled += rest
        return filled
    }
}
