-- A share code orders has not heard of yet (its ShareCreated event is still on the way): kept on
-- the order, so that the referrer is filled in when the share arrives, before confirmation.
ALTER TABLE orders ADD COLUMN share_code text;
CREATE INDEX orders_awaiting_share ON orders (share_code) WHERE share_code IS NOT NULL AND referrer_id IS NULL;
