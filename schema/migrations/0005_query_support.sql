-- Indexes of the query service's keyset pages (query-service/src/db/read_models.rs): each list
-- is read in its index order from the cursor on, so a page costs the same at the end of a list
-- as at its start.

-- members(orderBy: ENROLLED_AT): (enrolled_at, member_id) > cursor.
CREATE INDEX member_directory_enrolled_idx ON rm.member_directory (org_id, enrolled_at, member_id);

-- members(orderBy: POINTS_DESC): highest balance first, as (-balance, member_id) > cursor, so a
-- single ascending row comparison covers the mixed order.
CREATE INDEX member_balances_points_idx ON rm.member_balances (org_id, (-balance), member_id);

-- segmentTransitions(since, until): (at, member_id) > cursor within an org.
CREATE INDEX rfm_segment_transitions_at_idx ON rm.rfm_segment_transitions (org_id, at, member_id);
