import Postgres

/// Tables of the service kit itself, applied before a service's own migrations.
public enum KitMigrations {
    public static let all: [Migration] = [
        Migration(version: "0000_kit_outbox", sql: """
            -- Events waiting to be published, written in the same transaction as the change they
            -- describe. The relay publishes unpublished rows in id order.
            CREATE TABLE outbox (
                id bigserial PRIMARY KEY,
                event_id uuid NOT NULL UNIQUE,
                topic text NOT NULL,
                key text NOT NULL,
                event_type text NOT NULL,
                payload text NOT NULL,
                headers jsonb NOT NULL DEFAULT '{}',
                created_at timestamptz NOT NULL DEFAULT now(),
                published_at timestamptz
            );
            CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
            CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;
            """),
        Migration(version: "0000_kit_outbox_vacuum", sql: """
            -- Every outbox row is updated once (published) and purged later: vacuum after a fixed
            -- number of dead rows, not a fraction of a table that may hold a week of events. Until
            -- vacuumed, the relay's read of unpublished rows steps over every published one.
            ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
                                    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000);
            """),
        Migration(version: "0000_kit_inbox", sql: """
            -- What each consumer has handled, written in the handler's transaction: a redelivered
            -- event finds its row and has no second effect.
            CREATE TABLE inbox (
                consumer text NOT NULL,
                event_id uuid NOT NULL,
                event_type text NOT NULL,
                handled_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (consumer, event_id)
            );
            """),
        Migration(version: "0000_kit_scheduled_jobs", sql: """
            -- Due work (deadlines, reminders), claimed with FOR UPDATE SKIP LOCKED.
            CREATE TABLE scheduled_jobs (
                id bigserial PRIMARY KEY,
                kind text NOT NULL,
                key text NOT NULL,
                due_at timestamptz NOT NULL,
                payload jsonb NOT NULL DEFAULT '{}',
                attempts int NOT NULL DEFAULT 0,
                last_error text,
                UNIQUE (kind, key)
            );
            CREATE INDEX scheduled_jobs_due ON scheduled_jobs (due_at);
            """),
        Migration(version: "0000_kit_idempotency", sql: """
            -- First responses to mutating requests, by caller and Idempotency-Key.
            CREATE TABLE idempotency_keys (
                scope text NOT NULL,
                key text NOT NULL,
                request_hash text NOT NULL,
                status int NOT NULL,
                body text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (scope, key)
            );
            """),
    ]
}
