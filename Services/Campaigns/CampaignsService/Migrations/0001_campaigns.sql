-- Campaigns and their stock. `stock_left` can never go below zero: the database refuses.
CREATE TABLE campaigns (
    id uuid PRIMARY KEY,
    merchant_id text NOT NULL,
    status text NOT NULL CHECK (status IN ('draft', 'published', 'paused', 'ended')),
    audit_status text NOT NULL DEFAULT 'pending' CHECK (audit_status IN ('pending', 'approved', 'rejected')),
    kind text NOT NULL,
    terms jsonb NOT NULL,
    stock_left int NOT NULL CHECK (stock_left >= 0),
    attribution_window_seconds int NOT NULL DEFAULT 604800,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX campaigns_merchant ON campaigns (merchant_id, created_at DESC);
CREATE INDEX campaigns_published ON campaigns (published_at DESC) WHERE status = 'published';

-- One row per order that asked for stock. The order id is the key, so a redelivered or late
-- event cannot reserve twice, and a cancellation that overtakes its placement leaves a
-- tombstone ('released' with quantity never taken) that the placement then respects.
CREATE TABLE reservations (
    order_id uuid PRIMARY KEY,
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    user_id text NOT NULL,
    quantity int NOT NULL CHECK (quantity > 0),
    state text NOT NULL CHECK (state IN ('reserved', 'rejected', 'released', 'cancelled_before_placed')),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reservations_user ON reservations (campaign_id, user_id) WHERE state = 'reserved';
