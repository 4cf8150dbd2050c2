-- The XP ledger: append-only. Every entry names its cause; `cause_key` makes each cause award
-- at most once. A refund adds a revoking entry (negative points, `revokes` = the award).
CREATE TABLE xp_ledger (
    id uuid PRIMARY KEY,
    user_id text NOT NULL,
    rule text NOT NULL,
    points int NOT NULL,
    cause_event_id uuid NOT NULL,
    cause_key text NOT NULL UNIQUE,
    order_id uuid,
    campaign_id uuid,
    revokes uuid REFERENCES xp_ledger (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX xp_ledger_user ON xp_ledger (user_id, created_at);
CREATE INDEX xp_ledger_order ON xp_ledger (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX xp_ledger_campaign ON xp_ledger (campaign_id, created_at);
CREATE UNIQUE INDEX xp_ledger_one_revocation ON xp_ledger (revokes) WHERE revokes IS NOT NULL;
-- The ledger is never rewritten: corrections are new entries.
CREATE FUNCTION xp_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the XP ledger is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER xp_ledger_append_only BEFORE UPDATE OR DELETE ON xp_ledger
    FOR EACH ROW EXECUTE FUNCTION xp_ledger_append_only();

-- Per member: XP earned (sum of the ledger), the level it gives, and an operator's grant.
CREATE TABLE members (
    user_id text PRIMARY KEY,
    xp int NOT NULL DEFAULT 0,
    earned_level int NOT NULL DEFAULT 1,
    granted_level int,
    grant_reason text,
    granted_by text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Free-gift draws, verifiable: seed hash published at creation, seed revealed when drawn.
CREATE TABLE draws (
    id uuid PRIMARY KEY,
    merchant_id text NOT NULL,
    campaign_id uuid,
    prize text NOT NULL,
    prize_count int NOT NULL CHECK (prize_count > 0),
    closes_at timestamptz NOT NULL,
    seed text NOT NULL,
    seed_hash text NOT NULL,
    status text NOT NULL CHECK (status IN ('open', 'drawn')),
    drawn_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE draw_entries (
    draw_id uuid NOT NULL REFERENCES draws (id),
    user_id text NOT NULL,
    weight int NOT NULL CHECK (weight > 0),
    won bool NOT NULL DEFAULT false,
    entered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (draw_id, user_id)
);
