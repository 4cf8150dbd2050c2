-- Every message a person got. `seq` orders the inbox and the live stream (its SSE id).
-- One notification per (user, cause): the event that caused it.
CREATE TABLE notifications (
    id uuid PRIMARY KEY,
    seq bigserial UNIQUE,
    user_id text NOT NULL,
    category text NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    digest_key text,
    digest_count int NOT NULL DEFAULT 1,
    cause_event_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    visible_at timestamptz NOT NULL DEFAULT now(),
    read_at timestamptz
);
CREATE INDEX notifications_inbox ON notifications (user_id, seq DESC);
CREATE INDEX notifications_digest ON notifications (user_id, digest_key, created_at DESC) WHERE digest_key IS NOT NULL;

-- Causes already turned into a notification (a folded help keeps its own cause row).
CREATE TABLE notification_causes (
    user_id text NOT NULL,
    cause_event_id uuid NOT NULL,
    PRIMARY KEY (user_id, cause_event_id)
);

CREATE TABLE preferences (
    user_id text PRIMARY KEY,
    locale text NOT NULL DEFAULT 'zh-CN',
    muted text[] NOT NULL DEFAULT '{}',
    quiet_start int,
    quiet_end int,
    time_zone_offset_minutes int NOT NULL DEFAULT 480
);

-- Which merchant runs which campaign (from campaigns.campaign.v1), for merchant webhooks.
CREATE TABLE campaign_merchants (
    campaign_id uuid PRIMARY KEY,
    merchant_id text NOT NULL,
    title text NOT NULL
);

CREATE TABLE webhook_subscriptions (
    id uuid PRIMARY KEY,
    merchant_id text NOT NULL,
    url text NOT NULL,
    secret text NOT NULL,
    categories text[] NOT NULL,
    disabled_at timestamptz,
    consecutive_failures int NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES webhook_subscriptions (id),
    cause_event_id uuid NOT NULL,
    category text NOT NULL,
    payload text NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts int NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subscription_id, cause_event_id)
);

CREATE TABLE webhook_attempts (
    id bigserial PRIMARY KEY,
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id),
    attempt int NOT NULL,
    status int,
    error text,
    at timestamptz NOT NULL DEFAULT now()
);

-- Who leads each team (from campaigns.team.v1), to tell them when someone joins.
CREATE TABLE team_leaders (
    team_id uuid PRIMARY KEY,
    leader_id text NOT NULL
);
