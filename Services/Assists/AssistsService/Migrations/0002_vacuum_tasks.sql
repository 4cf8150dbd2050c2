-- Every help updates its task row: a bargain leaves a dead row version per help. Vacuum after a
-- fixed number of them, not a fraction of the table.
ALTER TABLE tasks SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
                       autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000);
