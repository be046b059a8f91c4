-- The migration control database: state that outlives Airflow runs and is read by later DAGs and the
-- on-call CLI. Idempotent: applied at the start of every task that writes state.
CREATE TABLE IF NOT EXISTS migration (
    migration_id      text PRIMARY KEY,
    phase             text NOT NULL,
    params            jsonb NOT NULL DEFAULT '{}',
    slot_name         text,
    publication_name  text,
    source_connector  text,
    sink_connector    text,
    snapshot_lsn      pg_lsn,
    tables            jsonb NOT NULL DEFAULT '[]',
    identity_columns  jsonb NOT NULL DEFAULT '[]',  -- ALWAYS identities created BY DEFAULT on the target
    sequences         jsonb NOT NULL DEFAULT '[]',  -- recorded now, synced at cutover
    last_lag_seconds  double precision,
    last_lag_at       timestamptz,
    last_validation   jsonb,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS migration_event (
    id            bigserial PRIMARY KEY,
    migration_id  text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    phase         text NOT NULL,
    message       text NOT NULL,
    details       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS migration_event_by_migration ON migration_event (migration_id, at);

CREATE TABLE IF NOT EXISTS lag_sample (
    migration_id        text NOT NULL,
    at                  timestamptz NOT NULL DEFAULT now(),
    end_to_end_seconds  double precision,
    sink_consumer_lag   bigint,
    retained_wal_bytes  bigint,
    PRIMARY KEY (migration_id, at)
);

CREATE TABLE IF NOT EXISTS snapshot_table (
    migration_id  text NOT NULL,
    table_name    text NOT NULL,
    status        text NOT NULL,      -- pending | copying | done
    rows_copied   bigint NOT NULL DEFAULT 0,
    bytes_copied  bigint NOT NULL DEFAULT 0,
    started_at    timestamptz,
    finished_at   timestamptz,
    PRIMARY KEY (migration_id, table_name)
);

-- Alerts raised by pg_migration_monitor and the DAG failure notifiers (pgmigrate.alerts.rules). At most one
-- open row per (migration, condition): that index is the dedupe. `deliveries` holds, per channel,
-- when the raised and the resolved message went out, so a channel that failed is retried next run.
CREATE TABLE IF NOT EXISTS alert (
    id            bigserial PRIMARY KEY,
    migration_id  text NOT NULL,
    condition     text NOT NULL,
    severity      text NOT NULL,
    message       text NOT NULL,
    details       jsonb NOT NULL DEFAULT '{}',
    raised_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    notified_at   timestamptz,
    resolved_notified_at  timestamptz,
    deliveries    jsonb NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS alert_open_once ON alert (migration_id, condition) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS alert_by_migration ON alert (migration_id, raised_at);

-- Dead letters (pgmigrate.recovery.dead_letters): how far the on-call person acknowledged the sink's DLQ topic,
-- per partition, after resyncing the keys it holds. Records past these offsets are a P0 and block cutover.
-- `topic_id`: a DLQ topic deleted and created again (reset, teardown) does not inherit the old offsets.
CREATE TABLE IF NOT EXISTS dead_letter_ack (
    migration_id  text PRIMARY KEY,
    topic_id      text NOT NULL,
    offsets       jsonb NOT NULL,    -- {"<partition>": <next offset not acknowledged>}
    records       bigint NOT NULL,   -- how many records this acknowledgement covered in all
    acked_at      timestamptz NOT NULL DEFAULT now(),
    note          text NOT NULL DEFAULT ''
);

-- Throughput and errors per monitor run (pgmigrate.stream.throughput), beside lag_sample: records produced to the
-- migration's data topics and applied by the sink (offset totals; rates are deltas between samples), DLQ
-- records and FAILED tasks.
CREATE TABLE IF NOT EXISTS throughput_sample (
    migration_id        text NOT NULL,
    at                  timestamptz NOT NULL DEFAULT now(),
    produced_total      bigint,
    applied_total       bigint,
    produced_per_second double precision,
    applied_per_second  double precision,
    dead_letters        bigint,
    failed_tasks        integer,
    PRIMARY KEY (migration_id, at)
);

-- The cutover's and rollback's write pause (pgmigrate.control.pause_lease): one row per attempt. Whoever ends the
-- pause - the switch, the deadline enforcer in the cutover's own process, or the pause guard in Airflow's
-- triggerer - does it with one compare-and-set on `state`, so exactly one of them wins. Times are this
-- database's clock, whichever host reads them. `plan` says how to put clients back (PgBouncer connections,
-- routes, the fence to lift): it holds Airflow connection ids and names, never a password.
CREATE TABLE IF NOT EXISTS pause_lease (
    lease_id           text PRIMARY KEY,
    migration_id       text NOT NULL,
    dag_run_id         text NOT NULL,
    purpose            text NOT NULL,      -- cutover | rollback | dry_run
    state              text NOT NULL,      -- pending | armed | switched | released | expired | abandoned
    max_pause_seconds  double precision NOT NULL,
    deadline           timestamptz,        -- set when armed
    plan               jsonb NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    armed_at           timestamptz,
    ended_at           timestamptz,
    ended_by           text,
    note               text,
    holder_seen_at     timestamptz,        -- the cutover task's heartbeat
    guard_seen_at      timestamptz         -- the pause guard's heartbeat (it watches this lease)
);
-- One pause at a time per migration (a cutover and a rollback never overlap).
CREATE UNIQUE INDEX IF NOT EXISTS pause_lease_one_active ON pause_lease (migration_id)
    WHERE state IN ('pending', 'armed');
CREATE INDEX IF NOT EXISTS pause_lease_by_run ON pause_lease (migration_id, dag_run_id, created_at);

-- Validation before the pause (pg_cutover's pre_validate): when, the result, and the change-topic positions
-- it validated at, so the in-pause verification only compares rows whose keys changed after them.
ALTER TABLE migration ADD COLUMN IF NOT EXISTS pre_validation jsonb;
-- Application roles made read-only on a side the clients left (pgmigrate.cutover.fence): {"source": {...}}.
ALTER TABLE migration ADD COLUMN IF NOT EXISTS fences jsonb NOT NULL DEFAULT '{}';

-- Which DAG run acts on a migration now (pgmigrate.control.run_lease): one row per migration, so two runs of the
-- same migration (a second pg_migration, a rollback during a cutover) never act on one slot and its connectors at
-- once, while runs of different migrations go side by side. Claimed by each such run's first task, released by its
-- teardown; a holder whose run is no longer running is taken over.
CREATE TABLE IF NOT EXISTS migration_run_lease (
    migration_id  text PRIMARY KEY,
    dag_id        text NOT NULL,
    run_id        text NOT NULL,
    claimed_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
