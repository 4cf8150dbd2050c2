-- Group-buy teams. A team row is locked (FOR UPDATE) for every join and at its deadline, so
-- it never exceeds its size and is completed or expired exactly once.
CREATE TABLE teams (
    id uuid PRIMARY KEY,
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    leader_id text NOT NULL,
    size int NOT NULL CHECK (size BETWEEN 2 AND 100),
    status text NOT NULL CHECK (status IN ('open', 'completed', 'expired')),
    deadline timestamptz NOT NULL,
    virtual_members int NOT NULL DEFAULT 0,
    opened_at timestamptz NOT NULL DEFAULT now(),
    closed_at timestamptz
);
CREATE INDEX teams_open ON teams (campaign_id, deadline) WHERE status = 'open';

CREATE TABLE team_members (
    team_id uuid NOT NULL REFERENCES teams (id),
    order_id uuid NOT NULL UNIQUE,
    user_id text NOT NULL,
    position int NOT NULL,
    leader bool NOT NULL DEFAULT false,
    joined_at timestamptz NOT NULL DEFAULT now(),
    left_at timestamptz,
    PRIMARY KEY (team_id, order_id),
    UNIQUE (team_id, position)
);
