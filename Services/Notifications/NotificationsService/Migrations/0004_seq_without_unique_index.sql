-- `seq` comes from its own sequence, so it is unique without an index saying so, and every read
-- by seq is one user's (the inbox and the live stream: `notifications_inbox`). The unique index
-- was one more b-tree entry for every message written and every help folded into a digest (a
-- new seq each time, so never a HOT update), read by nothing.
ALTER TABLE notifications DROP CONSTRAINT notifications_seq_key;
