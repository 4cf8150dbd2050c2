-- What assists knows of campaigns, from campaigns.campaign.v1.
CREATE TABLE campaign_rules (
    campaign_id uuid PRIMARY KEY,
    status text NOT NULL,
    terms jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Users who ever paid an order (from orders.order.v1): everyone else is a new user.
CREATE TABLE paid_users (user_id text PRIMARY KEY);

-- Logged-in opens of share links (from campaigns.share.v1), for attributing helps.
CREATE TABLE share_clicks (
    share_id uuid NOT NULL,
    campaign_id uuid NOT NULL,
    sharer_id text NOT NULL,
    clicker_id text NOT NULL,
    clicked_at timestamptz NOT NULL
);
CREATE INDEX share_clicks_clicker ON share_clicks (campaign_id, clicker_id, clicked_at DESC);

-- Bargain and unlock tasks. `price_now` never goes below the floor; the row is locked for every
-- help, so helps on one task are applied one after another.
CREATE TABLE tasks (
    id uuid PRIMARY KEY,
    campaign_id uuid NOT NULL,
    kind text NOT NULL CHECK (kind IN ('bargain', 'unlock')),
    initiator_id text NOT NULL,
    currency text NOT NULL,
    list_price bigint NOT NULL,
    floor_price bigint NOT NULL,
    price_now bigint NOT NULL,
    promised_helpers int NOT NULL,
    helper_count int NOT NULL DEFAULT 0,
    status text NOT NULL CHECK (status IN ('open', 'completed', 'expired')),
    seed text NOT NULL,
    seed_hash text NOT NULL,
    schedule jsonb NOT NULL,
    deadline timestamptz NOT NULL,
    pay_by timestamptz,
    started_at timestamptz NOT NULL DEFAULT now(),
    ended_at timestamptz,
    CHECK (price_now >= floor_price)
);
CREATE INDEX tasks_initiator ON tasks (campaign_id, initiator_id);

-- One help per helper per task, enforced here. `counted` helps carry their cut and step;
-- `held` ones wait for an operator.
CREATE TABLE helps (
    id uuid PRIMARY KEY,
    task_id uuid NOT NULL REFERENCES tasks (id),
    helper_id text NOT NULL,
    state text NOT NULL CHECK (state IN ('counted', 'held', 'rejected')),
    step int,
    cut bigint NOT NULL DEFAULT 0,
    new_user bool NOT NULL,
    device_id text,
    network text,
    share_id uuid,
    referrer_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    counted_at timestamptz,
    UNIQUE (task_id, helper_id),
    UNIQUE (task_id, step)
);
CREATE INDEX helps_device ON helps (device_id, created_at) WHERE device_id IS NOT NULL;
CREATE INDEX helps_network ON helps (network, created_at) WHERE network IS NOT NULL;

-- Per-day counters behind the helper, device and network limits.
CREATE TABLE help_limits (
    scope text NOT NULL,
    day date NOT NULL,
    count int NOT NULL,
    PRIMARY KEY (scope, day)
);

-- Every operator decision on a held help: who, what, why, when.
CREATE TABLE review_decisions (
    id bigserial PRIMARY KEY,
    help_id uuid NOT NULL REFERENCES helps (id),
    decision text NOT NULL CHECK (decision IN ('approved', 'rejected')),
    operator_id text NOT NULL,
    reason text NOT NULL,
    decided_at timestamptz NOT NULL DEFAULT now()
);
