-- The command side's own tables (command-service), and the relay's checkpoint and wake-up.
--
-- Rules that span aggregates (an external_id is unique per org; a POS transaction is credited to
-- one member only) are enforced by a trigger on the event insert, so the index row and the event
-- row commit or roll back together: there is no window in which one exists without the other.

-- Members of each org as enrolled: lets a member be named by external_id and lets the system
-- jobs enumerate the members of an org. Written only by the trigger below.
CREATE TABLE command_members
(
    org_id       text        NOT NULL,
    member_id    uuid        NOT NULL,
    external_id  text,
    display_name text,
    enrolled_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, member_id)
);

CREATE UNIQUE INDEX command_members_external_id_idx
    ON command_members (org_id, external_id)
    WHERE external_id IS NOT NULL;

-- Which member a POS transaction of an org was credited to. Written only by the trigger below.
CREATE TABLE command_transaction_claims
(
    org_id         text        NOT NULL,
    transaction_id text        NOT NULL,
    member_id      uuid        NOT NULL,
    claimed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, transaction_id)
);

-- Keeps command_members and command_transaction_claims in step with the log.
--
-- Conflicts are raised with SQLSTATEs of their own (LY001, LY002), never unique_violation
-- (23505): postgres-es reads every 23505 on insert as an optimistic-lock conflict and the
-- command service would retry a command that can never succeed.
CREATE FUNCTION command_index_member_event() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    v_org    text := split_part(NEW.aggregate_id, '/', 1);
    v_member uuid := split_part(NEW.aggregate_id, '/', 2)::uuid;
    v_body   json;
    v_owner  uuid;
BEGIN
    IF NEW.event_type = 'MemberEnrolled' THEN
        v_body := NEW.payload -> 'MemberEnrolled';
        INSERT INTO command_members (org_id, member_id, external_id, display_name, enrolled_at)
        VALUES (v_org, v_member, v_body ->> 'external_id', v_body ->> 'display_name',
                (v_body ->> 'enrolled_at')::timestamptz)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            -- (org_id, member_id) cannot clash: the event's own primary key (sequence 1 of the
            -- aggregate) was checked first. So the external_id is taken.
            RAISE EXCEPTION 'external_id % is already used by another member of org %',
                v_body ->> 'external_id', v_org
                USING ERRCODE = 'LY001';
        END IF;
    ELSIF NEW.event_type = 'PurchaseRecorded' THEN
        v_body := NEW.payload -> 'PurchaseRecorded';
        INSERT INTO command_transaction_claims (org_id, transaction_id, member_id)
        VALUES (v_org, v_body ->> 'transaction_id', v_member)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            SELECT member_id
            INTO v_owner
            FROM command_transaction_claims
            WHERE org_id = v_org
              AND transaction_id = v_body ->> 'transaction_id';
            IF v_owner IS DISTINCT FROM v_member THEN
                RAISE EXCEPTION 'transaction_id % of org % was already credited to another member',
                    v_body ->> 'transaction_id', v_org
                    USING ERRCODE = 'LY002';
            END IF;
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_index_member_event
    AFTER INSERT
    ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'member' AND NEW.event_type IN ('MemberEnrolled', 'PurchaseRecorded'))
EXECUTE FUNCTION command_index_member_event();

-- Idempotency-Key records: one per (org, key). While a request runs, status_code is NULL and
-- lease_id/locked_until say who runs it until when; once it succeeded, the exact response is kept
-- and replayed to a retry with the same request_hash.
CREATE TABLE command_idempotency_keys
(
    org_id          text        NOT NULL,
    idempotency_key text        NOT NULL,
    request_hash    text        NOT NULL,
    key_id          uuid        NOT NULL,
    lease_id        uuid,
    locked_until    timestamptz,
    status_code     smallint,
    response_body   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    PRIMARY KEY (org_id, idempotency_key),
    CONSTRAINT command_idempotency_keys_complete
        CHECK ((status_code IS NULL) = (response_body IS NULL))
);

CREATE INDEX command_idempotency_keys_completed_at_idx
    ON command_idempotency_keys (completed_at)
    WHERE completed_at IS NOT NULL;

-- Where the relay to each JetStream stream has got to in the (tx_id, global_position) order of
-- the log: every event up to and including this one was acknowledged by the stream.
CREATE TABLE relay_checkpoints
(
    stream          text PRIMARY KEY,
    tx_id           xid8        NOT NULL,
    global_position bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Wakes the relay when events are committed (NOTIFY is delivered at commit, once per
-- transaction and channel). The relay also polls, so a lost notification only delays it.
CREATE FUNCTION events_notify_inserted() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('loyalty_events_inserted', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify_inserted
    AFTER INSERT
    ON events
    FOR EACH STATEMENT
EXECUTE FUNCTION events_notify_inserted();
