"""The event contracts of Fission: the one place event types and their fields are declared.

`generate.py` turns this into the JSON Schemas and examples under this folder, the AsyncAPI
document, and the Swift types in Shared/Domain/Events/Events.swift. Additive changes (a new
optional field, a new event type) keep the topic's major version; anything else needs a new
topic `<service>.<aggregate>.v2`.

Field notation: "name": "type" where type is one of
  id:<SwiftIDType>   a UUID string (CampaignID, TeamID, ...)      user   a user id (text)
  money              {"amount": <int smallest units>, "currency": "CNY"}
  datetime           RFC 3339 timestamp     int, bool, string     enum:<Name> (see ENUMS)
  ref:<Name>         a shared object (see OBJECTS)                list:<type>
A trailing "?" makes a field optional. Each field has an example value.
"""

TOPICS = {
    "campaigns.campaign.v1": {"producer": "campaigns", "consumers": ["assists", "orders", "notifications"], "key": "campaignId", "partitions": 8},
    "campaigns.team.v1": {"producer": "campaigns", "consumers": ["orders", "notifications"], "key": "teamId", "partitions": 8},
    "campaigns.share.v1": {"producer": "campaigns", "consumers": ["assists", "orders", "levels"], "key": "shareId", "partitions": 8},
    "assists.task.v1": {"producer": "assists", "consumers": ["campaigns", "orders", "levels", "notifications"], "key": "taskId", "partitions": 8},
    "orders.order.v1": {"producer": "orders", "consumers": ["campaigns", "assists", "levels", "notifications"], "key": "orderId", "partitions": 8},
    "levels.member.v1": {"producer": "levels", "consumers": ["notifications"], "key": "userId", "partitions": 8},
    "notifications.delivery.v1": {"producer": "notifications", "consumers": [], "key": "notificationId", "partitions": 8},
}

ENUMS = {
    "CampaignKind": ["groupBuy", "bargain", "unlock"],  # declared by hand in CampaignRules.swift
    "CampaignEndReason": ["scheduled", "merchant", "soldOut"],
    "ReservationRejection": ["soldOut", "notOnSale", "perUserLimit", "teamUnavailable"],
    "ShareTargetKind": ["campaign", "team", "task"],
    "ShareChannel": ["wechat", "qq", "link", "poster", "other"],
    "OrderPurpose": ["openTeam", "joinTeam", "bargain", "unlock", "plain"],
    "CancellationReason": ["stockRejected", "shopper", "paymentTimeout"],
    "RefundReason": ["teamExpired", "teamUnavailable", "shopper", "merchant", "latePayment"],
    "XPRule": ["shareOpened", "friendHelped", "friendPurchase", "ownPurchase"],
    "DeliveryChannel": ["inbox", "stream", "webhook"],
    "JoinRejection": ["teamFull", "teamExpired"],
    "JoinResolution": ["newTeamOpened", "refund"],
}
HANDWRITTEN_ENUMS = {"CampaignKind"}

C = "0193a5c4-7d1e-7c3a-9b2f-1a2b3c4d5e6f"     # campaign
T = "0193a5c5-0a11-7e22-8f33-445566778899"     # team
K = "0193a5c6-1111-7222-9333-444455556666"     # task
O = "0193a5c7-2222-7333-8444-555566667777"     # order
O2 = "0193a5c7-2222-7333-8444-555566667778"
S = "0193a5c8-3333-7444-9555-666677778888"     # share
H = "0193a5c9-4444-7555-8666-777788889999"     # help
E = "0193a5ca-5555-7666-9777-88889999aaaa"     # event
L = "0193a5cb-6666-7777-8888-9999aaaabbbb"     # ledger entry
L2 = "0193a5cb-6666-7777-8888-9999aaaabbbc"
D = "0193a5cc-7777-7888-9999-aaaabbbbcccc"     # draw
N = "0193a5cd-8888-7999-8aaa-bbbbccccdddd"     # notification
W = "0193a5ce-9999-7aaa-9bbb-ccccddddeeee"     # webhook subscription
T0 = "2026-11-23T08:00:00Z"
T1 = "2026-11-24T08:00:00Z"

