-- Smartcards, their certificates, and lost-card investigations (SQLite).

CREATE TABLE cards (
    id INTEGER PRIMARY KEY,
    serial TEXT NOT NULL,
    person TEXT NOT NULL REFERENCES people (uuid),
    state TEXT NOT NULL,
    -- 1 while the card is live (awaiting passcode, active, locked): at most one per person.
    live BIGINT NOT NULL,
    wrong_passcodes BIGINT NOT NULL,
    public_key BLOB,
    -- The card's administrative secret (PKCS#11 SO PIN), sealed under the master key.
    administrator_secret BLOB NOT NULL,
    -- The next administrative secret, released to a ceremony and not yet confirmed on the card.
    pending_administrator_secret BLOB,
    -- Which ceremony holds the pending secret (first_passcode, unlock, renew, repair), and how
    -- far it got.
    pending_ceremony TEXT,
    issued_by TEXT REFERENCES people (uuid),
    issued_at BIGINT NOT NULL,
    last_known_safe_at BIGINT NOT NULL,
    incident BIGINT
);
CREATE UNIQUE INDEX cards_one_live_per_person ON cards (person) WHERE live = 1;
CREATE UNIQUE INDEX cards_one_live_per_serial ON cards (serial) WHERE live = 1;
CREATE INDEX cards_person ON cards (person);

CREATE TABLE card_certificates (
    serial TEXT PRIMARY KEY,
    card BIGINT NOT NULL REFERENCES cards (id),
    der BLOB NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    revoked_at BIGINT,
    revocation_reason TEXT
);
CREATE INDEX card_certificates_card ON card_certificates (card);
CREATE INDEX card_certificates_revoked ON card_certificates (revoked_at);

CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    card BIGINT NOT NULL REFERENCES cards (id),
    subject TEXT NOT NULL REFERENCES people (uuid),
    reported_by TEXT NOT NULL REFERENCES people (uuid),
    reported_at BIGINT NOT NULL,
    closed_by TEXT REFERENCES people (uuid),
    closed_at BIGINT,
    review TEXT,
    outcome TEXT
);

-- One-time codes for self-service unlock: only their hashes are kept.
CREATE TABLE unlock_codes (
    id INTEGER PRIMARY KEY,
    card BIGINT NOT NULL REFERENCES cards (id),
    code_hash BLOB NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX unlock_codes_card ON unlock_codes (card, id);

-- Messages to people (email), written in the transaction that decides to send them.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX outbox_recipient ON outbox (recipient, id);

INSERT INTO counters (name, next_value) VALUES ('crl_number', 1);
