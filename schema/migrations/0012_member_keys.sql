-- The members a query-service statement reads, as the two parallel arrays it binds (orgs,
-- member ids). The query service plans each statement once per connection, for any keys
-- (a generic plan), and the planner then guesses 10 rows for an `unnest` of bound arrays:
-- on tables of a few thousand members it found hashing a whole read model cheaper than ten
-- index lookups, and every card and page then read each table whole. Its statements join
-- through this function instead, whose estimate (ROWS 1) keeps them on their primary keys at
-- any size. PL/pgSQL, because a SQL function would be inlined back into the bare `unnest`.
CREATE FUNCTION rm.member_keys(orgs text[], ids uuid[])
    RETURNS TABLE (org_id text, member_id uuid)
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 1
AS $$
BEGIN
    RETURN QUERY SELECT * FROM unnest(orgs, ids);
END
$$;
