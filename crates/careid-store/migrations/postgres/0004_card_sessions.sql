-- Card sessions: the card that logged in, the workstation, and the last proof of the card's
-- presence (a heartbeat signed by the card, counted so that none is accepted twice).
ALTER TABLE sessions ADD COLUMN card BIGINT REFERENCES cards (id);
ALTER TABLE sessions ADD COLUMN workstation TEXT;
ALTER TABLE sessions ADD COLUMN heartbeat BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN last_proof_at BIGINT;
ALTER TABLE sessions ADD COLUMN end_reason TEXT;
-- At most one live card session per person, whatever the service checks first.
CREATE UNIQUE INDEX sessions_one_live_card_session ON sessions (person) WHERE ended_at IS NULL AND card IS NOT NULL;
CREATE INDEX sessions_live ON sessions (person) WHERE ended_at IS NULL;
CREATE INDEX sessions_of_card ON sessions (card) WHERE ended_at IS NULL;

-- Login challenges are stateless (authenticated by the server); a used one is remembered
-- here until it expires, so none is answered twice.
CREATE TABLE used_challenges (
    nonce BYTEA PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX used_challenges_expiry ON used_challenges (expires_at);
