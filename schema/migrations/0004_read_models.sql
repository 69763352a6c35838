-- Read models of the projector (SPEC §6), in their own Postgres schema `rm`.
--
-- Who writes: only the projector, from the event stream (JetStream) or, for audits, from the
-- `events` table. Who reads: the query service (GraphQL) and analysts. Nothing here is a source
-- of truth: every row can be rebuilt from `public.events` (`projector audit` does exactly that
-- into a scratch schema created with `CREATE TABLE ... (LIKE rm.<table> INCLUDING ALL)` and
-- compares). Hence: no foreign keys, no sequences or defaults that depend on when a row was
-- written (except `parked_events.parked_at`), and every table has a primary key.
--
-- Conventions for readers:
-- - Every row is scoped by `org_id`; a member is `(org_id, member_id)`.
-- - Points and money are bigint (money in minor units of the program currency).
-- - Times are timestamptz (UTC); "business time" columns (`occurred_at`, `as_of`) come from the
--   events, `committed_at` is when the event store committed the event.
-- - Each row changes in the same transaction as `projection_checkpoints`, so a reader sees the
--   read models of whole event batches, never half an event.
--
-- Tables (member = org_id, member_id):
--
-- Progress and poison events
--   projection_checkpoints   last applied sequence per aggregate ('member' 'org/uuid', 'program' 'org').
--   parked_events            events that could not be applied (error), or that wait behind one
--                            (blocked_by = the failed sequence). Acked on the stream, kept here.
-- Balance and ledger
--   member_balances          balance, lifetime earned (by purchases), redeemed, expired, clawed
--                            back, adjusted (net), next expiry {points, at}. No pending points
--                            exist in this program (points are credited when the purchase is).
--   member_lots              the earn lots behind the balance (remaining > 0), consumed soonest
--                            expiry first exactly as the domain does; next expiry comes from here.
--   journal_entries          one row per points-moving member event; postings holds its two legs
--                            (account 'member_points' and 'org_liability', summing to 0).
--   org_liability            per org: points owed to members = Σ member balances.
--   member_directory         id, external id, display name, enrolment time.
-- Tier
--   member_tiers             current tier + multiplier, qualifying points as reported by the last
--                            event (as of `qualifying_as_of`), grace period if any.
--   tier_history             enrolment, upgrades, grace started/cleared, downgrades.
--   member_tier_progress     VIEW: qualifying points as of now() over the program's window,
--                            next tier and points to it, points to keep the tier and by when.
-- Program (current, per org)
--   programs, program_tiers (ordered by position), program_rewards, program_stamp_cards,
--   program_locations.
-- Stamp cards
--   stamp_cards              per member per card: stamps of required, cards completed (= rewards
--                            issued), last stamped day; stamp_rewards_issued lists each reward.
-- RFM
--   purchases                every purchase with its refunds and clawbacks (raw RFM and tier data).
--   rfm_members              per purchasing member: first/last purchase, counts and sums ever.
--   rfm_orgs                 raw_version = purchase/refund events applied; scored_version and
--                            scored_at = state of the last score recomputation.
--   rfm_scores               per purchasing member as of `computed_at`: recency_days, frequency,
--                            monetary_minor, r, f, m (1–5), segment.
--   rfm_segment_transitions  every change of segment (from_segment NULL = first scoring).
-- Leaderboards
--   leaderboard_scores       points earned by purchases minus their clawbacks, per org
--                            (location_id = '') and per location, per period:
--                            ('week', 'IYYY-"W"IW' e.g. '2025-W03'), ('month', 'YYYY-MM'),
--                            ('all', 'all'), by the purchase's occurred_at (UTC). reached_at /
--                            reached_position: the event that last changed the score.
--   leaderboard              VIEW: with rank (standard competition) and the public name
--                            (display name, else rm.member_pseudonym(member_id)); order by
--                            rank, reached_at, reached_position, member_id.

CREATE SCHEMA rm;

