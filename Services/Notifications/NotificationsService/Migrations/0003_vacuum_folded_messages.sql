-- A digest folds each help into one row per task (a new seq each time, so no HOT update): a
-- busy task leaves a dead row version per help, which every inbox read and digest lookup of
-- its initiator steps over until vacuumed. Vacuum after a fixed number of them.
ALTER TABLE notifications SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
                               autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000);
