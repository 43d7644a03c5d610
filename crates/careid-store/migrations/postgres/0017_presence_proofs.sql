-- A heartbeat is no longer a record of its own in the audit log: the session counts its proofs
-- and keeps the last one as the card signed it, and the session's end record carries both.
ALTER TABLE sessions ADD COLUMN proofs BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN last_proof_message BYTEA;
ALTER TABLE sessions ADD COLUMN last_proof_signature BYTEA;