-- Display names are public on leaderboards; a member without one gets a stable pseudonym
-- derived from the member id alone (never from the external id, email or phone).
CREATE FUNCTION rm.member_pseudonym(member_id uuid) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 'Member ' || upper(left(md5(member_id::text), 6));

-- The (R, F) grid of SPEC §6: a complete partition of 1..5 × 1..5 into 11 segments.
CREATE FUNCTION rm.rfm_segment(r integer, f integer) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN r = 5 AND f = 1 THEN 'New Customers'
        WHEN r IN (4, 5) AND f IN (2, 3) THEN 'Potential Loyalists'
        WHEN r = 5 AND f IN (4, 5) THEN 'Champions'
        WHEN r = 4 AND f = 1 THEN 'Promising'
        WHEN r IN (3, 4) AND f IN (4, 5) THEN 'Loyal Customers'
        WHEN r = 3 AND f IN (1, 2) THEN 'About to Sleep'
        WHEN r = 3 AND f = 3 THEN 'Need Attention'
        WHEN r = 2 AND f IN (1, 2) THEN 'Hibernating'
        WHEN r IN (1, 2) AND f IN (3, 4) THEN 'At Risk'
        WHEN r IN (1, 2) AND f = 5 THEN 'Can''t Lose Them'
        WHEN r = 1 AND f IN (1, 2) THEN 'Lost'
    END;

