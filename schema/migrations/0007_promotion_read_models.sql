-- Promotions in the read models (SPEC §9, §11): the program's promotions, time zone and earn
-- cap, and what each promotion awarded. Same conventions as 0004_read_models.sql: written only
-- by the projector, in the same transaction as its checkpoints; rebuilt and compared by
-- `projector audit` (every table below belongs to a read model of projector/src/read_models/).
--
-- Tables (member = org_id, member_id):
--
-- Program (current, per org)
--   programs                 gains time_zone (IANA name) and the earn cap {points, period}.
--   program_promotions       the program's promotions in its order (position), with their
--                            schedule, conditions, effect and limit as the program JSON has them.
-- Promotions (from the breakdown of each PurchaseRecorded; v1 purchases applied none)
--   promotion_uses           one row per purchase a promotion applied to: the points it awarded
--                            (after the cap; 0 when the cap took it all) and the budget left the
--                            event recorded. What EarnHistory is rebuilt from (per-member limits).
--   promotion_stats          per promotion: uses, points awarded (after the cap, gross of later
--                            clawbacks), distinct members, and budget_drawn = Σ points of the uses
--                            that drew on a budget. Budget left = the program's budget_points −
--                            budget_drawn: the last budget_left the events recorded, or the whole
--                            budget when never drawn (view promotion_statistics).
--   promotion_daily          per promotion per UTC day of the purchase's occurred_at (not the
--                            program's local day: a day's row never moves when the time zone
--                            changes): uses and points.
--   promotion_statistics     VIEW: every promotion of the program or with uses, with budget_left.

ALTER TABLE rm.programs
    ADD COLUMN time_zone       text NOT NULL DEFAULT 'UTC',
    ADD COLUMN earn_cap_points bigint,
    ADD COLUMN earn_cap_period text CHECK (earn_cap_period IN ('day', 'week', 'month'));

CREATE TABLE rm.program_promotions
(
    org_id        text        NOT NULL,
    promotion_id  text        NOT NULL,
    position      integer     NOT NULL,
    name          text        NOT NULL,
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz,
    -- {"days": ["tue"], "from": "14:00", "to": "18:00"} in the program's time zone, or NULL.
    schedule      jsonb,
    conditions    jsonb       NOT NULL,
    -- {"multiplier": {"multiplier_bps"}} | {"bonus": {"points"}} | {"per_unit": {"points"}}
    effect        jsonb       NOT NULL,
    stackable     boolean     NOT NULL,
    priority      integer     NOT NULL,
    limit_count   integer,
    limit_period  text CHECK (limit_period IN ('day', 'week', 'month', 'promotion')),
    budget_points bigint,
    PRIMARY KEY (org_id, promotion_id)
);

CREATE TABLE rm.promotion_uses
(
    org_id         text        NOT NULL,
    member_id      uuid        NOT NULL,
    promotion_id   text        NOT NULL,
    transaction_id text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    points         bigint      NOT NULL,
    budget_left    bigint,
    PRIMARY KEY (org_id, member_id, promotion_id, transaction_id)
);

CREATE TABLE rm.promotion_stats
(
    org_id       text   NOT NULL,
    promotion_id text   NOT NULL,
    uses         bigint NOT NULL,
    points       bigint NOT NULL,
    members      bigint NOT NULL,
    budget_drawn bigint NOT NULL,
    PRIMARY KEY (org_id, promotion_id)
);

CREATE TABLE rm.promotion_daily
(
    org_id       text   NOT NULL,
    promotion_id text   NOT NULL,
    day          date   NOT NULL,
    uses         bigint NOT NULL,
    points       bigint NOT NULL,
    PRIMARY KEY (org_id, promotion_id, day)
);

CREATE VIEW rm.promotion_statistics AS
SELECT coalesce(p.org_id, s.org_id)             AS org_id,
       coalesce(p.promotion_id, s.promotion_id) AS promotion_id,
       p.name,
       p.position,
       coalesce(s.uses, 0)                      AS uses,
       coalesce(s.points, 0)                    AS points,
       coalesce(s.members, 0)                   AS members,
       p.budget_points,
       CASE
           WHEN p.budget_points IS NOT NULL
               THEN greatest(p.budget_points - coalesce(s.budget_drawn, 0), 0)
           END                                  AS budget_left
FROM rm.program_promotions p
         FULL JOIN rm.promotion_stats s ON s.org_id = p.org_id AND s.promotion_id = p.promotion_id;
