-- The audit log's Merkle tree (RFC 9162) and its signed checkpoints. The records in audit_log
-- are the evidence; the tiles are derived from them (C2SP tlog-tiles, 256 hashes a tile) and
-- only make proofs fast. The tree follows the records in sequence order.

-- Each tile as it stands: full, or the growing rightmost tile of its level.
CREATE TABLE audit_tiles (
    level BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    hashes BLOB NOT NULL,
    PRIMARY KEY (level, idx)
);

-- How far the tree has followed the log: its size, its root, and the chain hash of its last
-- record (so the next records are checked against it before they join the tree).
CREATE TABLE audit_tree (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL,
    root BLOB NOT NULL,
    chain_hash BLOB NOT NULL
);
INSERT INTO audit_tree (id, size, root, chain_hash)
VALUES (1, 0, X'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
        X'0000000000000000000000000000000000000000000000000000000000000000');

-- Every checkpoint careid signed, in order; never changed, never deleted.
CREATE TABLE audit_checkpoints (
    size BIGINT PRIMARY KEY,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    signed_at BIGINT NOT NULL
);
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;

-- The session a record's actor acted in, so that a flagged record's session can be read whole.
ALTER TABLE audit_log ADD COLUMN session TEXT;
CREATE INDEX audit_log_session ON audit_log (session, seq);

-- A holder's "not me": an incident about one record, handled by the RA and the Caldicott
-- Guardian of the organisation the record concerns.
CREATE TABLE misuse_incidents (
    id INTEGER PRIMARY KEY,
    record BIGINT NOT NULL UNIQUE REFERENCES audit_log (seq),
    person TEXT NOT NULL REFERENCES people (uuid),
    org TEXT REFERENCES organisations (ods_code),
    comment TEXT NOT NULL,
    context TEXT NOT NULL,
    opened_at BIGINT NOT NULL
);
CREATE INDEX misuse_incidents_org ON misuse_incidents (org, id);
