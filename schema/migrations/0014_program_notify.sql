-- Programs, announced (issue 14). Every purchase is decided with its org's program; each command
-- service keeps the programs in memory and reads one again only when this trigger says it
-- changed, instead of asking the event store for newer program events on every command. The
-- notification (payload: the org's id, the program aggregate's id) is delivered when the
-- appending transaction commits, to every command service listening on the channel. A service
-- that is not listening (the connection lost) reads the store on every command until it
-- listens again, and then drops what it held, since notifications sent meanwhile are lost.

CREATE FUNCTION events_notify_program_changed() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('loyalty_program_changed', NEW.aggregate_id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify_program_changed
    AFTER INSERT
    ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'program')
EXECUTE FUNCTION events_notify_program_changed();
