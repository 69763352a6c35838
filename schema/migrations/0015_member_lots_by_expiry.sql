-- Member lots keyed by the order debits take them (issue 14). A redemption or a refund takes
-- points from a member's soonest-expiring lots; the projector used to read every lot of such a
-- member (numbered by position, so a debit could renumber them all), which on a member with
-- thousands of purchases cost thousands of rows per batch. Lots are now keyed by when they
-- expire (never-expiring last, as 'infinity') and when they were earned: the primary key's
-- order is the debit order, so the projector reads a debited member's first lots through the
-- index and leaves the rest as they are. Points earned and expiring at the same instants are
-- interchangeable and are one lot (the domain merges them too), so the rows below are the old
-- rows summed per key: exactly what a replay of the log writes.

CREATE TABLE rm.member_lots_by_expiry
(
    org_id     text        NOT NULL,
    member_id  uuid        NOT NULL,
    earned_at  timestamptz NOT NULL,
    expires_at timestamptz,
    remaining  bigint      NOT NULL,
    expiry_key timestamptz NOT NULL GENERATED ALWAYS AS (coalesce(expires_at, 'infinity'::timestamptz)) STORED,
    PRIMARY KEY (org_id, member_id, expiry_key, earned_at)
);

INSERT INTO rm.member_lots_by_expiry (org_id, member_id, earned_at, expires_at, remaining)
SELECT org_id, member_id, earned_at, expires_at, sum(remaining)
FROM rm.member_lots
GROUP BY org_id, member_id, earned_at, expires_at;

DROP TABLE rm.member_lots;
ALTER TABLE rm.member_lots_by_expiry RENAME TO member_lots;
ALTER INDEX rm.member_lots_by_expiry_pkey RENAME TO member_lots_pkey;

-- Cuts by lot number are gone with the numbers.
DROP FUNCTION public.lot_cuts(text[], uuid[], integer[]);

-- The lots a batch spent, as the parallel arrays it binds (see 0013 for why a function).
CREATE FUNCTION public.lot_keys(orgs text[], ids uuid[], expires timestamptz[], earned timestamptz[])
    RETURNS TABLE (org_id text, member_id uuid, expiry_key timestamptz, earned_at timestamptz)
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 1
AS $$
BEGIN
    RETURN QUERY SELECT o, i, coalesce(x, 'infinity'::timestamptz), e FROM unnest(orgs, ids, expires, earned) AS u(o, i, x, e);
END
$$;