CREATE TABLE rm.projection_checkpoints
(
    aggregate_type       text   NOT NULL,
    aggregate_id         text   NOT NULL,
    last_sequence        bigint NOT NULL,
    last_global_position bigint NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

CREATE TABLE rm.parked_events
(
    -- '' / 'stream:<name>' / stream sequence when the message itself could not be read.
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL,
    global_position bigint,
    event_type      text,
    payload         text        NOT NULL,
    error           text        NOT NULL,
    -- NULL: this event failed; else the parked sequence of the same aggregate it waits behind.
    blocked_by      bigint,
    parked_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE TABLE rm.member_directory
(
    org_id       text        NOT NULL,
    member_id    uuid        NOT NULL,
    external_id  text,
    display_name text,
    enrolled_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, member_id)
);
-- Not UNIQUE: uniqueness is the command side's rule; a read model must never refuse an event.
CREATE INDEX ON rm.member_directory (org_id, external_id);

CREATE TABLE rm.member_balances
(
    org_id             text   NOT NULL,
    member_id          uuid   NOT NULL,
    balance            bigint NOT NULL,
    lifetime_earned    bigint NOT NULL,
    redeemed           bigint NOT NULL,
    expired            bigint NOT NULL,
    clawed_back        bigint NOT NULL,
    adjusted           bigint NOT NULL,
    next_expiry_points bigint,
    next_expiry_at     timestamptz,
    PRIMARY KEY (org_id, member_id)
);

CREATE TABLE rm.member_lots
(
    org_id     text        NOT NULL,
    member_id  uuid        NOT NULL,
    lot_no     integer     NOT NULL,
    earned_at  timestamptz NOT NULL,
    expires_at timestamptz,
    remaining  bigint      NOT NULL,
    PRIMARY KEY (org_id, member_id, lot_no)
);

CREATE TABLE rm.journal_entries
(
    org_id          text        NOT NULL,
    member_id       uuid        NOT NULL,
    -- The member event's sequence: one entry per points-moving event.
    sequence        bigint      NOT NULL,
    global_position bigint      NOT NULL,
    event_type      text        NOT NULL,
    -- transaction_id / refund_id / redemption_id / adjustment_id; NULL for expiry.
    reference       text,
    points_delta    bigint      NOT NULL,
    balance_after   bigint      NOT NULL,
    occurred_at     timestamptz NOT NULL,
    committed_at    timestamptz NOT NULL,
    PRIMARY KEY (org_id, member_id, sequence)
);
CREATE INDEX ON rm.journal_entries (org_id, occurred_at);

CREATE TABLE rm.postings
(
    org_id    text   NOT NULL,
    member_id uuid   NOT NULL,
    sequence  bigint NOT NULL,
    account   text   NOT NULL CHECK (account IN ('member_points', 'org_liability')),
    delta     bigint NOT NULL,
    PRIMARY KEY (org_id, member_id, sequence, account)
);

CREATE TABLE rm.org_liability
(
    org_id text PRIMARY KEY,
    points bigint NOT NULL
);

CREATE TABLE rm.member_tiers
(
    org_id                 text        NOT NULL,
    member_id              uuid        NOT NULL,
    tier                   text        NOT NULL,
    multiplier_bps         integer     NOT NULL,
    qualifying_points      bigint      NOT NULL,
    qualifying_as_of       timestamptz NOT NULL,
    tier_since             timestamptz NOT NULL,
    program_version        bigint      NOT NULL,
    grace_started_at       timestamptz,
    grace_threshold_points bigint,
    downgrade_after        timestamptz,
    PRIMARY KEY (org_id, member_id)
);
CREATE INDEX ON rm.member_tiers (org_id, tier);

CREATE TABLE rm.tier_history
(
    org_id            text        NOT NULL,
    member_id         uuid        NOT NULL,
    sequence          bigint      NOT NULL,
    change            text        NOT NULL
        CHECK (change IN ('enrolled', 'upgraded', 'grace_started', 'grace_cleared', 'downgraded')),
    from_tier         text,
    to_tier           text        NOT NULL,
    multiplier_bps    integer,
    qualifying_points bigint      NOT NULL,
    at                timestamptz NOT NULL,
    downgrade_after   timestamptz,
    program_version   bigint,
    PRIMARY KEY (org_id, member_id, sequence)
);

CREATE TABLE rm.programs
(
    org_id                    text        PRIMARY KEY,
    version                   bigint      NOT NULL,
    currency                  text        NOT NULL,
    earn_rate                 bigint      NOT NULL,
    expiry_days               integer,
    qualification_window_days integer     NOT NULL,
    downgrade_grace_days      integer     NOT NULL,
    configured_at             timestamptz NOT NULL,
    -- The whole configuration as the admin sent it (domain::ProgramConfig).
    config                    jsonb       NOT NULL
);

CREATE TABLE rm.program_tiers
(
    org_id           text    NOT NULL,
    position         integer NOT NULL,
    name             text    NOT NULL,
    threshold_points bigint  NOT NULL,
    multiplier_bps   integer NOT NULL,
    PRIMARY KEY (org_id, position)
);

CREATE TABLE rm.program_rewards
(
    org_id      text    NOT NULL,
    reward_id   text    NOT NULL,
    name        text    NOT NULL,
    points_cost bigint  NOT NULL,
    active      boolean NOT NULL,
    PRIMARY KEY (org_id, reward_id)
);

CREATE TABLE rm.program_stamp_cards
(
    org_id           text    NOT NULL,
    card_id          text    NOT NULL,
    name             text    NOT NULL,
    stamps_required  integer NOT NULL,
    reward_id        text    NOT NULL,
    min_amount_minor bigint  NOT NULL,
    PRIMARY KEY (org_id, card_id)
);

CREATE TABLE rm.program_locations
(
    org_id        text        NOT NULL,
    location_id   text        NOT NULL,
    name          text        NOT NULL,
    registered_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, location_id)
);

CREATE TABLE rm.stamp_cards
(
    org_id          text    NOT NULL,
    member_id       uuid    NOT NULL,
    card_id         text    NOT NULL,
    stamps          integer NOT NULL,
    stamps_required integer NOT NULL,
    cards_completed integer NOT NULL,
    last_stamp_day  date,
    PRIMARY KEY (org_id, member_id, card_id)
);

CREATE TABLE rm.stamp_rewards_issued
(
    org_id          text        NOT NULL,
    member_id       uuid        NOT NULL,
    card_id         text        NOT NULL,
    cards_completed integer     NOT NULL,
    reward_id       text        NOT NULL,
    transaction_id  text        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    PRIMARY KEY (org_id, member_id, card_id, cards_completed)
);

