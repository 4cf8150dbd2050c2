CREATE TABLE shares (
    id uuid PRIMARY KEY,
    code text NOT NULL UNIQUE,
    sharer_id text NOT NULL,
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    target_kind text NOT NULL,
    target_id text NOT NULL,
    channel text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Every open of a share link; the clicker when logged in, otherwise an anonymous visitor id.
CREATE TABLE share_clicks (
    id bigserial PRIMARY KEY,
    share_id uuid NOT NULL REFERENCES shares (id),
    campaign_id uuid NOT NULL,
    sharer_id text NOT NULL,
    clicker_id text,
    visitor_id text,
    clicked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX share_clicks_campaign ON share_clicks (campaign_id, clicked_at);
CREATE INDEX share_clicks_clicker ON share_clicks (campaign_id, clicker_id, clicked_at DESC);

-- Counters kept up to date by the handlers that see each fact.
CREATE TABLE campaign_statistics (
    campaign_id uuid NOT NULL,
    metric text NOT NULL,
    value bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, metric)
);

-- Who first brought whom into a campaign: the fission tree.
CREATE TABLE fission_edges (
    campaign_id uuid NOT NULL,
    participant_id text NOT NULL,
    referrer_id text NOT NULL,
    depth int NOT NULL,
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, participant_id)
);

-- Everyone who took part (shared, started a task, ordered): the denominator of the K-factor.
CREATE TABLE participants (
    campaign_id uuid NOT NULL,
    user_id text NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, user_id)
);

-- Users who paid an order before: a paid order from anyone else is a new buyer.
CREATE TABLE buyers (
    user_id text PRIMARY KEY,
    first_paid_at timestamptz NOT NULL DEFAULT now()
);
