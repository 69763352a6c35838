-- The highest JetStream sequence the stream had acknowledged to the relay when it wrote its
-- checkpoint. A stream whose last sequence is below it (or that acknowledges a new message
-- with a sequence at or below it) lost messages it had acknowledged: NATS killed before it
-- wrote them, its storage restored from an older copy, the stream deleted and created again.
-- The relay then republishes from the last event the stream still holds.
ALTER TABLE relay_checkpoints
    ADD COLUMN stream_sequence bigint NOT NULL DEFAULT 0;