def money(amount):
    return {"amount": amount, "currency": "CNY"}

OBJECTS = {
    "TeamMember": [
        ("userId", "user?", "u-li-wei"),
        ("orderId", "id:OrderID?", O),
        ("leader", "bool", True),
        ("virtual", "bool", False),
    ],
    "ShareTarget": [
        ("kind", "enum:ShareTargetKind", "task"),
        ("id", "string", K),
    ],
    "Product": [
        ("sku", "string", "TEA-500G"),
        ("title", "string", "西湖龙井 500g"),
        ("imageURL", "string?", "https://img.example.com/tea.png"),
    ],
    "PriceTier": [
        ("minMembers", "int", 5),
        ("price", "money", money(1990)),
    ],
    "GroupBuyRules": [
        ("teamSize", "int", 3),
        ("groupPrice", "money", money(2990)),
        ("leaderPrice", "money?", money(2490)),
        ("ladder", "list:ref:PriceTier?", [{"minMembers": 3, "price": money(2990)}]),
        ("teamTimeLimitSeconds", "int", 86400),
        ("virtualFillPercent", "int", 0),
        ("latePaymentPolicy", "enum:LatePaymentPolicy", "openNewTeam"),
    ],
    "BargainRules": [
        ("floorPrice", "money", money(0)),
        ("maxHelpers", "int", 20),
        ("firstCutMin", "money", money(500)),
        ("firstCutMax", "money", money(1500)),
        ("newUserCutPercent", "int", 150),
        ("taskTimeLimitSeconds", "int", 86400),
        ("payWindowSeconds", "int", 1800),
        ("allowBuyAboveFloor", "bool", False),
        ("helperDailyLimit", "int", 5),
        ("deviceLimit", "int", 3),
        ("networkLimit", "int", 20),
    ],
    "UnlockRules": [
        ("helpersRequired", "int", 5),
        ("reward", "enum:UnlockReward", "coupon"),
        ("couponAmount", "money?", money(1000)),
        ("taskTimeLimitSeconds", "int", 86400),
    ],
    "CampaignTerms": [
        ("kind", "enum:CampaignKind", "bargain"),
        ("product", "ref:Product", {"sku": "TEA-500G", "title": "西湖龙井 500g", "imageURL": "https://img.example.com/tea.png"}),
        ("listPrice", "money", money(3990)),
        ("stock", "int", 500),
        ("perUserLimit", "int", 1),
        ("startsAt", "datetime", T0),
        ("endsAt", "datetime", "2026-12-01T00:00:00Z"),
        ("groupBuy", "ref:GroupBuyRules?", None),
        ("bargain", "ref:BargainRules?", {
            "floorPrice": money(0), "maxHelpers": 20, "firstCutMin": money(500), "firstCutMax": money(1500),
            "newUserCutPercent": 150, "taskTimeLimitSeconds": 86400, "payWindowSeconds": 1800,
            "allowBuyAboveFloor": False, "helperDailyLimit": 5, "deviceLimit": 3, "networkLimit": 20}),
        ("unlock", "ref:UnlockRules?", None),
    ],
}
# Objects and enums declared by hand in Swift (CampaignRules.swift); the generator only writes
# their schemas.
HANDWRITTEN_OBJECTS = {"Product", "PriceTier", "GroupBuyRules", "BargainRules", "UnlockRules", "CampaignTerms"}
ENUMS["LatePaymentPolicy"] = ["openNewTeam", "refund"]
ENUMS["UnlockReward"] = ["freeItem", "coupon"]
HANDWRITTEN_ENUMS |= {"LatePaymentPolicy", "UnlockReward"}

MEMBERS = [
    {"userId": "u-li-wei", "orderId": O, "leader": True, "virtual": False},
    {"userId": "u-zhang-min", "orderId": O2, "leader": False, "virtual": False},
    {"leader": False, "virtual": True},
]