CREATE TABLE rm.purchases
(
    org_id         text        NOT NULL,
    member_id      uuid        NOT NULL,
    transaction_id text        NOT NULL,
    location_id    text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    amount_minor   bigint      NOT NULL,
    refunded_minor bigint      NOT NULL,
    points_earned  bigint      NOT NULL,
    clawed_back    bigint      NOT NULL,
    PRIMARY KEY (org_id, member_id, transaction_id)
);
CREATE INDEX ON rm.purchases (org_id, occurred_at);

CREATE TABLE rm.rfm_members
(
    org_id            text        NOT NULL,
    member_id         uuid        NOT NULL,
    first_purchase_at timestamptz NOT NULL,
    last_purchase_at  timestamptz NOT NULL,
    purchases         bigint      NOT NULL,
    amount_minor      bigint      NOT NULL,
    refunded_minor    bigint      NOT NULL,
    PRIMARY KEY (org_id, member_id)
);

CREATE TABLE rm.rfm_orgs
(
    org_id         text PRIMARY KEY,
    raw_version    bigint NOT NULL,
    scored_version bigint,
    scored_at      timestamptz
);

CREATE TABLE rm.rfm_scores
(
    org_id         text        NOT NULL,
    member_id      uuid        NOT NULL,
    computed_at    timestamptz NOT NULL,
    recency_days   integer     NOT NULL,
    frequency      integer     NOT NULL,
    monetary_minor bigint      NOT NULL,
    r              smallint    NOT NULL,
    f              smallint    NOT NULL,
    m              smallint    NOT NULL,
    segment        text        NOT NULL,
    PRIMARY KEY (org_id, member_id)
);
CREATE INDEX ON rm.rfm_scores (org_id, segment);

CREATE TABLE rm.rfm_segment_transitions
(
    org_id       text        NOT NULL,
    member_id    uuid        NOT NULL,
    at           timestamptz NOT NULL,
    from_segment text,
    to_segment   text        NOT NULL,
    PRIMARY KEY (org_id, member_id, at)
);

CREATE TABLE rm.leaderboard_scores
(
    org_id           text        NOT NULL,
    location_id      text        NOT NULL,
    period           text        NOT NULL CHECK (period IN ('week', 'month', 'all')),
    period_key       text        NOT NULL,
    member_id        uuid        NOT NULL,
    points           bigint      NOT NULL,
    reached_at       timestamptz NOT NULL,
    reached_position bigint      NOT NULL,
    PRIMARY KEY (org_id, location_id, period, period_key, member_id)
);
CREATE INDEX leaderboard_scores_ranking_idx ON rm.leaderboard_scores
    (org_id, location_id, period, period_key, points DESC, reached_at, reached_position, member_id);

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

CREATE VIEW rm.member_tier_progress AS
SELECT t.org_id,
       t.member_id,
       t.tier,
       t.multiplier_bps,
       q.points                                                   AS qualifying_points,
       nt.name                                                    AS next_tier,
       greatest(nt.threshold_points - q.points, 0)                AS points_to_next,
       greatest(ct.threshold_points - q.points, 0)                AS points_to_keep,
       t.downgrade_after                                          AS keep_by,
       t.grace_started_at IS NOT NULL                             AS in_grace
FROM rm.member_tiers t
         LEFT JOIN rm.programs p ON p.org_id = t.org_id
         LEFT JOIN rm.program_tiers ct ON ct.org_id = t.org_id AND ct.name = t.tier
         LEFT JOIN LATERAL (
    SELECT n.name, n.threshold_points
    FROM rm.program_tiers n
    WHERE n.org_id = t.org_id
      AND n.position > ct.position
    ORDER BY n.position
    LIMIT 1) nt ON true
         CROSS JOIN LATERAL (
    SELECT coalesce(sum(pu.points_earned - pu.clawed_back), 0)::bigint AS points
    FROM rm.purchases pu
    WHERE pu.org_id = t.org_id
      AND pu.member_id = t.member_id
      AND pu.occurred_at > now() - make_interval(days => coalesce(p.qualification_window_days, 365))
      AND pu.occurred_at <= now()) q;
