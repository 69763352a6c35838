-- Setup of the pgbench ceiling (scripts/pgbench_event_insert.sql): an exact copy of the event
-- store's table (columns, identity, defaults, primary key, indexes), without the platform's
-- triggers, in the platform's own database. Run with psql in a migrated database.
DROP TABLE IF EXISTS pgbench_events;
CREATE TABLE pgbench_events (LIKE events INCLUDING ALL);
DROP SEQUENCE IF EXISTS pgbench_events_seq;
CREATE SEQUENCE pgbench_events_seq;