EVENTS = {
    "campaigns.campaign.v1": {
        "CampaignPublished": [
            ("campaignId", "id:CampaignID", C), ("merchantId", "user", "m-tea-house"),
            ("terms", "ref:CampaignTerms", None), ("publishedAt", "datetime", T0)],
        "CampaignUpdated": [
            ("campaignId", "id:CampaignID", C), ("terms", "ref:CampaignTerms", None), ("stockLeft", "int", 620),
            ("updatedAt", "datetime", T0)],
        "CampaignPaused": [("campaignId", "id:CampaignID", C), ("pausedAt", "datetime", T0)],
        "CampaignResumed": [("campaignId", "id:CampaignID", C), ("resumedAt", "datetime", T0)],
        "CampaignEnded": [
            ("campaignId", "id:CampaignID", C), ("reason", "enum:CampaignEndReason", "soldOut"), ("endedAt", "datetime", T0)],
        "StockReserved": [
            ("campaignId", "id:CampaignID", C), ("orderId", "id:OrderID", O), ("userId", "user", "u-li-wei"),
            ("quantity", "int", 1), ("stockLeft", "int", 499)],
        "StockReservationRejected": [
            ("campaignId", "id:CampaignID", C), ("orderId", "id:OrderID", O), ("userId", "user", "u-li-wei"),
            ("quantity", "int", 1), ("reason", "enum:ReservationRejection", "soldOut")],
        "StockReleased": [
            ("campaignId", "id:CampaignID", C), ("orderId", "id:OrderID", O), ("quantity", "int", 1), ("stockLeft", "int", 500)],
    },
    "campaigns.team.v1": {
        "TeamOpened": [
            ("teamId", "id:TeamID", T), ("campaignId", "id:CampaignID", C), ("leaderId", "user", "u-li-wei"),
            ("leaderOrderId", "id:OrderID", O), ("teamSize", "int", 3), ("price", "money", money(2490)),
            ("deadline", "datetime", T1), ("openedAt", "datetime", T0)],
        "TeamMemberJoined": [
            ("teamId", "id:TeamID", T), ("campaignId", "id:CampaignID", C), ("userId", "user", "u-zhang-min"),
            ("orderId", "id:OrderID", O2), ("memberCount", "int", 2), ("teamSize", "int", 3), ("joinedAt", "datetime", T0)],
        "TeamJoinRejected": [
            ("teamId", "id:TeamID", T), ("campaignId", "id:CampaignID", C), ("userId", "user", "u-zhang-min"),
            ("orderId", "id:OrderID", O2), ("reason", "enum:JoinRejection", "teamFull"),
            ("resolution", "enum:JoinResolution", "newTeamOpened"), ("newTeamId", "id:TeamID?", "0193a5c5-0a11-7e22-8f33-44556677889a"),
            ("rejectedAt", "datetime", T0)],
        "TeamMemberLeft": [
            ("teamId", "id:TeamID", T), ("campaignId", "id:CampaignID", C), ("userId", "user", "u-zhang-min"),
            ("orderId", "id:OrderID", O2), ("memberCount", "int", 1), ("leftAt", "datetime", T0)],
        "TeamLeaderChanged": [
            ("teamId", "id:TeamID", T), ("campaignId", "id:CampaignID", C), ("previousLeaderId", "user", "u-li-wei"),
            ("leaderId", "user", "u-zhang-min"), ("changedAt", "datetime", T0)],
        "TeamCompleted": [
            ("teamId", "id:TeamID", T), ("campaignId", "id:CampaignID", C), ("members", "list:ref:TeamMember", MEMBERS),
            ("virtualMembers", "int", 1), ("completedAt", "datetime", T1)],
        "TeamExpired": [
            ("teamId", "id:TeamID", T), ("campaignId", "id:CampaignID", C), ("members", "list:ref:TeamMember", MEMBERS[:2]),
            ("expiredAt", "datetime", T1)],
    },
    "campaigns.share.v1": {
        "ShareCreated": [
            ("shareId", "id:ShareID", S), ("code", "string", "k7Qx2m"), ("sharerId", "user", "u-li-wei"),
            ("campaignId", "id:CampaignID", C), ("target", "ref:ShareTarget", {"kind": "task", "id": K}),
            ("channel", "enum:ShareChannel", "wechat"), ("createdAt", "datetime", T0)],
        "ShareClicked": [
            ("shareId", "id:ShareID", S), ("code", "string", "k7Qx2m"), ("sharerId", "user", "u-li-wei"),
            ("campaignId", "id:CampaignID", C), ("clickerId", "user?", "u-zhang-min"), ("clickedAt", "datetime", T0)],
    },
    "assists.task.v1": {
        "AssistTaskStarted": [
            ("taskId", "id:TaskID", K), ("campaignId", "id:CampaignID", C), ("kind", "enum:CampaignKind", "bargain"),
            ("initiatorId", "user", "u-li-wei"), ("listPrice", "money", money(3990)), ("floorPrice", "money?", money(0)),
            ("priceNow", "money", money(3170)), ("helpersRequired", "int?", None), ("maxHelpers", "int", 20),
            ("seedHash", "string", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
            ("deadline", "datetime", T1), ("startedAt", "datetime", T0)],
        "AssistRecorded": [
            ("taskId", "id:TaskID", K), ("campaignId", "id:CampaignID", C), ("initiatorId", "user", "u-li-wei"),
            ("helpId", "id:HelpID", H), ("helperId", "user", "u-zhang-min"), ("cut", "money", money(320)),
            ("priceNow", "money", money(410)), ("amountLeft", "money", money(410)), ("helperCount", "int", 17),
            ("helpersLeftAtMost", "int", 3), ("newUser", "bool", False), ("shareId", "id:ShareID?", S),
            ("referrerId", "user?", "u-li-wei"), ("recordedAt", "datetime", T0)],
        "AssistHeldForReview": [
            ("taskId", "id:TaskID", K), ("campaignId", "id:CampaignID", C), ("helpId", "id:HelpID", H),
            ("helperId", "user", "u-zhang-min"), ("reason", "string", "sharedDevice"), ("heldAt", "datetime", T0)],
        "AssistTaskCompleted": [
            ("taskId", "id:TaskID", K), ("campaignId", "id:CampaignID", C), ("kind", "enum:CampaignKind", "bargain"),
            ("initiatorId", "user", "u-li-wei"), ("finalPrice", "money", money(0)), ("helperCount", "int", 20),
            ("payBy", "datetime", "2026-11-23T08:30:00Z"), ("seed", "string", "test"), ("completedAt", "datetime", T0)],
        "AssistTaskExpired": [
            ("taskId", "id:TaskID", K), ("campaignId", "id:CampaignID", C), ("kind", "enum:CampaignKind", "bargain"),
            ("initiatorId", "user", "u-li-wei"), ("priceReached", "money", money(410)), ("helperCount", "int", 17),
            ("seed", "string", "test"), ("expiredAt", "datetime", T1)],
    },
    "orders.order.v1": {
        "OrderPlaced": [
            ("orderId", "id:OrderID", O), ("userId", "user", "u-li-wei"), ("campaignId", "id:CampaignID", C),
            ("purpose", "enum:OrderPurpose", "joinTeam"), ("teamId", "id:TeamID?", T), ("taskId", "id:TaskID?", None),
            ("quantity", "int", 1), ("total", "money", money(2990)), ("shareId", "id:ShareID?", S),
            ("referrerId", "user?", "u-zhang-min"), ("placedAt", "datetime", T0)],
        "OrderStockReserved": [
            ("orderId", "id:OrderID", O), ("userId", "user", "u-li-wei"), ("campaignId", "id:CampaignID", C),
            ("reservedAt", "datetime", T0)],
        "OrderAwaitingPayment": [
            ("orderId", "id:OrderID", O), ("userId", "user", "u-li-wei"), ("campaignId", "id:CampaignID", C),
            ("total", "money", money(2990)), ("paymentIntentId", "string", "pi_7Hq2kK"), ("payBy", "datetime", "2026-11-23T08:15:00Z")],
        "OrderPaid": [
            ("orderId", "id:OrderID", O), ("userId", "user", "u-li-wei"), ("campaignId", "id:CampaignID", C),
            ("purpose", "enum:OrderPurpose", "joinTeam"), ("teamId", "id:TeamID?", T), ("taskId", "id:TaskID?", None),
            ("amount", "money", money(2990)), ("firstPurchase", "bool", True), ("paidAt", "datetime", T0)],
        "OrderConfirmed": [
            ("orderId", "id:OrderID", O), ("userId", "user", "u-li-wei"), ("campaignId", "id:CampaignID", C),
            ("total", "money", money(2990)), ("referrerId", "user?", "u-zhang-min"), ("confirmedAt", "datetime", T1)],
        "OrderCancelled": [
            ("orderId", "id:OrderID", O), ("userId", "user", "u-li-wei"), ("campaignId", "id:CampaignID", C),
            ("quantity", "int", 1), ("reason", "enum:CancellationReason", "paymentTimeout"),
            ("stockReserved", "bool", True), ("cancelledAt", "datetime", T0)],
        "OrderRefunded": [
            ("orderId", "id:OrderID", O), ("userId", "user", "u-li-wei"), ("campaignId", "id:CampaignID", C),
            ("teamId", "id:TeamID?", T), ("quantity", "int", 1), ("amount", "money", money(2990)),
            ("reason", "enum:RefundReason", "teamExpired"), ("referrerId", "user?", "u-zhang-min"),
            ("refundedAt", "datetime", T1)],
    },
    "levels.member.v1": {
        "XPAwarded": [
            ("userId", "user", "u-li-wei"), ("entryId", "id:LedgerEntryID", L), ("rule", "enum:XPRule", "friendPurchase"),
            ("points", "int", 20), ("causeEventId", "id:EventID", E), ("totalXP", "int", 145), ("awardedAt", "datetime", T0)],
        "XPRevoked": [
            ("userId", "user", "u-li-wei"), ("entryId", "id:LedgerEntryID", L2), ("revokesEntryId", "id:LedgerEntryID", L),
            ("rule", "enum:XPRule", "friendPurchase"), ("points", "int", 20), ("causeEventId", "id:EventID", E),
            ("totalXP", "int", 125), ("revokedAt", "datetime", T1)],
        "LevelChanged": [
            ("userId", "user", "u-li-wei"), ("fromLevel", "int", 3), ("toLevel", "int", 4), ("totalXP", "int", 145),
            ("grantedBy", "user?", None), ("reason", "string?", None), ("changedAt", "datetime", T0)],
        "DrawWon": [
            ("userId", "user", "u-li-wei"), ("drawId", "id:DrawID", D), ("merchantId", "user", "m-tea-house"),
            ("campaignId", "id:CampaignID?", C), ("prize", "string", "西湖龙井 50g 试饮装"), ("wonAt", "datetime", T1)],
    },
    "notifications.delivery.v1": {
        "NotificationDelivered": [
            ("notificationId", "id:NotificationID", N), ("userId", "user", "u-li-wei"), ("category", "string", "assistRecorded"),
            ("channel", "enum:DeliveryChannel", "inbox"), ("causeEventId", "id:EventID", E), ("deliveredAt", "datetime", T0)],
        "WebhookDeliveryFailed": [
            ("notificationId", "id:NotificationID", N), ("subscriptionId", "id:SubscriptionID", W), ("attempts", "int", 8),
            ("lastStatus", "int?", 502), ("disabled", "bool", True), ("failedAt", "datetime", T1)],
    },
}
