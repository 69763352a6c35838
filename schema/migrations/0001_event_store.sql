-- The event store: the source of truth of the platform.
--
-- `events` and `snapshots` are exactly the tables postgres-es 0.5 expects (its db/init.sql).
-- postgres-es names its columns on insert, so the extra columns below are filled by their
-- defaults and it keeps working unchanged.

CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         json                         NOT NULL,
    metadata        json                         NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence),

    -- Order of insertion across all aggregates. Becomes visible at commit, not at insert, so
    -- readers of the log must not use it alone as a checkpoint: see tx_id.
    global_position bigint GENERATED ALWAYS AS IDENTITY NOT NULL UNIQUE,
    -- The writing transaction. A reader that only takes rows with
    -- tx_id < pg_snapshot_xmin(pg_current_snapshot()) sees finished transactions only, and
    -- (tx_id, global_position) is then a total order that never gains rows behind a checkpoint.
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id        uuid        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    committed_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX events_tx_id_global_position_idx ON events (tx_id, global_position);

-- Only needed by postgres-es in snapshot mode; kept so its schema is complete.
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- Events are append-only: an UPDATE, DELETE or TRUNCATE of the log is always a bug (or an
-- attack), so it fails here whatever the application does. Statement-level, so even a statement
-- that would touch no row is refused.
CREATE FUNCTION events_are_append_only() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'events are append-only: % on table events is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE
    ON events
    FOR EACH STATEMENT
EXECUTE FUNCTION events_are_append_only();
