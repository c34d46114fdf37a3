-- Causeway's shared store, version 1. Runs inside the pool's schema (search_path), in one
-- transaction under an advisory lock. See docs/store.md.

-- Events, their jobs and attempts are partitioned by day on the event id: ids are UUID v7
-- (a fanned-out child carries its parent's time), so an id names its day, a lookup by id
-- reads one partition, and retention drops whole days.
CREATE TABLE events (
    id uuid NOT NULL PRIMARY KEY,
    bridge text NOT NULL,
    received_at bigint NOT NULL,
    status text NOT NULL,
    reason text,
    -- The rest of the event record (method, query, headers, parent) as written.
    record jsonb NOT NULL,
    children uuid[] NOT NULL DEFAULT '{}',
    body_bytes bigint NOT NULL,
    body bytea NOT NULL,
    -- What the event counts against the store's size limit.
    size bigint NOT NULL
) PARTITION BY RANGE (id);
CREATE INDEX events_bridge ON events (bridge, id);

CREATE TABLE jobs (
    event uuid NOT NULL,
    -- The destination's place, or -1 for the steps job.
    slot integer NOT NULL,
    bridge text NOT NULL,
    destination text NOT NULL,
    status text NOT NULL,
    due_at bigint NOT NULL,
    received_at bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    attempts_at_queue integer NOT NULL DEFAULT 0,
    last_error text,
    PRIMARY KEY (event, slot)
) PARTITION BY RANGE (event);
-- Bridge-wide operations (replay dead letters, purge, resume) look jobs up by status.
CREATE INDEX jobs_bridge_status ON jobs (bridge, status) WHERE status IN ('dead', 'paused');

CREATE TABLE attempts (
    event uuid NOT NULL,
    slot integer NOT NULL,
    n integer NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (event, slot, n)
) PARTITION BY RANGE (event);

-- The hot table: one row per queued job (pending or retrying), deleted when the job
-- finishes. A replica claims rows with FOR UPDATE SKIP LOCKED and holds them by a lease.
CREATE TABLE queue (
    event uuid NOT NULL,
    slot integer NOT NULL,
    bridge text NOT NULL,
    destination text NOT NULL,
    due_at bigint NOT NULL,
    claimed_by text,
    -- Milliseconds since the epoch, by the database's clock.
    lease_until bigint,
    PRIMARY KEY (event, slot)
);
CREATE INDEX queue_due ON queue (due_at, event, slot);

-- Due jobs whose record could not be read, taken out of the queue.
CREATE TABLE quarantine (
    event uuid NOT NULL,
    slot integer NOT NULL,
    due_at bigint NOT NULL,
    PRIMARY KEY (event, slot)
);

CREATE TABLE idempotency (
    bridge text NOT NULL,
    key text NOT NULL,
    event uuid NOT NULL,
    expires bigint NOT NULL,
    PRIMARY KEY (bridge, key)
);
CREATE INDEX idempotency_expires ON idempotency (expires);

-- Destinations paused by a 410, and bridges suspended through the admin API: shared by
-- every replica of the pool.
CREATE TABLE paused (
    bridge text NOT NULL,
    destination text NOT NULL,
    since bigint NOT NULL,
    PRIMARY KEY (bridge, destination)
);
CREATE TABLE suspended (
    bridge text NOT NULL PRIMARY KEY,
    suspended boolean NOT NULL
);

CREATE TABLE kv (
    plugin text NOT NULL,
    key text NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (plugin, key)
);
CREATE TABLE kv_usage (
    plugin text NOT NULL PRIMARY KEY,
    bytes bigint NOT NULL
);
