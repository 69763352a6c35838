-- The ceiling of the command path: one transaction that inserts one event-sized row into a copy
-- of the event store (pgbench_events, see scripts/pgbench_setup.sql), committed synchronously
-- like every command. The payload and metadata are a real PurchaseRecorded event and its
-- command metadata as the command service writes them (~0.7 kB).
--
--   pgbench -n -M prepared -c 32 -j 2 -T 20 -f scripts/pgbench_event_insert.sql <database>
\set member random(1, 100000)
INSERT INTO pgbench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
VALUES ('member', 'pgbench-org/00000000-0000-4000-8000-' || lpad(:member::text, 12, '0'),
        nextval('pgbench_events_seq'), 'PurchaseRecorded', '1',
        '{"PurchaseRecorded":{"transaction_id":"tx-6f1c2a8e-4b7d-4e0a-9a51-3c2d7e9f1b22","location_id":"store-3","amount_minor":2480,"currency":"EUR","occurred_at":"2026-11-21T13:05:12.345Z","program_version":1,"base_points":24,"tier":"Silver","multiplier_bps":12500,"points_earned":30,"expires_at":"2027-11-21T13:05:12.345Z","balance_after":1234,"qualifying_points":845}}',
        '{"org_id":"pgbench-org","key_id":"9b2f6c1e-5a7d-4c3b-8e2f-1d0a9c8b7e6f","command":"RecordPurchase","idempotency_key":"2c9e7f4a-1b3d-4e5f-8a6b-7c8d9e0f1a2b","request_id":"8f7e6d5c-4b3a-4291-8e7f-6d5c4b3a2918"}');
