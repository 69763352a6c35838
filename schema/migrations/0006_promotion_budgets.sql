-- Promotions (SPEC §9): the budget guard of the command side (the promotion read models are in
-- 0007).
--
-- Budget guard. A promotion's budget must never be overspent, across processes, retries and
-- crashes. The command service decides a purchase with the budget left that it read from
-- `command_promotion_budgets`; the purchase event records, per budgeted promotion, the points it
-- drew and the budget left after it. The trigger below applies the draw in the same transaction
-- as the event row and refuses it (SQLSTATE LY003) unless the budget left it recorded is exactly
-- what the table says: a decision made on a stale budget rolls the whole command back and the
-- command service decides again on a fresh read. The row lock taken by the UPDATE serializes the
-- draws on one promotion, so they happen in the order of the events' global positions and a
-- replay of the log draws them identically.
--
-- Why it cannot overspend: a draw is accepted only when `budget_points - spent` is exactly the
-- budget left the decision saw (the engine never draws more than that, and never a negative
-- amount: both are checked here too), so `spent` never passes `budget_points`; the draw and the
-- event commit or roll back together, so a crash or a retried request cannot draw twice or draw
-- for an event that does not exist. LY003 is a SQLSTATE of its own, like LY001/LY002: postgres-es
-- reads every 23505 as an optimistic-lock conflict.

-- Budget and points drawn per promotion of an org. budget_points follows the program (trigger on
-- ProgramConfigured); spent only grows (clawbacks do not refill a budget).
CREATE TABLE command_promotion_budgets
(
    org_id        text   NOT NULL,
    promotion_id  text   NOT NULL,
    budget_points bigint NOT NULL,
    spent         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, promotion_id)
);

CREATE FUNCTION command_configure_promotion_budgets() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    v_promotion json;
BEGIN
    FOR v_promotion IN
        SELECT value
        FROM json_array_elements(coalesce(NEW.payload -> 'ProgramConfigured' -> 'config' -> 'promotions',
                                          '[]'::json))
        LOOP
            IF v_promotion ->> 'budget_points' IS NOT NULL THEN
                INSERT INTO command_promotion_budgets (org_id, promotion_id, budget_points)
                VALUES (NEW.aggregate_id, v_promotion ->> 'promotion_id',
                        (v_promotion ->> 'budget_points')::bigint)
                ON CONFLICT (org_id, promotion_id) DO UPDATE SET budget_points = EXCLUDED.budget_points;
            END IF;
        END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_configure_promotion_budgets
    AFTER INSERT
    ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'program' AND NEW.event_type = 'ProgramConfigured')
EXECUTE FUNCTION command_configure_promotion_budgets();

CREATE FUNCTION command_draw_promotion_budgets() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    v_org   text := split_part(NEW.aggregate_id, '/', 1);
    v_entry json;
BEGIN
    FOR v_entry IN
        SELECT value
        FROM json_array_elements(coalesce(NEW.payload -> 'PurchaseRecorded' -> 'breakdown' -> 'promotions',
                                          '[]'::json))
        LOOP
            IF v_entry ->> 'budget_left' IS NOT NULL THEN
                UPDATE command_promotion_budgets
                SET spent = spent + (v_entry ->> 'points')::bigint
                WHERE org_id = v_org
                  AND promotion_id = v_entry ->> 'promotion_id'
                  AND (v_entry ->> 'points')::bigint >= 0
                  AND budget_points - spent - (v_entry ->> 'points')::bigint = (v_entry ->> 'budget_left')::bigint
                  AND (v_entry ->> 'budget_left')::bigint >= 0;
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'the budget of promotion % of org % changed while the purchase was decided',
                        v_entry ->> 'promotion_id', v_org
                        USING ERRCODE = 'LY003';
                END IF;
            END IF;
        END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_draw_promotion_budgets
    AFTER INSERT
    ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'member' AND NEW.event_type = 'PurchaseRecorded')
EXECUTE FUNCTION command_draw_promotion_budgets();
