-- Delivery of the outbox: a sender leases a message before it sends it (so two servers do not
-- both send it), counts its attempts and keeps the last error, and backs off between tries.
ALTER TABLE outbox ADD COLUMN leased_until BIGINT;
ALTER TABLE outbox ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error TEXT;
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
