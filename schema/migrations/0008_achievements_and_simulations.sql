-- Achievements in the read models, and stored what-if simulation reports (SPEC §9, §11).
-- Same conventions as 0004_read_models.sql for the rm tables: written only by the projector,
-- in the same transaction as its checkpoints; rebuilt and compared by `projector audit`.
--
-- Tables (member = org_id, member_id):
--
-- Achievements (from AchievementProgressed and AchievementUnlocked)
--   member_achievements        per member and achievement: progress and target as of the
--                              member's latest purchase or refund (unlocked ones stop moving),
--                              and the unlock (when, badge, reward points).
--   achievement_unlocks_weekly per achievement per ISO week (Monday, UTC) of the unlock: unlocks
--                              and reward points credited.
--   The program's achievements themselves are in programs.config (the program JSON).
--
-- Simulations (public schema: not a read model, never written by the projector nor audited)
--   simulations                one what-if run: its draft program, window and report, as
--                              `POST /v1/orgs/{org}/program/simulations` or `projector simulate`
--                              answered it.

CREATE TABLE rm.member_achievements
(
    org_id         text        NOT NULL,
    member_id      uuid        NOT NULL,
    achievement_id text        NOT NULL,
    progress       bigint      NOT NULL,
    target         bigint      NOT NULL,
    updated_at     timestamptz NOT NULL,
    unlocked_at    timestamptz,
    badge          text,
    reward_points  bigint,
    PRIMARY KEY (org_id, member_id, achievement_id)
);

-- Analysts' "members close to unlocking" and funnels read one achievement of one org.
CREATE INDEX member_achievements_by_achievement ON rm.member_achievements (org_id, achievement_id);

CREATE TABLE rm.achievement_unlocks_weekly
(
    org_id         text   NOT NULL,
    achievement_id text   NOT NULL,
    week           date   NOT NULL,
    unlocks        bigint NOT NULL,
    reward_points  bigint NOT NULL,
    PRIMARY KEY (org_id, achievement_id, week)
);

CREATE TABLE simulations
(
    org_id        text        NOT NULL,
    simulation_id uuid        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    window_from   timestamptz NOT NULL,
    window_to     timestamptz NOT NULL,
    draft         jsonb       NOT NULL,
    report        jsonb       NOT NULL,
    PRIMARY KEY (org_id, simulation_id)
);

CREATE INDEX simulations_by_org_time ON simulations (org_id, created_at DESC);
