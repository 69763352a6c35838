-- The relay's horizon, without the read side's transactions (issue 14). The relay publishes an
-- event only once every transaction that could still add an event before it has finished: it
-- read `tx_id < pg_snapshot_xmin(pg_current_snapshot())`, and so waited for every transaction
-- holding an xid, the projector's own batches (tens of milliseconds each, one after the other),
-- its RFM passes and an audit's replay included. A purchase then waited for the projector's
-- running batch to commit before it was even published. Sessions named 'loyalty-projector'
-- never write events (the trigger below refuses it), so the horizon is the oldest running
-- transaction of any other session, or the snapshot's xmax when there is none. An xid whose
-- session cannot be told (gone, or hidden from this role) still counts: the horizon is never
-- later than the truth.

CREATE FUNCTION public.events_horizon() RETURNS xid8
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(
        (SELECT min(x) FROM pg_snapshot_xip(s.snapshot) AS x
         -- xid8 to its 32-bit xid, as pg_stat_activity shows it.
         WHERE (x::text::bigint % 4294967296) NOT IN (
             SELECT a.backend_xid::text::bigint FROM pg_stat_activity a
             WHERE a.application_name = 'loyalty-projector' AND a.backend_xid IS NOT NULL)),
        pg_snapshot_xmax(s.snapshot))
    FROM (SELECT pg_current_snapshot() AS snapshot) AS s
$$;

CREATE FUNCTION events_refuse_read_side() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    IF current_setting('application_name') = 'loyalty-projector' THEN
        RAISE EXCEPTION 'a loyalty-projector session may not write events: the relay does not wait for its transactions'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_refuse_read_side
    BEFORE INSERT
    ON events
    FOR EACH STATEMENT
EXECUTE FUNCTION events_refuse_read_side();
