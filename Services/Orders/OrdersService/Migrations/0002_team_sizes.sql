-- How full each team is (from campaigns.team.v1), for ladder prices (price tiers by members).
CREATE TABLE team_sizes (
    team_id uuid PRIMARY KEY,
    member_count int NOT NULL
);
