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
        Migration(version: "0000_kit_outbox_published", sql: """
            -- Published events move here (the relay deletes the outbox row and inserts this one in
            -- one statement) instead of being updated in place: an update writes the whole row again
            -- with three b-tree entries (id, event id, published at) and leaves the outbox growing
            -- for the retention period, so the relay's reads and marks slowed as it grew. Measured
            -- on a 50-row batch: marking 0.9 ms by update, 0.6 ms by this move, and the update's
            -- cost rose with the table. The archive has no b-tree: the purge finds old rows
            -- through a BRIN index (rows arrive in publishing order).
            CREATE TABLE outbox_published (
                id int8 NOT NULL,
                event_id uuid NOT NULL,
                topic text NOT NULL,
                key text NOT NULL,
                event_type text NOT NULL,
                payload text NOT NULL,
                headers jsonb NOT NULL,
                created_at timestamptz NOT NULL,
                published_at timestamptz NOT NULL DEFAULT now()
            );
            CREATE INDEX outbox_published_when ON outbox_published USING brin (published_at);
            -- Every event the service wrote and still keeps, published or waiting, for audits and
            -- tests. `outbox.published_at` stays: rows published by a relay of the previous
            -- release (still running during a rolling deploy) keep it until purged.
            CREATE VIEW outbox_history AS
                SELECT id, event_id, topic, key, event_type, payload, headers, created_at, published_at FROM outbox
                UNION ALL
                SELECT id, event_id, topic, key, event_type, payload, headers, created_at, published_at FROM outbox_published;
            """),
        Migration(version: "0000_kit_outbox_dead_letters", sql: """
            -- Events the producer or the broker refuses for what they are (too large, malformed).
            -- Sending one again cannot succeed, and left in the outbox it would hold up every
            -- later event of the service, so the relay moves it here with the reason and goes on:
            -- its aggregate's later events are published (a gap, not a reordering, until an
            -- operator requeues it: it then comes after them). Kept until an operator acts on them
            -- (not purged with the published rows).
            CREATE TABLE outbox_dead_letters (
                id int8 PRIMARY KEY,
                event_id uuid NOT NULL,
                topic text NOT NULL,
                key text NOT NULL,
                event_type text NOT NULL,
                payload text NOT NULL,
                headers jsonb NOT NULL,
                created_at timestamptz NOT NULL,
                error text NOT NULL,
                dead_lettered_at timestamptz NOT NULL DEFAULT now()
            );
            """),
        Migration(version: "0000_kit_outbox_unpublished_only", sql: """
            -- Since the relay moves published rows to outbox_published, every row left in the
            -- outbox waits, and the partial index on unpublished rows held the same entries as
            -- the primary key: one more b-tree entry written and vacuumed per event for nothing
            -- (statements inserting 8 events, 4 clients: about 15% more of them per second
            -- without it). The relay's read walks the primary key. Rows a relay from before the
            -- archive marked published in place move there first, so that walk does not step
            -- over them.
            WITH moved AS (DELETE FROM outbox WHERE published_at IS NOT NULL RETURNING *)
            INSERT INTO outbox_published (id, event_id, topic, key, event_type, payload, headers, created_at, published_at)
            SELECT id, event_id, topic, key, event_type, payload, headers, created_at, published_at FROM moved;
            DROP INDEX outbox_unpublished;
            """),
        Migration(version: "0000_kit_idempotency_expiry", sql: """
            -- The retention sweeper deletes keys past their retention by age. Keys are the
            -- clients' own strings, so the primary key says nothing of age; only keyed requests
            -- (placing an order, creating a campaign) pay for this index, not helps or events.
            CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
            """),
    ]
}
