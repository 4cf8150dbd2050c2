-- Read models of other services' decisions, from their events.
CREATE TABLE campaign_terms (
    campaign_id uuid PRIMARY KEY,
    merchant_id text NOT NULL,
    status text NOT NULL,
    terms jsonb NOT NULL
);

CREATE TABLE completed_tasks (
    task_id uuid PRIMARY KEY,
    campaign_id uuid NOT NULL,
    initiator_id text NOT NULL,
    kind text NOT NULL,
    final_price bigint NOT NULL,
    currency text NOT NULL,
    pay_by timestamptz NOT NULL
);

-- Orders. `state` only moves forward; every change is guarded by the state it leaves.
CREATE TABLE orders (
    id uuid PRIMARY KEY,
    user_id text NOT NULL,
    campaign_id uuid NOT NULL,
    purpose text NOT NULL,
    team_id uuid,
    task_id uuid,
    quantity int NOT NULL CHECK (quantity > 0),
    total bigint NOT NULL CHECK (total >= 0),
    currency text NOT NULL,
    state text NOT NULL CHECK (state IN ('placed', 'awaiting_payment', 'paid', 'waiting_for_team', 'confirmed', 'cancelled', 'refunded')),
    payment_intent text UNIQUE,
    pay_by timestamptz,
    share_id uuid,
    referrer_id text,
    placed_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_user ON orders (user_id, placed_at DESC);
CREATE INDEX orders_campaign ON orders (campaign_id, placed_at DESC);
CREATE INDEX orders_team ON orders (team_id) WHERE team_id IS NOT NULL;
-- One bargain or unlock order per completed task.
CREATE UNIQUE INDEX orders_one_per_task ON orders (task_id) WHERE task_id IS NOT NULL AND state NOT IN ('cancelled', 'refunded');

CREATE TABLE order_history (
    id bigserial PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders (id),
    state text NOT NULL,
    note text NOT NULL DEFAULT '',
    at timestamptz NOT NULL DEFAULT now()
);

-- Payments the provider reported, by its reference: a redelivered webhook finds its row.
CREATE TABLE payments (
    provider_ref text PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders (id),
    amount bigint NOT NULL,
    currency text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Every webhook call, accepted or refused, for operators.
CREATE TABLE webhook_log (
    id bigserial PRIMARY KEY,
    outcome text NOT NULL,
    reason text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- A user's first paid order (after it, they are no longer a new user).
CREATE TABLE first_purchases (
    user_id text PRIMARY KEY,
    order_id uuid NOT NULL
);

-- Share links (from campaigns.share.v1): the code a shopper arrived through names the referrer.
CREATE TABLE shares (
    code text PRIMARY KEY,
    share_id uuid NOT NULL,
    sharer_id text NOT NULL,
    campaign_id uuid NOT NULL
);
