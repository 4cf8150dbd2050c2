-- A merchant's own wording for a campaign's messages, per category and locale.
CREATE TABLE campaign_templates (
    campaign_id uuid NOT NULL,
    category text NOT NULL,
    locale text NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (campaign_id, category, locale)
);
