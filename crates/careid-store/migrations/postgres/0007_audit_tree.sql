-- The audit log's Merkle tree (RFC 9162) and its signed checkpoints. The records in audit_log
-- are the evidence; the tiles are derived from them (C2SP tlog-tiles, 256 hashes a tile) and
-- only make proofs fast. The tree follows the records in sequence order.

-- Each tile as it stands: full, or the growing rightmost tile of its level.
CREATE TABLE audit_tiles (
    level BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    hashes BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);

-- How far the tree has followed the log: its size, its root, and the chain hash of its last
-- record (so the next records are checked against it before they join the tree).
CREATE TABLE audit_tree (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL,
    root BYTEA NOT NULL,
    chain_hash BYTEA NOT NULL
);
INSERT INTO audit_tree (id, size, root, chain_hash)
VALUES (1, 0, '\xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'::bytea,
        '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);

-- Every checkpoint careid signed, in order; never changed, never deleted.
CREATE TABLE audit_checkpoints (
    size BIGINT PRIMARY KEY,
    root BYTEA NOT NULL,
    note TEXT NOT NULL,
    signed_at BIGINT NOT NULL
);
CREATE FUNCTION audit_checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_checkpoints is append-only';
END;
$$;
CREATE TRIGGER audit_checkpoints_no_change BEFORE UPDATE OR DELETE ON audit_checkpoints
FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoints_append_only();
