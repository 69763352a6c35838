-- The keys a projector batch looks read models up by, as the parallel arrays it binds, for the
-- statements 0012's rm.member_keys (members) does not cover: aggregates (checkpoints, parked
-- events), purchases, and cuts of a member's lots.
--
-- Why: an `unnest` of bound arrays is estimated at 10 rows whatever their length, and a batch's
-- transaction turns hash and merge joins off. The planner then made a whole read model the outer
-- side of the nested loop and the key list its inner side: at 2,600 purchases/s the projector's
-- look-up of ~430 purchases took 1.8 s and the recomputation of their members' RFM data 1.2 s,
-- each reading every row of `purchases` once per key, and the projector fell minutes behind.
-- Joined through these functions (ROWS 1, PL/pgSQL so they are not inlined back into the
-- `unnest`), the keys are the outer side and each probes the table's primary key.
CREATE FUNCTION public.aggregate_keys(types text[], ids text[])
    RETURNS TABLE (aggregate_type text, aggregate_id text)
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 1
AS $$
BEGIN
    RETURN QUERY SELECT * FROM unnest(types, ids);
END
$$;

CREATE FUNCTION public.purchase_keys(orgs text[], ids uuid[], transactions text[])
    RETURNS TABLE (org_id text, member_id uuid, transaction_id text)
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 1
AS $$
BEGIN
    RETURN QUERY SELECT * FROM unnest(orgs, ids, transactions);
END
$$;

CREATE FUNCTION public.lot_cuts(orgs text[], ids uuid[], from_lots integer[])
    RETURNS TABLE (org_id text, member_id uuid, from_no integer)
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 1
AS $$
BEGIN
    RETURN QUERY SELECT * FROM unnest(orgs, ids, from_lots);
END
$$;
