-- Leaderboards in two rows per purchase instead of six (issue 14).
--
-- A purchase changed six rows of rm.leaderboard_scores (week, month and all time, org-wide and
-- for the store), each update with a new entry in both of its indexes: a third of the WAL a
-- purchase wrote and the largest table an audit rebuilds. Now a member has one row per board
-- location (org-wide '' and each store) holding its latest week, its latest month and all time
-- side by side, and a purchase changes the two rows of its location:
--
--   leaderboard_current  per (org_id, member_id, location_id): the member's latest week (the
--                        greatest key it scored in) with its points and when they were reached,
--                        the same for the month, and all time. Ranked by three indexes, one per
--                        period.
--   leaderboard_closed   the earlier weeks and months (leaderboard_scores' columns and ranking
--                        index): a member's week or month moves here, once, when the member
--                        scores in a later one; a purchase or clawback dated in a period before
--                        the member's latest adds to its row here.
--   leaderboard_scores   VIEW: the rows leaderboard_scores had (each of a member's scores is in
--                        exactly one of the two tables), so queries over it, and the leaderboard
--                        view, are unchanged.

DROP VIEW rm.leaderboard;
ALTER TABLE rm.leaderboard_scores RENAME TO leaderboard_scores_0016;

CREATE TABLE rm.leaderboard_current
(
    org_id                 text        NOT NULL,
    location_id            text        NOT NULL,
    member_id              uuid        NOT NULL,
    week_key               text        NOT NULL,
    week_points            bigint      NOT NULL,
    week_reached_at        timestamptz NOT NULL,
    week_reached_position  bigint      NOT NULL,
    month_key              text        NOT NULL,
    month_points           bigint      NOT NULL,
    month_reached_at       timestamptz NOT NULL,
    month_reached_position bigint      NOT NULL,
    all_points             bigint      NOT NULL,
    all_reached_at         timestamptz NOT NULL,
    all_reached_position   bigint      NOT NULL,
    PRIMARY KEY (org_id, member_id, location_id)
);

CREATE TABLE rm.leaderboard_closed
(
    org_id           text        NOT NULL,
    location_id      text        NOT NULL,
    period           text        NOT NULL CHECK (period IN ('week', 'month')),
    period_key       text        NOT NULL,
    member_id        uuid        NOT NULL,
    points           bigint      NOT NULL,
    reached_at       timestamptz NOT NULL,
    reached_position bigint      NOT NULL,
    PRIMARY KEY (org_id, location_id, period, period_key, member_id)
);

-- Every member row had its three periods together (a purchase scores all three), so each
-- 'all' row has a latest week and month. One sort of the table, not a lookup per row; new
-- tables rather than deletes from the old one, which would leave it full of dead rows.
INSERT INTO rm.leaderboard_current
WITH latest AS (SELECT DISTINCT ON (org_id, location_id, member_id, period) *
                FROM rm.leaderboard_scores_0016
                ORDER BY org_id, location_id, member_id, period, period_key DESC)
SELECT a.org_id, a.location_id, a.member_id,
       w.period_key, w.points, w.reached_at, w.reached_position,
       m.period_key, m.points, m.reached_at, m.reached_position,
       a.points, a.reached_at, a.reached_position
FROM latest a
         JOIN latest w USING (org_id, location_id, member_id)
         JOIN latest m USING (org_id, location_id, member_id)
WHERE a.period = 'all'
  AND w.period = 'week'
  AND m.period = 'month';

INSERT INTO rm.leaderboard_closed
SELECT s.*
FROM rm.leaderboard_scores_0016 s
         JOIN rm.leaderboard_current r USING (org_id, location_id, member_id)
WHERE (s.period = 'week' AND s.period_key <> r.week_key)
   OR (s.period = 'month' AND s.period_key <> r.month_key);

DROP TABLE rm.leaderboard_scores_0016;

-- The ranking indexes, built once the rows are in.
CREATE INDEX leaderboard_current_week_idx ON rm.leaderboard_current
    (org_id, location_id, week_key, week_points DESC, week_reached_at, week_reached_position, member_id);
CREATE INDEX leaderboard_current_month_idx ON rm.leaderboard_current
    (org_id, location_id, month_key, month_points DESC, month_reached_at, month_reached_position, member_id);
CREATE INDEX leaderboard_current_all_idx ON rm.leaderboard_current
    (org_id, location_id, all_points DESC, all_reached_at, all_reached_position, member_id);
CREATE INDEX leaderboard_closed_ranking_idx ON rm.leaderboard_closed
    (org_id, location_id, period, period_key, points DESC, reached_at, reached_position, member_id);

CREATE VIEW rm.leaderboard_scores AS
SELECT org_id, location_id, 'week'::text AS period, week_key AS period_key, member_id,
       week_points AS points, week_reached_at AS reached_at, week_reached_position AS reached_position
FROM rm.leaderboard_current
UNION ALL
SELECT org_id, location_id, 'month', month_key, member_id, month_points, month_reached_at, month_reached_position
FROM rm.leaderboard_current
UNION ALL
SELECT org_id, location_id, 'all', 'all', member_id, all_points, all_reached_at, all_reached_position
FROM rm.leaderboard_current
UNION ALL
SELECT org_id, location_id, period, period_key, member_id, points, reached_at, reached_position
FROM rm.leaderboard_closed;

CREATE VIEW rm.leaderboard AS
SELECT s.org_id,
       s.location_id,
       s.period,
       s.period_key,
       rank() OVER (PARTITION BY s.org_id, s.location_id, s.period, s.period_key
                    ORDER BY s.points DESC) AS rank,
       s.member_id,
       coalesce(d.display_name, rm.member_pseudonym(s.member_id)) AS display_name,
       s.points,
       s.reached_at,
       s.reached_position
FROM rm.leaderboard_scores s
         LEFT JOIN rm.member_directory d ON d.org_id = s.org_id AND d.member_id = s.member_id;
